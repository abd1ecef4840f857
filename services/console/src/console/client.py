"""The console's only way to the platform: the gateway's public HTTP API, with the user's token.

Answers become exceptions the pages understand: 401 ends the session (log in again),
403 and 404 become their pages, 502/503/504 or no answer a "service down" panel
(the rest of the page keeps working), 409/422 the message next to the form's fields.
"""

from __future__ import annotations

from typing import Any

import httpx


class GatewayError(Exception):
    """An answer the page cannot use as it is."""

    def __init__(self, status: int, body: Any, service: str = "") -> None:
        super().__init__(f"{status} from {service or 'the gateway'}")
        self.status = status
        self.body = body
        self.service = service

    @property
    def message(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("message") or self.body.get("error") or "")
        return str(self.body or "")[:300]


class SessionExpired(GatewayError):
    """401: the token is no longer accepted."""


class Forbidden(GatewayError):
    """403: the service says this user may not see or do it."""


class NotFound(GatewayError):
    """404."""


class Invalid(GatewayError):
    """400/409/413/422: the service refused the input (the message goes next to the fields)."""


class ServiceDown(GatewayError):
    """502/503/504 or no answer at all: show the panel, keep the rest of the page."""


def _service_of(path: str) -> str:
    parts = path.split("/")
    return parts[2] if len(parts) > 2 and parts[1] == "api" else "gateway"


class Gateway:
    """A keep-alive HTTP client to the gateway."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=3.0),
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20, keepalive_expiry=4.0),
            follow_redirects=False,
            trust_env=False,
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        token: str | None = None,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        language: str | None = None,
    ) -> httpx.Response:
        """The raw answer; :class:`ServiceDown` when there is none."""
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        if language:
            sent["Accept-Language"] = language
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            return await self.client.request(method, path, params=clean, json=json, content=content, headers=sent)
        except httpx.HTTPError as exc:
            raise ServiceDown(503, {"message": str(exc) or type(exc).__name__}, _service_of(path)) from exc

    async def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        """The JSON body of a 2xx answer (``None`` for 204); the matching exception otherwise."""
        response = await self.request(method, path, token, **kwargs)
        return self.result(response, path)

    @staticmethod
    def result(response: httpx.Response, path: str) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            if status == 204 or not response.content:
                return None
            if "json" in response.headers.get("content-type", ""):
                return response.json()
            return response.text
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        service = _service_of(path)
        if status == 401:
            raise SessionExpired(status, body, service)
        if status == 403:
            raise Forbidden(status, body, service)
        if status == 404:
            raise NotFound(status, body, service)
        if status in (502, 503, 504):
            raise ServiceDown(status, body, service)
        if 400 <= status < 500:
            raise Invalid(status, body, service)
        raise ServiceDown(status, body, service)

    async def get(self, path: str, token: str | None = None, **kwargs: Any) -> Any:
        return await self.call("GET", path, token, **kwargs)

    async def post(self, path: str, token: str | None = None, **kwargs: Any) -> Any:
        return await self.call("POST", path, token, **kwargs)
