"""Portfolio figures: counts and budgets by programme, scheme, area, status; the foundation's share."""
