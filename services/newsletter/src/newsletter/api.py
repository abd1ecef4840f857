"""HTTP routes: HTTP → service call → response."""

from __future__ import annotations

import html
import json
import re
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from distretto_shared.context import Context, public_request_context, staff_request_context
from distretto_shared.conventions import HexId, hex_id
from distretto_shared.web import DomainError, Invalid, NotFound, Page, make_page
from distretto_shared.web import Paging as PageDep
from newsletter import context
from newsletter.bounces import service as bounces
from newsletter.bounces.models import BounceAccepted, BouncePublic, BounceReport
from newsletter.campaigns import service as campaigns
from newsletter.campaigns.models import (
    AudienceChoice,
    AudienceCount,
    CampaignCreate,
    CampaignPublic,
    CampaignRecipients,
    CampaignUpdate,
    DeliveryPublic,
    Schedule,
    SendTest,
    SendTestResult,
    TransactionalMails,
)
from newsletter.config import Settings
from newsletter.consent import service as consent
from newsletter.consent.models import Preferences, SignUp
from newsletter.digest import service as digest
from newsletter.domain import CampaignAction
from newsletter.lists import service as lists
from newsletter.lists.models import MailingListCreate, MailingListPublic
from newsletter.subscribers import service as subscribers
from newsletter.subscribers.models import SubscriberCreate, SubscriberPublic, SubscriberUpdate
from newsletter.templates import service as templates
from newsletter.templates.models import TemplateCreate, TemplatePublic, TemplateUpdate

