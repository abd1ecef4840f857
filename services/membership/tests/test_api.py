"""The register through its HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any


async def test_create_read_update_an_organisation(membership: Any) -> None:
    created = await membership.create(vat_number="IT " + membership.valid_vat)
    assert created["status"] == "applied"
    assert created["vat_number"] == membership.valid_vat
    assert created["allowed_actions"] == ["approve", "reject", "leave"]
    got = await membership.get(f"/organisations/{created['id']}")
    assert got["name"] == "Biotecnologie Senesi S.r.l."
    assert got["sectors"] == ["biotech", "diagnostics"]

    response = await membership.http.patch(
        f"/organisations/{created['id']}", json={"description": "Antibodies", "sectors": ["pharma"]}
    )
    assert response.status_code == 200, response.text
    got = await membership.get(f"/organisations/{created['id']}")
    assert got["description"] == "Antibodies"
    assert got["sectors"] == ["pharma"]
    assert got["city"] == "Siena"
