"""Parsing of CORDIS exports (``project.csv`` and ``organization.csv``); no I/O.

What the exports do that a naive reader gets wrong:

- semicolon-separated, double-quoted, objectives with newlines and ``;`` inside quotes;
- the column set changes between releases: columns are found by header name
  (case-insensitive), unknown columns are ignored, only a few are required;
- amounts may use a decimal comma (``3499076,25``);
- ``totalCost`` 0 means "not declared" (lump-sum grants) and becomes null;
- a project may have no coordinator row (accepted as is).

Every bad row is reported with its file, line and reason; the caller imports
nothing unless the whole pair of files is clean.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import ValidationError

from distretto_shared.csvsafe import FormulaWarning, formula_warnings
from projects.consortium.models import ParticipantCreate
from projects.project.models import ProjectCreate
from projects.vocabulary import ParticipantRole, ProjectStatus


def parse_amount(text: str | None) -> float | None:
    """A CORDIS amount: ``3499076,25`` or ``3499076.25`` or ``3.499.076,25`` → 3499076.25; empty → None.

    Raises ``ValueError`` for anything that is not a number.
    """
    if text is None:
        return None
    s = text.strip().replace(" ", "").replace("\u00a0", "").replace("€", "")
    if not s:
        return None
    if "," in s and "." in s:
        # The separator that comes last is the decimal one.
        s = s.replace(".", "").replace(",", ".") if s.rfind(",") > s.rfind(".") else s.replace(",", "")
    elif "," in s:
        s = s.replace(",", ".")
    if not re.fullmatch(r"-?\d+(\.\d+)?", s):
        raise ValueError(f"{text!r} is not a number")
    return float(s)


PROJECT_FILE = "project.csv"
ORGANIZATION_FILE = "organization.csv"

# CORDIS header → our field (headers compared lower-cased).
PROJECT_COLUMNS = {
    "id": "cordis_id",
    "acronym": "acronym",
    "status": "status",
    "title": "title",
    "startdate": "start_date",
    "enddate": "end_date",
    "totalcost": "total_cost",
    "ecmaxcontribution": "ec_max_contribution",
    "legalbasis": "legal_basis",
    "topics": "topics",
    "ecsignaturedate": "ec_signature_date",
    "frameworkprogramme": "framework_programme",
    "mastercall": "master_call",
    "subcall": "sub_call",
    "fundingscheme": "funding_scheme",
    "objective": "objective",
    "keywords": "keywords",
}
PROJECT_REQUIRED = ("id", "acronym", "title")

ORGANIZATION_COLUMNS = {
    "projectid": "project_id",
    "organisationid": "cordis_organisation_id",
    "vatnumber": "vat_number",
    "name": "name",
    "shortname": "short_name",
    "sme": "sme",
    "activitytype": "organisation_type",
    "city": "city",
    "country": "country",
    "role": "role",
    "eccontribution": "ec_contribution",
    "neteccontribution": "net_ec_contribution",
    "totalcost": "total_cost",
}
ORGANIZATION_REQUIRED = ("projectid", "name", "role")

CORDIS_PROJECT_FIELDS = tuple(PROJECT_COLUMNS.values())
"""Project fields a CORDIS import sets (the foundation's own fields are left alone)."""

_ROLE_ALIASES = {r.value.replace("_", ""): r for r in ParticipantRole} | {
    "partner": ParticipantRole.ASSOCIATED_PARTNER,
    "internationalpartner": ParticipantRole.ASSOCIATED_PARTNER,
}
_STATUSES = {s.value: s for s in ProjectStatus}
"""Looked up by the cell lower-cased (roles also without ``_``): CORDIS writes ``SIGNED`` and
``associatedPartner``, the service's own spellings are ``signed`` and ``associated_partner``."""


@dataclass(frozen=True)
class RowError:
    """A bad row: where and why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.reason}"


@dataclass(frozen=True)
class ParsedProject:
    """One row of project.csv."""

    line: int
    project: ProjectCreate
    columns: frozenset[str]
    """Our fields present as columns in this export (absent ones are left unchanged on re-import)."""


@dataclass(frozen=True)
class ParsedParticipant:
    """One row of organization.csv."""

    line: int
    cordis_project_id: str
    participant: ParticipantCreate
    columns: frozenset[str]


@dataclass
class CordisExport:
    """A parsed pair of files."""

    projects: list[ParsedProject] = field(default_factory=list)
    participants: list[ParsedParticipant] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[FormulaWarning] = field(default_factory=list)
    """Cells a spreadsheet would run as formulas: imported as text, reported to the caller."""
    project_ids: set[str] = field(default_factory=set)
    """Every project id project.csv names (bad rows included)."""


def _rows(
    text: str, file: str, errors: list[RowError], warnings: list[FormulaWarning] | None = None
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header (lower-cased) and rows (line of the row's first physical line, header→value)."""
    text = text.lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";", quotechar='"', strict=True)
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        header_row = next(reader, None)
    except csv.Error as exc:
        errors.append(RowError(file, 1, f"unreadable header: {exc}"))
        return [], []
    if not header_row:
        errors.append(RowError(file, 1, "the file is empty (a header line is expected)"))
        return [], []
    header = [h.strip().lstrip("\ufeff").lower() for h in header_row]
    last_line = reader.line_num
    while True:
        first_line = last_line + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(file, first_line, f"unreadable row: {exc}"))
            break
        last_line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            errors.append(
                RowError(file, first_line, f"has {len(row)} fields but the header has {len(header)} (a stray ';'?)")
            )
            continue
        if warnings is not None:
            warnings.extend(formula_warnings(first_line, header, row, file=file))
        rows.append((first_line, dict(zip(header, row, strict=True))))
    return header, rows


