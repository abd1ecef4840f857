"""The template editor's live preview: the newsletter's template language (Jinja, sandboxed) on sample data.

The newsletter renders the real mails; this only shows the author what a sample subscriber
would get while typing. It is sandboxed like the newsletter's renderer and bounded: no
operator may build a huge string or list, and the output is cut at ``MAX_OUTPUT``.
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MAX_OUTPUT = 200_000
MAX_REPEAT = 10_000


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """A sandbox where ``*`` and ``**`` cannot be used to allocate gigabytes."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 100:
            raise SecurityError("exponent too large for a preview")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(count, int)
                    and count * max(1, len(seq)) > MAX_REPEAT
                ):
                    raise SecurityError("repetition too large for a preview")
        return super().call_binop(context, operator, left, right)


_HTML = BoundedEnvironment(autoescape=True, undefined=StrictUndefined)
_TEXT = BoundedEnvironment(autoescape=False, undefined=StrictUndefined)


def sample_context(name: str) -> dict[str, Any]:
    """What a template sees, with a sample subscriber and campaign."""
    return {
        "subscriber": {"name": "Maria Rossi", "email": "maria.rossi@example.org", "language": "it"},
        "campaign": {
            "name": name or "Newsletter",
            "data": {"intro": "Le novità del distretto.", "items": ["Primo articolo", "Secondo articolo"]},
        },
        "unsubscribe_url": "https://example.org/unsubscribe",
        "preferences_url": "https://example.org/preferences",
    }


def render_preview(subject: str, body_html: str, body_text: str, name: str = "") -> dict[str, str]:
    """``{"subject", "html", "text", "error"}``: the rendering, or the first error in words."""
    context = sample_context(name)
    out = {"subject": "", "html": "", "text": "", "error": ""}
    try:
        out["subject"] = _TEXT.from_string(subject or "").render(context)[:1000]
        out["html"] = _HTML.from_string(body_html or "").render(context)[:MAX_OUTPUT]
        out["text"] = _TEXT.from_string(body_text or "").render(context)[:MAX_OUTPUT]
    except (TemplateError, SecurityError, ArithmeticError, TypeError, ValueError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out
