"""Distretto partners: the public catalogue and the partner channels (server-sent events, webhooks)."""
