"""Command line CORDIS import, through the platform's authenticated HTTP API.

    python -m projects.cordis_import project.csv [organization.csv] \
        --base-url http://127.0.0.1:8080/api/projects --token "$DISTRETTO_TOKEN"

It posts both files to ``POST /imports/cordis`` through the gateway (so the running service
does the import in one transaction and publishes its events) and prints what the import did,
or every bad row with its file and line. The credential is a staff user's access token
(``POST /auth/token``) or an API key, given with ``--token`` or in the ``DISTRETTO_TOKEN``
environment variable (which keeps it out of the shell history and the process list).
Exit status: 0 imported, 1 refused (nothing imported), 2 no credential, or the service could
not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx


def read_files(project_csv: Path, organization_csv: Path | None) -> tuple[str, str]:
    """The two files' text (a byte-order mark dropped)."""
    organizations = organization_csv.read_text(encoding="utf-8-sig") if organization_csv else ""
    return project_csv.read_text(encoding="utf-8-sig"), organizations


TOKEN_VARIABLE = "DISTRETTO_TOKEN"


async def run(client: httpx.AsyncClient, project_csv: str, organization_csv: str) -> tuple[int, Any]:
    """Send the files' text; returns (exit status, the service's answer)."""
    body = {"project_csv": project_csv, "organization_csv": organization_csv}
    response = await client.post("/imports/cordis", json=body, timeout=300)
    try:
        answer = response.json()
    except ValueError:
        answer = {"message": response.text[:500]}
    if response.status_code != 200 and isinstance(answer, dict):
        answer.setdefault("message", f"HTTP {response.status_code}")
        answer["status"] = response.status_code
    return (0 if response.status_code == 200 else 1), answer


def token_from(option: str | None, environ: Mapping[str, str]) -> str | None:
    """The credential: ``--token``, else ``DISTRETTO_TOKEN``; None when neither is set."""
    token = (option or environ.get(TOKEN_VARIABLE, "")).strip()
    return token or None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m projects.cordis_import``."""
    parser = argparse.ArgumentParser(prog="projects.cordis_import", description=__doc__.split("\n\n")[0])
    parser.add_argument("project_csv", type=Path)
    parser.add_argument("organization_csv", type=Path, nargs="?")
    parser.add_argument(
        "--base-url", default="http://127.0.0.1:8080/api/projects", help="the projects API behind the gateway"
    )
    parser.add_argument("--token", default=None, help=f"a staff access token or API key (default: ${TOKEN_VARIABLE})")
    args = parser.parse_args(argv)
    token = token_from(args.token, os.environ)
    if token is None:
        print(
            f"error: the API needs a credential: pass --token, or set {TOKEN_VARIABLE} "
            "(a staff user's access token from POST /auth/token, or an API key)",
            file=sys.stderr,
        )
        return 2

    async def go() -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=args.base_url, headers=headers) as client:
            return await run(client, *read_files(args.project_csv, args.organization_csv))

    try:
        status, answer = asyncio.run(go())
    except (httpx.HTTPError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if status == 0:
        print(json.dumps(answer, indent=2))
    else:
        print(f"refused (HTTP {answer.get('status')}): {answer.get('message')}", file=sys.stderr)
        for row in answer.get("details") or []:
            if isinstance(row, dict) and "line" in row:
                print(f"  {row['file']} line {row['line']}: {row['reason']}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
