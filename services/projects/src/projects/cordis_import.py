"""Command line CORDIS import, through the service's HTTP API.

    python -m projects.cordis_import project.csv [organization.csv] --base-url http://127.0.0.1:8002

It posts both files to ``POST /imports/cordis`` (so the running service does
the import in one transaction and publishes its events) and prints what the
import did, or every bad row with its file and line. Exit status: 0 imported,
1 refused (nothing imported), 2 the service could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx


def read_files(project_csv: Path, organization_csv: Path | None) -> tuple[str, str]:
    """The two files' text (a byte-order mark dropped)."""
    organizations = organization_csv.read_text(encoding="utf-8-sig") if organization_csv else ""
    return project_csv.read_text(encoding="utf-8-sig"), organizations


async def run(client: httpx.AsyncClient, project_csv: str, organization_csv: str) -> tuple[int, Any]:
    """Send the files' text; returns (exit status, the service's answer)."""
    body = {"project_csv": project_csv, "organization_csv": organization_csv}
    response = await client.post("/imports/cordis", json=body, timeout=300)
    return (0 if response.status_code == 200 else 1), response.json()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m projects.cordis_import``."""
    parser = argparse.ArgumentParser(prog="projects.cordis_import", description=__doc__.split("\n\n")[0])
    parser.add_argument("project_csv", type=Path)
    parser.add_argument("organization_csv", type=Path, nargs="?")
    parser.add_argument("--base-url", default="http://127.0.0.1:8002", help="the projects service")
    args = parser.parse_args(argv)

    async def go() -> tuple[int, Any]:
        async with httpx.AsyncClient(base_url=args.base_url) as client:
            return await run(client, *read_files(args.project_csv, args.organization_csv))

    try:
        status, answer = asyncio.run(go())
    except (httpx.HTTPError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if status == 0:
        print(json.dumps(answer, indent=2))
    else:
        print(f"refused: {answer.get('message')}", file=sys.stderr)
        for row in answer.get("details") or []:
            if isinstance(row, dict) and "line" in row:
                print(f"  {row['file']} line {row['line']}: {row['reason']}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
