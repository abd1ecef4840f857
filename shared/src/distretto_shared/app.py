"""Assembly: turns a service's routes, consumers and migrations into a running app.

A service's ``app.py`` is a few lines::

    SPEC = ServiceSpec(name="membership", settings_cls=Settings, routers=[api.router],
                       consumers=[consumers.consumers], migrations=MIGRATIONS, topics=[...])
    app = create_app(SPEC)            # for uvicorn / tests
    main = cli(SPEC)                  # python -m membership

What it runs: FastAPI (routes, error handlers, request metrics, ``/metrics``,
``/healthz``, ``/readyz``) + Alembic migrations at start-up + a FastStream
KafkaBroker with the service's consumers + the outbox relay + periodic jobs.
The broker connects in the background: a service whose broker is away still
starts, answers, and keeps writing to its outbox; ``/readyz`` tells.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from distretto_shared import metrics, tracing
from distretto_shared.consumer import ConsumerRunner, Consumers
from distretto_shared.context import Context
from distretto_shared.conventions import document_errors, error_response, install_error_handlers
from distretto_shared.db import Database
from distretto_shared.identity import TokenSigner, Verifier, issuer_of, key_id, parse_trusted_keys, public_pem
from distretto_shared.leader import JobLeader
from distretto_shared.logging import configure_logging, get_logger
from distretto_shared.migrations import upgrade_async
from distretto_shared.outbox import OutboxRelay
from distretto_shared.secrets import fill_for_development, secret_problems
from distretto_shared.settings import ServiceSettings, default_data_dir
from distretto_shared.topics import TopicSpec, delete_retired_topics, ensure_topics, topic_name
from distretto_shared.web import (
    BodyLimitMiddleware,
    IdentityMiddleware,
    RequestContextMiddleware,
    metrics_allowed,
)

log = get_logger(__name__)


@dataclass
class PeriodicJob:
    """A coroutine run every ``interval`` seconds (e.g. the lapse check, the deadline scan)."""

    name: str
    interval: str | Callable[[Any], float] | float
    """Seconds; or the name of the service's setting that holds them (``"lapse_check_interval"``),
    read from the settings each round; or a function of the settings."""
    run: Callable[[Context[Any]], Awaitable[Any]]
    """Receives the service's :class:`Context` acting as itself (principal ``service:<name>``)."""

    def seconds(self, settings: Any) -> float:
        """The interval for ``settings``."""
        if isinstance(self.interval, str):
            return float(getattr(settings, self.interval))
        return float(self.interval(settings) if callable(self.interval) else self.interval)


@dataclass
class ServiceSpec:
    """What a service is made of."""

    name: str
    settings_cls: type[ServiceSettings]
    routers: list[APIRouter]
    migrations: Path
    consumers: list[Consumers] = field(default_factory=list)
    topics: list[TopicSpec] = field(default_factory=list)
    periodic: list[PeriodicJob] = field(default_factory=list)
    on_startup: list[Callable[[ServiceContext], Awaitable[None]]] = field(default_factory=list)
    on_shutdown: list[Callable[[ServiceContext], Awaitable[None]]] = field(default_factory=list)
    title: str = ""
    description: str = ""
    version: str = "0.1.0"
    published_events: list[type] = field(default_factory=list)
    """Event classes the service publishes (documented in its AsyncAPI document)."""
    retired_topics: list[str] = field(default_factory=list)
    """Topics this service once produced and must not leave on disk (deleted, with their dead
    letters, when the service connects to the broker)."""
    personal_tables: list[str] = field(default_factory=list)
    """Tables holding personal data: after an erasure (``db.request_scrub``) they are scrubbed on
    disk (SQLite: WAL checkpoint, secure_delete is always on; PostgreSQL: ``VACUUM FULL``)."""
    reads_dead_letters: bool = False
    """The service reads every dead-letter topic (the console's operations page): its Kafka user gets
    READ on them (:func:`distretto_shared.kafka_security.service_acls`)."""
    manages_kafka_access: bool = False
    """The service creates and removes Kafka users and ACLs (the partners service): its Kafka user
    gets ALTER on the cluster."""
    authenticate: bool = True
    """Every request needs a credential verified here (``X-Distretto-Identity``). Only the gateway,
    which authenticates people and partner systems itself, turns this off."""


