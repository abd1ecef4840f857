"""Distretto membership service."""
