"""The Kafka users and ACLs of the platform's services, derived from their specs.

Each service connects as ``service.<name>`` with exactly the rights
:func:`distretto_shared.kafka_security.service_acls` derives from its ``ServiceSpec`` (the topics it
creates, publishes and consumes, its consumer groups), as printed by ``python -m <service>
kafka-acls`` (one process per service: their models cannot share one interpreter). `make up` calls
:func:`provision`. docker compose runs it as the one-shot ``kafka-access`` container before the
services start::

    python deploy/kafka_access.py --bootstrap kafka:19092 --acls deploy/kafka/service-acls.json

as the broker's super user (``KAFKA_SASL_USERNAME`` / ``KAFKA_SASL_PASSWORD``), with each service's
password in ``KAFKA_PASSWORD_<SERVICE>``. Run again, it converges: same users, ACLs made exactly
the derived ones (stale rights removed).

``deploy/kafka/service-acls.json`` holds the derived rights of every service (unprefixed topic
names), so the provisioning step needs the backbone only, not every service installed in one image:
``--write-acls`` regenerates it, ``--check-acls`` fails when it differs from what the specs derive
(tests/platform/test_compose.py runs the same comparison).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from distretto_shared.kafka_security import (
    Acl,
    KafkaAccessError,
    KafkaCredentials,
    provision_users,
    service_user,
)

SERVICES = ("membership", "projects", "newsletter", "matchmaking", "partners", "console", "gateway")
"""Every process that connects to Kafka."""


def password_variable(service: str) -> str:
    """The variable holding a service's Kafka password (``KAFKA_PASSWORD_MEMBERSHIP`` …)."""
    return f"KAFKA_PASSWORD_{service.upper()}"


def acls_of(service: str, env: Mapping[str, str] | None = None) -> list[Acl]:
    """The ACLs ``service``'s spec implies (``python -m <service> kafka-acls``; topic prefix from ``env``)."""
    out = subprocess.run(
        [sys.executable, "-m", service, "kafka-acls"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,  # a cold import on a loaded machine takes half a minute
        env={**os.environ, **(env or {})},
    )
    if out.returncode != 0:
        raise RuntimeError(f"{service} kafka-acls failed (exit {out.returncode}): {out.stderr.strip()[-2000:]}")
    return [Acl(**item) for item in json.loads(out.stdout.strip().splitlines()[-1])]


def derived(services: Sequence[str] = SERVICES, env: Mapping[str, str] | None = None) -> dict[str, list[Acl]]:
    """Every service's derived ACLs (one process each, in parallel)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(services, pool.map(lambda s: acls_of(s, env), services), strict=True))


def service_env(service: str, password: str) -> dict[str, str]:
    """The environment that makes ``service`` connect as its own Kafka user."""
    return KafkaCredentials("SASL_PLAINTEXT", service_user(service), password).env()


def provision(
    bootstrap: str,
    passwords: Mapping[str, str],
    admin: KafkaCredentials,
    env: Mapping[str, str] | None = None,
    attempts: int = 30,
    rights: Mapping[str, Sequence[Acl]] | None = None,
) -> dict[str, int]:
    """Users and ACLs for the services in ``passwords`` (retrying while the broker is still starting);
    ``rights`` if already derived."""
    rights = rights if rights is not None else derived(list(passwords), env)
    users = {service_user(name): (passwords[name], rights[name]) for name in passwords}
    for attempt in range(attempts):
        try:
            return provision_users(bootstrap, users, admin)
        except KafkaAccessError:
            if attempt + 1 == attempts:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")


ACLS_FILE = "deploy/kafka/service-acls.json"
"""Every service's derived rights, for the provisioning step of docker compose (relative to the repository)."""


def dump_acls(rights: Mapping[str, Sequence[Acl]]) -> str:
    """The ACL file's text: ``{service: [acl, …]}``, sorted, one stable form."""
    table = {name: sorted((dataclasses.asdict(a) for a in rights[name]), key=json.dumps) for name in sorted(rights)}
    return json.dumps(table, indent=1, sort_keys=True) + "\n"


def load_acls(text: str) -> dict[str, list[Acl]]:
    """The rights of an ACL file."""
    return {name: [Acl(**item) for item in items] for name, items in json.loads(text).items()}


def parser() -> argparse.ArgumentParser:
    """The command line (also checked against docker-compose.yml's ``kafka-access`` command)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    p.add_argument("--acls", metavar="FILE", help="the services' rights from this file (else derived from the code)")
    p.add_argument("--write-acls", metavar="FILE", help="derive every service's rights, write them to FILE, exit")
    p.add_argument("--check-acls", metavar="FILE", help="exit 1 when FILE differs from the derived rights")
    return p


def main() -> int:
    args = parser().parse_args()
    if args.write_acls or args.check_acls:
        text = dump_acls(derived(SERVICES, {"DISTRETTO_TOPIC_PREFIX": ""}))
        if args.write_acls:
            Path(args.write_acls).write_text(text)
            return 0
        if Path(args.check_acls).read_text() != text:
            print(f"kafka_access: {args.check_acls} is stale: run --write-acls {args.check_acls}", file=sys.stderr)
            return 1
        return 0
    missing = [password_variable(s) for s in SERVICES if not os.environ.get(password_variable(s))]
    if missing:
        print(f"kafka_access: set {', '.join(missing)} (`make secrets` writes them)", file=sys.stderr)
        return 2
    passwords = {s: os.environ[password_variable(s)] for s in SERVICES}
    try:
        rights = load_acls(Path(args.acls).read_text()) if args.acls else None
        counts = provision(args.bootstrap, passwords, KafkaCredentials.from_env(), rights=rights)
    except (KafkaAccessError, RuntimeError, OSError, ValueError, TypeError) as exc:
        print(f"kafka_access: {exc}", file=sys.stderr)
        return 1
    for user, count in counts.items():
        print(f"kafka_access: {user}: {count} ACLs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