class ConfigurationError(RuntimeError):
    """A setting is missing or unsafe: the process refuses to start and says which."""


class ServiceContext:
    """Everything a running service holds; ``app.state.ctx``."""

    def __init__(self, spec: ServiceSpec, settings: ServiceSettings) -> None:
        self.spec = spec
        self.settings = settings
        self.source = f"/distretto/{spec.name}"
        self.db = Database(settings.resolved_database_url(), schema=settings.database_schema)
        self.broker = build_broker(spec, settings)
        self.singletons: dict[type, Any] = {}
        """Service singletons by type (a ranking engine, a delivery engine): ``provide`` / ``Context.get``."""
        self.stopping = asyncio.Event()
        """Set as soon as the server is asked to stop, before it waits for the requests still open: a
        response that never ends by itself (an event stream) ends when it sees it."""
        self.on_stop: list[Callable[[], None]] = [self.stopping.set]
        """Called (on the event loop) when the server is asked to stop, with :attr:`stopping`."""
        self.runners = [
            ConsumerRunner(
                c,
                db=self.db,
                context=Context.for_service(self),
                service=spec.name,
                bootstrap_servers=settings.kafka_bootstrap_servers,
                credentials=settings.kafka_credentials(),
                max_attempts=settings.consumer_max_attempts,
                backoff_initial=settings.consumer_backoff_initial,
                backoff_max=settings.consumer_backoff_max,
            )
            for c in spec.consumers
        ]
        for runner in self.runners:
            runner.attach(self.broker)
        self.relay = OutboxRelay(
            self.db,
            service=spec.name,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            credentials=settings.kafka_credentials(),
            batch_size=settings.relay_batch_size,
            poll_interval=settings.relay_poll_interval,
            retention=settings.relay_retention_seconds,
            lock_dir=default_data_dir() / "locks",
            backoff_max=settings.kafka_retry_backoff_max,
            standby_interval=settings.relay_standby_interval,
            # Topics are created when the broker first answers (_connect_broker): nothing is sent before.
            wait_for_topics=settings.create_topics and bool(spec.topics),
        )
        self.broker_connected = False
        self.broker_error: str | None = None
        self.tasks: list[asyncio.Task[Any]] = []
        self.leaders: dict[str, JobLeader] = {}
        """Leadership of each periodic job (``distretto_shared.leader``), by job name."""
        self.identity: TokenSigner | None = signer_for(spec.name, settings)
        """Mints this service's credentials for calls to other services (``None`` without a signing key)."""

    def service_headers(self, audience: str) -> dict[str, str]:
        """Headers that let this service call ``audience`` as ``service:<name>``."""
        if self.identity is None:
            raise ConfigurationError(
                f"{self.spec.name} has no signing key: set {self.spec.name.upper()}_SIGNING_KEY to call {audience}"
            )
        return self.identity.service_headers(audience)

    def provide(self, singleton: Any, as_type: type | None = None) -> None:
        """Make ``singleton`` reachable from every context as ``ctx.get(type)``."""
        self.singletons[as_type or type(singleton)] = singleton

    def context(self) -> Context[Any]:
        """The context of the service acting as itself (periodic jobs, start-up hooks)."""
        return Context.for_service(self)


def signer_for(name: str, settings: ServiceSettings) -> TokenSigner | None:
    """The process's signer from ``<PREFIX>_SIGNING_KEY`` (``None`` when unset)."""
    if not settings.signing_key:
        return None
    try:
        pem = settings.signing_key.replace("\\n", "\n")
        return TokenSigner.from_pem(issuer_of(name), key_id(public_pem(pem)), pem)
    except ValueError as exc:
        raise ConfigurationError(f"{name.upper()}_SIGNING_KEY is not a usable Ed25519 private key: {exc}") from None


