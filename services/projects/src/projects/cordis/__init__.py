"""The CORDIS import: parsing an export pair and importing it, all or nothing."""