router = APIRouter()
Id = Annotated[HexId, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
"""A path id: the dashed or the 32-hex form (given to the use case as the 32-hex form the tables
store, docs/api-conventions.md "Ids"); other text is an unknown id (404) or, outside these
characters, a 422."""
_HEX32 = re.compile(r"[0-9a-f]{32}")
Token = Annotated[str, Path(min_length=10, max_length=600)]
QToken = Annotated[str, Query(min_length=10, max_length=600, description="The signed token from the mail")]


Ctx = Annotated[Context[Settings], Depends(staff_request_context)]
"""The caller, the database and the settings (see docs/service-guide.md): the newsletter is the
foundation's work, so every route is for staff (403 for others, 401 anonymous) …"""
PublicCtx = Annotated[Context[Settings], Depends(public_request_context)]
"""… but a subscriber's own pages (their links carry signed tokens) and the provider's signed
bounce webhook, which anonymous callers reach too."""


async def client_of(request: Request) -> context.Client:
    """The caller's address (X-Forwarded-For only when configured to trust the gateway)."""
    settings: Settings = request.app.state.ctx.settings
    address = request.client.host if request.client else None
    forwarded = request.headers.get("x-forwarded-for")
    if settings.trust_forwarded_for and forwarded:
        address = forwarded.split(",")[0].strip()[:100]
    return context.Client(address=address, user_agent=request.headers.get("user-agent"))


ClientDep = Annotated[context.Client, Depends(client_of)]


def _rate_limited(exc: context.RateLimited) -> JSONResponse:
    return JSONResponse(
        status_code=429,
        content={"error": exc.code, "message": exc.message, "details": exc.details},
        headers={"Retry-After": str(exc.retry_after)},
    )


async def _form_or_json(request: Request) -> dict[str, Any]:
    """A POST body as a dict: JSON, or an HTML form (application/x-www-form-urlencoded)."""
    raw = await request.body()
    if len(raw) > 64_000:
        raise Invalid("the request body is too large")
    ctype = request.headers.get("content-type", "")
    if "json" in ctype:
        try:
            data = json.loads(raw or b"{}")
        except ValueError as exc:
            raise Invalid("the body is not valid JSON") from exc
        if not isinstance(data, dict):
            raise Invalid("the body must be a JSON object")
        return data
    try:
        parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise Invalid("the form is not UTF-8") from exc
    return {k: v for k, v in parsed.items()}


# -- lists ---------------------------------------------------------------------


@router.post("/lists", status_code=201, response_model=MailingListPublic, tags=["lists"])
async def create_list(data: MailingListCreate, ctx: Ctx) -> MailingListPublic:
    return await lists.create_list(ctx, data)


@router.get("/lists", response_model=Page[MailingListPublic], tags=["lists"])
async def list_lists(ctx: Ctx, page: PageDep) -> Page[MailingListPublic]:
    items, total = await lists.list_lists(ctx, page)
    return make_page(items, total, page)


@router.get("/lists/{list_id}", response_model=MailingListPublic, tags=["lists"], summary="A list, by its id")
async def get_list(list_id: Id, ctx: Ctx) -> MailingListPublic:
    # its id only, as documented (format uuid): a slug here was answered as if it were an id
    if not _HEX32.fullmatch(list_id):
        raise NotFound(f"No list {list_id}")
    return await lists.get_list(ctx, list_id)


# -- subscribers (administration) ------------------------------------------------------


@router.post("/subscribers", status_code=201, response_model=SubscriberPublic, tags=["subscribers"])
async def create_subscriber(data: SubscriberCreate, ctx: Ctx) -> SubscriberPublic:
    return await subscribers.create_subscriber(ctx, data)


@router.get("/subscribers", response_model=Page[SubscriberPublic], tags=["subscribers"])
async def list_subscribers(
    ctx: Ctx,
    page: PageDep,
    list_ref: Annotated[
        str | None,
        Query(
            alias="list", max_length=80, pattern=r"^[A-Za-z0-9_-]*$", description="A list's id (either form) or slug"
        ),
    ] = None,
    status: Annotated[str | None, Query(pattern=r"^(unconfirmed|confirmed|unsubscribed|suppressed)$")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text in the address or the name")] = None,
) -> Page[SubscriberPublic]:
    items, total = await subscribers.list_subscribers(ctx, page, list_ref=list_ref, status=status, text=q)
    return make_page(items, total, page)


@router.get("/subscribers/{subscriber_id}", response_model=SubscriberPublic, tags=["subscribers"])
async def get_subscriber(subscriber_id: Id, ctx: Ctx) -> SubscriberPublic:
    return await subscribers.get_subscriber(ctx, subscriber_id)


@router.patch("/subscribers/{subscriber_id}", response_model=SubscriberPublic, tags=["subscribers"])
async def update_subscriber(subscriber_id: Id, data: SubscriberUpdate, ctx: Ctx) -> SubscriberPublic:
    return await subscribers.update_subscriber(ctx, subscriber_id, data)


@router.get("/subscribers/{subscriber_id}/export", tags=["gdpr"], summary="Everything held about a subscriber")
async def export_subscriber(subscriber_id: Id, ctx: Ctx) -> dict[str, Any]:
    return await subscribers.export_subscriber(ctx, subscriber_id)


@router.delete("/subscribers/{subscriber_id}", status_code=204, tags=["gdpr"], summary="Erase a subscriber")
async def erase_subscriber(subscriber_id: Id, ctx: Ctx) -> Response:
    await subscribers.erase_subscriber(ctx, subscriber_id)
    return Response(status_code=204)


# -- public: sign-up, confirmation, preferences, unsubscribe -----------------------------


@router.post("/signup", status_code=202, tags=["public"], summary="Subscribe (double opt-in)")
async def sign_up(data: SignUp, ctx: PublicCtx, client: ClientDep) -> Any:
    try:
        await consent.sign_up(ctx, data, client)
    except context.RateLimited as exc:
        return _rate_limited(exc)
    return {"status": "pending", "message": "Check your inbox: we sent a link to confirm the subscription."}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (
        "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content='width=device-width'>"
        f"<title>{html.escape(title)}</title><body style='font-family:sans-serif;max-width:40em;margin:2em auto'>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(doc, status_code=status)


@router.get("/confirm", response_class=HTMLResponse, tags=["public"], summary="The confirmation page (a button)")
async def confirm_page(token: QToken, ctx: PublicCtx) -> HTMLResponse:
    # A GET only shows the button: link scanners that open every URL in a mail must not confirm.
    consent.verify_token(ctx.settings, token, "confirm")  # type: ignore[arg-type]
    return _page(
        "Confirm your subscription",
        f"<form method=post action='confirm?token={html.escape(token)}'><button>Confirm</button></form>",
    )


@router.post("/confirm", tags=["public"], summary="Confirm the double opt-in")
async def confirm(token: QToken, ctx: PublicCtx, client: ClientDep, request: Request) -> Any:
    confirmed = await consent.confirm(ctx, token, client)
    if "json" in request.headers.get("accept", ""):
        return {"status": "confirmed", "lists": confirmed}
    return _page("Subscription confirmed", "<p>Thank you: your subscription is confirmed.</p>")


@router.get("/preferences", response_class=HTMLResponse, tags=["public"], summary="The preferences page")
async def preferences_page(token: QToken, ctx: PublicCtx) -> HTMLResponse:
    sub, offered = await consent.preferences(ctx, token)
    mine = {hex_id(s.list_id) for s in sub.subscriptions if s.status == "confirmed"}  # answered dashed
    boxes = "".join(
        f"<label><input type=checkbox name=lists value='{html.escape(lst.slug)}'"
        f"{' checked' if lst.id in mine else ''}> {html.escape(lst.name)}</label><br>"
        for lst in offered
    )
    body = (
        f"<p>{html.escape(sub.email)}</p><form method=post action='preferences?token={html.escape(token)}'>"
        f"<label>Name <input name=name value='{html.escape(sub.name)}'></label><p>{boxes}</p>"
        f"<label>Interests (comma-separated) <input name=interests value='{html.escape(', '.join(sub.interests))}'>"
        "</label><p><button>Save</button> <button name=unsubscribe_all value=1>Unsubscribe from everything</button>"
        "</p></form>"
    )
    return _page("Your newsletter preferences", body)


@router.post("/preferences", tags=["public"], summary="Save preferences (form or JSON)")
async def save_preferences(token: QToken, ctx: PublicCtx, client: ClientDep, request: Request) -> Any:
    data = await _form_or_json(request)
    if "json" not in request.headers.get("content-type", ""):
        interests = [i.strip() for v in data.get("interests", []) for i in v.split(",") if i.strip()]
        data = {
            "lists": data.get("lists", []),
            "interests": interests,
            "name": (data.get("name") or [None])[0],
            "unsubscribe_all": bool(data.get("unsubscribe_all")),
        }
    try:
        prefs = Preferences.model_validate(data)
    except ValidationError as exc:
        raise Invalid("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from exc
    sub = await consent.update_preferences(ctx, token, prefs, client)
    if "json" in request.headers.get("accept", ""):
        return sub
    return _page("Preferences saved", "<p>Your preferences are saved.</p>")


@router.get("/unsubscribe/{token}", response_class=HTMLResponse, tags=["public"], summary="Unsubscribe page")
async def unsubscribe_page(token: Token, ctx: PublicCtx) -> HTMLResponse:
    # GET never unsubscribes (RFC 8058: mail scanners open links); the page's one button does.
    consent.check_unsubscribe_token(ctx.settings, token)  # type: ignore[arg-type]
    return _page(
        "Unsubscribe",
        f"<form method=post action='{html.escape(token)}'>"
        "<input type=hidden name=List-Unsubscribe value=One-Click><button>Unsubscribe</button></form>",
    )


@router.post("/unsubscribe/{token}", tags=["public"], summary="One-click unsubscribe (RFC 8058)")
async def unsubscribe(token: Token, ctx: PublicCtx, client: ClientDep, request: Request) -> Any:
    data = await _form_or_json(request)
    one_click = data.get("List-Unsubscribe") in (["One-Click"], "One-Click")
    left = await consent.unsubscribe(ctx, token, method="one-click" if one_click else "link", client=client)
    if "json" in request.headers.get("accept", "") or (one_click and "html" not in request.headers.get("accept", "")):
        return {"status": "unsubscribed", "lists": left}
    return _page("Unsubscribed", "<p>You will not receive these mails any more.</p>")


# -- templates -------------------------------------------------------------------------


@router.post("/templates", status_code=201, response_model=TemplatePublic, tags=["templates"])
async def create_template(data: TemplateCreate, ctx: Ctx) -> TemplatePublic:
    return await templates.create_template(ctx, data)


@router.get("/templates", response_model=Page[TemplatePublic], tags=["templates"])
async def list_templates(ctx: Ctx, page: PageDep) -> Page[TemplatePublic]:
    items, total = await templates.list_templates(ctx, page)
    return make_page(items, total, page)


@router.get("/templates/{template_id}", response_model=TemplatePublic, tags=["templates"])
async def get_template(template_id: Id, ctx: Ctx) -> TemplatePublic:
    return await templates.get_template(ctx, template_id)


@router.patch("/templates/{template_id}", response_model=TemplatePublic, tags=["templates"])
async def update_template(template_id: Id, data: TemplateUpdate, ctx: Ctx) -> TemplatePublic:
    return await templates.update_template(ctx, template_id, data)


# -- campaigns -------------------------------------------------------------------------


@router.post("/campaigns", status_code=201, response_model=CampaignPublic, tags=["campaigns"])
async def create_campaign(data: CampaignCreate, ctx: Ctx) -> CampaignPublic:
    return await campaigns.create_campaign(ctx, data)


@router.get("/campaigns", response_model=Page[CampaignPublic], tags=["campaigns"])
async def list_campaigns(
    ctx: Ctx,
    page: PageDep,
    status: Annotated[str | None, Query(pattern=r"^(draft|scheduled|running|paused|finished|cancelled)$")] = None,
) -> Page[CampaignPublic]:
    items, total = await campaigns.list_campaigns(ctx, page, status=status)
    return make_page(items, total, page)


@router.get("/campaigns/{campaign_id}", response_model=CampaignPublic, tags=["campaigns"])
async def get_campaign(campaign_id: Id, ctx: Ctx) -> CampaignPublic:
    return await campaigns.get_campaign(ctx, campaign_id)


@router.post(
    "/campaigns/recipients",
    response_model=AudienceCount,
    tags=["campaigns"],
    summary="How many people a campaign with these lists, interests and segments would go to if started now",
)
async def count_audience(data: AudienceChoice, ctx: Ctx) -> AudienceCount:
    return await campaigns.count_audience(ctx, data)


@router.get(
    "/campaigns/{campaign_id}/recipients",
    response_model=CampaignRecipients,
    tags=["campaigns"],
    summary="How many people the campaign goes to (counted as its start would freeze them)",
)
async def count_recipients(campaign_id: Id, ctx: Ctx) -> CampaignRecipients:
    return await campaigns.count_recipients(ctx, campaign_id)


@router.patch("/campaigns/{campaign_id}", response_model=CampaignPublic, tags=["campaigns"])
async def update_campaign(campaign_id: Id, data: CampaignUpdate, ctx: Ctx) -> CampaignPublic:
    return await campaigns.update_campaign(ctx, campaign_id, data)


@router.post("/campaigns/{campaign_id}/schedule", response_model=CampaignPublic, tags=["campaigns"])
async def schedule_campaign(campaign_id: Id, data: Schedule, ctx: Ctx) -> CampaignPublic:
    return await campaigns.schedule_campaign(ctx, campaign_id, data.send_at)


def _action_route(action: CampaignAction) -> None:
    async def act(campaign_id: Id, ctx: Ctx) -> CampaignPublic:
        return await campaigns.campaign_action(ctx, campaign_id, action)

    act.__name__ = f"{action.value}_campaign"
    router.post(
        f"/campaigns/{{campaign_id}}/{action.value}",
        response_model=CampaignPublic,
        tags=["campaigns"],
        summary=f"{action.value.capitalize()} the campaign (409 when not allowed from its status)",
    )(act)


for _action in (
    CampaignAction.START,
    CampaignAction.PAUSE,
    CampaignAction.RESUME,
    CampaignAction.CANCEL,
    CampaignAction.UNSCHEDULE,
):
    _action_route(_action)


@router.post("/campaigns/{campaign_id}/test", response_model=list[SendTestResult], tags=["campaigns"])
async def send_test(campaign_id: Id, data: SendTest, ctx: Ctx) -> list[SendTestResult]:
    return await campaigns.send_test(ctx, campaign_id, data)


@router.get("/campaigns/{campaign_id}/deliveries", response_model=Page[DeliveryPublic], tags=["campaigns"])
async def list_deliveries(
    campaign_id: Id,
    ctx: Ctx,
    page: PageDep,
    status: Annotated[str | None, Query(pattern=r"^(pending|sending|sent|failed|skipped|cancelled)$")] = None,
) -> Page[DeliveryPublic]:
    items, total = await campaigns.list_deliveries(ctx, campaign_id, page, status=status)
    return make_page(items, total, page)


@router.get(
    "/transactional-mails",
    response_model=TransactionalMails,
    tags=["campaigns"],
    summary="Confirmation and welcome mails, counted by delivery status",
)
async def transactional_mails(ctx: Ctx) -> TransactionalMails:
    return await campaigns.transactional_mails(ctx)


@router.post("/digest", tags=["campaigns"], summary="Build the digest now (draft or started, per configuration)")
async def build_digest(ctx: Ctx) -> Any:
    campaign = await digest.build_digest(ctx)
    if campaign is None:
        return JSONResponse(status_code=200, content={"status": "nothing-new", "message": "no new items for a digest"})
    return campaign


# -- bounces ---------------------------------------------------------------------------


class WebhookUnavailable(DomainError):
    status = 503
    code = "webhook_not_configured"


class WebhookUnauthorised(DomainError):
    status = 401
    code = "bad_signature"


@router.post(
    "/bounces",
    status_code=202,
    response_model=BounceAccepted,
    tags=["bounces"],
    summary="Bounce and complaint webhook of the mail provider (Standard Webhooks signature)",
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": BounceReport.model_json_schema()}}, "required": True}
    },
)
async def report_bounce(request: Request, ctx: PublicCtx) -> BounceAccepted:
    """A bounce or complaint, signed by the provider (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).

    The signature is the authentication: a missing or wrong one, or a timestamp more than five
    minutes away, is refused (401); a message id seen before changes nothing. The answer is the
    same (202) for a known and an unknown address.
    """
    settings: Settings = ctx.settings  # type: ignore[assignment]
    if not settings.bounce_webhook_secret:
        raise WebhookUnavailable("the bounce webhook is not configured (set NEWSLETTER_BOUNCE_WEBHOOK_SECRET)")
    body = await request.body()
    try:
        Webhook(settings.bounce_webhook_secret).verify(body, dict(request.headers), json_parse=False)
    except WebhookVerificationError as exc:
        raise WebhookUnauthorised(f"webhook signature refused: {exc}") from exc
    try:
        report = BounceReport.model_validate_json(body)
    except ValidationError as exc:
        raise Invalid("the report is not valid", details=json.loads(exc.json(include_url=False))) from exc
    await bounces.report_bounce(ctx, report, message_id=request.headers["webhook-id"])
    return BounceAccepted()


@router.get("/bounces", response_model=Page[BouncePublic], tags=["bounces"])
async def list_bounces(ctx: Ctx, page: PageDep) -> Page[BouncePublic]:
    items, total = await bounces.list_bounces(ctx, page)
    return make_page(items, total, page)
