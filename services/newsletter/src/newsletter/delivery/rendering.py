"""Campaign templates compiled once: literal pieces and per-recipient slots, or Jinja for every mail."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import markupsafe
from jinja2 import TemplateError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

import newsletter.delivery.sandbox as sandbox
from newsletter import domain

# -- checks -----------------------------------------------------------------------

_ENV_HTML = sandbox.BoundedSandbox(autoescape=True)
_ENV_TEXT = sandbox.BoundedSandbox(autoescape=False)


def check_template(source: str, *, html: bool) -> None:
    """Raise ``ValueError`` naming the problem when ``source`` is not a valid template or goes past a limit."""
    try:
        template = (_ENV_HTML if html else _ENV_TEXT).from_string(source)
    except TemplateError as exc:
        raise ValueError(f"template error: {exc}") from exc
    try:
        sandbox.check_limits(template)
    except sandbox.TemplateLimitError as exc:
        raise ValueError(f"the template goes past the rendering limits: {exc}") from exc


def footer(text: str, html: str, *, unsubscribe_url: str, preferences_url: str) -> tuple[str, str]:
    """Append the visible unsubscribe and preferences links (bulk-sender rules want them in the body)."""
    links: dict[Slot, str] = {("unsubscribe_url",): unsubscribe_url, ("preferences_url",): preferences_url}
    text_tail, html_tail = footer_pieces()
    return (
        text.rstrip() + "".join(p if isinstance(p, str) else ESCAPES[p[1]](links[p[0]]) for p in text_tail),
        html + "".join(p if isinstance(p, str) else ESCAPES[p[1]](links[p[0]]) for p in html_tail),
    )


def footer_pieces() -> tuple[list[str | tuple[Slot, str]], list[str | tuple[Slot, str]]]:
    """The footer of the text and of the HTML part: literal text and (link slot, how it is escaped)."""
    unsub, prefs = ("unsubscribe_url",), ("preferences_url",)
    return (
        [
            "\n\n--\nUnsubscribe / Disiscriviti: ",
            (unsub, "text"),
            "\nPreferences / Preferenze: ",
            (prefs, "text"),
            "\n",
        ],
        [
            '\n<hr><p style="font-size:12px;color:#666"><a href="',
            (unsub, "attr"),
            '">Unsubscribe / Disiscriviti</a> · <a href="',
            (prefs, "attr"),
            '">Preferences / Preferenze</a></p>\n',
        ],
    )


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


ESCAPES: dict[str, Any] = {
    "text": str,
    "html": lambda value: str(markupsafe.escape(value)),
    "attr": lambda value: _attr(str(value)),
}
"""How a value is printed: as it is (text), HTML-escaped (the template's HTML), as an attribute (the footer)."""


# -- compiled templates: rendered once per campaign, per-recipient fields substituted -----------

Slot = tuple[str, ...]
"""A per-recipient field: ("subscriber", "name"), ("subscriber", "attributes", "city"), ("unsubscribe_url",)."""

_LINK_NAMES = frozenset({"unsubscribe_url", "preferences_url", "unsubscribe_token"})
_RECIPIENT_NAMES = _LINK_NAMES | {"subscriber"}
_SUBSCRIBER_FIELDS = frozenset({"name", "email", "language"})
# Constructs that could transform, capture or re-scope printed output: a template using any of them
# is rendered by Jinja for every mail (correct, only slower).
_OPAQUE_NODES = (
    nodes.Macro,
    nodes.CallBlock,
    nodes.FilterBlock,
    nodes.AssignBlock,
    nodes.EvalContextModifier,
    nodes.Block,
    nodes.Extends,
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
)
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"  # private-use characters: autoescape leaves them alone
_MARK = re.compile(f"{_MARK_OPEN}(\\d+){_MARK_CLOSE}")


def _slot_of(node: nodes.Node) -> Slot | None:
    """The per-recipient field an output expression prints as it is (no filter, no test), if any."""
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name in _LINK_NAMES:
        return (node.name,)
    if not isinstance(node, nodes.Getattr | nodes.Getitem):
        return None
    inner = node.node
    if isinstance(node, nodes.Getattr):
        key: Any = node.attr
    elif isinstance(node.arg, nodes.Const):
        key = node.arg.value
    else:
        return None
    if not isinstance(key, str):
        return None
    if isinstance(inner, nodes.Name) and inner.name == "subscriber" and inner.ctx == "load":
        return ("subscriber", key) if key in _SUBSCRIBER_FIELDS and isinstance(node, nodes.Getattr) else None
    if (
        isinstance(inner, nodes.Getattr)
        and inner.attr == "attributes"
        and isinstance(inner.node, nodes.Name)
        and inner.node.name == "subscriber"
        and inner.node.ctx == "load"
        and not hasattr(dict, key)  # subscriber.attributes.items is the method, not a field
    ):
        return ("subscriber", "attributes", key)
    return None


def template_slots(ast: nodes.Template) -> list[Slot] | None:
    """The per-recipient fields of a template when each is only ever printed as it is, else ``None``.

    Then the template's output is a fixed sequence of literal text and field values: it can be
    rendered once per campaign and each mail only joins the pieces. A field used in a condition,
    a loop, a filter, an assignment or a macro makes the answer ``None``.
    """
    if any(True for _ in ast.find_all(_OPAQUE_NODES)):
        return None
    slots: list[Slot] = []
    allowed: set[int] = set()
    for output in ast.find_all(nodes.Output):
        for expr in output.nodes:
            slot = _slot_of(expr)
            if slot is not None:
                slots.append(slot)
                allowed.update(id(n) for n in expr.find_all(nodes.Name))
                allowed.add(id(expr))
    for name in ast.find_all(nodes.Name):
        if name.name in _RECIPIENT_NAMES and id(name) not in allowed:
            return None
    return slots


class _Missing(LookupError):
    """A field the fast path cannot supply (a missing attribute): Jinja renders that mail."""


class CompiledTemplate:
    """One template of a campaign: literal pieces and per-recipient slots, or Jinja for every mail."""

    def __init__(self, env: ImmutableSandboxedEnvironment, source: str, constant: dict[str, Any]) -> None:
        self.template = env.from_string(source)
        self.html = env.autoescape is True
        self.pieces: list[str | Slot] | None = None
        if _MARK_OPEN in source or _MARK_CLOSE in source:
            return
        slots = template_slots(env.parse(source))
        if slots is None:
            return
        order = list(dict.fromkeys(slots))
        marks = {slot: f"{_MARK_OPEN}{i}{_MARK_CLOSE}" for i, slot in enumerate(order)}
        subscriber: dict[str, Any] = {"attributes": {}}
        context = dict(constant, subscriber=subscriber)
        for slot, mark in marks.items():
            if slot[0] != "subscriber":
                context[slot[0]] = mark
            elif len(slot) == 2:
                subscriber[slot[1]] = mark
            else:
                subscriber["attributes"][slot[2]] = mark
        try:
            out = sandbox.render(self.template, context)
        except Exception:  # the campaign's own data is wrong: every mail fails in Jinja, with its message
            return
        parts = _MARK.split(out)
        if out.count(_MARK_OPEN) != len(parts) // 2:  # a marker altered on the way: do not trust the pieces
            return
        pieces: list[str | Slot] = []
        for i, part in enumerate(parts):
            if i % 2:
                pieces.append(order[int(part)])
            elif part:
                pieces.append(part)
        self.pieces = pieces

    def render(self, values: dict[Slot, Any], context: dict[str, Any]) -> str:
        """The template's output for one recipient (``values`` for the fast path, ``context`` for Jinja)."""
        if self.pieces is not None:
            try:
                return self.join(values)
            except _Missing:
                pass
        return sandbox.render(self.template, context)

    def join(self, values: dict[Slot, Any]) -> str:
        """The pieces joined with ``values`` (``LookupError`` when one is missing)."""
        out = []
        for piece in self.pieces or ():
            if isinstance(piece, str):
                out.append(piece)
                continue
            try:
                value = values[piece]
            except KeyError:
                raise _Missing(piece) from None
            out.append(str(markupsafe.escape(value)) if self.html else str(value))
        return "".join(out)


@dataclass
class RenderedMail:
    """The parts of one mail, before MIME."""

    subject: str
    text: str
    html: str


class CampaignRenderer:
    """A campaign's compiled templates (sandboxed Jinja2; HTML autoescaped).

    ``constant`` holds the context every mail shares (``campaign``): with it, templates whose
    per-recipient fields are only printed are rendered once, and each mail joins the pieces.
    """

    def __init__(self, subject: str, body_html: str, body_text: str, constant: dict[str, Any] | None = None) -> None:
        constant = constant or {}
        self.subject_t = CompiledTemplate(_ENV_TEXT, subject, constant)
        self.html_t = CompiledTemplate(_ENV_HTML, body_html, constant)
        self.text_t = CompiledTemplate(_ENV_TEXT, body_text, constant)

    @property
    def compiled(self) -> bool:
        """Whether all three parts take the fast path."""
        return all(t.pieces is not None for t in (self.subject_t, self.html_t, self.text_t))

    def render(self, context: dict[str, Any], values: dict[Slot, Any] | None = None) -> RenderedMail:
        """Render the three parts with the subscriber's fields (``TemplateError`` when a field is missing)."""
        if values is None:
            values = slot_values(context)
        return RenderedMail(
            subject=domain.clean_header_text(self.subject_t.render(values, context)),
            html=self.html_t.render(values, context),
            text=self.text_t.render(values, context),
        )


def slot_values(context: dict[str, Any]) -> dict[Slot, Any]:
    """The slot values a Jinja context carries (what the fast path substitutes)."""
    values: dict[Slot, Any] = {}
    sub = context.get("subscriber")
    if isinstance(sub, dict):
        for key in _SUBSCRIBER_FIELDS:
            if key in sub:
                values[("subscriber", key)] = sub[key]
        attrs = sub.get("attributes")
        if isinstance(attrs, dict):
            for key, value in attrs.items():
                values[("subscriber", "attributes", key)] = value
    for key in _LINK_NAMES:
        if key in context:
            values[(key,)] = context[key]
    return values


# -- MIME ----------------------------------------------------------------------
