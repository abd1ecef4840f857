"""Distretto gateway service."""
