"""The digest."""
