"""The envelope addresses the engine quotes itself are exactly aiosmtplib's; any other address is left
to aiosmtplib (which refuses what cannot be a mailbox, so nothing can be smuggled into a command)."""

from __future__ import annotations

import pytest
from aiosmtplib.email import quote_address

from newsletter.delivery.smtp import _envelope


@pytest.mark.parametrize("address", ["r1@example.org", "a.b+c_d@x-y.example", "o'neil@example.org"])
def test_a_plain_address_is_quoted_as_aiosmtplib_quotes_it(address: str) -> None:
    assert _envelope(address) == quote_address(address).encode("ascii")


@pytest.mark.parametrize(
    "address", ["Zoë@example.org", "a b@x.org", "a\r\nRCPT TO:<x@y>@x.org", "<a@b.c>", "a@b.c>", "", "a@b@c"]
)
def test_anything_else_goes_through_aiosmtplib(address: str) -> None:
    assert _envelope(address) is None
