"""Mailing lists.."""
