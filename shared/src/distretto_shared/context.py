"""One typed context for every route handler, event handler and periodic job.

A use case needs three things beside its arguments: who is calling (the verified
:class:`~distretto_shared.identity.Principal`), the service's database, and the
service's settings — plus, in some services, a singleton the service built at
start-up (a ranking engine, a delivery engine). :class:`Context` carries exactly
that, the same way in every service::

    Ctx = Annotated[Context[Settings], Depends(request_context)]     # api.py

    @router.get("/organisations/{organisation_id}/figures")
    async def list_figures(ctx: Ctx, organisation_id: str) -> list[YearlyFiguresPublic]:
        return await service.list_figures(ctx, organisation_id)

Event handlers get the same type, with the principal ``service:<name>`` (the
service acting as itself)::

    @consumers.handles(ContactAdded)
    async def on_contact(ctx: Context[Settings], session, event, meta): ...

and periodic jobs build it with :meth:`Context.for_service`.

Singletons: a service registers one at start-up with ``service_ctx.provide(obj)``
and a use case asks for it by type, ``ctx.get(Engine)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from fastapi import Request

from distretto_shared.db import Database
from distretto_shared.identity import Principal, Role
from distretto_shared.settings import ServiceSettings
from distretto_shared.web import Forbidden, NotFound, Unauthorized, current_principal

if TYPE_CHECKING:
    from distretto_shared.app import ServiceContext

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
T = TypeVar("T")


NotAllowed = Forbidden
"""403: the caller may know the object exists but may not do this to it."""


@dataclass(frozen=True)
class Context(Generic[SettingsT]):
    """Who calls, and the running service's database, settings and singletons."""

    principal: Principal
    db: Database
    settings: SettingsT
    service: ServiceContext

    @property
    def source(self) -> str:
        """The CloudEvents ``source`` of events this service emits (``/distretto/<name>``)."""
        return self.service.source

    @property
    def name(self) -> str:
        """The service's name."""
        return self.service.spec.name

    def get(self, cls: type[T]) -> T:
        """The service's singleton of type ``cls`` (registered with ``ServiceContext.provide``)."""
        try:
            return cast(T, self.service.singletons[cls])
        except KeyError:
            raise RuntimeError(f"{self.name} has no {cls.__name__} (not started yet, or not provided)") from None

    def find(self, cls: type[T]) -> T | None:
        """The service's singleton of type ``cls``, or ``None`` when the service runs without it."""
        return cast("T | None", self.service.singletons.get(cls))

    @classmethod
    def for_service(cls, service: ServiceContext) -> Context[Any]:
        """The context of the service acting as itself (event handlers, periodic jobs)."""
        principal = Principal(id=f"service:{service.spec.name}", role=Role.SERVICE)
        return Context(principal=principal, db=service.db, settings=service.settings, service=service)

    def as_service(self) -> Context[SettingsT]:
        """This context with the service itself as the principal (work done on the service's behalf)."""
        principal = Principal(id=f"service:{self.name}", role=Role.SERVICE)
        return Context(principal=principal, db=self.db, settings=self.settings, service=self.service)

    # -- authorisation helpers: the convention of docs/service-guide.md ------------------------

    @property
    def sees_everything(self) -> bool:
        """Staff, admin and this service acting as itself see every record (another service does not)."""
        return self.principal.is_staff or self.principal.id == f"service:{self.name}"

    def own_organisation(self) -> str | None:
        """The organisation a member principal acts for (``None`` for every other role)."""
        if self.principal.role == Role.MEMBER:
            return self.principal.organisation_id
        return None

    def acts_for(self, organisation_id: str | None) -> bool:
        """True when the caller may see and change ``organisation_id``'s private records."""
        return self.sees_everything or self.principal.acts_for(organisation_id)

    def require_staff(self, what: str) -> None:
        """403 unless the caller is staff (or the service itself): lifecycle decisions, bulk work."""
        if not self.sees_everything:
            raise NotAllowed(f"Only the foundation's staff may {what}")

    def require_member_or_staff(self, what: str) -> None:
        """403 for partners and anonymous callers: a route with no public part."""
        if not (self.sees_everything or self.own_organisation()):
            raise NotAllowed(f"Only members and the foundation's staff may {what}")

    def require_private_of(self, organisation_id: str | None, what: str) -> None:
        """403 unless the caller acts for ``organisation_id`` (its existence is public, this is not)."""
        if not self.acts_for(organisation_id):
            raise NotAllowed(f"Only the organisation itself and the foundation's staff may {what}")

    def hide_unless_party(self, *organisation_ids: str | None, what: str = "object") -> None:
        """404 unless the caller acts for one of ``organisation_ids`` (a private object: its very
        existence is not told to others)."""
        if not any(self.acts_for(o) for o in organisation_ids):
            raise NotFound(f"No {what} with that id")


def _context_of(request: Request) -> Context[Any]:
    principal = current_principal(request)
    service: ServiceContext = request.app.state.ctx
    return Context(principal=principal, db=service.db, settings=service.settings, service=service)


# The dependencies are ``async def`` although they never wait: FastAPI runs a plain ``def``
# dependency in its thread pool, a thread hand-off on every request for a few attribute reads.


async def public_request_context(request: Request) -> Context[Any]:
    """FastAPI dependency of a public route: the context of this request, anonymous callers included
    (the credential itself is still required: the gateway mints one for anonymous callers)."""
    return _context_of(request)


async def request_context(request: Request) -> Context[Any]:
    """FastAPI dependency of every other route: the context of this request; 401 for anonymous callers."""
    ctx = _context_of(request)
    if ctx.principal.is_anonymous:
        raise Unauthorized("Authentication required: this route is not public")
    return ctx


async def staff_request_context(request: Request) -> Context[Any]:
    """FastAPI dependency of a service whose routes are the foundation's work (the newsletter):
    401 for anonymous callers, 403 for everyone but staff."""
    ctx = await request_context(request)
    ctx.require_staff("use this service")
    return ctx
