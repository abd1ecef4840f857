"""Distretto projects service."""
