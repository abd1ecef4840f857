"""Pure rules of the console: who sees which pages, events in plain words, errors next to fields.

No I/O and no framework here; the page modules and the consumers call these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Gettext = Callable[[str], str]

STAFF_ROLES = frozenset({"admin", "staff"})


@dataclass(frozen=True)
class NavItem:
    """One entry of the navigation bar."""

    path: str
    label: str
    """An English message id, translated when the page is drawn."""
    roles: frozenset[str]


NAVIGATION: tuple[NavItem, ...] = (
    NavItem("/", "Home", frozenset({"admin", "staff", "member", "partner"})),
    NavItem("/members", "Members", frozenset({"admin", "staff", "member", "partner"})),
    NavItem("/projects", "EU projects", frozenset({"admin", "staff", "member", "partner"})),
    NavItem("/newsletter", "Newsletter", STAFF_ROLES),
    NavItem("/matchmaking", "Matchmaking", frozenset({"admin", "staff", "member"})),
    NavItem("/admin", "Administration", frozenset({"admin"})),
    NavItem("/partners", "Partner systems", frozenset({"admin"})),
    NavItem("/operations", "Operations", frozenset({"admin", "operator"})),
    NavItem("/public", "District figures", frozenset({"anonymous"})),
    NavItem("/public/newsletter", "Newsletter sign-up", frozenset({"anonymous"})),
)


def navigation(role: str | None) -> list[NavItem]:
    """The entries a role sees (``None``: not logged in)."""
    who = role or "anonymous"
    return [item for item in NAVIGATION if who in item.roles]


def may_open(role: str | None, path: str) -> bool:
    """True when the role's navigation covers ``path`` (the services still decide on every call)."""
    section = "/" + path.strip("/").split("/", 1)[0] if path.strip("/") else "/"
    items = [i for i in NAVIGATION if i.path != "/" and (i.path == section or i.path.startswith(section + "/"))]
    if not items:
        return True
    return any((role or "anonymous") in i.roles for i in items)


# -- events in plain words ---------------------------------------------------------------------


def describe(kind: str, params: Mapping[str, Any], _: Gettext) -> str:
    """One activity row as a sentence in the reader's language."""
    p = {k: ("" if v is None else v) for k, v in params.items()}
    texts: dict[str, str] = {
        "organisation.registered": _("%(name)s applied for membership"),
        "organisation.joined": _("%(name)s joined"),
        "organisation.rejoined": _("%(name)s is a member again"),
        "organisation.suspended": _("%(name)s was suspended"),
        "organisation.lapsed": _("The membership of %(name)s lapsed"),
        "organisation.left": _("%(name)s left the district"),
        "organisation.rejected": _("The application of %(name)s was rejected"),
        "figures.changed": _("The district figures changed: %(members)s members"),
        "project.registered": _("Project %(acronym)s was registered"),
        "deliverable.submitted": _("%(number)s of %(acronym)s was submitted"),
        "deliverable.due_soon": _("%(number)s of %(acronym)s is due in %(days)s days"),
        "deliverable.overdue": _("%(number)s of %(acronym)s is overdue"),
        "milestone.reached": _("Milestone %(number)s of %(acronym)s was reached"),
        "campaign.started": _("Campaign “%(name)s” started for %(recipients)s recipients"),
        "campaign.finished": _("A campaign ended (%(status)s): %(sent)s sent, %(failed)s failed"),
        "opportunity.published": _("A new opportunity was published: %(title)s"),
        "match.proposed": _("A match was proposed"),
        "match.accepted": _("A match was accepted"),
        "match.declined": _("A match was declined"),
        "meeting.scheduled": _("A matchmaking meeting was scheduled"),
        "meeting.held": _("A matchmaking meeting took place"),
    }
    template = texts.get(kind)
    if template is None:
        return kind
    try:
        return template % p
    except (KeyError, TypeError, ValueError):
        return template


# -- the services' validation errors next to the fields -----------------------------------------


