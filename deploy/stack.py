"""`make up` / `make down` / `make status`: the whole platform on one machine, embedded defaults.

up:    Kafka (KRaft, from the Maven Central jars) → the mail catcher → the four services →
       the gateway → the console; waits until each answers /readyz; loads the demo data through the
       gateway; prints where to look.
down:  stops every process it started (SIGTERM, then SIGKILL), Kafka last.

secrets: writes .env for docker-compose.yml from the same secrets.

State lives under ./var: SQLite files in var/data, logs in var/log, pidfiles in var/run, and
this installation's secrets in var/secrets (owner-only files, made on the first run, reused).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from distretto_shared import monitoring as mon
from distretto_shared.identity import Keyring
from distretto_shared.kafka_security import ADMIN_USER, KafkaCredentials

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kafka_access

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var"
RUN = VAR / "run"
LOG = VAR / "log"
DATA = VAR / "data"
KAFKA_PORT = int(os.environ.get("DISTRETTO_KAFKA_PORT", "9092"))
KAFKA_CONTROLLER_PORT = os.environ.get("DISTRETTO_KAFKA_CONTROLLER_PORT")
BOOTSTRAP = f"127.0.0.1:{KAFKA_PORT}"
ADMIN_EMAIL = os.environ.get("GATEWAY_ADMIN_EMAIL", "admin@distretto.example")
GATEWAY = "http://127.0.0.1:8080"


@dataclass
class Proc:
    """A process of the platform."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/readyz"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pidfile(self) -> Path:
        return RUN / f"{self.name}.pid"


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


SECRETS = VAR / "secrets"
KEYRING_FILE = SECRETS / "identity-keys.json"
"""Each process's Ed25519 signing key, generated once per installation (owner-only file)."""
KEYED = ("gateway", "membership", "projects", "newsletter", "matchmaking", "console", "partners")


SECRETS_FILE = SECRETS / "secrets.json"
"""This installation's other secrets (owner-only file): made on the first `make up`, reused after."""


def _webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


GENERATED: dict[str, Callable[[], str]] = {
    "GATEWAY_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(15),
    "NEWSLETTER_SECRET_KEY": lambda: secrets.token_urlsafe(32),
    "NEWSLETTER_BOUNCE_WEBHOOK_SECRET": _webhook_secret,
    "PARTNERS_SECRET_KEY": lambda: secrets.token_urlsafe(32),
    # docker-compose.yml only (`make secrets`): the PostgreSQL and Grafana passwords
    "POSTGRES_PASSWORD": lambda: secrets.token_urlsafe(24),
    "GRAFANA_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(15),
    # Kafka: the broker's super user, and one SCRAM user per service (deploy/kafka_access.py)
    "KAFKA_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(32),
    **{kafka_access.password_variable(s): (lambda: secrets.token_urlsafe(32)) for s in kafka_access.SERVICES},
}
"""Every secret `make up` needs besides the signing keys, and how to make one."""


def installation_secrets() -> dict[str, str]:
    """The secrets of this installation: read from var/secrets/secrets.json, the missing ones generated
    and saved (0600). A variable set in the environment wins (and is not saved)."""
    SECRETS.mkdir(parents=True, exist_ok=True)
    os.chmod(SECRETS, 0o700)
    stored: dict[str, str] = json.loads(SECRETS_FILE.read_text()) if SECRETS_FILE.exists() else {}
    missing = [name for name in GENERATED if not stored.get(name)]
    if missing:
        stored.update({name: GENERATED[name]() for name in missing})
        tmp = SECRETS_FILE.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(stored, out, indent=2)
        os.replace(tmp, SECRETS_FILE)
    os.chmod(SECRETS_FILE, 0o600)
    return {name: os.environ.get(name) or stored[name] for name in GENERATED}


def keyring() -> Keyring:
    """This installation's signing keys: made on the first `make up`, reused after."""
    SECRETS.mkdir(parents=True, exist_ok=True)
    os.chmod(SECRETS, 0o700)
    return Keyring.load_or_create(KEYRING_FILE, KEYED)


