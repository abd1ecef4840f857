"""Automation from membership's events."""
