"""A deleted Kafka user's open connections end: the broker makes every SASL session re-authenticate
within ``connections.max.reauth.ms`` (KIP-368), and a user that no longer exists cannot.

Its own broker with a session lifetime of a few seconds (the default is an hour). The user keeps
its ACLs here on purpose: only the end of the session can stop its consumer.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from distretto_dev.kafka_runner import DEFAULT_REAUTH_MS, EmbeddedKafka
from distretto_dev.testing import patience
from distretto_shared.kafka_security import Acl, KafkaAccess, KafkaCredentials, new_password, principal_of

TOPIC = "public.reauth-check.v1"
USER = "partner.gone"


def _produce(broker: EmbeddedKafka, value: bytes) -> None:
    producer = Producer(broker.credentials.confluent(broker.bootstrap_servers))
    producer.produce(TOPIC, value=value, partition=0)
    assert producer.flush(patience(30)) == 0


def test_the_embedded_broker_ends_sessions_by_default(tmp_path: Path) -> None:
    broker = EmbeddedKafka(data_dir=tmp_path / "kafka")
    assert broker.server_properties()["connections.max.reauth.ms"] == str(DEFAULT_REAUTH_MS)


def test_a_deleted_users_open_consumer_is_cut_off_at_re_authentication(tmp_path: Path) -> None:
    broker = EmbeddedKafka(data_dir=tmp_path / "kafka", heap="256m", reauth_ms=3000)
    broker.start()
    consumer: Any = None
    try:
        admin = AdminClient(broker.credentials.confluent(broker.bootstrap_servers))
        for fut in admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)]).values():
            fut.result(timeout=patience(30))
        access = KafkaAccess(broker.bootstrap_servers, broker.credentials, timeout=patience(15))
        password = new_password()
        access.set_user(USER, password)
        access.grant([Acl("TOPIC", TOPIC, "LITERAL", op, principal_of(USER)) for op in ("READ", "DESCRIBE")])
        _produce(broker, b"before")

        errors: list[KafkaError] = []
        consumer = Consumer(
            {
                **KafkaCredentials("SASL_PLAINTEXT", USER, password).confluent(broker.bootstrap_servers),
                "group.id": f"{USER}.reader",
                "enable.auto.commit": False,
                "error_cb": errors.append,
            }
        )
        consumer.assign([TopicPartition(TOPIC, 0, 0)])  # no group coordinator: reads with its topic rights only
        seen: list[bytes] = []
        deadline = time.monotonic() + patience(60)
        while b"before" not in seen:
            assert time.monotonic() < deadline, f"the user never read its topic: {errors}"
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                seen.append(message.value())

        assert access.delete_user(USER)  # the SCRAM credential only: its ACLs stay
        deadline = time.monotonic() + patience(60)
        while not any(e.code() == KafkaError._AUTHENTICATION for e in errors):
            assert time.monotonic() < deadline, f"the deleted user's session did not end: {errors}"
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                seen.append(message.value())
        assert "Authentication failed" in " ".join(e.str() for e in errors)

        # What is published now never reaches the deleted user's consumer.
        _produce(broker, b"after")
        for _ in range(10):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                seen.append(message.value())
        assert seen == [b"before"]
    finally:
        if consumer is not None:
            consumer.close()
        broker.stop()
