"""Log in, log out, choose the language."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response

from console import client
from console.web import (
    LANG_COOKIE,
    SESSION_COOKIE,
    end_session,
    gateway_of,
    locale_of,
    optional_user,
    page_router,
    redirect,
    render,
    secure_request,
    settings_of,
    start_session,
)

router = page_router()


def _safe_next(target: str | None) -> str:
    """Only a path of this site (no ``//host``, no scheme): the login form is no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/login")
async def login_page(request: Request, next: str = "/", expired: str | None = None) -> Response:
    if await optional_user(request):
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", {"next": _safe_next(next), "expired": bool(expired)})


@router.post("/login")
async def login(
    request: Request,
    email: Annotated[str, Form(max_length=254)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    _ = locale_of(request).gettext
    gateway = gateway_of(request)
    context = {"next": _safe_next(next), "email": email}
    try:
        issued = await gateway.post("/auth/token", json={"email": email.strip(), "password": password})
        me = await gateway.get("/auth/me", issued["access_token"])
    except (client.SessionExpired, client.Invalid) as exc:
        if exc.status == 429:
            context["error"] = _("Too many attempts. Wait a minute and try again.")
            return render(request, "login.html", context, status=429)
        context["error"] = _("Wrong email or password.")
        return render(request, "login.html", context, status=401)
    response = RedirectResponse(_safe_next(next), status_code=303)
    await start_session(request, response, issued["access_token"], me, int(issued.get("expires_in", 3600)))
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    await end_session(request)
    response = redirect(request, "/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/language/{code}")
async def language(request: Request, code: str, next: str = "/") -> Response:
    response = RedirectResponse(_safe_next(next), status_code=303)
    if code in settings_of(request).languages:
        response.set_cookie(
            LANG_COOKIE, code, max_age=365 * 86400, samesite="lax", secure=secure_request(request), path="/"
        )
    return response
