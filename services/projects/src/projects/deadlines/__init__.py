"""The deadline engine: due-soon and overdue notices, each said once."""