def verifier_for(name: str, settings: ServiceSettings) -> Verifier:
    """The verifier of credentials addressed to ``name``; refuses to start without trusted keys."""
    if not settings.trusted_keys.strip():
        raise ConfigurationError(
            f"{name} refuses to start: DISTRETTO_TRUSTED_KEYS is not set, so it could verify no caller "
            "(`make up` generates it; see the README's Security section)"
        )
    try:
        keys = parse_trusted_keys(settings.trusted_keys)
    except (ValueError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{name} refuses to start: DISTRETTO_TRUSTED_KEYS is not usable: {exc}") from None
    if not any(k.issuer == "gateway" for k in keys.values()):
        raise ConfigurationError(f"{name} refuses to start: DISTRETTO_TRUSTED_KEYS has no key of the gateway")
    return Verifier(audience=name, keys=keys)


def refuse_unsafe_secrets(name: str, settings: ServiceSettings) -> None:
    """Stop the start when a secret is missing or weak (development mode: fill in and warn instead)."""
    problems = secret_problems(settings)
    if not problems:
        return
    if not settings.dev_mode:
        raise ConfigurationError(
            f"{name} refuses to start: " + "; ".join(problems) + " (`make up` generates these; see the README's "
            "Security section; DISTRETTO_DEV_MODE=true accepts them on a development machine)"
        )
    filled = fill_for_development(settings)
    log.warning("development mode: unsafe secrets accepted", service=name, problems=problems, random=filled)


def build_broker(spec: ServiceSpec, settings: ServiceSettings) -> KafkaBroker:
    """A FastStream Kafka broker with the Prometheus middleware and AsyncAPI publishers."""
    broker = KafkaBroker(
        # A list: FastStream takes one string for one address, and a cluster has several.
        [s.strip() for s in settings.kafka_bootstrap_servers.split(",") if s.strip()],
        middlewares=[KafkaPrometheusMiddleware(registry=REGISTRY, app_name=spec.name)],
        client_id=f"distretto-{spec.name}",
        security=settings.kafka_credentials().faststream(),
        request_timeout_ms=15000,
        logger=None,
    )
    for cls in spec.published_events:
        broker.publisher(
            topic_name(cls.topic),  # type: ignore[attr-defined]
            title=f"{cls.topic}:{cls.__name__}",  # type: ignore[attr-defined]
            description=f"CloudEvents type {cls.event_type}",  # type: ignore[attr-defined]
            schema=cls,
        )
    return broker


async def _connect_broker(ctx: ServiceContext) -> None:
    """Create topics and start the consumers, retrying until the broker answers."""
    delay = 0.5
    while True:
        try:
            if ctx.settings.create_topics and ctx.spec.topics:
                await ensure_topics(
                    ctx.settings.kafka_bootstrap_servers, ctx.spec.topics, ctx.settings.kafka_credentials()
                )
                ctx.relay.topics_ready.set()
                ctx.relay.notify()
            if ctx.settings.create_topics and ctx.spec.retired_topics:
                await delete_retired_topics(
                    ctx.settings.kafka_bootstrap_servers, ctx.spec.retired_topics, ctx.settings.kafka_credentials()
                )
            await ctx.broker.start()
            ctx.broker_connected = True
            ctx.broker_error = None
            log.info("broker connected", bootstrap=ctx.settings.kafka_bootstrap_servers)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ctx.broker_error = repr(exc)
            log.warning("broker not reachable; retrying", error=repr(exc), retry_in=delay)
            with contextlib.suppress(Exception):
                await ctx.broker.stop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, ctx.settings.kafka_retry_backoff_max)


