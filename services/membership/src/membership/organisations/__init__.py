"""The register: organisations, their data, the list, the CSV import and export."""
