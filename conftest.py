"""Fixtures shared by every test folder live in distretto_dev.testing."""

import pytest

pytest_plugins = ["distretto_dev.testing"]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test`` runs two workers, ``--dist loadgroup``) a worker takes a
    whole module, so a module's stack of real processes starts once, and the security suite as one
    group, so its session-wide platform (five services and a gateway per database) starts once."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        group = "tests/security" if path.startswith("tests/security/") else path
        item.add_marker(pytest.mark.xdist_group(group))
