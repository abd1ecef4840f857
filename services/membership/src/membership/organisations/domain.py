"""Pure rules of the register: what an organisation is, how the register sorts, VAT numbers, who sees what.

No I/O and no framework here: everything is a function of its arguments.
"""

from __future__ import annotations

import re
from enum import StrEnum

from membership.lifecycle.domain import MembershipStatus


class OrganisationKind(StrEnum):
    """What kind of body an organisation is."""

    company = "company"
    university = "university"
    research_institute = "research_institute"
    hospital = "hospital"
    health_authority = "health_authority"
    foundation = "foundation"
    other = "other"


class Sector(StrEnum):
    """The seven sectors of the Tuscan life-sciences district."""

    biotech = "biotech"
    pharma = "pharma"
    medical_devices = "medical_devices"
    diagnostics = "diagnostics"
    nutraceutics = "nutraceutics"
    cosmeceutics = "cosmeceutics"
    ict_life_sciences = "ict_life_sciences"


class OrganisationOrder(StrEnum):
    """How the register can be sorted: a column, ascending, or with a leading ``-`` descending."""

    name = "name"
    name_desc = "-name"
    kind = "kind"
    kind_desc = "-kind"
    status = "status"
    status_desc = "-status"
    province = "province"
    province_desc = "-province"
    size_class = "size_class"
    size_class_desc = "-size_class"
    joined_on = "joined_on"
    joined_on_desc = "-joined_on"
    renewal_due = "renewal_due"
    renewal_due_desc = "-renewal_due"
    created_at = "created_at"
    created_at_desc = "-created_at"

    @property
    def column(self) -> str:
        """The column sorted on."""
        return self.value.removeprefix("-")

    @property
    def descending(self) -> bool:
        return self.value.startswith("-")


PUBLIC_STATUSES = frozenset(
    s.value
    for s in (MembershipStatus.active, MembershipStatus.suspended, MembershipStatus.lapsed, MembershipStatus.left)
)
"""Organisations that are or were members: the register others see (applications are not public)."""
PRIVATE_ORGANISATION_FIELDS = frozenset({"latest_year", "size_class", "fee_plan_id", "renewal_due"})
"""Fields of an organisation only the organisation itself and staff see."""


# -- VAT numbers -------------------------------------------------------------


def partita_iva_check_digit(first_ten: str) -> int:
    """The check digit of an Italian partita IVA from its first ten digits (Luhn variant)."""
    total = 0
    for i, ch in enumerate(first_ten):
        d = int(ch)
        if i % 2 == 1:  # the 2nd, 4th … digit is doubled, minus 9 when above 9
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def is_valid_partita_iva(number: str) -> bool:
    """True for eleven digits whose last is the right check digit."""
    return bool(re.fullmatch(r"\d{11}", number)) and partita_iva_check_digit(number[:10]) == int(number[10])


def normalise_vat(vat: str, country: str) -> str:
    """The VAT number as stored: Italian ones as 11 checked digits, others upper-cased without spaces.

    Raises ``ValueError`` with a sentence a user understands.
    """
    compact = re.sub(r"[\s.\-]", "", vat).upper()
    if not compact:
        raise ValueError("VAT number is empty")
    if country.upper() != "IT":
        if not re.fullmatch(r"[A-Z0-9]{2,20}", compact):
            raise ValueError(f"VAT number {vat!r} has characters other than letters and digits")
        return compact
    if compact.startswith("IT"):
        compact = compact[2:]
    if not re.fullmatch(r"\d{11}", compact):
        raise ValueError(f"Italian VAT number (partita IVA) must have 11 digits, got {vat!r}")
    if not is_valid_partita_iva(compact):
        raise ValueError(f"Italian VAT number (partita IVA) {vat!r} has a wrong check digit")
    return compact
