"""The broker's own log (log4j2 with the JSON Template Layout) is one JSON object per line."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from distretto_dev.kafka_runner import EmbeddedKafka

from .test_logs import parse


def test_the_brokers_log_is_json_lines(tmp_path: Path) -> None:
    broker = EmbeddedKafka(data_dir=tmp_path / "kafka", heap="256m")
    broker.start()
    try:

        async def create_topic() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers, **broker.credentials.aiokafka())
            await admin.start()
            try:
                await admin.create_topics([NewTopic("json-log-check", num_partitions=2, replication_factor=1)])
            finally:
                await admin.close()

        asyncio.run(create_topic())
    finally:
        broker.stop()
    assert broker.log_file is not None
    good, bad = parse(broker.log_file)
    assert bad == []
    assert len(good) > 50  # startup, the topic, shutdown
    # The fields every process's log has, with the broker's own loggers and messages in them.
    assert all({"timestamp", "level", "service", "logger", "event"} <= item.keys() for item in good)
    assert {item["service"] for item in good} == {"kafka"}
    assert good[0]["event"] == "starting broker"  # the runner's own line, JSON too
    events = " ".join(item["event"] for item in good)
    assert "json-log-check" in events
    assert any(item["logger"].startswith("kafka.") for item in good)
    assert {item["level"] for item in good} <= {"trace", "debug", "info", "warn", "error", "fatal"}
