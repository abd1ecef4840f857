"""Webhook signing secrets at rest: sealed with the installation's key, never in the clear in the
database; secrets stored in the clear before are sealed by the migration and still sign; no key, no start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import select

from distretto_dev.testing import DatabaseTarget, publish_events, service_client, wait_for
from distretto_shared.app import ConfigurationError
from distretto_shared.migrations import upgrade_async
from distretto_shared.sealing import Sealer, SealError, is_sealed
from partners.app import MIGRATIONS, create_app
from partners.config import WEBHOOK_SECRET_PURPOSE
from partners.models import WebhookEndpoint

from .conftest import ORG_TYPES, joined, make_settings, running_receiver


async def _stored(app: Any) -> list[WebhookEndpoint]:
    async with app.state.ctx.db.read() as session:
        return list((await session.execute(select(WebhookEndpoint))).scalars())


def _on_disk(database: DatabaseTarget) -> bytes:
    """Every byte SQLite keeps for the database (the file and its write-ahead log)."""
    path = Path(make_url(database.url).database or "")
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


async def _done(receiver: Any, path: str, n: int) -> bool:
    return len(receiver.accepted(path)) >= n


async def test_a_signing_secret_is_stored_sealed_and_deliveries_still_verify(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = make_settings(database, kafka_bootstrap)
    app = create_app(settings)
    async with running_receiver() as receiver, service_client(app) as client:
        pid = (await client.post("/partners", json={"name": "Agency", "event_types": ORG_TYPES})).json()["id"]
        created = (await client.post(f"/partners/{pid}/webhooks", json={"url": receiver.url("/h")})).json()
        first = created["secret"]
        assert first.startswith("whsec_")
        rotated = (await client.post(f"/webhooks/{created['id']}/rotate-secret")).json()["secret"]
        assert rotated.startswith("whsec_") and rotated != first

        (row,) = await _stored(app)
        for stored, clear in ((row.secret, rotated), (row.previous_secret or "", first)):
            assert is_sealed(stored) and "whsec_" not in stored and clear[6:] not in stored
            assert settings.webhook_sealer().open(stored) == clear
        with pytest.raises(SealError):  # another installation's key opens nothing
            Sealer(WEBHOOK_SECRET_PURPOSE, "another-installation-key-" + "x9" * 10).open(row.secret)

        # Deliveries are signed with the opened secrets: the standardwebhooks library verifies them
        # with the new secret, and with the previous one during the overlap.
        receiver.secrets["/h"] = [rotated]
        await publish_events(kafka_bootstrap, [joined(1)])
        await wait_for(lambda: _done(receiver, "/h", 1), what="a delivery verified with the new secret")
        receiver.secrets["/h"] = [first]
        await publish_events(kafka_bootstrap, [joined(2)])
        await wait_for(lambda: _done(receiver, "/h", 2), what="a delivery verified with the previous secret")
        assert receiver.unverified == []
    if database.backend == "sqlite":
        disk = _on_disk(database)
        assert disk and b"whsec_" not in disk
        for clear in (first, rotated):
            assert clear[6:].encode() not in disk


async def test_secrets_stored_in_the_clear_are_sealed_by_the_migration_and_still_sign(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = make_settings(database, kafka_bootstrap)
    await upgrade_async(MIGRATIONS, database.url, database.schema, to="0003")  # the schema before sealing
    receiver_cm = running_receiver()
    receiver = await receiver_cm.__aenter__()
    try:
        old, older = (
            "whsec_" + "b2xkLXNlY3JldC0xMjM0NTY3ODkwYWJjZGVmZ2hpams=",
            "whsec_" + "T2xkZXJzZWNyZXQtMTIzNDU2Nzg5MGFiY2RlZmdoaWo=",
        )
        connect_args: dict[str, Any] = {}
        if database.schema:
            connect_args = {"server_settings": {"search_path": database.schema}}
        engine = create_async_engine(database.url, connect_args=connect_args)
        stamp = datetime.now(UTC)
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO partner (id, name, event_types, active, created_at, updated_at) "
                    "VALUES ('p-old', 'Agency', :types, :yes, :at, :at)"
                ),
                {"types": '["' + '", "'.join(ORG_TYPES) + '"]', "yes": True, "at": stamp},
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO webhook_endpoint (id, partner_id, url, event_types, secret, previous_secret, "
                    "previous_secret_until, enabled, notice_due, created_at) VALUES ('e-old', 'p-old', :url, '[]', "
                    ":secret, :previous, :until, :yes, :no, :at)"
                ),
                {
                    "url": receiver.url("/old"),
                    "secret": old,
                    "previous": older,
                    "until": stamp + timedelta(hours=1),
                    "yes": True,
                    "no": False,
                    "at": stamp,
                },
            )
        await engine.dispose()

        app = create_app(settings)  # its start-up migrates to head with the settings' key
        async with service_client(app) as client:
            (row,) = await _stored(app)
            assert is_sealed(row.secret) and is_sealed(row.previous_secret or "")
            assert settings.webhook_sealer().open(row.secret) == old
            assert settings.webhook_sealer().open(row.previous_secret or "") == older
            receiver.secrets["/old"] = [old]
            await publish_events(kafka_bootstrap, [joined(1)])
            await wait_for(lambda: _done(receiver, "/old", 1), what="a delivery signed with the migrated secret")
            receiver.secrets["/old"] = [older]
            await publish_events(kafka_bootstrap, [joined(2)])
            await wait_for(lambda: _done(receiver, "/old", 2), what="a delivery signed with the migrated previous one")
            assert receiver.unverified == []
            assert (await client.get("/webhooks/e-old")).json()["enabled"] is True
        if database.backend == "sqlite":
            disk = _on_disk(database)
            assert old[6:].encode() not in disk and older[6:].encode() not in disk
    finally:
        await receiver_cm.__aexit__(None, None, None)


async def test_the_migration_without_the_key_refuses_rather_than_half_migrate(
    database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    await upgrade_async(MIGRATIONS, database.url, database.schema, to="0003")
    connect_args: dict[str, Any] = {"server_settings": {"search_path": database.schema}} if database.schema else {}
    engine = create_async_engine(database.url, connect_args=connect_args)
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO partner (id, name, event_types, active, created_at, updated_at) "
                "VALUES ('p', 'A', '[]', :y, :at, :at)"
            ),
            {"y": True, "at": datetime.now(UTC)},
        )
        await conn.execute(
            sa.text(
                "INSERT INTO webhook_endpoint (id, partner_id, url, event_types, secret, enabled, notice_due, "
                "created_at) VALUES ('e', 'p', 'https://r.example/h', '[]', :s, :y, :n, :at)"
            ),
            {
                "s": "whsec_" + "c2VjcmV0LWluLXRoZS1jbGVhci0xMjM0NTY3ODkwYWI=",
                "y": True,
                "n": False,
                "at": datetime.now(UTC),
            },
        )
    monkeypatch.delenv("PARTNERS_SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="PARTNERS_SECRET_KEY"):
        await upgrade_async(MIGRATIONS, database.url, database.schema)
    async with engine.connect() as conn:  # nothing half done: still at 0003, the secret as it was
        assert (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar() == "0003"
        assert (await conn.execute(sa.text("SELECT secret FROM webhook_endpoint"))).scalar().startswith("whsec_")
    await engine.dispose()


def test_the_service_refuses_to_start_without_its_key(tmp_path: Path) -> None:
    settings = make_settings(
        DatabaseTarget("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"), "127.0.0.1:1", secret_key=""
    )
    with pytest.raises(ConfigurationError, match="PARTNERS_SECRET_KEY is not set"):
        create_app(settings)
    weak = make_settings(
        DatabaseTarget("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"), "127.0.0.1:1", secret_key="change-me"
    )
    with pytest.raises(ConfigurationError, match="PARTNERS_SECRET_KEY"):
        create_app(weak)
