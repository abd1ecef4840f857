"""Distretto newsletter service."""
