"""One leader per periodic job: two instances of a service on one database run a job's body in one of
them; when the leader stops — or is killed with SIGKILL — the other takes over at its next round."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from distretto_dev.testing import DatabaseTarget, patience, service_client, wait_for
from distretto_shared.app import PeriodicJob, ServiceSpec, create_app
from distretto_shared.context import Context
from distretto_shared.settings import ServiceSettings

from .example import MIGRATIONS

INTERVAL = 0.05


def _instance(database: DatabaseTarget, name: str, runs: list[str]) -> Any:
    """An app of the service "example" whose periodic job "tick" records which instance ran it."""

    async def tick(_ctx: Context[Any]) -> None:
        runs.append(name)

    spec = ServiceSpec(
        name="example",
        settings_cls=ServiceSettings,
        routers=[],
        migrations=MIGRATIONS,
        periodic=[PeriodicJob("tick", INTERVAL, tick)],
    )
    # No broker needed: the job's leadership lives in the database.
    settings = ServiceSettings(
        database_url=database.url, database_schema=database.schema, kafka_bootstrap_servers="127.0.0.1:1"
    )
    return create_app(spec, settings)


async def test_two_instances_run_a_periodic_job_in_one_and_the_other_takes_over(database: DatabaseTarget) -> None:
    runs: list[str] = []
    apps = {"a": _instance(database, "a", runs), "b": _instance(database, "b", runs)}
    stacks = {name: contextlib.AsyncExitStack() for name in apps}
    try:
        for name, app in apps.items():
            await stacks[name].enter_async_context(service_client(app))
        leaders = {name: app.state.ctx.leaders["tick"] for name, app in apps.items()}

        # Both instances have asked to lead several times; every run was in one of them.
        await wait_for(
            lambda: len(runs) >= 5 and min(lead.attempts for lead in leaders.values()) >= 5,
            timeout=patience(30),
            what="both instances' rounds",
        )
        assert len(set(runs)) == 1, runs
        leader = runs[0]
        follower = "b" if leader == "a" else "a"
        assert leaders[leader].leading and not leaders[follower].leading
        attempts = leaders[follower].attempts
        await wait_for(lambda: leaders[follower].attempts >= attempts + 5, timeout=patience(30), what="more rounds")
        assert set(runs) == {leader}, runs

        # The leader stops: the follower takes over at its next round, and is alone in running the job.
        await stacks[leader].aclose()
        runs.clear()
        await wait_for(lambda: len(runs) >= 3, timeout=patience(30), what="the follower taking over")
        assert set(runs) == {follower}, runs
        assert leaders[follower].leading
    finally:
        for stack in stacks.values():
            await stack.aclose()


INSTANCE = textwrap.dedent(
    """
    import asyncio, os, sys
    from distretto_shared.db import Database
    from distretto_shared.leader import JobLeader

    async def main(url, schema, name, out):
        db = Database(url, schema=schema or None)
        leader = JobLeader(db, "example", "tick")
        parent = os.getppid()
        while os.getppid() == parent:  # the test's process gone (killed itself): stop too
            led = await leader.lead()
            with open(out, "a") as f:
                f.write(f"{name} {'lead' if led else 'follow'}\\n")
            await asyncio.sleep(0.05)

    asyncio.run(main(*sys.argv[1:]))
    """
)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def test_the_leader_killed_with_sigkill_the_other_instance_leads(
    database: DatabaseTarget, tmp_path: Path
) -> None:
    """Real processes: the lock goes with the killed process (its connection, its file descriptor)."""
    out = tmp_path / "rounds.log"
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str) -> None:
        procs[name] = subprocess.Popen(
            [sys.executable, "-c", INSTANCE, database.url, database.schema or "", name, str(out)],
            start_new_session=True,
            env={**os.environ},
        )

    try:
        start("a")
        await wait_for(lambda: "a lead" in _lines(out), timeout=patience(60), what="the first instance leading")
        start("b")
        await wait_for(lambda: _lines(out).count("b follow") >= 5, timeout=patience(60), what="the second following")
        assert "b lead" not in _lines(out)

        os.killpg(procs["a"].pid, signal.SIGKILL)
        procs["a"].wait(timeout=30)
        await wait_for(lambda: _lines(out).count("b lead") >= 3, timeout=patience(60), what="the second taking over")
        # Never two leaders: once "b" leads, "a" (killed) wrote nothing more.
        lines = _lines(out)
        first_b = lines.index("b lead")
        assert all(not line.startswith("a ") for line in lines[first_b:]), lines[first_b:]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
