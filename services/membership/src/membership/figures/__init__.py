"""Figures: an organisation's yearly figures (and the size class they imply), the district's aggregates."""
