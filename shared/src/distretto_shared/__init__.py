"""Distretto backbone."""
