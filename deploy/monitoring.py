"""Generate the monitoring files of docker compose and Kubernetes (``--check``: fail if they drift).

The list of targets and the alert rules live once, in ``distretto_shared.monitoring``;
``make up`` writes its own variant under ``var/monitoring`` (``deploy/stack.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distretto_shared.monitoring import deploy_files, write

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if a committed file differs from the generator's")
    args = parser.parse_args()
    files = deploy_files(ROOT)
    if args.check:
        stale = [str(p.relative_to(ROOT)) for p, text in files.items() if not p.is_file() or p.read_text() != text]
        if stale:
            print(f"monitoring: out of date (run python deploy/monitoring.py): {', '.join(stale)}", file=sys.stderr)
            return 1
        print(f"monitoring: {len(files)} generated files up to date")
        return 0
    write(files)
    for path in files:
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
