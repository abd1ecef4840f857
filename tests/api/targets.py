"""The targets of the API suite: each service and the gateway, and how to get their OpenAPI documents."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from typing import Any

TARGETS = ("membership", "projects", "newsletter", "matchmaking", "partners", "gateway")
"""Every JSON API of the platform (the console is HTML pages for people, not an API)."""

_DUMP = """
import json, sys
import distretto_dev.testing  # the session's keys, as the tests run every service
from {name}.app import create_app
app = create_app()
app = getattr(app, "fastapi", app)  # the gateway's own routes behind its middleware
json.dump(app.openapi(), sys.stdout)
"""


def openapi_document(name: str) -> dict[str, Any]:
    """The document ``name`` serves at /openapi.json (built in a process of its own: each service has
    its own tables, which one process cannot import side by side; once per test session)."""
    return dict(json.loads(_document_text(name)))


@functools.cache
def _document_text(name: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", _DUMP.format(name=name)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout
