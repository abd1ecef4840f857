"""Bounces and complaints: recorded, counted, and suppressing an address when the rule says so."""
