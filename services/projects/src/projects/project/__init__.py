"""A project: CORDIS fields plus the foundation's own, its status."""
