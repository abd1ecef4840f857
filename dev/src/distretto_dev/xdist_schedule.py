"""Longest work first: the order in which ``make test`` hands test files to its pytest-xdist workers.

``deploy/run_tests.py`` loads this plugin (``-p distretto_dev.xdist_schedule``) with ``--dist
loadfile``. A file stays on one worker (its module-scoped stack of processes starts once); this
plugin decides which file a free worker takes next: the one that took longest in a recorded run
(``deploy/test-durations.json``, written by ``run_tests.py --record-durations``), so no long file
starts last and leaves one worker running alone at the end. A file the record does not know
counts its tests at the record's mean seconds a test.

xdist's own ``--loadscope-reorder`` sorts by the number of tests, which puts a file of six slow
browser tests behind every file of forty quick ones; this plugin turns it off and orders the
collection itself (the workers' collection order is the order xdist hands the files out in).

One folder is one unit: the files of ``tests/security`` share a session-wide platform of real
processes (its fixture is session-scoped, one per backend), so they run on one worker, the tests
of one backend together: it starts once per backend, not once per worker and file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

DURATIONS = Path(
    os.environ.get("DISTRETTO_TEST_DURATIONS") or Path(__file__).resolve().parents[3] / "deploy" / "test-durations.json"
)
GROUPED_FOLDERS = ("tests/security/",)
"""Folders whose files are one unit of work (they share a session-scoped fixture)."""


def scope_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its file, or its folder for :data:`GROUPED_FOLDERS`."""
    path = nodeid.split("::", 1)[0]
    for folder in GROUPED_FOLDERS:
        if path.startswith(folder):
            return folder
    return path


def load_durations(path: Path = DURATIONS) -> tuple[dict[str, float], float]:
    """Seconds per test file from the record, and its mean seconds a test (nothing, 1 s: no record)."""
    try:
        data = json.loads(path.read_text())
        return {str(k): float(v) for k, v in data["files"].items()}, float(data["mean_test_seconds"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}, 1.0


def weights(nodeids: list[str], durations: dict[str, float], mean_test_seconds: float) -> dict[str, float]:
    """Expected seconds of each unit of work among ``nodeids``."""
    per_file: dict[str, int] = {}
    for nodeid in nodeids:
        path = nodeid.split("::", 1)[0]
        per_file[path] = per_file.get(path, 0) + 1
    out: dict[str, float] = {}
    for path, count in per_file.items():
        scope = scope_of(path)
        out[scope] = out.get(scope, 0.0) + durations.get(path, count * mean_test_seconds)
    return out


def pytest_configure(config: pytest.Config) -> None:
    # the collection's order is the order of the work queue (see the module's docstring)
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest unit of work first; within a unit the order is the collection's."""
    if not hasattr(config, "workerinput"):
        return  # only the workers' order matters (and a run without xdist keeps its own)
    weight = weights([item.nodeid for item in items], *load_durations())
    position = {id(item): i for i, item in enumerate(items)}
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        first.setdefault(scope_of(item.nodeid), i)
    items.sort(
        key=lambda item: (
            -weight[scope_of(item.nodeid)],
            first[scope_of(item.nodeid)],
            session_params(item),
            position[id(item)],
        )
    )


def session_params(item: pytest.Item) -> tuple[str, ...]:
    """The values of the session-scoped parametrised fixtures ``item`` uses: within a unit the tests of
    one value run together, so such a fixture (the security suite's platform, per backend) starts
    once per value instead of again for each file."""
    callspec = getattr(item, "callspec", None)
    info = getattr(item, "_fixtureinfo", None)
    if callspec is None or info is None:
        return ()
    values = []
    for name, value in sorted(callspec.params.items()):
        definitions = info.name2fixturedefs.get(name) or ()
        if definitions and definitions[-1].scope == "session":
            values.append(f"{name}={value}")
    return tuple(values)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` with :data:`GROUPED_FOLDERS` as one unit each."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class UnitScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return UnitScheduling(config, log)
