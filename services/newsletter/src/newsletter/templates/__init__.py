"""Templates.."""
