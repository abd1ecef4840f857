"""The register as a spreadsheet: CSV import (all rows or none, an export imports back) and export."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from pydantic import ValidationError

from distretto_shared import csvsafe, metrics
from distretto_shared.contracts import membership as contracts
from distretto_shared.conventions import FROM_TEXT, canonical_id
from distretto_shared.db import load
from distretto_shared.outbox import add_event
from distretto_shared.web import DomainError, Invalid
from membership.common import Ctx, validation_message
from membership.figures import repository as figures
from membership.figures.domain import size_class_for
from membership.figures.models import YearlyFigures, YearlyFiguresCreate
from membership.figures.service import store_figures
from membership.organisations import repository
from membership.organisations.models import ImportResult, Organisation, OrganisationCreate
from membership.organisations.repository import OrganisationFilter
from membership.organisations.service import profile
from membership.tables import fields, utcnow

IMPORT_ROWS = Counter("distretto_membership_import_rows_total", "CSV import rows by outcome", ["outcome"])
metrics.zero(IMPORT_ROWS, ("accepted", "rejected"))  # at zero from the first scrape

CSV_COLUMNS = [
    "name",
    "kind",
    "sectors",
    "address",
    "postcode",
    "city",
    "province",
    "country",
    "website",
    "vat_number",
    "ateco_code",
    "description",
    "competences",
    "keywords",
]
LIST_COLUMNS = {"sectors", "competences", "keywords"}
FIGURE_COLUMNS = ["year", "staff", "rd_staff", "turnover_eur", "lab_m2", "patents"]
EXPORT_ONLY_COLUMNS = ["id", "status", "size_class"]
"""Written by the export. On import, a row whose ``id`` names an organisation of the register
updates it in place (so an export, edited, imports back); status and size class are ignored
(the lifecycle and the figures decide them)."""
REQUIRED_COLUMNS = ["name", "kind"]
MAX_IMPORT_ROWS = 10_000


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _split_list(cell: str) -> list[str]:
    return [part.strip() for part in cell.replace(";", "|").split("|") if part.strip()]


@dataclass
class _ParsedRow:
    line: int
    organisation: OrganisationCreate
    year: int | None
    figures: YearlyFiguresCreate | None
    id: str | None = None
    """The organisation to update (the export's ``id`` column); None: a new one."""
    columns: frozenset[str] = frozenset()
    """The organisation columns the file has (an update changes these, keeps the others)."""


def _parse_csv(text: str) -> tuple[list[_ParsedRow], list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows, per-row errors and formula warnings; raises DomainError (400) when the file is not a usable CSV."""
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise DomainError("the CSV file is empty: the first line must name the columns")
        columns = [h.strip().lower() for h in header]
        known = set(CSV_COLUMNS) | set(FIGURE_COLUMNS) | set(EXPORT_ONLY_COLUMNS)
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise DomainError(
                f"unknown column(s) {', '.join(map(repr, unknown))}; "
                f"known columns: {', '.join(CSV_COLUMNS + FIGURE_COLUMNS)}"
            )
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        if duplicated:
            raise DomainError(f"column(s) {', '.join(duplicated)} appear more than once")
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise DomainError(f"missing required column(s): {', '.join(missing)}")
        rows: list[_ParsedRow] = []
        errors: list[dict[str, Any]] = []
        warnings: list[dict[str, Any]] = []
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(rows) + len(errors) >= MAX_IMPORT_ROWS:
                raise DomainError(f"the file has more than {MAX_IMPORT_ROWS} rows; split it")
            if len(cells) != len(columns):
                errors.append({"line": line, "errors": [f"{len(cells)} fields, but the header has {len(columns)}"]})
                continue
            warnings.extend(w.as_dict() for w in csvsafe.formula_warnings(line, columns, cells))
            record = {c: v.strip() for c, v in zip(columns, cells, strict=True) if v.strip()}
            row_errors: list[str] = []
            org_data: dict[str, Any] = {
                c: (_split_list(v) if c in LIST_COLUMNS else v) for c, v in record.items() if c in CSV_COLUMNS
            }
            organisation = figures = None
            try:
                organisation = OrganisationCreate.model_validate(org_data)
            except ValidationError as exc:
                row_errors.append(validation_message(exc))
            year: int | None = None
            fig_data = {c: record[c] for c in FIGURE_COLUMNS if c in record and c != "year"}
            if "year" in record or fig_data:
                # A row's figures are that year's whole record: a blank cell counts as 0 (staff is required).
                fig_data = {c: "0" for c in FIGURE_COLUMNS if c not in ("year", "staff")} | fig_data
                try:
                    year = int(record.get("year", ""))
                    if not 1900 <= year <= 2100:
                        raise ValueError
                except ValueError:
                    row_errors.append(f"year: {record.get('year', '')!r} is not a year between 1900 and 2100")
                try:
                    figures = YearlyFiguresCreate.model_validate(fig_data, context=FROM_TEXT)  # CSV cells are text
                except ValidationError as exc:
                    row_errors.append(validation_message(exc))
            if row_errors or organisation is None:
                errors.append({"line": line, "errors": row_errors})
            else:
                rows.append(
                    _ParsedRow(
                        line,
                        organisation,
                        year,
                        figures,
                        id=canonical_id(record["id"]) if "id" in record else None,
                        columns=frozenset(c for c in columns if c in CSV_COLUMNS),
                    )
                )
    except csv.Error as exc:
        raise DomainError(f"malformed CSV at line {reader.line_num}: {exc}") from exc
    if not rows and not errors:
        raise DomainError("the CSV file has a header but no rows")
    return rows, errors, warnings


async def import_csv(ctx: Ctx, raw: bytes) -> ImportResult:
    """Import organisations (and optionally one year's figures each) from CSV: all rows or none.

    A row with an ``id`` (the export's first column) updates that organisation: the columns the
    file has replace its values, the others stay; a row without one creates an organisation.
    """
    ctx.require_staff("import organisations")
    if len(raw) > ctx.settings.import_max_bytes:
        raise DomainError(f"the file is larger than {ctx.settings.import_max_bytes} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DomainError(f"the file is not UTF-8 text (byte {exc.start})") from exc
    if "\x00" in text:
        raise DomainError("the file is not text (it contains NUL bytes)")
    rows, errors, warnings = _parse_csv(text)
    total_rows = len(rows) + len(errors)
    async with ctx.db.transaction() as session:
        existing: dict[int, Organisation] = {}
        merged: dict[int, OrganisationCreate] = {}
        seen_vat: dict[str, int] = {}
        seen_id: dict[str, int] = {}
        for row in rows:
            if row.id is not None:
                if row.id in seen_id:
                    errors.append({"line": row.line, "errors": [f"id: {row.id} repeats line {seen_id[row.id]}"]})
                    continue
                seen_id[row.id] = row.line
                org = await load(session, Organisation, row.id)
                if org is None:
                    # Another installation's export: the organisation is created with its id.
                    if not _is_uuid(row.id):
                        errors.append({"line": row.line, "errors": [f"id: {row.id!r} is not an organisation id"]})
                    continue
                current = fields(org, OrganisationCreate.model_fields)
                given = row.organisation.model_dump(include=set(row.columns))
                try:
                    merged[row.line] = OrganisationCreate.model_validate({**current, **given})
                except ValidationError as exc:
                    errors.append({"line": row.line, "errors": [validation_message(exc)]})
                    continue
                existing[row.line] = org
            vat = merged[row.line].vat_number if row.line in merged else row.organisation.vat_number
            if not vat:
                continue
            if vat in seen_vat:
                errors.append({"line": row.line, "errors": [f"vat_number: {vat} repeats line {seen_vat[vat]}"]})
                continue
            seen_vat[vat] = row.line
            holder = await repository.vat_holder(session, vat, exclude_id=row.id)
            if holder:
                errors.append(
                    {"line": row.line, "errors": [f"vat_number: {vat} is already registered to {holder.name!r}"]}
                )
        if errors:
            errors.sort(key=lambda e: e["line"])
            IMPORT_ROWS.labels("rejected").inc(len(errors))
            shown = "; ".join(f"line {e['line']}: {', '.join(e['errors'])}" for e in errors[:10])
            more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
            raise Invalid(
                f"{len(errors)} of {total_rows} rows have errors; nothing was imported. {shown}{more}",
                details=errors,
            )
        ids: list[str] = []
        new_figures: list[YearlyFigures] = []
        updated = 0
        for row in rows:
            if row.line in existing:
                org = existing[row.line]
                before = profile(org)
                for name, value in merged[row.line].model_dump(mode="json").items():
                    setattr(org, name, value)
                if row.figures is not None and row.year is not None:
                    await store_figures(session, org, row.year, row.figures)
                org.size_class = size_class_for(org.kind, await figures.latest(session, org))
                if profile(org) != before:
                    org.updated_at = utcnow()
                    add_event(
                        session,
                        contracts.OrganisationUpdated(organisation_id=org.id, profile=profile(org)),
                        source=ctx.source,
                    )
                updated += 1
                ids.append(org.id)
                continue
            org = Organisation.model_validate({**row.organisation.model_dump(), **({"id": row.id} if row.id else {})})
            if row.figures is not None and row.year is not None:
                org.latest_year = row.year
                fig = YearlyFigures(organisation_id=org.id, year=row.year, **row.figures.model_dump())
                org.size_class = size_class_for(org.kind, fig)
                new_figures.append(fig)
            session.add(org)
            add_event(
                session,
                contracts.OrganisationRegistered(organisation_id=org.id, profile=profile(org)),
                source=ctx.source,
            )
            ids.append(org.id)
        if new_figures:
            # The new organisations first: nothing tells the flush that a figures row needs its
            # organisation's row (no relationship between the two tables), and the database checks the key.
            await session.flush()
            session.add_all(new_figures)
    IMPORT_ROWS.labels("accepted").inc(len(ids))
    return ImportResult(
        imported=len(ids), created=len(ids) - updated, updated=updated, organisation_ids=ids, warnings=warnings
    )


async def export_csv(ctx: Ctx, flt: OrganisationFilter) -> str:
    """The organisations matching ``flt`` as CSV (the import's columns, plus id, status and latest figures)."""
    ctx.require_staff("export the register")
    async with ctx.db.read() as session:
        orgs = await repository.matching(session, flt)
        latest = await figures.latest_of(session, orgs)
    out = io.StringIO()
    writer = csvsafe.SafeWriter(out, lineterminator="\n")
    writer.writerow(EXPORT_ONLY_COLUMNS + CSV_COLUMNS + FIGURE_COLUMNS)
    for org in orgs:
        data = fields(org)
        fig = latest.get(org.id)
        writer.writerow(
            [data["id"], data["status"], data["size_class"] or ""]
            + ["|".join(map(str, data[c])) if c in LIST_COLUMNS else (data[c] or "") for c in CSV_COLUMNS]
            + ([fig.year, fig.staff, fig.rd_staff, fig.turnover_eur, fig.lab_m2, fig.patents] if fig else [""] * 6)
        )
    return out.getvalue()
