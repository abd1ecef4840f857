"""Fixtures shared by every test folder live in distretto_shared.testing."""

pytest_plugins = ["distretto_shared.testing"]
