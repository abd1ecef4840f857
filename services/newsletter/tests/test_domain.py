"""Pure rules: lifecycle, signed links, addresses, header safety, rates, bounces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jinja2
import pytest

from newsletter import domain
from newsletter.delivery import rendering
from newsletter.domain import CampaignAction as A
from newsletter.domain import CampaignStatus as S


def test_lifecycle_allows_the_documented_paths_and_refuses_the_rest() -> None:
    assert domain.transition(S.DRAFT, A.SCHEDULE) == S.SCHEDULED
    assert domain.transition(S.SCHEDULED, A.START) == S.RUNNING
    assert domain.transition(S.RUNNING, A.PAUSE) == S.PAUSED
    assert domain.transition(S.PAUSED, A.RESUME) == S.RUNNING
    assert domain.transition(S.RUNNING, A.FINISH) == S.FINISHED
    assert domain.transition(S.PAUSED, A.CANCEL) == S.CANCELLED
    for status, action in [(S.FINISHED, A.START), (S.DRAFT, A.PAUSE), (S.CANCELLED, A.RESUME), (S.RUNNING, A.START)]:
        with pytest.raises(domain.IllegalTransition):
            domain.transition(status, action)


def test_signed_tokens_reject_tampering_other_purposes_and_expiry() -> None:
    now = datetime(2025, 5, 1, tzinfo=UTC)
    token = domain.sign_token("k", "confirm", "sub1", expires=now + timedelta(hours=1))
    assert domain.verify_token("k", token, "confirm", now=now).subject == "sub1"
    with pytest.raises(domain.BadToken, match="expired"):
        domain.verify_token("k", token, "confirm", now=now + timedelta(hours=2))
    with pytest.raises(domain.BadToken, match="not meant"):
        domain.verify_token("k", token, "unsubscribe", now=now)
    with pytest.raises(domain.BadToken, match="signature"):
        domain.verify_token("other-key", token, "confirm", now=now)
    forged = domain.sign_token("k", "confirm", "sub2").split(".")[0] + "." + token.split(".")[1]
    with pytest.raises(domain.BadToken):
        domain.verify_token("k", forged, "confirm", now=now)
    with pytest.raises(domain.BadToken, match="malformed"):
        domain.verify_token("k", "garbage", "confirm", now=now)


def test_addresses_are_normalised_and_bad_ones_refused() -> None:
    assert domain.normalise_email("  Anna.Rossi@Example.ORG ") == "anna.rossi@example.org"
    for bad in ["anna", "anna@", "@x.it", "a b@x.it", "a@x", "a@x.it\r\nBcc: e@x.it", "a..b@x.it"]:
        with pytest.raises(ValueError):
            domain.normalise_email(bad)
    assert domain.email_sha256("A@X.IT") == domain.email_sha256("a@x.it")


def test_header_text_loses_line_breaks() -> None:
    assert domain.clean_header_text("Eve\r\nBcc: victim@x.it") == "Eve Bcc: victim@x.it"
    assert "\n" not in domain.clean_header_text("a\nb\rc\x00d")


def test_rate_limit_answers_how_long_to_wait() -> None:
    now = datetime(2025, 5, 1, 12, tzinfo=UTC)
    window = timedelta(hours=1)
    hits = [now - timedelta(minutes=50), now - timedelta(minutes=10)]
    assert domain.retry_after(hits, now=now, window=window, limit=3) is None
    wait = domain.retry_after(hits, now=now, window=window, limit=2)
    assert wait is not None and 590 <= wait <= 602  # the 50-minute-old hit leaves in 10 minutes
    assert domain.retry_after([now - timedelta(hours=2)] * 5, now=now, window=window, limit=2) is None


def test_token_bucket_spaces_sends() -> None:
    bucket = domain.TokenBucket(rate=10, burst=2, now=0.0)
    assert bucket.take(0.0) == 0 and bucket.take(0.0) == 0
    assert bucket.take(0.0) == pytest.approx(0.1)
    assert domain.TokenBucket(rate=0, burst=1, now=0).take(0) == 0


def test_hard_bounces_and_complaints_suppress_soft_ones_after_the_limit() -> None:
    assert domain.suppresses(domain.BounceKind.HARD, 0, 3)
    assert domain.suppresses(domain.BounceKind.COMPLAINT, 0, 3)
    assert not domain.suppresses(domain.BounceKind.SOFT, 2, 3)
    assert domain.suppresses(domain.BounceKind.SOFT, 3, 3)
    assert domain.smtp_failure_kind(550) == "permanent" and domain.smtp_failure_kind(451) == "transient"


def test_templates_are_sandboxed_and_html_is_escaped() -> None:
    r = rendering.CampaignRenderer("Hi {{ subscriber.name }}", "<p>{{ subscriber.name }}</p>", "{{ subscriber.name }}")
    mail = r.render({"subscriber": {"name": "<script>x</script>"}})
    assert "&lt;script&gt;" in mail.html and "<script>" in mail.text
    evil = rendering.CampaignRenderer("x", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "x")
    with pytest.raises(Exception):  # noqa: B017 - the sandbox refuses, whatever the exception's class
        evil.render({})
    with pytest.raises(ValueError, match="template error"):
        rendering.check_template("{% for %}", html=True)


FAST_TEMPLATES = [
    "<p>Ciao {{ subscriber.name }} ({{ subscriber.email }}, {{ subscriber.language }})</p>",
    "<a href='{{ unsubscribe_url }}'>x</a> {{ preferences_url }} {{ unsubscribe_token }}",
    "{{ subscriber.attributes.city }} / {{ subscriber.attributes['city'] }} — {{ campaign.name }}",
    "{% for i in range(2) %}{{ i }}:{{ subscriber.name }} {% endfor %}{% if campaign.data.x %}X{% endif %}",
]
SLOW_TEMPLATES = [
    "{{ subscriber.name|upper }}",
    "{% if subscriber.name %}Dear {{ subscriber.name }}{% else %}Hello{% endif %}",
    "{% set n = subscriber.name %}{{ n }}",
    "{% filter upper %}{{ subscriber.name }}{% endfilter %}",
    "{% macro m() %}{{ subscriber.name }}{% endmacro %}{{ m()|upper }}",
    "{{ subscriber.attributes.items() }}",
    "{% for subscriber in [1] %}{{ subscriber }}{% endfor %}",
    "{{ subscriber }}",
]


@pytest.mark.parametrize("source", FAST_TEMPLATES + SLOW_TEMPLATES)
def test_templates_compiled_once_per_campaign_render_exactly_like_jinja(source: str) -> None:
    constant = {"campaign": {"id": "c1", "name": "May <news>", "data": {"x": 1}}}
    fast = rendering.CampaignRenderer("S {{ subscriber.name }}", source, source, constant)
    assert fast.compiled is (source in FAST_TEMPLATES)
    for name in ["Zoë <b>&\"'</b>", "", "{{ x }}", "\ue0000\ue001"]:
        context = {
            **constant,
            "subscriber": {"name": name, "email": "z@example.org", "language": "it", "attributes": {"city": "S<i>"}},
            "unsubscribe_url": "https://x/u?a=1&b=2",
            "preferences_url": "https://x/p",
            "unsubscribe_token": "t.k",
        }
        got = fast.render(context)
        want_html = rendering._ENV_HTML.from_string(source).render(context)
        want_text = rendering._ENV_TEXT.from_string(source).render(context)
        assert (got.html, got.text) == (want_html, want_text)
    # a missing attribute fails the way Jinja fails (StrictUndefined), not silently
    if "attributes.city" in source:
        with pytest.raises(jinja2.UndefinedError):
            fast.render({**constant, "subscriber": {"name": "x", "email": "e", "language": "it", "attributes": {}}})
