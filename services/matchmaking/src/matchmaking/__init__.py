"""Distretto matchmaking service."""