async def _scrubber(ctx: ServiceContext) -> None:
    """After each erasure commit (and once at start-up, in case a crash came in between), scrub."""
    delay = ctx.settings.erasure_scrub_delay
    ctx.db.scrub_due.set()
    while True:
        await ctx.db.scrub_due.wait()
        await asyncio.sleep(delay)  # erasures arriving together share one scrub
        ctx.db.scrub_due.clear()
        try:
            await ctx.db.scrub(ctx.spec.personal_tables)
            log.info("erased data scrubbed on disk", tables=len(ctx.spec.personal_tables))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # the service is stopping: whatever the interrupted scrub raised, stop too
                raise asyncio.CancelledError from exc
            log.exception("scrub failed; retrying", error=repr(exc))
            ctx.db.scrub_due.set()
            await asyncio.sleep(min(60.0, delay * 10 + 1))


async def _periodic(ctx: ServiceContext, job: PeriodicJob) -> None:
    """Every interval, run ``job`` if this instance leads it (one instance among those sharing the database)."""
    leader = ctx.leaders[job.name] = JobLeader(ctx.db, ctx.spec.name, job.name)
    try:
        while True:
            await asyncio.sleep(job.seconds(ctx.settings))
            try:
                if await leader.lead():
                    await job.run(ctx.context())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("periodic job failed", job=job.name, error=repr(exc))
    finally:
        await asyncio.shield(leader.release())