def _date(value: str, column: str) -> date | None:
    value = value.strip()
    if not value:
        return None
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})(?:[ T][0-9:.]+)?", value)
    if not m:
        raise ValueError(f"{column} {value!r} is not a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(m.group(1))
    except ValueError:
        raise ValueError(f"{column} {value!r} is not a date (YYYY-MM-DD)") from None


def _amount(value: str, column: str, *, zero_is_null: bool = False) -> float | None:
    try:
        amount = parse_amount(value)
    except ValueError:
        raise ValueError(f"{column} {value!r} is not an amount") from None
    if amount is not None and amount < 0:
        raise ValueError(f"{column} {value!r} is negative")
    if zero_is_null and amount == 0:
        return None
    return amount


def _list(value: str, sep: str = r"[;,]") -> list[str]:
    return [v.strip() for v in re.split(sep, value) if v.strip()]


def _validation_reason(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors())


def parse_projects(
    text: str, errors: list[RowError], ids: set[str] | None = None, warnings: list[FormulaWarning] | None = None
) -> list[ParsedProject]:
    """Parse project.csv; bad rows go to ``errors``; ``ids`` collects every project id named, bad rows' too."""
    header, rows = _rows(text, PROJECT_FILE, errors, warnings)
    if not header:
        return []
    missing = [c for c in PROJECT_REQUIRED if c not in header]
    if missing:
        errors.append(RowError(PROJECT_FILE, 1, f"missing column(s) {', '.join(missing)}"))
        return []
    columns = frozenset(PROJECT_COLUMNS[h] for h in header if h in PROJECT_COLUMNS)
    out: list[ParsedProject] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        try:
            cordis_id = row["id"].strip()
            if ids is not None and cordis_id:
                ids.add(cordis_id)
            if not cordis_id:
                raise ValueError("id is empty")
            if cordis_id in seen:
                raise ValueError(f"project id {cordis_id} already on line {seen[cordis_id]}")
            status_text = row.get("status", "").strip()
            status = _STATUSES.get(status_text.lower()) if status_text else ProjectStatus.SIGNED
            if status is None:
                raise ValueError(f"status {status_text!r} is not SIGNED, CLOSED or TERMINATED")
            data: dict[str, Any] = {
                "cordis_id": cordis_id,
                "acronym": row["acronym"],
                "title": row["title"],
                "status": status,
                "start_date": _date(row.get("startdate", ""), "startDate"),
                "end_date": _date(row.get("enddate", ""), "endDate"),
                "total_cost": _amount(row.get("totalcost", ""), "totalCost", zero_is_null=True),
                "ec_max_contribution": _amount(row.get("ecmaxcontribution", ""), "ecMaxContribution"),
                "ec_signature_date": _date(row.get("ecsignaturedate", ""), "ecSignatureDate"),
                "topics": _list(row.get("topics", "")),
                "keywords": _list(row.get("keywords", ""), r"[,;]"),
                "objective": row.get("objective", "").strip(),
            }
            for column, name in (
                ("legalbasis", "legal_basis"),
                ("frameworkprogramme", "framework_programme"),
                ("mastercall", "master_call"),
                ("subcall", "sub_call"),
                ("fundingscheme", "funding_scheme"),
            ):
                data[name] = row.get(column, "").strip() or None
            project = ProjectCreate.model_validate(data)
        except ValidationError as exc:
            errors.append(RowError(PROJECT_FILE, line, _validation_reason(exc)))
            continue
        except ValueError as exc:
            errors.append(RowError(PROJECT_FILE, line, str(exc)))
            continue
        seen[cordis_id] = line
        out.append(ParsedProject(line, project, columns))
    return out


def parse_organizations(
    text: str, errors: list[RowError], warnings: list[FormulaWarning] | None = None
) -> list[ParsedParticipant]:
    """Parse organization.csv; bad rows go to ``errors``."""
    if not text.strip():
        return []
    header, rows = _rows(text, ORGANIZATION_FILE, errors, warnings)
    if not header:
        return []
    missing = [c for c in ORGANIZATION_REQUIRED if c not in header]
    if missing:
        errors.append(RowError(ORGANIZATION_FILE, 1, f"missing column(s) {', '.join(missing)}"))
        return []
    columns = frozenset(ORGANIZATION_COLUMNS[h] for h in header if h in ORGANIZATION_COLUMNS)
    out: list[ParsedParticipant] = []
    for line, row in rows:
        try:
            project_id = row["projectid"].strip()
            if not project_id:
                raise ValueError("projectID is empty")
            role_text = row["role"].strip()
            role = _ROLE_ALIASES.get(role_text.lower().replace("_", ""))
            if role is None:
                raise ValueError(f"role {role_text!r} is not coordinator, participant, associatedPartner or thirdParty")
            sme_text = row.get("sme", "").strip().lower()
            if sme_text not in ("", "true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"SME {row.get('sme')!r} is not true or false")
            data: dict[str, Any] = {
                "name": row["name"],
                "short_name": row.get("shortname", "").strip() or None,
                "cordis_organisation_id": row.get("organisationid", "").strip() or None,
                "vat_number": row.get("vatnumber", "").strip() or None,
                "role": role,
                "country": row.get("country", "").strip() or None,
                "organisation_type": row.get("activitytype", "").strip() or None,
                "sme": None if not sme_text else sme_text in ("true", "1", "yes"),
                "city": row.get("city", "").strip() or None,
                "ec_contribution": _amount(row.get("eccontribution", ""), "ecContribution"),
                "net_ec_contribution": _amount(row.get("neteccontribution", ""), "netEcContribution"),
                "total_cost": _amount(row.get("totalcost", ""), "totalCost", zero_is_null=True),
            }
            participant = ParticipantCreate.model_validate(data)
        except ValidationError as exc:
            errors.append(RowError(ORGANIZATION_FILE, line, _validation_reason(exc)))
            continue
        except ValueError as exc:
            errors.append(RowError(ORGANIZATION_FILE, line, str(exc)))
            continue
        out.append(ParsedParticipant(line, project_id, participant, columns))
    return out


def parse_export(project_csv: str, organization_csv: str) -> CordisExport:
    """Parse both files; ``errors`` lists every bad row (the caller imports nothing if any)."""
    export = CordisExport()
    export.projects = parse_projects(project_csv, export.errors, export.project_ids, export.warnings)
    export.participants = parse_organizations(organization_csv, export.errors, export.warnings)
    return export
