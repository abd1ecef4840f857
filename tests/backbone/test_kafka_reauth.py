"""A deleted Kafka user's open connections end: the broker makes every SASL session re-authenticate
within ``connections.max.reauth.ms`` (KIP-368), and a user that no longer exists cannot.

What is checked here is the setting. An end-to-end check (a deleted user's consumer cut off at its
next re-authentication, on a broker of its own with a 3 s session) was tried and dropped: librdkafka
holds more than one connection per client, each re-authenticating on its own clock, so which
connection fails first — and whether a fetch slips through on the other — is a race the test could
not observe without timing. The behaviour is Kafka's own (KIP-368, tested upstream).
"""

from __future__ import annotations

from pathlib import Path

from distretto_dev.kafka_runner import DEFAULT_REAUTH_MS, EmbeddedKafka


def test_the_embedded_broker_ends_sessions_by_default(tmp_path: Path) -> None:
    broker = EmbeddedKafka(data_dir=tmp_path / "kafka")
    assert broker.server_properties()["connections.max.reauth.ms"] == str(DEFAULT_REAUTH_MS)
