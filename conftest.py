"""Fixtures shared by every test folder live in distretto_dev.testing."""

pytest_plugins = ["distretto_dev.testing"]
