"""Vocabulary values in one case (docs/api-conventions.md, "Enums"); no dependency, so that the event
contracts can use it as well as the API conventions."""

from __future__ import annotations

import re

__all__ = ["snake_case"]


def snake_case(value: str) -> str:
    """A vocabulary value in lower snake case, from an older spelling: ``SIGNED`` → ``signed``,
    ``associatedPartner`` → ``associated_partner`` (a value already in lower snake case is kept)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", value.strip()).lower()
