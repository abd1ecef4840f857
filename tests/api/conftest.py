"""The API suite: every service's and the gateway's OpenAPI document against the conventions
(test_conventions.py, part of `make test`), and schemathesis against each of them running as a real
process (test_schemathesis.py: `make schemathesis`, not part of `make test` — about a quarter of a
second a case, thousands of cases a target: see docs/api-conventions.md, "schemathesis")."""

from __future__ import annotations

import os

collect_ignore = [] if os.environ.get("DISTRETTO_SCHEMATHESIS") == "1" else ["test_schemathesis.py"]
