"""The Kafka users and ACLs of the platform's services, derived from their specs.

Each service connects as ``service.<name>`` with exactly the rights
:func:`distretto_shared.kafka_security.service_acls` derives from its ``ServiceSpec`` (the topics it
creates, publishes and consumes, its consumer groups). `make up` calls :func:`provision`; docker
compose runs this file once before the services start::

    python deploy/kafka_access.py --bootstrap kafka:19092

as the broker's super user (``KAFKA_SASL_USERNAME`` / ``KAFKA_SASL_PASSWORD``), with each service's
password in ``KAFKA_PASSWORD_<SERVICE>``. Run again, it converges: same users, ACLs made exactly
the derived ones (stale rights removed).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from typing import Any

from distretto_shared.kafka_security import (
    KafkaAccessError,
    KafkaCredentials,
    provision_services,
    service_user,
)

SERVICES = ("membership", "projects", "newsletter", "matchmaking", "partners", "console", "gateway")
"""Every process that connects to Kafka."""


def password_variable(service: str) -> str:
    """The variable holding a service's Kafka password (``KAFKA_PASSWORD_MEMBERSHIP`` …)."""
    return f"KAFKA_PASSWORD_{service.upper()}"


def specs() -> list[Any]:
    """Every service's ``ServiceSpec``."""
    return [importlib.import_module(f"{name}.app").SPEC for name in SERVICES]


def service_env(service: str, password: str) -> dict[str, str]:
    """The environment that makes ``service`` connect as its own Kafka user."""
    return KafkaCredentials("SASL_PLAINTEXT", service_user(service), password).env()


def provision(bootstrap: str, passwords: dict[str, str], admin: KafkaCredentials, attempts: int = 30) -> dict[str, int]:
    """Users and ACLs for every service (retrying while the broker is still starting)."""
    for attempt in range(attempts):
        try:
            return provision_services(bootstrap, specs(), passwords, admin)
        except KafkaAccessError:
            if attempt + 1 == attempts:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    args = parser.parse_args()
    missing = [password_variable(s) for s in SERVICES if not os.environ.get(password_variable(s))]
    if missing:
        print(f"kafka_access: set {', '.join(missing)} (`make secrets` writes them)", file=sys.stderr)
        return 2
    passwords = {s: os.environ[password_variable(s)] for s in SERVICES}
    try:
        counts = provision(args.bootstrap, passwords, KafkaCredentials.from_env())
    except KafkaAccessError as exc:
        print(f"kafka_access: {exc}", file=sys.stderr)
        return 1
    for name, count in counts.items():
        print(f"kafka_access: {service_user(name)}: {count} ACLs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