def field_errors(body: Any) -> tuple[dict[str, str], str]:
    """``(field → message, general message)`` from a service's 4xx JSON answer.

    FastAPI's validation errors come as ``detail: [{loc: ["body", "name"], msg}]``; a field
    validator's message is kept; anything not tied to a field goes to the general message.
    """
    if not isinstance(body, dict):
        return {}, ""
    fields: dict[str, str] = {}
    details = body.get("detail") or body.get("details")
    general = str(body.get("message") or "")
    if isinstance(details, list):
        loose: list[str] = []
        for item in details:
            if not isinstance(item, dict):
                continue
            loc = [str(x) for x in item.get("loc", ()) if x not in ("body", "query", "path")]
            msg = str(item.get("msg", "")).removeprefix("Value error, ")
            name = next((part for part in loc if not part.isdigit()), "")
            if name:
                fields.setdefault(name, msg)
            else:
                loose.append(msg)
        general = "; ".join(loose) if loose else ("" if fields else general)
    return fields, general


# -- small calculations for the pages ------------------------------------------------------------


def split_list(text: str) -> list[str]:
    """A comma-, semicolon- or newline-separated field → a clean list (order kept, no repeats)."""
    parts = [p.strip() for chunk in text.replace(";", ",").splitlines() for p in chunk.split(",")]
    return list(dict.fromkeys(p for p in parts if p))


def sort_param(column: str, descending: bool, allowed: Iterable[str], default: str = "name") -> str:
    """The register's ``sort`` parameter for a column header (``-`` in front: descending); unknown → default."""
    column = column if column in set(allowed) else default
    return f"-{column}" if descending else column


