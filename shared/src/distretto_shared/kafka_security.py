"""Who connects to Kafka, and with which rights.

The broker the project starts (:mod:`distretto_dev.kafka_runner`) accepts only SASL/SCRAM-SHA-512
clients and authorises every request with KRaft's ``StandardAuthorizer`` (no ACL, no access). This
module is the one place that turns credentials into client settings, and the one place that says
which ACLs a user gets:

* :class:`KafkaCredentials` — protocol, mechanism, user name and password, read from
  ``KAFKA_SECURITY_PROTOCOL`` / ``KAFKA_SASL_MECHANISM`` / ``KAFKA_SASL_USERNAME`` /
  ``KAFKA_SASL_PASSWORD`` (a service's settings may carry its own, ``<PREFIX>_KAFKA_SASL_USERNAME``
  …), rendered for aiokafka (:meth:`~KafkaCredentials.aiokafka`), FastStream
  (:meth:`~KafkaCredentials.faststream`) and confluent-kafka (:meth:`~KafkaCredentials.confluent`).
* :func:`service_acls` — a service's least rights, derived from its :class:`ServiceSpec`: the topics
  it creates, the events it publishes, the topics its consumers read, its consumer-group prefix. The
  topic catalogue and the contracts already say who publishes and consumes what, so the ACLs cannot
  drift from the code.
* :func:`partner_acls` — a partner's rights: READ on the granted ``public.*`` topics only, its own
  consumer-group prefix.
* :class:`KafkaAccess` — creates and removes SCRAM users and ACLs with confluent-kafka's
  ``AdminClient`` (aiokafka's admin client has neither SCRAM-credential nor ACL requests).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distretto_shared.topics import dlq_topic, topic_name

if TYPE_CHECKING:
    from faststream.security import BaseSecurity

    from distretto_shared.app import ServiceSpec

PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
ADMIN_USER = "admin"
"""The broker's super user: its SCRAM credential is written when the storage is formatted."""
SCRAM_ITERATIONS = 8192
USERNAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class KafkaSecurityError(ValueError):
    """Credentials that cannot work (SASL without a user name, an unknown protocol …)."""