def processes() -> list[Proc]:
    """Every process `make up` starts, in start order."""
    common = {"KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "DISTRETTO_DATA_DIR": str(DATA)}
    public = GATEWAY
    secret = installation_secrets()
    procs = [
        Proc(
            "catcher",
            _py(
                "-m",
                "distretto_dev.catcher",
                "--smtp-port",
                "1025",
                "--http-port",
                "8025",
                "--folder",
                str(VAR / "mail"),
            ),
            8025,
            common,
            ready_path="/",
        ),
        Proc(
            "membership",
            _py("-m", "membership", "serve", "--port", "8001"),
            8001,
            common,
        ),
        Proc(
            "projects",
            _py("-m", "projects", "serve", "--port", "8002"),
            8002,
            common,
        ),
        Proc(
            "newsletter",
            _py("-m", "newsletter", "serve", "--port", "8003"),
            8003,
            {
                **common,
                "NEWSLETTER_LINK_BASE_URL": public + "/api/newsletter",
                "NEWSLETTER_SMTP_SERVERS": "127.0.0.1:1025",
                "NEWSLETTER_MEMBERSHIP_URL": "http://127.0.0.1:8001",
                "NEWSLETTER_SECRET_KEY": secret["NEWSLETTER_SECRET_KEY"],
                "NEWSLETTER_BOUNCE_WEBHOOK_SECRET": secret["NEWSLETTER_BOUNCE_WEBHOOK_SECRET"],
            },
        ),
        Proc(
            "matchmaking",
            _py("-m", "matchmaking", "serve", "--port", "8004"),
            8004,
            common,
        ),
        Proc(
            "partners",
            _py("-m", "partners", "serve", "--port", "8006"),
            8006,
            # Partners' notices go through the platform's SMTP relay (the newsletter's).
            {
                **common,
                "PARTNERS_NOTICE_SMTP_SERVER": "127.0.0.1:1025",
                "PARTNERS_SECRET_KEY": secret["PARTNERS_SECRET_KEY"],  # seals the webhook secrets at rest
            },
        ),
        Proc(
            "gateway",
            _py("-m", "gateway", "serve", "--port", "8080"),
            8080,
            {
                **common,
                "GATEWAY_ADMIN_EMAIL": ADMIN_EMAIL,
                "GATEWAY_ADMIN_PASSWORD": secret["GATEWAY_ADMIN_PASSWORD"],
                # The demo loaders make a thousand calls as one admin: room for that burst.
                "GATEWAY_RATE_LIMIT_PER_MINUTE": "12000",
                "GATEWAY_RATE_LIMIT_BURST": "1000",
                "GATEWAY_MEMBERSHIP_URL": "http://127.0.0.1:8001",
                "GATEWAY_PROJECTS_URL": "http://127.0.0.1:8002",
                "GATEWAY_NEWSLETTER_URL": "http://127.0.0.1:8003",
                "GATEWAY_MATCHMAKING_URL": "http://127.0.0.1:8004",
                "GATEWAY_CONSOLE_URL": "http://127.0.0.1:8005",
                # The console's pages and files come from one browser address, unauthenticated to the gateway.
                "GATEWAY_ANONYMOUS_RATE_LIMIT_PER_MINUTE": "1200",
                "GATEWAY_ANONYMOUS_RATE_LIMIT_BURST": "200",
                "GATEWAY_PARTNERS_URL": "http://127.0.0.1:8006",
            },
        ),
        Proc(
            "console",
            _py("-m", "console", "serve", "--port", "8005"),
            8005,
            {**common, "CONSOLE_GATEWAY_URL": GATEWAY},
        ),
    ]
    keys = keyring()
    for proc in procs:
        if proc.name in KEYED:
            proc.env = {**proc.env, **keys.env(proc.name)}
        if proc.name in kafka_access.SERVICES:
            password = secret[kafka_access.password_variable(proc.name)]
            proc.env = {**proc.env, **kafka_access.service_env(proc.name, password)}
    return procs + monitoring_processes()


MONITORING = VAR / "monitoring"


def monitoring_processes() -> list[Proc]:
    """Prometheus and Alertmanager (Debian's packages) and the platform's alert receiver, on loopback."""
    return [
        Proc(
            "alerts",
            _py(
                "-m",
                "distretto_dev.alert_receiver",
                "--port",
                str(mon.RECEIVER_PORT),
                "--file",
                str(VAR / "alerts" / "alerts.jsonl"),
            ),
            mon.RECEIVER_PORT,
            ready_path="/healthz",
        ),
        Proc(
            "alertmanager",
            [
                mon.ALERTMANAGER_BIN,
                f"--config.file={MONITORING / 'alertmanager.yml'}",
                f"--storage.path={VAR / 'alertmanager'}",
                f"--web.listen-address=127.0.0.1:{mon.ALERTMANAGER_PORT}",
                "--cluster.listen-address=",  # one instance, no gossip port
                "--log.format=json",
            ],
            mon.ALERTMANAGER_PORT,
            ready_path="/-/ready",
        ),
        Proc(
            "prometheus",
            [
                mon.PROMETHEUS_BIN,
                f"--config.file={MONITORING / 'prometheus.yml'}",
                f"--storage.tsdb.path={VAR / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{mon.PROMETHEUS_PORT}",
                "--storage.tsdb.retention.time=15d",
                "--log.format=json",
            ],
            mon.PROMETHEUS_PORT,
            ready_path="/-/ready",
        ),
    ]


def write_monitoring() -> None:
    """var/monitoring: the make-up variant of the one generated configuration."""
    email = os.environ.get("DISTRETTO_ALERT_EMAIL") or None
    mon.write(
        mon.stack_files(
            MONITORING,
            email_to=email,
            smtp="127.0.0.1:1025" if email else None,
            gateway_key_file=str(SCRAPE_KEY_FILE),
        )
    )


def write_operator_env(
    home: Path = ROOT,
    bootstrap: str = BOOTSTRAP,
    procs: list[dict[str, str]] | None = None,
    extra: dict[str, str] | None = None,
) -> None:
    """var/env.sh and var/bin/distretto: the operator's command line without knowing about uv.

    ``home``'s var/ receives them; ``procs`` (name, url, ready_path, log) default to make up's
    processes; ``extra`` are more variables for env.sh (e.g. DISTRETTO_GATEWAY_URL)."""
    var = home / "var"
    bindir = var / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    venv_bin = Path(sys.executable).parent
    wrapper = bindir / "distretto"
    admin_password_file = var / "kafka" / "admin-password"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'export DISTRETTO_HOME="${{DISTRETTO_HOME:-{home}}}"\n'
        f'export KAFKA_BOOTSTRAP_SERVERS="${{KAFKA_BOOTSTRAP_SERVERS:-{bootstrap}}}"\n'
        # the dead-letter commands act as the broker's super user; its password stays in var/kafka
        f'export KAFKA_SASL_USERNAME="${{KAFKA_SASL_USERNAME:-{ADMIN_USER}}}"\n'
        f'export KAFKA_SASL_PASSWORD="${{KAFKA_SASL_PASSWORD:-$(cat "{admin_password_file}" 2>/dev/null)}}"\n'
        f'exec "{venv_bin / "distretto"}" "$@"\n'
    )
    wrapper.chmod(0o755)
    variables = {"DISTRETTO_HOME": str(home), "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    if KAFKA_CONTROLLER_PORT:
        variables["DISTRETTO_KAFKA_CONTROLLER_PORT"] = KAFKA_CONTROLLER_PORT
    variables.update(extra or {})
    (var / "env.sh").write_text(
        "# source var/env.sh: `distretto`, `uv` and the platform's addresses in this shell\n"
        f'export PATH="{bindir}:{Path.home() / ".local" / "bin"}:$PATH"\n'
        + "".join(f'export {k}="{v}"\n' for k, v in variables.items())
    )
    if procs is None:
        procs = [
            {"name": p.name, "url": p.url, "ready_path": p.ready_path, "log": str(LOG / f"{p.name}.log")}
            for p in processes()
        ]
    (var / "run").mkdir(parents=True, exist_ok=True)
    (var / "run" / "stack.json").write_text(json.dumps(procs, indent=2))


def say(msg: str) -> None:
    print(f"distretto: {msg}", flush=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    except OSError:
        return True


def _pid(p: Proc) -> int | None:
    try:
        pid = int(p.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def start(p: Proc) -> None:
    if _pid(p):
        say(f"{p.name} already running (pid {_pid(p)})")
        return
    LOG.mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    log = (LOG / f"{p.name}.log").open("ab")
    proc = subprocess.Popen(
        p.argv,
        cwd=ROOT,
        env={**os.environ, **p.env},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    p.pidfile.write_text(str(proc.pid))
    say(f"{p.name} started (pid {proc.pid}) on {p.url}; log var/log/{p.name}.log")


def wait_ready(p: Proc, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not _pid(p):
            tail = (LOG / f"{p.name}.log").read_text(errors="replace").splitlines()[-20:]
            raise SystemExit(f"distretto: {p.name} exited; last log lines:\n" + "\n".join(tail))
        try:
            r = httpx.get(p.url + p.ready_path, timeout=3)
            if r.status_code == 200:
                return
            last = r.text[:300]
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise SystemExit(f"distretto: {p.name} not ready after {timeout:.0f}s: {last}")


def stop(p: Proc, timeout: float = 20.0) -> None:
    pid = _pid(p)
    if pid is None:
        p.pidfile.unlink(missing_ok=True)
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
        say(f"{p.name} killed after {timeout:.0f}s")
    p.pidfile.unlink(missing_ok=True)
    say(f"{p.name} stopped")


def kafka_admin() -> KafkaCredentials:
    """The broker's super user (the operator's dead-letter commands act as it)."""
    return KafkaCredentials("SASL_PLAINTEXT", ADMIN_USER, installation_secrets()["KAFKA_ADMIN_PASSWORD"])


def provision_kafka() -> None:
    """Each service's Kafka user and least rights, derived from its spec (deploy/kafka_access.py)."""
    secret = installation_secrets()
    passwords = {s: secret[kafka_access.password_variable(s)] for s in kafka_access.SERVICES}
    counts = kafka_access.provision(BOOTSTRAP, passwords, kafka_admin())
    say("Kafka users: " + ", ".join(f"{user} ({n} ACLs)" for user, n in counts.items()))


def kafka(cmd: str) -> int:
    return subprocess.call(
        [
            sys.executable,
            "-m",
            "distretto_dev.kafka_runner",
            cmd,
            "--port",
            str(KAFKA_PORT),
            "--data-dir",
            str(VAR / "kafka"),
            *(["--controller-port", KAFKA_CONTROLLER_PORT] if KAFKA_CONTROLLER_PORT and cmd == "start" else []),
        ],
        cwd=ROOT,
        env={**os.environ, "DISTRETTO_KAFKA_ADMIN_PASSWORD": installation_secrets()["KAFKA_ADMIN_PASSWORD"]},
    )


SCRAPE_KEY_FILE = SECRETS / "prometheus-gateway.key"
"""The operator API key Prometheus presents to read the gateway's /metrics (owner-only)."""


def admin_token() -> str:
    """A token of the bootstrap admin, with this installation's password."""
    password = installation_secrets()["GATEWAY_ADMIN_PASSWORD"]
    r = httpx.post(GATEWAY + "/auth/token", json={"email": ADMIN_EMAIL, "password": password}, timeout=10)
    if r.status_code == 401:
        raise SystemExit(
            f"distretto: cannot log in as {ADMIN_EMAIL} with the password in var/secrets/secrets.json: the gateway's "
            "database (var/data/gateway.db) holds an admin made earlier with another password. `make clean` starts "
            "afresh, or change that admin's password and put it in var/secrets/secrets.json."
        )
    r.raise_for_status()
    return str(r.json()["access_token"])


def ensure_scrape_key() -> None:
    """The gateway's /metrics is for operators: give Prometheus an operator API key, scoped to
    GET /metrics, kept in var/secrets (a new one when the stored one no longer works)."""
    if SCRAPE_KEY_FILE.exists():
        stored = SCRAPE_KEY_FILE.read_text().strip()
        if httpx.get(GATEWAY + "/metrics", headers={"Authorization": f"Bearer {stored}"}, timeout=10).is_success:
            return
    issued = httpx.post(
        GATEWAY + "/auth/api-keys",
        json={"name": "Prometheus (make up)", "role": "operator", "scopes": ["GET /metrics"], "expires_in_days": 365},
        headers={"Authorization": f"Bearer {admin_token()}"},
        timeout=10,
    )
    issued.raise_for_status()
    fd = os.open(SCRAPE_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(issued.json()["key"])
    say("Prometheus reads the gateway's /metrics with an operator API key (var/secrets/prometheus-gateway.key)")


def load_demo() -> None:
    """Load each service's demo data through the gateway, as an admin."""
    token = admin_token()
    for name in ("membership", "projects", "matchmaking", "newsletter"):
        say(f"loading {name} demo data through the gateway")
        argv = [sys.executable, "-m", f"{name}.demo", "--base-url", f"{GATEWAY}/api/{name}", "--token", token]
        if name == "newsletter":
            argv.append("--send")  # the demo campaign goes out: its mails show in the catcher
        code = subprocess.call(argv, cwd=ROOT)
        if code != 0:
            raise SystemExit(f"distretto: {name} demo loader failed (exit {code})")


def up(args: argparse.Namespace) -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    write_monitoring()
    write_operator_env()
    if kafka("start") != 0:
        raise SystemExit("distretto: Kafka did not start (see var/kafka/server.log)")
    provision_kafka()
    procs = processes()
    for p in procs:
        start(p)
        if p.name in ("catcher", "membership"):
            wait_ready(p)  # membership first: its topics are consumed by the others
    for p in procs:
        wait_ready(p)
    ensure_scrape_key()
    if not args.no_demo:
        load_demo()
    say("the platform is up")
    password = installation_secrets()["GATEWAY_ADMIN_PASSWORD"]
    print(f"""
  Console            {GATEWAY}/           (log in as {ADMIN_EMAIL} / {password})
  Gateway            {GATEWAY}            (admin: {ADMIN_EMAIL} / {password}, generated for this installation)
  API docs           {GATEWAY}/docs       (one OpenAPI document for every service)
  District figures   {GATEWAY}/api/membership/figures
  Caught emails      http://127.0.0.1:8025
  Partner catalogue  {GATEWAY}/api/partners/catalogue (docs/partners.md)
  Metrics            http://127.0.0.1:8001/metrics … :8004/metrics, :8006/metrics, {GATEWAY}/metrics
  Kafka              {BOOTSTRAP}  (SASL/SCRAM-SHA-512; super user "admin", password in var/kafka/admin-password)
  Prometheus         http://127.0.0.1:{mon.PROMETHEUS_PORT}  (alerts: /alerts; Alertmanager :{mon.ALERTMANAGER_PORT})
  Alerts received    http://127.0.0.1:{mon.RECEIVER_PORT}/alerts
  Logs               var/log/*.log        Stop everything: make down
  Secrets            var/secrets/         (this installation's keys and passwords; owner-only, kept across runs)

  Operator commands: source var/env.sh, then   distretto status | distretto dlq list | distretto logs gateway -f
  (or run var/bin/distretto directly)
""")


def down(_args: argparse.Namespace) -> None:
    for p in reversed(processes()):
        stop(p)
    kafka("stop")


def status(_args: argparse.Namespace) -> None:
    kafka("status")
    for p in processes():
        pid = _pid(p)
        state = f"running (pid {pid}) {p.url}" if pid else "not running"
        say(f"{p.name:12s} {state}")


def write_env(args: argparse.Namespace) -> None:
    """`make secrets`: this installation's secrets as a compose ``.env`` file (owner-only)."""
    target = Path(args.output)
    values = dict(installation_secrets())
    keys = keyring()
    for name in KEYED:
        values.update(keys.env(name))
    lines = ["# Written by `make secrets` from var/secrets/: this installation's passwords and keys. Keep it private."]
    for name, value in values.items():
        flat = value.replace("\n", "\\n")  # PEM keys on one line; the services read \n back as newlines
        if "'" in flat:
            raise SystemExit(f"distretto: {name} contains a single quote; cannot write it to {target}")
        lines.append(f"{name}='{flat}'")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    os.chmod(target, 0o600)
    say(f"wrote {len(values)} secrets to {target} (owner-only); `docker compose up` reads it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    u = sub.add_parser("up")
    u.add_argument("--no-demo", action="store_true", help="do not load the demo data")
    sub.add_parser("down")
    sub.add_parser("status")
    e = sub.add_parser("secrets", help="write this installation's secrets to a compose .env file")
    e.add_argument("--output", default=str(ROOT / ".env"))
    args = parser.parse_args()
    {"up": up, "down": down, "status": status, "secrets": write_env}[args.command](args)


if __name__ == "__main__":
    main()