def pages(total: int, limit: int, offset: int) -> dict[str, int | None]:
    """Previous/next offsets and page numbers for a paginated list."""
    limit = max(1, limit)
    return {
        "page": offset // limit + 1,
        "pages": max(1, -(-total // limit)),
        "previous": max(0, offset - limit) if offset > 0 else None,
        "next": offset + limit if offset + limit < total else None,
    }


def project_month_bar(month: int | None, duration: int | None) -> float:
    """Where month ``M<month>`` sits on a project's timeline, in percent of its duration."""
    if not month or not duration or duration <= 0:
        return 0.0
    return round(min(100.0, max(0.0, (month - 0.5) * 100.0 / duration)), 2)


def negotiate_language(header: str | None, available: Iterable[str], default: str) -> str:
    """The first language of an ``Accept-Language`` header the console speaks (by q-value), else ``default``."""
    offered = list(available)
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")):
        tag, _, rest = part.strip().partition(";")
        q = 1.0
        if rest.strip().startswith("q="):
            try:
                q = float(rest.strip()[2:])
            except ValueError:
                q = 0.0
        if tag and q > 0:
            weighted.append((-q, index, tag.strip().lower()))
    for _q, _i, tag in sorted(weighted):
        base = tag.split("-")[0]
        if base in offered:
            return base
    return default


# -- the services' codes in words (English, Italian) ---------------------------------------------

LABELS: dict[str, tuple[str, str]] = {
    # organisation kinds
    "company": ("Company", "Impresa"),
    "university": ("University", "Università"),
    "research_institute": ("Research institute", "Istituto di ricerca"),
    "hospital": ("Hospital", "Ospedale"),
    "health_authority": ("Health authority", "Azienda sanitaria"),
    "foundation": ("Foundation", "Fondazione"),
    "other": ("Other", "Altro"),
    # sectors
    "biotech": ("Biotech", "Biotecnologie"),
    "pharma": ("Pharma", "Farmaceutica"),
    "medical_devices": ("Medical devices", "Dispositivi medici"),
    "diagnostics": ("Diagnostics", "Diagnostica"),
    "nutraceutics": ("Nutraceutics", "Nutraceutica"),
    "cosmeceutics": ("Cosmeceutics", "Cosmeceutica"),
    "ict_life_sciences": ("ICT for life sciences", "ICT per le scienze della vita"),
    # size classes
    "micro": ("Micro", "Micro"),
    "small": ("Small", "Piccola"),
    "medium": ("Medium", "Media"),
    "large": ("Large", "Grande"),
    # membership statuses and actions
    "applied": ("Applied", "Domanda presentata"),
    "active": ("Active", "Attiva"),
    "rejected": ("Rejected", "Respinta"),
    "suspended": ("Suspended", "Sospesa"),
    "lapsed": ("Lapsed", "Scaduta"),
    "left": ("Left", "Uscita"),
    "approve": ("Approve", "Approva"),
    "reject": ("Reject", "Respingi"),
    "suspend": ("Suspend", "Sospendi"),
    "reinstate": ("Reinstate", "Riattiva"),
    "lapse": ("Lapse", "Fai scadere"),
    "renew": ("Renew", "Rinnova"),
    "leave": ("Leave", "Recesso"),
    # roles
    "admin": ("Administrator", "Amministratore"),
    "staff": ("Staff", "Staff"),
    "member": ("Member", "Socio"),
    "partner": ("Partner", "Partner"),
    # deliverables, milestones, campaigns, matches
    "planned": ("Planned", "Previsto"),
    "late": ("Late", "In ritardo"),
    "submitted": ("Submitted", "Consegnato"),
    "accepted": ("Accepted", "Accettato"),
    "reached": ("Reached", "Raggiunto"),
    "draft": ("Draft", "Bozza"),
    "scheduled": ("Scheduled", "Programmata"),
    "running": ("Running", "In invio"),
    "paused": ("Paused", "In pausa"),
    "finished": ("Finished", "Conclusa"),
    "cancelled": ("Cancelled", "Annullata"),
    "proposed": ("Proposed", "Proposto"),
    "declined": ("Declined", "Rifiutato"),
    "meeting_scheduled": ("Meeting scheduled", "Incontro fissato"),
    "meeting_held": ("Meeting held", "Incontro svolto"),
    # opportunity types (EEN) and partner search
    "technology_offer": ("Technology offer", "Offerta di tecnologia"),
    "technology_request": ("Technology request", "Richiesta di tecnologia"),
    "rd_request": ("R&D request", "Richiesta di R&S"),
    "business_offer": ("Business offer", "Offerta commerciale"),
    "business_request": ("Business request", "Richiesta commerciale"),
    "partner_search": ("Partner search for an EU call", "Ricerca partner per un bando UE"),
}


def label(code: Any, language: str) -> str:
    """A service code (``research_institute``) in words; unknown codes as they are."""
    if code is None:
        return "–"
    pair = LABELS.get(str(code))
    if pair is None:
        return str(code)
    return pair[1] if language == "it" else pair[0]


# -- segment rules on a form ---------------------------------------------------------------------

SEGMENT_FIELDS = (
    "sector",
    "kind",
    "size_class",
    "province",
    "status",
    "keyword",
    "project",
    "role",
    "list",
    "interest",
)
"""The attributes the newsletter's segments select on, in the form's order."""
SEGMENT_GROUPS = ("all", "any", "none")
SEGMENT_OPERATORS = ("any_of", "all_of", "none_of")
SEGMENT_ROWS = 6
"""Condition rows an empty form offers (two more than the conditions of a rule being edited)."""


@dataclass(frozen=True)
class RuleRow:
    """One condition as the form shows it: an attribute, an operator, the values separated by commas."""

    field: str = ""
    operator: str = "any_of"
    values: str = ""


def rule_from_rows(group: str, rows: Iterable[RuleRow]) -> dict[str, Any] | None:
    """The rule a flat form describes: one group of its filled rows (``None`` when no row is filled).

    Unknown attributes and operators are sent as they are: the newsletter answers why it refuses them.
    """
    conditions = [
        {"field": row.field, row.operator: split_list(row.values)}
        for row in rows
        if row.field and split_list(row.values)
    ]
    if not conditions:
        return None
    return {group if group in SEGMENT_GROUPS else "all": conditions}


def rows_from_rule(rule: Any) -> tuple[str, list[RuleRow]] | None:
    """A rule as the flat form shows it: ``(group, rows)``; ``None`` when it does not fit one group of
    conditions (nested groups, a condition with ``project_role``): the form then shows its JSON."""

    def row(node: Any) -> RuleRow | None:
        if not isinstance(node, dict) or set(node) - {"field", *SEGMENT_OPERATORS}:
            return None
        ops = [op for op in SEGMENT_OPERATORS if op in node]
        if len(ops) != 1 or not isinstance(node[ops[0]], list):
            return None
        return RuleRow(str(node.get("field", "")), ops[0], ", ".join(str(v) for v in node[ops[0]]))

    if isinstance(rule, dict) and "field" in rule:
        single = row(rule)
        return ("all", [single]) if single else None
    if not isinstance(rule, dict) or len(rule) != 1:
        return None
    group, children = next(iter(rule.items()))
    if group not in SEGMENT_GROUPS or not isinstance(children, list):
        return None
    rows = [row(child) for child in children]
    if any(r is None for r in rows):
        return None
    return group, [r for r in rows if r is not None]
