"""The CORDIS import command line against the authenticated API: a real gateway in front of a real projects service."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from distretto_dev.testing import ServiceProcess, start_processes, stop_processes

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "services" / "projects" / "tests" / "fixtures"
ADMIN = {"email": "admin@cordis-cli.example", "password": "cordis-cli-admin-password"}


@dataclass
class Stack:
    gateway: str
    token: str


@pytest.fixture(scope="module")
async def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    root = tmp_path_factory.mktemp("cordis-cli")
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DISTRETTO_TOPIC_PREFIX": f"cli{uuid.uuid4().hex[:8]}.",
        "DISTRETTO_DATA_DIR": str(root / "data"),
    }
    projects = ServiceProcess("projects", env=common, log_path=root / "projects.log")
    gateway = ServiceProcess(
        "gateway",
        env={
            **common,
            "GATEWAY_ADMIN_EMAIL": ADMIN["email"],
            "GATEWAY_ADMIN_PASSWORD": ADMIN["password"],
            "GATEWAY_PROJECTS_URL": f"http://127.0.0.1:{projects.port}",
        },
        log_path=root / "gateway.log",
    )
    try:
        await start_processes([projects, gateway], timeout=90)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as gw:
            response = await gw.post("/auth/token", json=ADMIN)
            assert response.status_code == 200, response.text
            yield Stack(gateway.url, response.json()["access_token"])
    finally:
        stop_processes([gateway, projects])


async def _cli(stack: Stack, *args: str, token_env: str | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DISTRETTO_TOKEN"}
    if token_env is not None:
        env["DISTRETTO_TOKEN"] = token_env
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "projects.cordis_import",
        str(FIXTURES / "project.csv"),
        str(FIXTURES / "organization.csv"),
        "--base-url",
        f"{stack.gateway}/api/projects",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _projects(stack: Stack) -> int:
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30) as gw:
        response = await gw.get("/api/projects/projects", headers={"Authorization": f"Bearer {stack.token}"})
        assert response.status_code == 200, response.text
        return int(response.json()["total"])


async def test_the_import_command_line_authenticates_through_the_gateway(stack: Stack) -> None:
    # No credential: a clear error, nothing sent.
    status, _out, err = await _cli(stack)
    assert status == 2 and "needs a credential" in err and "DISTRETTO_TOKEN" in err
    # A wrong one: the gateway refuses, the command says so, nothing is imported.
    status, _out, err = await _cli(stack, "--token", "not-a-token")
    assert status == 1 and "refused (HTTP 401)" in err, err
    assert await _projects(stack) == 0

    # The token from the environment (out of the process list) …
    status, out, err = await _cli(stack, token_env=stack.token)
    assert status == 0, err
    answer = json.loads(out)
    assert (answer["projects_created"], answer["participants_created"]) == (3, 7)
    assert await _projects(stack) == 3
    # … or from --token: a second run finds everything in place.
    status, out, err = await _cli(stack, "--token", stack.token)
    assert status == 0, err
    assert json.loads(out)["projects_created"] == 0
    assert await _projects(stack) == 3
