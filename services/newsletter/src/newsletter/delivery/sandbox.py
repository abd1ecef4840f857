"""Templates that cannot hurt: a Jinja2 sandbox with bounds on size and time.

The sandbox already keeps templates away from Python internals; these bounds keep a template
from exhausting memory or the event loop (``{{ 'a' * 100000000 }}``, a huge ``range``, a
``center(10**9)``, nested loops):

- ``*`` on a string or list, string methods and the widening filters refuse to build more than
  ``MAX_SEQUENCE`` characters or items, ``**`` refuses big exponents, ``range`` is capped;
- a rendered part longer than ``MAX_OUTPUT`` characters stops the render;
- a render running longer than ``RENDER_SECONDS`` is interrupted (a timer signal, on the main
  thread — where the service renders).

Each raises ``TemplateLimitError`` (a ``jinja2.SecurityError``): on save the template is refused
(422), on delivery that recipient's mail fails with the reason.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from collections.abc import Iterator
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_SEQUENCE = 100_000
"""Characters or items one operation may produce."""
MAX_OUTPUT = 2_000_000
"""Characters one rendered part (subject, HTML or text) may have."""
MAX_RANGE = 10_000
MAX_EXPONENT = 256
RENDER_SECONDS = 2.0


class TemplateLimitError(SecurityError):
    """A template went past a rendering limit."""


_WIDE_FORMAT = re.compile(r"\d{6,}")
_SIZE_ARGS = {"center", "ljust", "rjust", "zfill", "expandtabs", "format", "format_map", "__mul__", "__rmul__"}


def _too_big(what: str) -> TemplateLimitError:
    return TemplateLimitError(f"{what} would be larger than {MAX_SEQUENCE} characters or items")


def _check_replace(text: str, old: str, new: str, count: int = -1) -> None:
    n = text.count(old) if old else len(text) + 1
    if count >= 0:
        n = min(n, count)
    if len(text) + n * max(0, len(new) - len(old)) > MAX_OUTPUT:
        raise _too_big("replace")


def _check_format(spec: Any) -> None:
    if isinstance(spec, str) and _WIDE_FORMAT.search(spec):
        raise TemplateLimitError(f"a format width or precision over {MAX_SEQUENCE - 1} is not allowed")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """An immutable sandbox whose operations are size-bounded."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(undefined=StrictUndefined, **kwargs)
        self.globals["range"] = _bounded_range
        base = self.filters
        self.filters = {
            **base,
            "center": _wrap_width(base["center"], 1),
            "indent": _wrap_width(base["indent"], 1),
            "format": _bounded_format(base["format"]),
            "replace": _bounded_replace_filter(base["replace"]),
        }

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """``*`` on sequences, ``**`` and ``%`` formatting, within bounds."""
        _tick()
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > MAX_SEQUENCE:
                    raise _too_big("this multiplication")
        elif operator == "**":
            big = isinstance(right, int | float) and abs(right) > MAX_EXPONENT
            if big and isinstance(left, int | float) and abs(left) > 1:
                raise TemplateLimitError(f"an exponent over {MAX_EXPONENT} is not allowed")
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Calls of string methods that could build something huge are checked first."""
        _tick()
        # str.format comes wrapped by the sandbox (functools.update_wrapper keeps the method).
        method = getattr(__obj, "__wrapped__", __obj)
        owner = getattr(method, "__self__", None)
        name = getattr(method, "__name__", "")
        if isinstance(owner, str):
            if name in _SIZE_ARGS:
                for value in (*args, *kwargs.values()):
                    if isinstance(value, int) and value > MAX_SEQUENCE:
                        raise _too_big(f"str.{name}")
                if name in {"format", "format_map"}:
                    _check_format(owner)
            elif name == "replace" and len(args) >= 2:
                _check_replace(owner, str(args[0]), str(args[1]), *(a for a in args[2:3] if isinstance(a, int)))
            elif name == "join" and args:
                items = args[0]
                if hasattr(items, "__len__") and len(items) * (len(owner) + 1) > MAX_OUTPUT:
                    raise _too_big("str.join")
        return super().call(__context, __obj, *args, **kwargs)


def _bounded_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise TemplateLimitError(f"range() of more than {MAX_RANGE} items is not allowed")
    return r


def _wrap_width(f: Any, index: int) -> Any:
    def bounded(*args: Any, **kwargs: Any) -> Any:
        width = kwargs.get("width", args[index] if len(args) > index else 0)
        if isinstance(width, int) and width > MAX_SEQUENCE:
            raise _too_big("this filter")
        return f(*args, **kwargs)

    return bounded


def _bounded_format(f: Any) -> Any:
    def bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_format(value)
        return f(value, *args, **kwargs)

    return bounded


def _bounded_replace_filter(f: Any) -> Any:
    def bounded(eval_ctx: Any, s: Any, old: Any, new: Any, count: int | None = None) -> Any:
        _check_replace(str(s), str(old), str(new), -1 if count is None else count)
        return f(eval_ctx, s, old, new, count)

    # Jinja passes the evaluation context to filters marked so, like the original.
    bounded.jinja_pass_arg = getattr(f, "jinja_pass_arg", None)  # type: ignore[attr-defined]
    return bounded


# -- time ---------------------------------------------------------------------------------

_state = threading.local()


def _tick() -> None:
    """Nothing to do: the timer signal interrupts; kept as the one place to add a cheap check."""


def _on_alarm(_signum: int, _frame: Any) -> None:
    if getattr(_state, "rendering", False):
        _state.rendering = False
        raise TemplateLimitError(f"rendering took longer than {RENDER_SECONDS:g} s")


@contextlib.contextmanager
def time_limit(seconds: float = RENDER_SECONDS) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (main thread only; elsewhere the size bounds remain)."""
    if threading.current_thread() is not threading.main_thread() or getattr(_state, "rendering", False):
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    _state.rendering = True
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        _state.rendering = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def render(template: Template, context: dict[str, Any], *, max_output: int = MAX_OUTPUT) -> str:
    """Render with every bound: size of each operation, size of the output, time."""
    out: list[str] = []
    size = 0
    with time_limit():
        for chunk in template.generate(context):
            size += len(chunk)
            if size > max_output:
                raise TemplateLimitError(f"the rendered text would be longer than {max_output} characters")
            out.append(chunk)
    return "".join(out)


SAMPLE_CONTEXT: dict[str, Any] = {
    "subscriber": {"name": "Anna Rossi", "email": "anna@example.org", "language": "it", "attributes": {}},
    "campaign": {"name": "Sample", "data": {}},
    "unsubscribe_url": "https://example.org/u",
    "preferences_url": "https://example.org/p",
    "unsubscribe_token": "token",
}


def check_limits(template: Template) -> None:
    """Raise ``TemplateLimitError`` when a trial render with sample data goes past a bound.

    Other render errors (a field the sample lacks) are not the save's business: a campaign's
    own data decides them.
    """
    try:
        render(template, dict(SAMPLE_CONTEXT))
    except TemplateLimitError:
        raise
    except Exception:
        return
