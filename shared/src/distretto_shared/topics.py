"""The topic catalogue: every topic is created explicitly, never by auto-create."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from distretto_shared.logging import get_logger

if TYPE_CHECKING:
    from distretto_shared.kafka_security import KafkaCredentials

log = get_logger(__name__)

WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """A topic with its partitions and retention policy."""

    name: str
    partitions: int = 3
    retention_ms: int = 4 * WEEK_MS
    compacted: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def config(self) -> dict[str, str]:
        """Topic-level configuration for the admin API."""
        cfg = {"retention.ms": str(self.retention_ms), **self.extra}
        if self.compacted:
            # compact+delete: latest state per key is kept, old keys still age out.
            cfg["cleanup.policy"] = "compact,delete"
        return cfg

    def dead_letter(self) -> TopicSpec:
        """The ``<topic>.dlq`` companion: one partition, kept for long."""
        return TopicSpec(name=dlq_topic(self.name), partitions=1, retention_ms=52 * WEEK_MS)


def replication_factor(brokers: int) -> int:
    """Replicas of every topic on a cluster of ``brokers`` brokers: all of them, at most three."""
    return max(1, min(3, brokers))


def min_insync_replicas(replication: int) -> int:
    """``min.insync.replicas`` for a replication factor: one less (two of three), at least one.

    With ``acks=all`` (the relay's and the dead-letter producers') a record is acknowledged once
    that many replicas hold it: a cluster of three loses no acknowledged record when one broker
    dies, and keeps accepting writes while one is down.
    """
    return max(1, replication - 1)


def topic_name(name: str) -> str:
    """The physical topic of a catalogue name: ``DISTRETTO_TOPIC_PREFIX`` + name.

    The prefix lets several environments (or test runs) share one Kafka cluster.
    """
    return os.environ.get("DISTRETTO_TOPIC_PREFIX", "") + name


def consumer_group(service: str, name: str, prefix: str | None = None) -> str:
    """The Kafka consumer group of a service's consumers ``name``: ``<service>.`` + ``DISTRETTO_TOPIC_PREFIX`` + name.

    Environments sharing a cluster under different prefixes never share a group (a group's members
    rebalance together, whatever topics each reads), and the service's ACL prefix ``<service>.``
    still covers it. Without a prefix it is ``<service>.<name>``. ``prefix``: another environment's
    (default: this process's ``DISTRETTO_TOPIC_PREFIX``).
    """
    if prefix is None:
        prefix = os.environ.get("DISTRETTO_TOPIC_PREFIX", "")
    return f"{service}.{prefix}{name}"


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of ``topic``."""
    return f"{topic}.dlq"


CATALOGUE: dict[str, TopicSpec] = {}


def register(*specs: TopicSpec) -> None:
    """Add topics to the catalogue (contract modules call this)."""
    for spec in specs:
        CATALOGUE[spec.name] = spec


def _admin(bootstrap_servers: str, credentials: KafkaCredentials | None) -> AIOKafkaAdminClient:
    from distretto_shared.kafka_security import default_credentials

    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=15000,
        **(credentials or default_credentials()).aiokafka(),
    )


async def ensure_topics(
    bootstrap_servers: str, specs: list[TopicSpec] | None = None, credentials: KafkaCredentials | None = None
) -> list[str]:
    """Create the given topics (default: the whole catalogue) and their dead-letter topics.

    The catalogue decides partitions and retention; the cluster decides replication: every topic is
    replicated on every broker, at most three (:func:`replication_factor`), with
    ``min.insync.replicas`` one less (:func:`min_insync_replicas`). Existing topics are left as
    they are. Returns the names created.
    """
    wanted: list[TopicSpec] = []
    for spec in specs if specs is not None else list(CATALOGUE.values()):
        physical = TopicSpec(topic_name(spec.name), spec.partitions, spec.retention_ms, spec.compacted, spec.extra)
        wanted += [physical, physical.dead_letter()]
    admin = _admin(bootstrap_servers, credentials)
    await admin.start()
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        replicas = replication_factor(len((await admin.describe_cluster()).get("brokers", ())))
        durability = {"min.insync.replicas": str(min_insync_replicas(replicas))}
        new = [
            NewTopic(
                name=s.name,
                num_partitions=s.partitions,
                replication_factor=replicas,
                topic_configs={**durability, **s.config()},
            )
            for s in wanted
            if s.name not in existing
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another service created it in the meantime
            created = [t.name for t in new]
            log.info("topics created", topics=created)
    finally:
        await admin.close()
    return created


async def delete_retired_topics(
    bootstrap_servers: str, names: list[str], credentials: KafkaCredentials | None = None
) -> list[str]:
    """Delete retired topics (logical names) and their dead-letter topics where they exist.

    A topic is retired when a new version replaced it and its records must not stay on disk
    (``membership.contact.v1`` carried people's names and addresses). Returns the names deleted.
    """
    if not names:
        return []
    admin = _admin(bootstrap_servers, credentials)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [t for n in names for t in (topic_name(n), dlq_topic(topic_name(n))) if t in existing]
        if doomed:
            await admin.delete_topics(doomed)
            log.info("retired topics deleted", topics=doomed)
        return doomed
    finally:
        await admin.close()