@dataclass(frozen=True)
class KafkaCredentials:
    """How one client connects: ``PLAINTEXT`` (no user) or SASL with a SCRAM user and password."""

    protocol: str = "PLAINTEXT"
    username: str = ""
    password: str = ""
    mechanism: str = "SCRAM-SHA-512"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise KafkaSecurityError(f"KAFKA_SECURITY_PROTOCOL {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if self.sasl:
            if self.mechanism not in MECHANISMS:
                raise KafkaSecurityError(
                    f"KAFKA_SASL_MECHANISM {self.mechanism!r} is not one of {', '.join(MECHANISMS)}"
                )
            if not self.username or not self.password:
                raise KafkaSecurityError(
                    f"{self.protocol} needs a user name and a password (KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD)"
                )

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @classmethod
    def of(cls, username: str = "", password: str = "", protocol: str = "", mechanism: str = "") -> KafkaCredentials:
        """Credentials from loose settings: the protocol defaults to SASL_PLAINTEXT when a user is given."""
        protocol = (protocol or ("SASL_PLAINTEXT" if username else "PLAINTEXT")).upper()
        return cls(protocol, username, password, (mechanism or "SCRAM-SHA-512").upper())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaCredentials:
        """``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_USERNAME``, ``KAFKA_SASL_PASSWORD``, ``KAFKA_SASL_MECHANISM``."""
        env = os.environ if env is None else env
        return cls.of(
            env.get("KAFKA_SASL_USERNAME", ""),
            env.get("KAFKA_SASL_PASSWORD", ""),
            env.get("KAFKA_SECURITY_PROTOCOL", ""),
            env.get("KAFKA_SASL_MECHANISM", ""),
        )

    def env(self) -> dict[str, str]:
        """The environment variables that give a process these credentials."""
        out = {"KAFKA_SECURITY_PROTOCOL": self.protocol}
        if self.sasl:
            out |= {
                "KAFKA_SASL_MECHANISM": self.mechanism,
                "KAFKA_SASL_USERNAME": self.username,
                "KAFKA_SASL_PASSWORD": self.password,
            }
        return out

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaProducer`` / ``AIOKafkaConsumer`` / ``AIOKafkaAdminClient``."""
        if not self.sasl:
            return {}
        out: dict[str, Any] = {
            "security_protocol": self.protocol,
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password,
        }
        if self.protocol == "SASL_SSL":
            from aiokafka.helpers import create_ssl_context

            out["ssl_context"] = create_ssl_context()
        return out

    def faststream(self) -> BaseSecurity | None:
        """The ``security=`` of FastStream's ``KafkaBroker``."""
        if not self.sasl:
            return None
        from faststream.security import SASLScram256, SASLScram512

        cls = SASLScram512 if self.mechanism == "SCRAM-SHA-512" else SASLScram256
        return cls(self.username, self.password, use_ssl=self.protocol == "SASL_SSL")

    def confluent(self, bootstrap_servers: str) -> dict[str, str]:
        """The configuration of a confluent-kafka (librdkafka) client."""
        out = {"bootstrap.servers": bootstrap_servers, "security.protocol": self.protocol.lower()}
        if self.sasl:
            out |= {"sasl.mechanism": self.mechanism, "sasl.username": self.username, "sasl.password": self.password}
        return out


def default_credentials() -> KafkaCredentials:
    """The credentials of this process's environment (``KAFKA_SASL_USERNAME`` …)."""
    return KafkaCredentials.from_env()


def new_password() -> str:
    """A fresh SCRAM password (URL-safe, 32 bytes of entropy)."""
    return secrets.token_urlsafe(32)


# --------------------------------------------------------------------------------------------------
# ACLs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule: ``principal`` may do ``operation`` on ``resource_type`` ``name`` (LITERAL or PREFIXED)."""

    resource_type: str
    """``TOPIC``, ``GROUP`` or ``CLUSTER``."""
    name: str
    pattern: str
    """``LITERAL`` or ``PREFIXED``."""
    operation: str
    """``READ``, ``WRITE``, ``CREATE``, ``DELETE``, ``DESCRIBE``, ``ALTER`` …"""
    principal: str

    def __str__(self) -> str:
        return f"{self.principal} {self.operation} {self.resource_type}:{self.pattern}:{self.name}"


def principal_of(username: str) -> str:
    return f"User:{username}"


def service_user(service: str) -> str:
    """The SCRAM user of a service."""
    return f"service.{service}"


def partner_user(partner_id: str) -> str:
    """The SCRAM user of a partner (also the prefix of its consumer groups)."""
    return f"partner.{partner_id}"


def _topic_acls(principal: str, names: Iterable[str], operations: Sequence[str]) -> set[Acl]:
    return {Acl("TOPIC", n, "LITERAL", op, principal) for n in names for op in operations}


def service_acls(spec: ServiceSpec, all_specs: Sequence[ServiceSpec] = (), username: str | None = None) -> list[Acl]:
    """The least rights of ``spec``'s service, from what its spec declares.

    - the topics it creates (``spec.topics``) and their dead-letter topics: CREATE, DESCRIBE;
    - the topics of the events it publishes: WRITE, DESCRIBE;
    - the topics its consumers read: READ, DESCRIBE, and WRITE on their dead-letter topics;
    - its consumer groups (``<service>.``, prefixed): READ, DESCRIBE;
    - its retired topics and their dead-letter topics: DELETE, DESCRIBE;
    - ``spec.reads_dead_letters``: READ, DESCRIBE on the dead-letter topics of every topic of the
      contracts' catalogue (and of ``all_specs``): the console's operations page;
    - ``spec.manages_kafka_access``: ALTER and DESCRIBE on the cluster (SCRAM users and ACLs: the
      partners service, which grants partners READ on public topics).

    Topic names are physical (``DISTRETTO_TOPIC_PREFIX`` applied).
    """
    p = principal_of(username or service_user(spec.name))
    acls: set[Acl] = set()
    created = [topic_name(t.name) for t in spec.topics]
    acls |= _topic_acls(p, [*created, *(dlq_topic(t) for t in created)], ("CREATE", "DESCRIBE"))
    published = {topic_name(cls.topic) for cls in spec.published_events}  # type: ignore[attr-defined]
    acls |= _topic_acls(p, published, ("WRITE", "DESCRIBE"))
    consumed = {topic_name(t) for c in spec.consumers for t in c.topics}
    acls |= _topic_acls(p, consumed, ("READ", "DESCRIBE"))
    acls |= _topic_acls(p, (dlq_topic(t) for t in consumed), ("WRITE", "DESCRIBE"))
    if spec.consumers:
        acls |= {Acl("GROUP", f"{spec.name}.", "PREFIXED", op, p) for op in ("READ", "DESCRIBE")}
    retired = [topic_name(t) for t in spec.retired_topics]
    acls |= _topic_acls(p, [*retired, *(dlq_topic(t) for t in retired)], ("DELETE", "DESCRIBE"))
    if getattr(spec, "reads_dead_letters", False):
        every = {topic_name(t.name) for s in (spec, *all_specs) for t in s.topics} | set(_catalogue_topics())
        acls |= _topic_acls(p, (dlq_topic(t) for t in every), ("READ", "DESCRIBE"))
    if getattr(spec, "manages_kafka_access", False):
        acls |= {Acl("CLUSTER", "kafka-cluster", "LITERAL", op, p) for op in ("ALTER", "DESCRIBE")}
    return sorted(acls)


def _catalogue_topics() -> list[str]:
    """Every topic of the contracts (each contract module registers its topics when imported)."""
    import importlib
    import pkgutil

    from distretto_shared import contracts
    from distretto_shared.topics import CATALOGUE

    for module in pkgutil.iter_modules(contracts.__path__):
        importlib.import_module(f"{contracts.__name__}.{module.name}")
    return [topic_name(name) for name in CATALOGUE]


def partner_acls(partner_id: str, topics: Iterable[str]) -> list[Acl]:
    """A partner's rights: READ and DESCRIBE on its granted public topics (physical names), and its
    consumer groups (``partner.<id>.``, prefixed). Anything not ``public.*`` is refused here."""
    p = principal_of(partner_user(partner_id))
    names = sorted(set(topics))
    for name in names:
        logical = name.removeprefix(os.environ.get("DISTRETTO_TOPIC_PREFIX", ""))
        if not logical.startswith("public.") or logical.endswith(".dlq"):
            raise KafkaSecurityError(f"a partner may be granted public topics only, not {name!r}")
    acls = _topic_acls(p, names, ("READ", "DESCRIBE"))
    acls |= {Acl("GROUP", f"{partner_user(partner_id)}.", "PREFIXED", op, p) for op in ("READ", "DESCRIBE")}
    return sorted(acls)


# --------------------------------------------------------------------------------------------------
# Applying them (confluent-kafka's AdminClient)
# --------------------------------------------------------------------------------------------------


class KafkaAccessError(RuntimeError):
    """The broker refused or did not answer a change of users or ACLs."""


_RESOURCE_TYPES = {"CLUSTER": "BROKER"}
"""Kafka's CLUSTER resource is librdkafka's BROKER (named ``kafka-cluster``)."""
_RESOURCE_NAMES = {v: k for k, v in _RESOURCE_TYPES.items()}


def _binding(acl: Acl) -> Any:
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    return AclBinding(
        ResourceType[_RESOURCE_TYPES.get(acl.resource_type, acl.resource_type)],
        acl.name,
        ResourcePatternType[acl.pattern],
        acl.principal,
        "*",
        AclOperation[acl.operation],
        AclPermissionType.ALLOW,
    )


class KafkaAccess:
    """Creates and removes SCRAM users and their ACLs, as a user with ALTER on the cluster.

    Every call is synchronous inside (librdkafka's futures) and run in a worker thread by the
    ``async`` methods; each waits at most ``timeout`` seconds and raises :class:`KafkaAccessError`
    with the broker's reason.
    """

    def __init__(self, bootstrap_servers: str, credentials: KafkaCredentials | None = None, timeout: float = 15.0):
        from confluent_kafka.admin import AdminClient

        self.timeout = timeout
        conf: dict[str, Any] = dict((credentials or default_credentials()).confluent(bootstrap_servers))
        conf["socket.timeout.ms"] = str(int(timeout * 1000))
        conf["log.connection.close"] = "false"
        self._admin = AdminClient(conf)

    def _wait(self, futures: Any, what: str) -> list[Any]:
        items = list(futures.values()) if isinstance(futures, Mapping) else list(futures)
        out = []
        for fut in items:
            try:
                out.append(fut.result(timeout=self.timeout))
            except Exception as exc:
                raise KafkaAccessError(f"{what}: {_reason(exc)}") from exc
        return out

    def set_user(self, username: str, password: str, mechanism: str = "SCRAM-SHA-512") -> None:
        """Create or replace ``username``'s SCRAM credential."""
        from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

        if not USERNAME_RE.match(username):
            raise KafkaSecurityError(f"not a usable Kafka user name: {username!r}")
        mech = ScramMechanism.SCRAM_SHA_512 if mechanism == "SCRAM-SHA-512" else ScramMechanism.SCRAM_SHA_256
        upsert = UserScramCredentialUpsertion(
            username, ScramCredentialInfo(mech, SCRAM_ITERATIONS), password.encode(), secrets.token_bytes(32)
        )
        self._wait(
            self._admin.alter_user_scram_credentials([upsert], request_timeout=self.timeout),
            f"creating Kafka user {username}",
        )
        # The controller has committed it; wait until the broker serves it, so the password just
        # handed out works at once.
        self._until(lambda: self.user_exists(username), f"Kafka user {username} to become usable")

    def delete_user(self, username: str, mechanism: str = "SCRAM-SHA-512") -> bool:
        """Remove ``username``'s SCRAM credential; False if it had none."""
        from confluent_kafka.admin import ScramMechanism, UserScramCredentialDeletion

        mech = ScramMechanism.SCRAM_SHA_512 if mechanism == "SCRAM-SHA-512" else ScramMechanism.SCRAM_SHA_256
        try:
            self._wait(
                self._admin.alter_user_scram_credentials(
                    [UserScramCredentialDeletion(username, mech)], request_timeout=self.timeout
                ),
                f"removing Kafka user {username}",
            )
        except KafkaAccessError as exc:
            if "RESOURCE_NOT_FOUND" in str(exc) or "not found" in str(exc).lower():
                return False
            raise
        self._until(lambda: not self.user_exists(username), f"Kafka user {username} to be gone")
        return True

    def _until(self, check: Any, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not check():
            if time.monotonic() > deadline:
                raise KafkaAccessError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def user_exists(self, username: str) -> bool:
        """True when ``username`` has a SCRAM credential."""
        futures = self._admin.describe_user_scram_credentials([username], request_timeout=self.timeout)
        try:
            self._wait(futures, f"describing Kafka user {username}")
        except KafkaAccessError as exc:
            if "RESOURCE_NOT_FOUND" in str(exc) or "not found" in str(exc).lower():
                return False
            raise
        return True

    def acls_of(self, principal: str) -> list[Acl]:
        """Every ALLOW ACL of ``principal``."""
        from confluent_kafka.admin import (
            AclBindingFilter,
            AclOperation,
            AclPermissionType,
            ResourcePatternType,
            ResourceType,
        )

        flt = AclBindingFilter(
            ResourceType.ANY, _ANY, ResourcePatternType.ANY, principal, _ANY, AclOperation.ANY, AclPermissionType.ANY
        )
        [bindings] = self._wait([self._admin.describe_acls(flt, request_timeout=self.timeout)], "listing ACLs")
        return sorted(
            Acl(
                _RESOURCE_NAMES.get(b.restype.name, b.restype.name),
                b.name,
                b.resource_pattern_type.name,
                b.operation.name,
                b.principal,
            )
            for b in bindings
        )

    def grant(self, acls: Sequence[Acl]) -> None:
        """Create ``acls`` (creating an existing one is a no-op)."""
        if acls:
            self._wait(self._admin.create_acls([_binding(a) for a in acls], request_timeout=self.timeout), "granting")
            principals = {a.principal for a in acls}
            self._until(
                lambda: set(acls) <= {a for p in principals for a in self.acls_of(p)}, "the broker to apply the ACLs"
            )

    def revoke_all(self, principal: str) -> int:
        """Delete every ACL of ``principal``; the number deleted."""
        from confluent_kafka.admin import (
            AclBindingFilter,
            AclOperation,
            AclPermissionType,
            ResourcePatternType,
            ResourceType,
        )

        flt = AclBindingFilter(
            ResourceType.ANY, _ANY, ResourcePatternType.ANY, principal, _ANY, AclOperation.ANY, AclPermissionType.ANY
        )
        deleted = self._wait(self._admin.delete_acls([flt], request_timeout=self.timeout), f"revoking {principal}")
        self._until(lambda: not self.acls_of(principal), f"the broker to drop the ACLs of {principal}")
        return sum(len(d) for d in deleted)

    def converge(self, principal: str, wanted: Sequence[Acl]) -> tuple[int, int]:
        """Make ``principal``'s ACLs exactly ``wanted``: (granted, revoked)."""
        have = set(self.acls_of(principal))
        want = set(wanted)
        extra = sorted(have - want)
        if extra:
            self._wait(
                self._admin.delete_acls([_filter_of(a) for a in extra], request_timeout=self.timeout),
                f"revoking stale ACLs of {principal}",
            )
        self.grant(sorted(want - have))
        return len(want - have), len(extra)

    # async façades (librdkafka blocks the calling thread)

    async def aset_user(self, username: str, password: str) -> None:
        await asyncio.to_thread(self.set_user, username, password)

    async def adelete_user(self, username: str) -> bool:
        return await asyncio.to_thread(self.delete_user, username)

    async def agrant(self, acls: Sequence[Acl]) -> None:
        await asyncio.to_thread(self.grant, acls)

    async def arevoke_all(self, principal: str) -> int:
        return await asyncio.to_thread(self.revoke_all, principal)

    async def aconverge(self, principal: str, wanted: Sequence[Acl]) -> tuple[int, int]:
        return await asyncio.to_thread(self.converge, principal, wanted)


_ANY: Any = None
"""A filter's "any name" / "any host" (confluent-kafka's stubs say ``str``; it takes None)."""


def _filter_of(acl: Acl) -> Any:
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    return AclBindingFilter(
        ResourceType[_RESOURCE_TYPES.get(acl.resource_type, acl.resource_type)],
        acl.name,
        ResourcePatternType[acl.pattern],
        acl.principal,
        "*",
        AclOperation[acl.operation],
        AclPermissionType.ALLOW,
    )


def _reason(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    if args and hasattr(args[0], "str"):
        return f"{args[0].name()}: {args[0].str()}"
    return str(exc) or type(exc).__name__


def provision_users(
    bootstrap_servers: str,
    users: Mapping[str, tuple[str, Sequence[Acl]]],
    credentials: KafkaCredentials | None = None,
) -> dict[str, int]:
    """Give each user its password and exactly its ACLs (``{user: (password, acls)}``); the number
    of ACLs per user. Run as the admin user; running it again converges."""
    access = KafkaAccess(bootstrap_servers, credentials)
    for user, (password, acls) in users.items():
        access.set_user(user, password)
        access.converge(principal_of(user), acls)
    return {user: len(acls) for user, (_, acls) in users.items()}


def provision_services(
    bootstrap_servers: str,
    specs: Sequence[ServiceSpec],
    passwords: Mapping[str, str],
    credentials: KafkaCredentials | None = None,
) -> dict[str, int]:
    """Give each service of ``specs`` its SCRAM user (password from ``passwords[name]``) and exactly
    the ACLs :func:`service_acls` derives; the number of ACLs per service. Run as the admin user."""
    access = KafkaAccess(bootstrap_servers, credentials)
    out = {}
    for spec in specs:
        user = service_user(spec.name)
        access.set_user(user, passwords[spec.name])
        wanted = service_acls(spec, specs)
        access.converge(principal_of(user), wanted)
        out[spec.name] = len(wanted)
    return out