def create_app(spec: ServiceSpec, settings: ServiceSettings | None = None) -> FastAPI:
    """The service's ASGI app, with everything started in its lifespan."""
    settings = settings or spec.settings_cls()
    settings.service_name = spec.name
    refuse_unsafe_secrets(spec.name, settings)
    verifier = verifier_for(spec.name, settings) if spec.authenticate else None
    signer_for(spec.name, settings)  # a broken signing key stops the start here, not at the first call

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(spec.name, settings.log_level, settings.log_json, settings.log_repeat_interval)
        tracing.configure(spec.name)  # OTLP export only when an endpoint is configured
        ctx = ServiceContext(spec, settings)
        app.state.ctx = ctx
        await upgrade_async(spec.migrations, ctx.db.url, settings.database_schema, settings)
        await ctx.relay.start()
        ctx.tasks.append(asyncio.create_task(_connect_broker(ctx), name="broker-connect"))
        for hook in spec.on_startup:
            await hook(ctx)
        for job in spec.periodic:
            ctx.tasks.append(asyncio.create_task(_periodic(ctx, job), name=job.name))
        if spec.personal_tables:
            ctx.tasks.append(asyncio.create_task(_scrubber(ctx), name="erasure-scrub"))
        metrics.SERVICE_READY.labels(spec.name).set(0)

        async def ready_gauge() -> None:
            await readiness(ctx)

        unhook = metrics.on_scrape(ready_gauge, min_interval=1.0)
        if getattr(app.state, "freeze_after_start", False):
            freeze_long_lived_objects()
        log.info("service started", database=_redact(ctx.db.url))
        try:
            yield
        finally:
            unhook()
            # A stopped service exports no readiness: where several apps share one process (tests,
            # the embedded stack) a stale 0 would otherwise be scraped from a live neighbour.
            with contextlib.suppress(KeyError):
                metrics.SERVICE_READY.remove(spec.name)
            for hook in spec.on_shutdown:
                with contextlib.suppress(Exception):
                    await hook(ctx)
            for task in ctx.tasks:
                task.cancel()
            for task in ctx.tasks:
                with contextlib.suppress(BaseException):
                    await task
            with contextlib.suppress(Exception):
                await ctx.broker.stop()
            for runner in ctx.runners:
                await runner.close()
            await ctx.relay.stop()
            await ctx.db.dispose()
            log.info("service stopped")

    app = FastAPI(
        title=spec.title or f"Distretto {spec.name}",
        description=spec.description,
        version=spec.version,
        lifespan=lifespan,
    )
    app.state.service_name = spec.name
    # Added last = runs first: ids and metrics, then the body limit, then the credential.
    if verifier is not None:
        app.add_middleware(IdentityMiddleware, verifier=verifier)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, service=spec.name)
    install_error_handlers(app)
    for router in spec.routers:
        app.include_router(router)

    @app.get("/healthz", tags=["operations"], summary="Process alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": spec.name}

    @app.get("/readyz", tags=["operations"], summary="Database, broker and relay ready")
    async def readyz(request: Request) -> JSONResponse:
        ready, checks = await readiness(request.app.state.ctx)
        return JSONResponse(
            status_code=200 if ready else 503,
            content={"status": "ready" if ready else "not ready", "service": spec.name, "checks": checks},
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        if spec.authenticate and not metrics_allowed(request, settings.metrics_allowed_addresses):
            return error_response(
                403, "Metrics are for operators: scrape from an allowed address or call as an operator"
            )
        await metrics.refresh()
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    document_errors(app, authenticated=spec.authenticate, exempt=IdentityMiddleware.EXEMPT)
    return app


def freeze_long_lived_objects() -> None:
    """Keep what start-up built (modules, models, metadata, the app, a ranking model) out of the
    garbage collector's scans: ``gc.freeze`` after a collection.

    The collector's scans of the older generations visit every object the process holds; a
    service's start-up leaves a few hundred thousand of them, alive for as long as the process, and
    the scans they cost were a fifth of a small request's CPU (bench/services). Frozen objects are
    still freed when nothing refers to them; only a cycle among them is never collected.
    """
    gc.collect()
    gc.freeze()


async def readiness(ctx: ServiceContext) -> tuple[bool, dict[str, Any]]:
    """Database, broker and relay checks (``/readyz``; ``distretto_service_ready`` at each scrape)."""
    checks: dict[str, Any] = {}
    try:
        await asyncio.wait_for(ctx.db.ping(), timeout=3)
        checks["database"] = {"ok": True}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": repr(exc)}
    broker_ok = False
    if ctx.broker_connected:
        with contextlib.suppress(Exception):
            broker_ok = await ctx.broker.ping(timeout=3)
    checks["broker"] = {"ok": broker_ok} | ({} if broker_ok else {"error": ctx.broker_error or "not connected"})
    relay_ok = ctx.relay.running and time.monotonic() - ctx.relay.last_loop < max(30, 10 * ctx.relay.poll_interval)
    checks["relay"] = {"ok": relay_ok, "active": ctx.relay.active} | (
        {"error": ctx.relay.last_error} if ctx.relay.last_error else {}
    )
    ready = all(c["ok"] for c in checks.values())
    metrics.SERVICE_READY.labels(ctx.spec.name).set(1 if ready else 0)
    return ready, checks


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def asyncapi_document(spec: ServiceSpec) -> dict[str, Any]:
    """The service's AsyncAPI 3 document, generated by FastStream."""
    from faststream.specification import AsyncAPI

    settings = spec.settings_cls()
    settings.service_name = spec.name
    # The document describes the channels, not this machine's credentials: the same wherever it is made.
    settings.kafka_security_protocol = settings.kafka_sasl_username = settings.kafka_sasl_password = ""
    broker = build_broker(spec, settings)
    for consumers in spec.consumers:
        ConsumerRunner(
            consumers,
            db=None,
            service=spec.name,  # type: ignore[arg-type]
            bootstrap_servers=settings.kafka_bootstrap_servers,
        ).attach(broker)
    doc = AsyncAPI(broker, title=f"Distretto {spec.name}", version=spec.version, schema_version="3.0.0")
    return json.loads(doc.to_specification().to_json())


@dataclass
class Serve:
    """How ``serve`` runs a service whose ASGI app is not the backbone's plain one (the console, the gateway)."""

    create: Callable[[Any], Any]
    """The app for the settings (raises :class:`ConfigurationError` for bad ones)."""
    uvicorn_options: dict[str, Any] = field(default_factory=dict)
    """Merged into ``uvicorn.run``'s (``proxy_headers``, ``loop``, ``http`` …)."""
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    """Adds options of its own to ``serve``."""
    run: Callable[[Any, Any, argparse.Namespace, dict[str, Any]], bool] | None = None
    """Given (app, settings, the parsed arguments, uvicorn's options with host and port), runs the
    server itself and returns True, or returns False for the default ``uvicorn.run(app, …)``."""


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server that tells the service when it is asked to stop (SIGTERM, Ctrl-C), before it
        waits up to ``http_shutdown_grace`` for the requests still open: ``ServiceContext.on_stop``."""

        async def startup(self, sockets: Any = None) -> None:
            self.stop_loop = asyncio.get_running_loop()
            await super().startup(sockets)

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            ctx = getattr(getattr(self.config.app, "state", None), "ctx", None)
            loop = getattr(self, "stop_loop", None)
            if ctx is not None and loop is not None:
                for callback in ctx.on_stop:
                    loop.call_soon_threadsafe(callback)  # a signal handler: hand over to the loop

    return Server


def cli(spec: ServiceSpec, serve: Serve | None = None) -> Callable[[], None]:
    """The service's command line: ``serve`` (default), ``migrate``, ``asyncapi``."""

    def main() -> None:
        parser = argparse.ArgumentParser(prog=spec.name, description=spec.description or spec.name)
        sub = parser.add_subparsers(dest="command")
        serve_parser = sub.add_parser("serve", help=f"run the {spec.name} service")
        serve_parser.add_argument("--host")
        serve_parser.add_argument("--port", type=int)
        if serve is not None and serve.arguments is not None:
            serve.arguments(serve_parser)
        sub.add_parser("migrate", help="apply database migrations and exit")
        sub.add_parser("asyncapi", help="print the AsyncAPI 3 document")
        sub.add_parser(
            "kafka-acls", help="print the Kafka ACLs this service's user needs (JSON), derived from its spec"
        )
        args = parser.parse_args()
        settings = spec.settings_cls()
        settings.service_name = spec.name
        if args.command in (None, "serve"):
            try:
                app = serve.create(settings) if serve is not None else create_app(spec, settings)
            except ConfigurationError as exc:
                print(f"{spec.name}: {exc}", file=sys.stderr)
                raise SystemExit(2) from None
        if args.command == "migrate":
            configure_logging(spec.name, settings.log_level, settings.log_json, settings.log_repeat_interval)
            asyncio.run(
                upgrade_async(spec.migrations, settings.resolved_database_url(), settings.database_schema, settings)
            )
            return
        if args.command == "kafka-acls":
            from distretto_shared.kafka_security import service_acls

            print(json.dumps([dataclasses.asdict(a) for a in service_acls(spec)]))
            return
        if args.command == "asyncapi":
            print(json.dumps(asyncapi_document(spec), indent=2, sort_keys=True))
            return
        import uvicorn

        options: dict[str, Any] = {
            "host": getattr(args, "host", None) or settings.http_host,
            "port": getattr(args, "port", None) or settings.http_port,
            "log_level": "warning",
            "access_log": False,
            # log_config=None: uvicorn's records go through our JSON formatter, not its own handlers.
            "log_config": None,
            "timeout_graceful_shutdown": settings.http_shutdown_grace,
            **(serve.uvicorn_options if serve is not None else {}),
        }
        configure_logging(spec.name, settings.log_level, settings.log_json, settings.log_repeat_interval)
        if serve is not None and serve.run is not None and serve.run(app, settings, args, options):
            return
        with contextlib.suppress(AttributeError):  # a process of its own (tests run many apps in one: not there)
            app.state.freeze_after_start = True
        _server_class()(uvicorn.Config(app, **options)).run()

    return main
