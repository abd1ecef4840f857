"""docker-compose.yml, the one Dockerfile, Prometheus and Grafana, checked against the code.

No Docker engine runs here, so this checks what can be checked without one: the files load;
every service they name exists; every command parses with the service's own command line
(run up to argument parsing in a subprocess); every port (commands, EXPOSE, healthchecks,
published ports, URLs in the environment, Prometheus targets) is one the named service listens
on; every environment variable is a real setting of its service; every database of the
PostgreSQL init script belongs to exactly one service; every metric and label that an alert
or a dashboard panel uses is one the code exports. Kafka: the broker's configuration
(deploy/compose/kafka/server.properties) has only SASL/SCRAM-SHA-512 listeners, the
StandardAuthorizer with no access for users without ACLs, and session re-authentication, like the
embedded broker; its start script creates the super user at format; every service connects as its
own user with its own required password; the one-shot kafka-access step provisions exactly the
ACLs the code derives (deploy/kafka/service-acls.json). What only a running Docker engine can show
(the image's tools accept these files, the broker starts) is not checked here.

Each check returns a list of problems; the tests assert it is empty. The tests at the end feed
deliberately broken copies (a wrong port, a misspelt variable …) to show the checks bite.
"""

from __future__ import annotations

import ast
import base64
import binascii
import copy
import functools
import importlib
import importlib.util
import json
import re
import shlex
import subprocess
import sys
import tempfile
import textwrap
import tomllib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES_DIR = ROOT / "services"
DOCKERFILE = ROOT / "Dockerfile"
DEV = "dev"  # SERVICE=dev: the development tools' image (the mail catcher), not a service
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
POSTGRES_INIT = ROOT / "deploy" / "compose" / "postgres-init.sql"
KAFKA_POM = ROOT / "deploy" / "kafka" / "pom.xml"
KAFKA_CONFIG_DIR = ROOT / "deploy" / "compose" / "kafka"
KAFKA_ACCESS = ROOT / "deploy" / "kafka_access.py"
KAFKA_ACLS = ROOT / "deploy" / "kafka" / "service-acls.json"

# Unprefixed variables the backbone reads (the value: the setting it feeds, if any).
SHARED_ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka_bootstrap_servers",
    "KAFKA_SECURITY_PROTOCOL": "kafka_security_protocol",
    "KAFKA_SASL_MECHANISM": "kafka_sasl_mechanism",
    "KAFKA_SASL_USERNAME": "kafka_sasl_username",
    "KAFKA_SASL_PASSWORD": "kafka_sasl_password",
    "DISTRETTO_DATA_DIR": None,
    "DISTRETTO_TOPIC_PREFIX": None,
}
# Where third-party images listen when not told otherwise.
IMAGE_PORTS = {"postgres": {5432}, "prom/prometheus": {9090}, "grafana/grafana": {3000}}
INFRASTRUCTURE = {"kafka": "apache/kafka", "postgres": "postgres", "prometheus": "prom/prometheus"}
LOOPBACK = ("127.0.0.1", "localhost")

Problems = list[str]
Compose = dict[str, Any]


# --------------------------------------------------------------------------- loading


# Pairs that use each other, where the second waits for the first: the console calls the gateway's
# API and the gateway sends the console its pages (answering 502 for them until the console is up).
MUTUAL = {("gateway", "console")}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def service_names() -> list[str]:
    """Every service of the workspace (a folder of services/ with a pyproject.toml)."""
    return sorted(p.name for p in SERVICES_DIR.iterdir() if (p / "pyproject.toml").is_file())


@functools.cache
def settings_cls(name: str) -> Any:
    return importlib.import_module(f"{name}.config").Settings


def http_port(name: str) -> int:
    """The service's default port, from its Settings."""
    return int(settings_cls(name).model_fields["http_port"].default)


def env_prefix(name: str) -> str:
    return str(settings_cls(name).model_config["env_prefix"])


def setting_default(field: Any) -> Any:
    if field.default_factory is not None:
        return field.default_factory()
    return field.default


def interpolate(value: Any) -> str:
    """A compose value with ``${VAR:-default}`` replaced by its default (what a bare `up` gets), and
    ``${VAR:?message}`` (a value compose refuses to start without) by a stand-in the operator set."""
    text = str(value)
    text = re.sub(r"\$\{[A-Za-z_]\w*:?\?[^}]*\}", "operator-set", text)
    text = re.sub(r"\$\{[A-Za-z_]\w*:?-([^}]*)\}", r"\1", text)
    text = re.sub(r"\$\{[A-Za-z_]\w*\}", "", text)
    return text.replace("$$", "$")


def env_of(svc: dict[str, Any]) -> dict[str, str]:
    raw = svc.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {str(k): interpolate(v) for k, v in raw.items()}


def build_of(svc: dict[str, Any]) -> dict[str, Any] | None:
    build = svc.get("build")
    return {"context": build} if isinstance(build, str) else build


def build_args(svc: dict[str, Any]) -> dict[str, str]:
    """The build arguments a compose service passes to the Dockerfile."""
    args = (build_of(svc) or {}).get("args") or {}
    if isinstance(args, list):
        args = dict(item.split("=", 1) if "=" in item else (item, "") for item in args)
    return {str(k): interpolate(v) for k, v in args.items()}


def built_from(svc: dict[str, Any]) -> str | None:
    """The workspace folder (the one Dockerfile's SERVICE argument) this compose service is built from, if any."""
    build = build_of(svc)
    if build is None:
        return None
    if PurePosixPath(build.get("dockerfile", "Dockerfile")) != PurePosixPath("Dockerfile"):
        return ""
    return build_args(svc).get("SERVICE", "")


def package_of(name: str) -> str:
    """The Python package an image built with SERVICE=name holds."""
    return "distretto_dev" if name == DEV else name


def runs_service(svc: dict[str, Any]) -> str | None:
    """The workspace service this compose service runs (its image and its own module), if any."""
    name = built_from(svc)
    found = python_module(command_of(svc)) if name else None
    return name if found and found[0] == name else None


def image_repo(svc: dict[str, Any]) -> str:
    return str(svc.get("image", "")).rsplit(":", 1)[0]


# --------------------------------------------------------------------------- Dockerfiles


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def expand(text: str, values: dict[str, str]) -> str:
    """``${NAME}`` and ``$NAME`` replaced by their values (unknown names left as they are)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m[1] or m[2], m[0]), text)


def dockerfile_env(text: str, args: dict[str, str]) -> dict[str, str]:
    """The image's environment: its ENV lines, build arguments expanded."""
    env: dict[str, str] = {}
    for ins, rest in dockerfile_instructions(text):
        if ins == "ENV":
            for word in shlex.split(rest):
                key, _, value = word.partition("=")
                env[key] = expand(value, {**args, **env})
    return env


def dockerfile_cmd(text: str, args: dict[str, str] | None = None) -> list[str]:
    """The image's command for these build arguments (a ``sh -c`` script expanded and split)."""
    cmds = [rest for ins, rest in dockerfile_instructions(text) if ins == "CMD"]
    if not cmds:
        return []
    cmd = cmds[-1]
    argv = list(json.loads(cmd)) if cmd.startswith("[") else shlex.split(cmd)
    if argv[:2] == ["sh", "-c"] and len(argv) == 3:
        argv = shlex.split(expand(argv[2], dockerfile_env(text, args or {})))
        argv = argv[1:] if argv[:1] == ["exec"] else argv
    return argv


def dockerfile_exposed(text: str, args: dict[str, str] | None = None) -> set[int]:
    ports: set[int] = set()
    for ins, rest in dockerfile_instructions(text):
        if ins == "EXPOSE":
            words = expand(rest, args or {}).split()
            ports |= {int(p.split("/")[0]) for p in words if p.split("/")[0].isdigit()}
    return ports


def image_args(name: str) -> dict[str, str]:
    """The build arguments that make a service's image (the service's folder and its Settings' port)."""
    return {"SERVICE": name, "PORT": str(http_port(name))}


def project_name(name: str) -> str:
    return str(tomllib.loads((SERVICES_DIR / name / "pyproject.toml").read_text())["project"]["name"])


def check_dockerfile(text: str) -> Problems:
    """The one Dockerfile against the house recipe: parametrised by SERVICE and PORT, runs as a user."""
    problems: Problems = []
    where = "Dockerfile"
    instructions = dockerfile_instructions(text)
    runs = [args for ins, args in instructions if ins == "RUN"]
    froms = [args for ins, args in instructions if ins == "FROM"]
    if froms != ["python:3.11-slim"]:
        problems.append(f"{where}: FROM {froms}, expected python:3.11-slim")
    declared = {args.split("=")[0] for ins, args in instructions if ins == "ARG"}
    if not {"SERVICE", "PORT"} <= declared:
        problems.append(f"{where}: ARG {sorted(declared)}, expected SERVICE and PORT")
    if not any(re.search(r"\bpip install\b.*\buv\b", r) for r in runs):
        problems.append(f"{where}: uv is not installed with pip")
    sync = [r for r in runs if "uv sync" in r]
    if len(sync) != 1:
        problems.append(f"{where}: expected one `uv sync`, found {len(sync)}")
    else:
        words = shlex.split(sync[0].split("uv sync", 1)[1])
        package = words[words.index("--package") + 1] if "--package" in words[:-1] else None
        for flag in ("--frozen", "--no-dev"):
            if flag not in words:
                problems.append(f"{where}: `uv sync` without {flag}")
        if package not in ("distretto-${SERVICE}", "distretto-$SERVICE"):
            problems.append(f"{where}: `uv sync --package {package}`, expected distretto-${{SERVICE}}")
    copied: set[str] = set()
    for ins, args in instructions:
        if ins == "COPY":
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            copied |= {w.rstrip("/") for w in words[:-1]}
    missing = {"pyproject.toml", "uv.lock", "shared", "dev", "services"} - copied
    if missing and "." not in copied:
        problems.append(f"{where}: the workspace is not copied (missing {sorted(missing)})")
    users = [args for ins, args in instructions if ins == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"{where}: runs as root (no USER, or USER root last)")
    probe = {"SERVICE": "probe", "PORT": "65000"}
    if dockerfile_exposed(text, probe) != {65000}:
        problems.append(f"{where}: EXPOSE {sorted(dockerfile_exposed(text, probe))}, not the PORT build argument")
    cmd = dockerfile_cmd(text, probe)
    if cmd != ["uv", "run", "--no-sync", "python", "-m", "probe", "serve", "--host", "0.0.0.0", "--port", "65000"]:
        problems.append(f"{where}: CMD {cmd} is not `uv run --no-sync python -m <SERVICE> serve` on 0.0.0.0:<PORT>")
    return problems


def check_images(compose: Compose) -> Problems:
    """Each compose service built from the Dockerfile names a workspace folder and its Settings' port."""
    problems: Problems = []
    for key, svc in compose["services"].items():
        name = built_from(svc)
        if name is None:
            continue
        args = build_args(svc)
        if name not in service_names() and name != DEV:
            problems.append(f"compose service {key}: build argument SERVICE={name!r} is not a folder of services/")
            continue
        port = str(http_port(name)) if name != DEV else None
        if port and args.get("PORT") != port:
            problems.append(f"compose service {key}: build argument PORT={args.get('PORT')}, {name} listens on {port}")
        if not args.get("PORT", "").isdigit():
            problems.append(f"compose service {key}: no numeric PORT build argument")
    return problems


# --------------------------------------------------------------------------- commands


def command_of(svc: dict[str, Any]) -> list[str]:
    """What the container runs: the compose command, else its Dockerfile's CMD."""
    command = svc.get("command")
    if command is not None:
        return [interpolate(c) for c in command] if isinstance(command, list) else shlex.split(interpolate(command))
    if built_from(svc):
        return dockerfile_cmd(DOCKERFILE.read_text(), build_args(svc))
    return []


def python_module(argv: list[str]) -> tuple[str, list[str]] | None:
    """``(module, args)`` of a ``python -m module args…`` command."""
    if "-m" not in argv[:-1]:
        return None
    i = argv.index("-m")
    if "python" not in Path(argv[i - 1]).name:
        return None
    return argv[i + 1], argv[i + 2 :]


# Runs a module's command line up to argparse's parse_args and prints what it parsed: the
# code's own parser judges the arguments, nothing is served.
_PARSE_HARNESS = textwrap.dedent(
    """
    import argparse, contextlib, io, json, runpy, sys

    class Parsed(BaseException):
        pass

    original = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        raise Parsed(vars(original(self, args, namespace)))

    argparse.ArgumentParser.parse_args = parse_args
    module, runs = sys.argv[1], json.loads(sys.argv[2])
    results = []
    for args in runs:
        sys.argv = [module, *args]
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            results.append({"error": "the command line was never parsed"})
        except Parsed as parsed:
            results.append({"parsed": parsed.args[0]})
        except SystemExit as exit:
            results.append({"error": f"exit {exit.code}: {err.getvalue().strip()}"})
    print("PARSED=" + json.dumps(results, default=str))
    """
)


def parse_commands(calls: Iterable[tuple[str, tuple[str, ...]]]) -> dict[tuple[str, tuple[str, ...]], dict[str, Any]]:
    """Each ``(module, args)`` parsed by the module's own command line (one process per module)."""
    by_module: dict[str, list[tuple[str, ...]]] = {}
    for module, args in calls:
        if args not in by_module.setdefault(module, []):
            by_module[module].append(args)

    def run(module: str) -> list[dict[str, Any]]:
        proc = subprocess.run(
            [sys.executable, "-c", _PARSE_HARNESS, module, json.dumps(by_module[module])],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("PARSED=")), None)
        if line is None:
            return [{"error": f"{module} did not run: {proc.stderr.strip()[-2000:]}"}] * len(by_module[module])
        return list(json.loads(line.removeprefix("PARSED=")))

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(by_module, pool.map(run, by_module), strict=True))
    return {(m, a): r for m, runs in by_module.items() for a, r in zip(runs, results[m], strict=True)}


def compose_calls(compose: Compose) -> list[tuple[str, tuple[str, ...]]]:
    """Every python module command of the compose file and of the Dockerfiles."""
    calls = []
    for svc in compose["services"].values():
        found = python_module(command_of(svc))
        if found:
            calls.append((found[0], tuple(found[1])))
    for name in service_names():
        found = python_module(dockerfile_cmd(DOCKERFILE.read_text(), image_args(name)))
        if found:
            calls.append((found[0], tuple(found[1])))
    return calls


def check_commands(compose: Compose, parsed: dict[tuple[str, tuple[str, ...]], dict[str, Any]]) -> Problems:
    """Every command's module exists and its own parser accepts the arguments; services serve
    on 0.0.0.0 and on the port their Settings name."""
    problems: Problems = []
    argvs = [(f"compose service {key}", svc, command_of(svc)) for key, svc in compose["services"].items()]
    for n in service_names():
        image = {"build": {"context": ".", "args": image_args(n)}}
        argvs.append((f"Dockerfile (SERVICE={n})", image, command_of(image)))
    for where, svc, argv in argvs:
        name = built_from(svc)
        found = python_module(argv)
        if found is None:
            script = python_script(argv)
            if script is not None and (mounted_source(svc, script[0]) or Path("/nonexistent")).is_file():
                continue  # a repository script mounted into the image (its arguments: check_kafka_security)
            if name is not None:
                problems.append(f"{where}: runs {argv}, not a python -m command")
            continue
        module, args = found
        if importlib.util.find_spec(module) is None:
            problems.append(f"{where}: module {module} does not exist")
            continue
        if name and module.split(".")[0] != package_of(name):
            problems.append(f"{where}: built with SERVICE={name} but runs {module}")
        result = parsed.get((module, tuple(args)))
        if result is None or "error" in (result or {}):
            problems.append(f"{where}: `python -m {module} {' '.join(args)}` refused: {(result or {}).get('error')}")
            continue
        ns = result["parsed"]
        if "host" in ns and ns["host"] != "0.0.0.0":
            problems.append(f"{where}: {module} listens on {ns['host']}, unreachable from other containers")
        if name and module == name:
            if ns.get("command") != "serve":
                problems.append(f"{where}: runs `{module} {ns.get('command')}`, not serve")
            if ns.get("port") != http_port(name):
                problems.append(f"{where}: serves on port {ns.get('port')}, {name}'s Settings say {http_port(name)}")
    return problems


def listening_ports(compose: Compose, parsed: dict[tuple[str, tuple[str, ...]], dict[str, Any]]) -> dict[str, set[int]]:
    """The ports each compose service listens on, from its command, its image or its config."""
    ports: dict[str, set[int]] = {}
    for key, svc in compose["services"].items():
        found = python_module(command_of(svc))
        if found:
            ns = (parsed.get((found[0], tuple(found[1]))) or {}).get("parsed", {})
            ports[key] = {int(v) for k, v in ns.items() if k.endswith("port") and v is not None}
        elif image_repo(svc) == "apache/kafka":
            listeners = kafka_properties(compose).get("listeners", "")
            ports[key] = {int(p) for p in re.findall(r":(\d+)(?:,|$)", listeners)}
        else:
            ports[key] = set(IMAGE_PORTS.get(image_repo(svc), set()))
    return ports


# --------------------------------------------------------------------------- compose structure


def check_services(compose: Compose) -> Problems:
    """Every workspace service runs, every built service exists, the infrastructure is there."""
    problems: Problems = []
    services = compose.get("services") or {}
    for key, repo in INFRASTRUCTURE.items():
        if image_repo(services.get(key, {})) != repo:
            problems.append(f"compose service {key}: expected image {repo}:…, got {services.get(key, {}).get('image')}")
    if "grafana" not in services:
        problems.append("no grafana service")
    for name in service_names():
        svc = services.get(name)
        if svc is None or built_from(svc) != name:
            problems.append(f"services/{name} has no compose service {name} built with SERVICE={name}")
    for key, svc in services.items():
        built = built_from(svc)
        if built is None:
            continue
        build = build_of(svc) or {}
        if (COMPOSE_FILE.parent / build.get("context", ".")).resolve() != ROOT:
            problems.append(f"compose service {key}: build context is not the repository root")
        if not built:
            problems.append(f"compose service {key}: not built from the Dockerfile with a SERVICE argument")
        elif built == DEV:
            continue
        elif not (SERVICES_DIR / built / "src" / built / "__main__.py").is_file():
            problems.append(f"compose service {key}: services/{built}/src/{built}/__main__.py is missing")
    return problems


def parse_properties(text: str) -> dict[str, str]:
    """A Java properties file's ``key=value`` lines (no continuation lines are used here)."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def kafka_properties(compose: Compose) -> dict[str, str]:
    """The compose broker's configuration: the server.properties of the folder mounted into it."""
    target = mount_target(compose, "kafka", KAFKA_CONFIG_DIR)
    if target is None:
        return {}
    return parse_properties((KAFKA_CONFIG_DIR / "server.properties").read_text())


def check_kafka(compose: Compose, props: dict[str, str]) -> Problems:
    """A single-node KRaft broker+controller, no auto-create, the broker version of deploy/kafka."""
    problems: Problems = []
    svc = compose["services"]["kafka"]
    env = env_of(svc)
    if not props:
        return [f"kafka: {KAFKA_CONFIG_DIR.relative_to(ROOT)} is not mounted into the broker"]
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", KAFKA_POM.read_text())
    if version and svc.get("image") != f"apache/kafka:{version.group(1)}":
        problems.append(f"kafka image {svc.get('image')}, deploy/kafka/pom.xml runs {version.group(1)}")
    if set(props.get("process.roles", "").split(",")) != {"broker", "controller"}:
        problems.append(f"process.roles={props.get('process.roles')}, expected broker,controller")
    listeners = dict(
        (item.split("://")[0], item.split("://")[1]) for item in props.get("listeners", "").split(",") if item
    )
    protocols = dict(item.split(":") for item in props.get("listener.security.protocol.map", "").split(",") if item)
    controller = props.get("controller.listener.names", "")
    if controller not in listeners:
        problems.append(f"controller listener {controller!r} is not in listeners")
    else:
        voters = f"{props.get('node.id')}@kafka:{listeners[controller].rsplit(':', 1)[1]}"
        if props.get("controller.quorum.voters") != voters:
            problems.append(f"controller.quorum.voters={props.get('controller.quorum.voters')}, expected {voters}")
    for item in props.get("advertised.listeners", "").split(","):
        name, _, address = item.partition("://")
        if name not in listeners or listeners[name].rsplit(":", 1)[1] != address.rsplit(":", 1)[1]:
            problems.append(f"advertised listener {item} does not match listeners")
    for name in listeners:
        if name not in protocols:
            problems.append(f"listener {name} has no security protocol")
    if props.get("auto.create.topics.enable") != "false":
        problems.append("topics must come from the catalogue: auto.create.topics.enable must be false")
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor"):
        if props.get(key) != "1":
            problems.append(f"{key}={props.get(key)}, a single node needs 1")
    try:
        if len(base64.urlsafe_b64decode(env.get("CLUSTER_ID", "") + "==")) != 16:
            problems.append("CLUSTER_ID is not a base64 UUID (16 bytes)")
    except (binascii.Error, ValueError):
        problems.append("CLUSTER_ID is not base64")
    return problems


# The broker settings that decide who may do what: the compose broker must have the embedded one's.
KAFKA_SECURITY_KEYS = (
    "sasl.enabled.mechanisms",
    "sasl.mechanism.inter.broker.protocol",
    "sasl.mechanism.controller.protocol",
    "listener.name.controller.sasl.enabled.mechanisms",
    "authorizer.class.name",
    "allow.everyone.if.no.acl.found",
    "super.users",
    "connections.max.reauth.ms",
    "auto.create.topics.enable",
)


def embedded_kafka_properties() -> dict[str, str]:
    """What `make up`'s broker runs with (nothing is started)."""
    from distretto_dev.kafka_runner import EmbeddedKafka

    with tempfile.TemporaryDirectory() as tmp:
        broker = EmbeddedKafka(data_dir=Path(tmp), port=1, controller_port=2, admin_password="probe-" + "x1" * 16)
        return broker.server_properties()


def kafka_access_module() -> Any:
    sys.path.insert(0, str(KAFKA_ACCESS.parent))
    try:
        return importlib.import_module("kafka_access")
    finally:
        sys.path.remove(str(KAFKA_ACCESS.parent))


def python_script(argv: list[str]) -> tuple[str, list[str]] | None:
    """``(script, args)`` of a ``python path/to/script.py args…`` command."""
    for i, word in enumerate(argv[:-1]):
        if "python" in Path(word).name and argv[i + 1].endswith(".py"):
            return argv[i + 1], argv[i + 2 :]
    return None


def mounted_source(svc: dict[str, Any], target: str) -> Path | None:
    """The repository file a bind mount puts at ``target`` in the container."""
    for entry in svc.get("volumes") or []:
        parts = str(entry).split(":")
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1] == target:
            return (COMPOSE_FILE.parent / parts[0]).resolve()
    return None


def check_kafka_security(compose: Compose, props: dict[str, str]) -> Problems:
    """SASL/SCRAM listeners only, ACLs enforced, sessions that end, the super user made at format;
    every service its own user and password; the kafka-access step provisions the derived ACLs."""
    from distretto_shared.kafka_security import service_user

    problems: Problems = []
    services = compose["services"]
    protocols = dict(item.split(":") for item in props.get("listener.security.protocol.map", "").split(",") if item)
    listeners = [item.split("://")[0] for item in props.get("listeners", "").split(",") if item]
    for name in listeners:
        if not protocols.get(name, "").startswith("SASL_"):
            problems.append(
                f"kafka: listener {name} is {protocols.get(name) or 'unmapped'}, not SASL (anyone could connect)"
            )
    embedded = embedded_kafka_properties()
    for key in KAFKA_SECURITY_KEYS:
        if props.get(key) != embedded.get(key):
            problems.append(f"kafka: {key}={props.get(key)!r}, the embedded broker has {embedded.get(key)!r}")
    if (
        not props.get("connections.max.reauth.ms", "0").isdigit()
        or int(props.get("connections.max.reauth.ms", "0")) <= 0
    ):
        problems.append("kafka: connections.max.reauth.ms is not set: a deleted user's connections never end")
    kafka = services.get("kafka", {})
    entry = [str(w) for w in kafka.get("entrypoint") or kafka.get("command") or []]
    script = next((w for w in entry if w.endswith(".sh")), "")
    source = mounted_source(kafka, str(PurePosixPath(script).parent)) if script else None
    start = (source / PurePosixPath(script).name) if source else None
    if start is None or not start.is_file():
        problems.append(f"kafka: runs {entry}, not the start script of {KAFKA_CONFIG_DIR.relative_to(ROOT)}")
    else:
        text = start.read_text()
        if "--add-scram" not in text or "SCRAM-SHA-512=[name=admin,password=$KAFKA_ADMIN_PASSWORD]" not in text:
            problems.append("kafka: the start script does not create the super user's SCRAM credential at format")
        if "KAFKA_ADMIN_PASSWORD:?" not in text:
            problems.append("kafka: the start script does not refuse to start without KAFKA_ADMIN_PASSWORD")
    access = services.get("kafka-access")
    ka = kafka_access_module()
    in_network = {a.split("://")[1] for a in props.get("advertised.listeners", "").split(",") if "://kafka:" in a}
    if access is None:
        problems.append("no kafka-access step provisions the services' users and ACLs")
    else:
        found = python_script(command_of(access))
        if found is None or mounted_source(access, found[0]) != KAFKA_ACCESS.resolve():
            problems.append(f"kafka-access: runs {command_of(access)}, not {KAFKA_ACCESS.relative_to(ROOT)}")
        else:
            try:
                args = ka.parser().parse_args(found[1])
            except SystemExit:
                args = None
                problems.append(f"kafka-access: {found[1]} refused by kafka_access's own parser")
            if args is not None:
                if args.bootstrap not in in_network:
                    problems.append(
                        f"kafka-access: --bootstrap {args.bootstrap}, the broker advertises {sorted(in_network)}"
                    )
                if not args.acls or mounted_source(access, args.acls) != KAFKA_ACLS.resolve():
                    problems.append(f"kafka-access: --acls {args.acls} is not {KAFKA_ACLS.relative_to(ROOT)}")
        raw = access.get("environment") or {}
        if raw.get("KAFKA_SASL_USERNAME") != "admin" or not str(raw.get("KAFKA_SASL_PASSWORD", "")).startswith(
            "${KAFKA_ADMIN_PASSWORD:?"
        ):
            problems.append("kafka-access: does not act as the super user admin with KAFKA_ADMIN_PASSWORD")
        for service in ka.SERVICES:
            var = ka.password_variable(service)
            if not _REQUIRED_VALUE.match(str(raw.get(var, ""))):
                problems.append(f"kafka-access: {var} is not passed as a required secret")
        if ((access.get("depends_on") or {}).get("kafka") or {}).get("condition") != "service_healthy":
            problems.append("kafka-access: does not wait for the broker to be healthy")
    users: dict[str, str] = {}
    for key, svc in services.items():
        name = runs_service(svc)
        if not name:
            continue
        raw = svc.get("environment") or {}
        env = env_of(svc)
        prefix = env_prefix(name)
        username = env.get(f"{prefix}KAFKA_SASL_USERNAME") or env.get("KAFKA_SASL_USERNAME", "")
        password = str(raw.get(f"{prefix}KAFKA_SASL_PASSWORD") or raw.get("KAFKA_SASL_PASSWORD") or "")
        protocol = env.get(f"{prefix}KAFKA_SECURITY_PROTOCOL") or env.get("KAFKA_SECURITY_PROTOCOL", "")
        if not username or not password:
            problems.append(f"{key}: no Kafka credentials (KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD)")
            continue
        if username != service_user(name):
            problems.append(f"{key}: Kafka user {username!r}, its ACLs are provisioned for {service_user(name)!r}")
        wanted = ka.password_variable(name)
        match = _REQUIRED_VALUE.match(password)
        if not match or match.group("name") != wanted:
            problems.append(f"{key}: its Kafka password is not ${{{wanted}:?…}} ({password[:40]!r})")
        if not protocol.upper().startswith("SASL_"):
            problems.append(f"{key}: KAFKA_SECURITY_PROTOCOL={protocol!r}, the broker takes SASL only")
        if name not in ka.SERVICES:
            problems.append(f"{key}: {name} has no provisioned Kafka user (kafka_access.SERVICES)")
        if ((svc.get("depends_on") or {}).get("kafka-access") or {}).get("condition") != (
            "service_completed_successfully"
        ):
            problems.append(f"{key}: does not wait for kafka-access to complete")
        if username in users:
            problems.append(f"{key}: shares the Kafka user {username!r} with {users[username]}")
        users[username] = key
    return problems


def host_refs(value: str) -> list[tuple[str, int]]:
    """``(host, port)`` pairs named in a value: URLs, ``user@host:port``, ``host:port`` lists."""
    return [(h, int(p)) for h, p in re.findall(r"(?:^|//|@|,)([A-Za-z0-9][\w.-]*):(\d+)", value)]


def check_ports(compose: Compose, listening: dict[str, set[int]]) -> Problems:
    """Published ports, healthchecks and every host:port in the environment meet a listening port."""
    problems: Problems = []
    services = compose["services"]
    for key, svc in services.items():
        for entry in svc.get("ports") or []:
            target = entry.get("target") if isinstance(entry, dict) else str(entry).split(":")[-1].split("/")[0]
            if int(str(target)) not in listening.get(key, set()):
                problems.append(f"{key}: publishes container port {target}, it listens on {sorted(listening[key])}")
        for entry in svc.get("expose") or []:
            if int(str(entry).split("/")[0]) not in listening.get(key, set()):
                problems.append(f"{key}: exposes {entry}, it listens on {sorted(listening[key])}")
        test = (svc.get("healthcheck") or {}).get("test") or []
        test = " ".join(test) if isinstance(test, list) else str(test)
        for host, port in host_refs(test):
            if host in LOOPBACK and port not in listening.get(key, set()):
                problems.append(f"{key}: healthcheck asks port {port}, it listens on {sorted(listening[key])}")
        name = runs_service(svc)
        if name and not any(f"{h}:{http_port(name)}/readyz" in test for h in LOOPBACK):
            problems.append(f"{key}: healthcheck does not ask /readyz on port {http_port(name)}")
        for var, value in env_of(svc).items():
            for host, port in host_refs(value):
                if host in services and port not in listening.get(host, set()):
                    problems.append(
                        f"{key}: {var} points at {host}:{port}, {host} listens on {sorted(listening[host])}"
                    )
    gateway = services.get("gateway")
    if gateway is not None:
        env = env_of(gateway)
        for field in settings_cls("gateway").model_fields:
            upstream = field.removesuffix("_url")
            if upstream in service_names() and field != upstream:
                url = urlsplit(env.get(f"{env_prefix('gateway')}{field.upper()}", ""))
                if url.hostname != upstream or url.port != http_port(upstream):
                    problems.append(
                        f"gateway: {field} is {url.geturl()!r}, expected http://{upstream}:{http_port(upstream)}"
                    )
    return problems


def check_environment(compose: Compose) -> Problems:
    """Every variable set for a service is one of its settings (or a backbone variable), no
    loopback default survives in a container, and Kafka is the compose broker."""
    problems: Problems = []
    services = compose["services"]
    in_network = {
        a.split("://")[1]
        for a in kafka_properties(compose).get("advertised.listeners", "").split(",")
        if a.split("://")[-1].startswith("kafka:")
    }
    for key, svc in services.items():
        raw = svc.get("environment") or {}
        for var, value in raw.items() if isinstance(raw, dict) else []:
            if isinstance(value, bool):
                problems.append(f"{key}: {var} is a YAML boolean; compose wants the string")
        name = runs_service(svc)
        if not name:
            continue
        prefix = env_prefix(name)
        fields = settings_cls(name).model_fields
        aliases = {
            str(choice)
            for f in fields.values()
            if isinstance(f.validation_alias, AliasChoices)
            for choice in f.validation_alias.choices
        }
        allowed = {f"{prefix}{f.upper()}" for f, info in fields.items() if info.validation_alias is None}
        allowed |= aliases | set(SHARED_ENV)
        env = env_of(svc)
        for var in sorted(set(env) - allowed):
            problems.append(f"{key}: {var} is not a setting of {name} (prefix {prefix})")
        fed = {SHARED_ENV[v] for v in env if SHARED_ENV.get(v)}
        for field_name, field in fields.items():
            if field_name == "http_host":
                continue  # the command's --host
            loopback = any(h in str(setting_default(field)) for h in LOOPBACK)
            names = {f"{prefix}{field_name.upper()}"}
            if isinstance(field.validation_alias, AliasChoices):
                names = {str(c) for c in field.validation_alias.choices}
            if loopback and not names & set(env) and field_name not in fed:
                problems.append(f"{key}: {prefix}{field_name.upper()} keeps its loopback default in a container")
        bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS") or env.get(f"{prefix}KAFKA_BOOTSTRAP_SERVERS")
        if bootstrap not in in_network:
            problems.append(f"{key}: Kafka bootstrap {bootstrap!r}, the broker advertises {sorted(in_network)}")
        for host, _port in {r for v in env.values() for r in host_refs(v)}:
            if host in services and host not in (svc.get("depends_on") or {}):
                if (key, host) in MUTUAL:
                    continue
                problems.append(f"{key}: uses {host} but does not depend on it")
    return problems


def init_databases(sql: str) -> list[str]:
    return re.findall(r"CREATE\s+DATABASE\s+\"?(\w+)\"?", sql, flags=re.IGNORECASE)


# Secrets compose passes to containers that are not settings of ours (the images' own).
INFRASTRUCTURE_SECRETS = {
    "postgres": ("POSTGRES_PASSWORD",),
    "grafana": ("GF_SECURITY_ADMIN_PASSWORD",),
    "kafka": ("KAFKA_ADMIN_PASSWORD",),
    "kafka-access": ("KAFKA_SASL_PASSWORD",),
}
_REQUIRED_VALUE = re.compile(r"^\$\{(?P<name>[A-Za-z_]\w*):\?[^}]+\}$")


def check_secrets(compose: Compose) -> Problems:
    """No secret has a value or a default in the file: each is ``${NAME:?message}`` (compose stops
    with the message when it is unset), and every secret a service requires is passed to it."""
    from distretto_shared.secrets import env_name

    problems: Problems = []
    for key, svc in compose["services"].items():
        raw = svc.get("environment") or {}
        name = runs_service(svc)
        names: dict[str, bool] = {}  # variable → required
        if name:
            cls = settings_cls(name)
            instance = cls.model_construct()
            for spec in getattr(cls, "secret_settings", ()):
                names[env_name(instance, spec.field)] = spec.required
            names[f"{env_prefix(name)}SIGNING_KEY"] = True
            names["KAFKA_SASL_PASSWORD"] = True  # its own Kafka user's password
            names["DISTRETTO_TRUSTED_KEYS"] = True
            names[f"{env_prefix(name)}DATABASE_URL"] = False
        for var in INFRASTRUCTURE_SECRETS.get(key, ()):
            names[var] = True
        for var, required in names.items():
            value = raw.get(var) if isinstance(raw, dict) else None
            if value is None:
                if required:
                    problems.append(f"{key}: the secret {var} is not passed to the container")
                continue
            value = str(value)
            if var.endswith("_DATABASE_URL"):
                if value.startswith("postgresql") and not re.search(r"://[^:/]+:\$\{\w+:\?[^}]+\}@", value):
                    problems.append(f"{key}: {var} carries a password written in the file")
                continue
            if not _REQUIRED_VALUE.match(value):
                problems.append(f"{key}: the secret {var} has a value or a default in the file ({value[:40]!r})")
    return problems


def check_databases(compose: Compose, sql: str) -> Problems:
    """One PostgreSQL database per service: each database of the init script is used by
    exactly one service, every service has one, and the credentials are the server's."""
    problems: Problems = []
    services = compose["services"]
    pg = env_of(services["postgres"])
    databases = init_databases(sql)
    users: dict[str, list[str]] = {db: [] for db in databases}
    for key, svc in services.items():
        name = runs_service(svc)
        if not name:
            continue
        url = env_of(svc).get(f"{env_prefix(name)}DATABASE_URL", "")
        parts = urlsplit(url)
        if parts.scheme != "postgresql+asyncpg":
            problems.append(f"{key}: {env_prefix(name)}DATABASE_URL={url!r} is not postgresql+asyncpg")
            continue
        if parts.hostname != "postgres":
            problems.append(f"{key}: database host {parts.hostname}, the compose server is postgres")
        if (parts.username, parts.password) != (pg.get("POSTGRES_USER"), pg.get("POSTGRES_PASSWORD")):
            problems.append(f"{key}: database credentials differ from the postgres service's")
        database = parts.path.lstrip("/")
        if database not in users:
            problems.append(f"{key}: database {database!r} is not created by {POSTGRES_INIT.name}")
        else:
            users[database].append(key)
    for database, keys in users.items():
        if len(keys) != 1:
            problems.append(f"database {database} is used by {keys or 'no service'}, expected exactly one")
    mounts = [str(v) for v in services["postgres"].get("volumes") or []]
    if not any(m.startswith(f"./{POSTGRES_INIT.relative_to(ROOT)}:/docker-entrypoint-initdb.d/") for m in mounts):
        problems.append("postgres: the init script is not mounted in /docker-entrypoint-initdb.d")
    return problems


def check_dependencies(compose: Compose) -> Problems:
    """depends_on names services, waits on healthchecks that exist, and starts the platform in order."""
    problems: Problems = []
    services = compose["services"]
    for key, svc in services.items():
        deps = svc.get("depends_on") or {}
        deps = {d: {"condition": "service_started"} for d in deps} if isinstance(deps, list) else deps
        for dep, spec in deps.items():
            if dep not in services:
                problems.append(f"{key}: depends on unknown service {dep}")
            elif spec.get("condition") == "service_healthy" and not services[dep].get("healthcheck"):
                problems.append(f"{key}: waits for {dep} to be healthy, {dep} has no healthcheck")
        name = built_from(svc)
        if name and name == key:
            for dep in ("kafka", "postgres"):
                if (deps.get(dep) or {}).get("condition") != "service_healthy":
                    problems.append(f"{key}: does not wait for {dep} to be healthy")
            if not svc.get("healthcheck"):
                problems.append(f"{key}: no healthcheck")
    return problems


def check_mounts(compose: Compose) -> Problems:
    """Bind mounts name files of the repository; named volumes are declared."""
    problems: Problems = []
    declared = set(compose.get("volumes") or {})
    for key, svc in compose["services"].items():
        for entry in svc.get("volumes") or []:
            source = entry.get("source", "") if isinstance(entry, dict) else str(entry).split(":")[0]
            if source.startswith((".", "/")):
                if not (COMPOSE_FILE.parent / source).exists():
                    problems.append(f"{key}: mounts {source}, which does not exist")
            elif source not in declared:
                problems.append(f"{key}: volume {source} is not declared")
    return problems


def mount_target(compose: Compose, service: str, source: Path) -> str | None:
    for entry in compose["services"][service].get("volumes") or []:
        parts = str(entry).split(":")
        if parts[0].startswith(".") and (COMPOSE_FILE.parent / parts[0]).resolve() == source.resolve():
            return parts[1]
    return None


# --------------------------------------------------------------------------- metrics and PromQL


@functools.cache
def exported_metrics() -> dict[str, set[str]]:
    """Every Prometheus series name the code exports → its label names (read from the source)."""
    kinds = {"Counter", "Gauge", "Histogram", "Summary"}
    metrics: dict[str, set[str]] = {}
    files = list((ROOT / "shared" / "src").rglob("*.py"))
    files += [p for n in service_names() for p in (SERVICES_DIR / n / "src").rglob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            kind = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if kind not in kinds or not node.args:
                continue
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            labels_node = node.args[2] if len(node.args) > 2 else None
            labels_node = next((k.value for k in node.keywords if k.arg == "labelnames"), labels_node)
            labels: set[str] = set()
            if isinstance(labels_node, ast.List | ast.Tuple):
                labels = {str(e.value) for e in labels_node.elts if isinstance(e, ast.Constant)}
            base = first.value
            if kind == "Counter":
                names = {base if base.endswith("_total") else base + "_total"}
            elif kind == "Histogram":
                names = {base + "_bucket", base + "_sum", base + "_count"}
            elif kind == "Summary":
                names = {base, base + "_sum", base + "_count"}
            else:
                names = {base}
            for series in names:
                metrics[series] = labels | ({"le"} if series.endswith("_bucket") else set())
    return metrics


BUILTIN_METRICS: dict[str, set[str]] = {"up": set(), "scrape_duration_seconds": set(), "scrape_samples_scraped": set()}
TARGET_LABELS = {"job", "instance"}
PROMQL_FUNCTIONS = {
    "abs", "absent", "avg", "avg_over_time", "ceil", "clamp_max", "clamp_min", "count", "count_over_time",
    "delta", "deriv", "floor", "histogram_quantile", "idelta", "increase", "irate", "label_replace", "max",
    "max_over_time", "min", "min_over_time", "predict_linear", "quantile", "rate", "round", "scalar", "sort",
    "sort_desc", "sum", "sum_over_time", "time", "topk", "bottomk", "vector", "label_values",
}  # fmt: skip
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}


def check_promql(where: str, expr: str, metrics: dict[str, set[str]]) -> tuple[Problems, set[str]]:
    """Metric names, label names and functions of a PromQL expression, checked against the code.
    Returns the problems and the metric names used."""
    problems: Problems = []
    known = {**BUILTIN_METRICS, **metrics}
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    used: set[str] = set()
    for metric, matchers in re.findall(r"([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}", text):
        for label in re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers):
            if metric and metric in known and label not in known[metric] | TARGET_LABELS:
                problems.append(f"{where}: {metric} has no label {label!r} (it has {sorted(known[metric])})")
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"label_values\(\s*([\w:]+)\s*,\s*\w+\s*\)", r"label_values(\1)", text)
    grouping = re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    for ident, call in re.findall(r"(?<![\w$.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        if call:
            if ident not in PROMQL_FUNCTIONS:
                problems.append(f"{where}: unknown PromQL function {ident}()")
        elif ident in PROMQL_WORDS:
            continue
        elif ident not in known:
            problems.append(f"{where}: metric {ident} is not exported by any service")
        else:
            used.add(ident)
    if "label_values(" in expr:  # Grafana: label_values(metric, label)
        for metric, label in re.findall(r"label_values\(\s*([\w:]+)\s*,\s*(\w+)\s*\)", expr):
            if label not in known.get(metric, set()) | TARGET_LABELS:
                problems.append(f"{where}: {metric} has no label {label!r}")
    available = set().union(*(known[m] for m in used)) if used else set()
    for group in grouping:
        for label in (g.strip() for g in group.split(",") if g.strip()):
            if label not in available | TARGET_LABELS:
                problems.append(f"{where}: groups by {label!r}, which none of {sorted(used)} has")
    return problems, used


def check_prometheus(config: dict[str, Any], compose: Compose, listening: dict[str, set[int]]) -> Problems:
    """Every target is a compose service on a port it listens on; every service is scraped;
    the rule files exist and the compose Prometheus reads this folder."""
    problems: Problems = []
    services = compose["services"]
    scraped: set[str] = set()
    for job in config.get("scrape_configs") or []:
        if job.get("metrics_path", "/metrics") != "/metrics":
            problems.append(f"prometheus job {job.get('job_name')}: metrics_path {job['metrics_path']}")
        for static in job.get("static_configs") or []:
            for target in static.get("targets") or []:
                host, _, port = str(target).rpartition(":")
                if host not in services:
                    problems.append(f"prometheus target {target}: {host} is not a compose service")
                elif int(port) not in listening.get(host, set()):
                    problems.append(f"prometheus target {target}: {host} listens on {sorted(listening[host])}")
                scraped.add(host)
    for key, svc in services.items():
        name = built_from(svc)
        if name and name == key and key not in scraped:
            problems.append(f"prometheus does not scrape {key}")
    for rule_file in config.get("rule_files") or []:
        if not (PROMETHEUS_DIR / rule_file).is_file():
            problems.append(f"prometheus rule file {rule_file} is not in deploy/prometheus")
    prom = services.get("prometheus", {})
    config_path = next(
        (c.split("=", 1)[1] for c in prom.get("command") or [] if c.startswith("--config.file=")),
        "/etc/prometheus/prometheus.yml",
    )
    if mount_target(compose, "prometheus", PROMETHEUS_DIR) != str(PurePosixPath(config_path).parent):
        problems.append(f"compose prometheus does not mount deploy/prometheus at {PurePosixPath(config_path).parent}")
    return problems


REQUIRED_ALERT_METRICS = {
    "distretto_outbox_oldest_age_seconds",
    "distretto_service_ready",
    "distretto_newsletter_emails_failed_total",
    "distretto_dead_letters_total",
    "distretto_consumer_lag",
    "up",
    "distretto_http_requests_total",
}


def check_alerts(rules: dict[str, Any], metrics: dict[str, set[str]]) -> Problems:
    problems: Problems = []
    used: set[str] = set()
    names: list[str] = []
    for group in rules.get("groups") or []:
        for rule in group.get("rules") or []:
            name = rule.get("alert") or rule.get("record") or "?"
            names.append(name)
            if "alert" in rule:
                if not (rule.get("labels") or {}).get("severity"):
                    problems.append(f"alert {name}: no severity label")
                if not (rule.get("annotations") or {}).get("summary"):
                    problems.append(f"alert {name}: no summary annotation")
            found, metrics_used = check_promql(f"alert {name}", str(rule.get("expr", "")), metrics)
            problems += found
            used |= metrics_used
    if len(names) != len(set(names)):
        problems.append(f"alert names repeat: {names}")
    for metric in sorted(REQUIRED_ALERT_METRICS - used):
        problems.append(f"no alert watches {metric}")
    return problems


REQUIRED_PANEL_METRICS = {
    "distretto_consumer_lag",
    "distretto_dead_letters_total",
    "distretto_outbox_backlog",
    "distretto_http_requests_total",
    "distretto_http_request_duration_seconds_bucket",
    "distretto_newsletter_emails_sent_total",
    "distretto_newsletter_emails_failed_total",
}


def dashboard_panels(dashboard: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for panel in dashboard.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def check_grafana(
    compose: Compose,
    datasources: dict[str, Any],
    provider: dict[str, Any],
    dashboards: dict[str, Any],
    metrics: dict[str, set[str]],
) -> Problems:
    problems: Problems = []
    sources = {d.get("uid"): d for d in datasources.get("datasources") or []}
    prometheus = [d for d in sources.values() if d.get("type") == "prometheus"]
    if len(prometheus) != 1:
        problems.append(f"expected one provisioned Prometheus datasource, found {len(prometheus)}")
    else:
        host, port = (urlsplit(prometheus[0].get("url", "")).hostname, urlsplit(prometheus[0].get("url", "")).port)
        if host != "prometheus" or port not in IMAGE_PORTS["prom/prometheus"]:
            problems.append(f"the Prometheus datasource points at {prometheus[0].get('url')}")
    if mount_target(compose, "grafana", GRAFANA_DIR / "provisioning") != "/etc/grafana/provisioning":
        problems.append("compose grafana does not mount deploy/grafana/provisioning at /etc/grafana/provisioning")
    paths = {(p.get("options") or {}).get("path") for p in provider.get("providers") or []}
    mounted = mount_target(compose, "grafana", GRAFANA_DIR / "dashboards")
    if mounted not in paths:
        problems.append(f"deploy/grafana/dashboards is not mounted where the provider reads ({paths})")
    home = env_of(compose["services"]["grafana"]).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    home_path = PurePosixPath(home or "")
    if home and (home_path.parent != PurePosixPath(str(mounted)) or home_path.name not in dashboards):
        problems.append(f"grafana's home dashboard {home} is not one of deploy/grafana/dashboards")
    used: set[str] = set()
    for file, dashboard in dashboards.items():
        if not dashboard.get("uid") or not dashboard.get("panels"):
            problems.append(f"{file}: no uid or no panels")
        queries = [
            (f"{file} variable {v.get('name')}", v.get("query"), v.get("datasource"))
            for v in (dashboard.get("templating") or {}).get("list") or []
        ]
        for panel in dashboard_panels(dashboard):
            for target in panel.get("targets") or []:
                queries.append((f"{file} panel {panel.get('title')!r}", target.get("expr"), target.get("datasource")))
            if panel.get("type") != "row" and (panel.get("datasource") or {}).get("uid") not in sources:
                problems.append(f"{file} panel {panel.get('title')!r}: datasource is not the provisioned one")
        for where, query, source in queries:
            if isinstance(query, dict):
                query = query.get("query")
            if (source or {}).get("uid") not in sources:
                problems.append(f"{where}: datasource is not the provisioned one")
            found, metrics_used = check_promql(where, str(query or ""), metrics)
            problems += found
            used |= metrics_used
    for metric in sorted(REQUIRED_PANEL_METRICS - used):
        problems.append(f"no dashboard panel shows {metric}")
    return problems


# --------------------------------------------------------------------------- fixtures


# A catcher command with a misspelt option, parsed with the others for test_a_wrong_command_is_caught.
CATCHER_TYPO = ("--smtp-port", "1025", "--prot", "8025")


@pytest.fixture(scope="module")
def compose() -> Compose:
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), "docker-compose.yml has no services"
    return data


@pytest.fixture(scope="module")
def parsed(compose: Compose) -> dict[tuple[str, tuple[str, ...]], dict[str, Any]]:
    calls = [*compose_calls(compose), ("distretto_dev.catcher", CATCHER_TYPO)]
    return parse_commands(calls)


@pytest.fixture(scope="module")
def listening(compose: Compose, parsed: dict[tuple[str, tuple[str, ...]], dict[str, Any]]) -> dict[str, set[int]]:
    return listening_ports(compose, parsed)


@pytest.fixture(scope="module")
def prometheus_config() -> dict[str, Any]:
    return dict(load_yaml(PROMETHEUS_DIR / "prometheus.yml"))


@pytest.fixture(scope="module")
def alert_rules() -> dict[str, Any]:
    return dict(load_yaml(PROMETHEUS_DIR / "alerts.yml"))


@pytest.fixture(scope="module")
def dashboards() -> dict[str, Any]:
    files = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
    assert files, "no Grafana dashboard in deploy/grafana/dashboards"
    return {f.name: json.loads(f.read_text()) for f in files}


# --------------------------------------------------------------------------- the checks


def test_compose_names_every_service_and_the_infrastructure(compose: Compose) -> None:
    assert {"gateway", "matchmaking", "membership", "newsletter", "partners", "projects"} <= set(service_names())
    assert check_services(compose) == []


def test_kafka_is_a_single_kraft_node_without_auto_create(compose: Compose) -> None:
    assert check_kafka(compose, kafka_properties(compose)) == []


def test_kafka_takes_scram_users_only_and_every_service_has_its_own(compose: Compose) -> None:
    props = kafka_properties(compose)
    assert props["listener.security.protocol.map"].count("SASL_PLAINTEXT") == 3  # the check reads the file
    assert check_kafka_security(compose, props) == []


@pytest.mark.timeout(1800)  # one process per service imports its app: minutes on a loaded machine
def test_the_provisioned_acls_are_the_ones_the_code_derives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTRETTO_TOPIC_PREFIX", "")  # the file is for an installation without a prefix
    ka = kafka_access_module()
    derived = ka.derived()
    assert KAFKA_ACLS.read_text() == ka.dump_acls(derived), (
        f"stale: python deploy/kafka_access.py --write-acls {KAFKA_ACLS.relative_to(ROOT)}"
    )
    assert set(ka.load_acls(KAFKA_ACLS.read_text())) == set(ka.SERVICES)
    assert any(a.operation == "ALTER" for a in derived["partners"]) and derived["gateway"] == []


def test_a_plaintext_broker_or_a_service_without_its_own_credentials_is_caught(compose: Compose) -> None:
    props = dict(kafka_properties(compose))
    props["listener.security.protocol.map"] = props["listener.security.protocol.map"].replace(
        "HOST:SASL_PLAINTEXT", "HOST:PLAINTEXT"
    )
    props["allow.everyone.if.no.acl.found"] = "true"
    del props["connections.max.reauth.ms"]
    broken = copy.deepcopy(compose)
    del broken["services"]["partners"]["environment"]["KAFKA_SASL_USERNAME"]
    broken["services"]["projects"]["environment"]["KAFKA_SASL_USERNAME"] = "service.membership"
    broken["services"]["newsletter"]["environment"]["KAFKA_SASL_PASSWORD"] = "${KAFKA_PASSWORD_NEWSLETTER:-letmein}"
    broken["services"]["membership"]["environment"]["KAFKA_SECURITY_PROTOCOL"] = "PLAINTEXT"
    del broken["services"]["kafka-access"]["environment"]["KAFKA_PASSWORD_GATEWAY"]
    broken["services"]["kafka"]["entrypoint"] = ["/etc/kafka/docker/run"]
    problems = check_kafka_security(broken, props)
    assert any("listener HOST is PLAINTEXT, not SASL" in p for p in problems)
    assert any("allow.everyone.if.no.acl.found='true'" in p for p in problems)
    assert any("connections.max.reauth.ms is not set" in p for p in problems)
    assert any(p.startswith("partners: no Kafka credentials") for p in problems)
    assert any("projects: Kafka user 'service.membership'" in p for p in problems)
    assert any("newsletter: its Kafka password is not ${KAFKA_PASSWORD_NEWSLETTER:?…}" in p for p in problems)
    assert any("membership: KAFKA_SECURITY_PROTOCOL='PLAINTEXT'" in p for p in problems)
    assert any("kafka-access: KAFKA_PASSWORD_GATEWAY is not passed" in p for p in problems)
    assert any("not the start script" in p for p in problems)
    secrets = check_secrets(broken)
    assert any("newsletter: the secret KAFKA_SASL_PASSWORD has a value or a default" in p for p in secrets)
    broken["services"]["kafka"]["environment"]["KAFKA_ADMIN_PASSWORD"] = "admin"
    assert any("kafka: the secret KAFKA_ADMIN_PASSWORD has a value" in p for p in check_secrets(broken))


def test_one_dockerfile_builds_every_service_with_its_port(compose: Compose) -> None:
    assert check_dockerfile(DOCKERFILE.read_text()) == []
    assert check_images(compose) == []
    assert not list(SERVICES_DIR.glob("*/Dockerfile")), "a service has a Dockerfile of its own"


def test_every_command_parses_with_the_code_and_serves_on_the_settings_port(
    compose: Compose, parsed: dict[tuple[str, tuple[str, ...]], dict[str, Any]]
) -> None:
    assert check_commands(compose, parsed) == []


def test_ports_agree_across_commands_healthchecks_published_ports_and_urls(
    compose: Compose, listening: dict[str, set[int]]
) -> None:
    for name in service_names():
        assert listening[name] == {http_port(name)}
    assert check_ports(compose, listening) == []


def test_environment_names_only_real_settings(compose: Compose) -> None:
    shared_source = "\n".join(p.read_text() for p in (ROOT / "shared" / "src").rglob("*.py"))
    assert [v for v in SHARED_ENV if f'"{v}"' not in shared_source] == []
    assert check_environment(compose) == []


def test_no_secret_has_a_value_or_default_in_the_file(compose: Compose) -> None:
    assert check_secrets(compose) == []


def test_a_secret_with_a_default_is_caught(compose: Compose) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["newsletter"]["environment"]["NEWSLETTER_SECRET_KEY"] = "${NEWSLETTER_SECRET_KEY:-change-me}"
    broken["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "distretto"
    del broken["services"]["gateway"]["environment"]["GATEWAY_SIGNING_KEY"]
    url = "postgresql+asyncpg://distretto:distretto@postgres:5432/projects"
    broken["services"]["projects"]["environment"]["PROJECTS_DATABASE_URL"] = url
    problems = check_secrets(broken)
    assert any("NEWSLETTER_SECRET_KEY has a value or a default" in p for p in problems)
    assert any("postgres: the secret POSTGRES_PASSWORD has a value" in p for p in problems)
    assert any("gateway: the secret GATEWAY_SIGNING_KEY is not passed" in p for p in problems)
    assert any("PROJECTS_DATABASE_URL carries a password" in p for p in problems)


def test_one_database_per_service(compose: Compose) -> None:
    assert sorted(init_databases(POSTGRES_INIT.read_text())) == service_names()
    assert check_databases(compose, POSTGRES_INIT.read_text()) == []


def test_dependencies_and_mounts(compose: Compose) -> None:
    assert check_dependencies(compose) == []
    assert check_mounts(compose) == []


def test_prometheus_scrapes_every_service(
    compose: Compose, prometheus_config: dict[str, Any], listening: dict[str, set[int]]
) -> None:
    assert check_prometheus(prometheus_config, compose, listening) == []


def test_one_generated_scrape_list_for_make_up_compose_and_kubernetes(tmp_path: Path) -> None:
    from distretto_shared import monitoring

    check = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "monitoring.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr
    stack = yaml.safe_load(monitoring.stack_files(tmp_path)[tmp_path / "prometheus.yml"])
    configmap = load_yaml(ROOT / "deploy" / "kubernetes" / "prometheus-config.yaml")
    kubernetes = yaml.safe_load(configmap["data"]["prometheus.yml"])
    compose = load_yaml(PROMETHEUS_DIR / "prometheus.yml")

    def jobs(config: dict[str, Any]) -> dict[str, list[str]]:
        return {
            j["job_name"]: [t.rsplit(":", 1)[1] for s in j["static_configs"] for t in s["targets"]]
            for j in config["scrape_configs"]
        }

    # The same jobs on the same ports everywhere (make up adds Alertmanager, which compose has not).
    assert {k: v for k, v in jobs(stack).items() if k != "alertmanager"} == jobs(compose) == jobs(kubernetes)
    assert set(service_names()) <= set(jobs(compose))
    assert yaml.safe_load(configmap["data"]["alerts.yml"]) == load_yaml(PROMETHEUS_DIR / "alerts.yml")


def test_promtool_and_amtool_accept_the_generated_files(tmp_path: Path) -> None:
    from distretto_shared import monitoring

    if not Path(monitoring.PROMTOOL_BIN).exists():
        pytest.skip("needs Debian's prometheus package (make bootstrap installs it)")
    monitoring.write(monitoring.stack_files(tmp_path, email_to="ops@distretto.example", smtp="127.0.0.1:1025"))
    k8s = tmp_path / "k8s"
    configmap = load_yaml(ROOT / "deploy" / "kubernetes" / "prometheus-config.yaml")
    k8s.mkdir()
    (k8s / "alerts.yml").write_text(configmap["data"]["alerts.yml"])
    (k8s / "prometheus.yml").write_text(configmap["data"]["prometheus.yml"].replace("/etc/prometheus/", f"{k8s}/"))
    checks = [
        ("check", "rules", str(PROMETHEUS_DIR / "alerts.yml")),
        ("check", "config", str(PROMETHEUS_DIR / "prometheus.yml")),
        ("check", "config", str(tmp_path / "prometheus.yml")),
        ("check", "config", str(k8s / "prometheus.yml")),
    ]
    for args in checks:
        done = monitoring.promtool(*args)
        assert done.returncode == 0, f"promtool {' '.join(args)}: {done.stdout}{done.stderr}"
    amtool = subprocess.run(
        ["amtool", "check-config", str(tmp_path / "alertmanager.yml")], capture_output=True, text=True, check=False
    )
    assert amtool.returncode == 0, amtool.stdout + amtool.stderr
    # A broken rule is caught.
    (tmp_path / "bad.yml").write_text("groups: [{name: x, rules: [{alert: X, expr: 'rate(up[5m]'}]}]")
    assert monitoring.promtool("check", "rules", str(tmp_path / "bad.yml")).returncode != 0


def test_alert_rules_use_exported_metrics_and_labels(alert_rules: dict[str, Any]) -> None:
    metrics = exported_metrics()
    assert {"distretto_consumer_lag", "distretto_http_requests_total"} <= set(metrics)  # the source scan works
    assert check_alerts(alert_rules, metrics) == []


def test_grafana_provisions_the_datasource_and_a_dashboard_of_exported_metrics(
    compose: Compose, dashboards: dict[str, Any]
) -> None:
    datasources = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    provider = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "distretto.yml")
    assert check_grafana(compose, datasources, provider, dashboards, exported_metrics()) == []


# --------------------------------------------------------------------------- the checks bite


def test_a_wrong_port_is_caught(compose: Compose, listening: dict[str, set[int]]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["gateway"]["environment"]["GATEWAY_PROJECTS_URL"] = "http://projects:8003"
    broken["services"]["membership"]["ports"] = ["127.0.0.1:8001:8010"]
    problems = check_ports(broken, listening)
    assert any("GATEWAY_PROJECTS_URL points at projects:8003" in p for p in problems)
    assert any("projects_url" in p for p in problems)
    assert any("membership: publishes container port 8010" in p for p in problems)

    text = DOCKERFILE.read_text().replace("EXPOSE ${PORT}", "EXPOSE 8020")
    assert any("EXPOSE [8020]" in p for p in check_dockerfile(text))
    broken = copy.deepcopy(compose)
    broken["services"]["projects"]["build"]["args"]["PORT"] = "8020"
    assert any("PORT=8020, projects listens on 8002" in p for p in check_images(broken))


def test_a_wrong_command_is_caught(compose: Compose, parsed: dict[tuple[str, tuple[str, ...]], dict[str, Any]]) -> None:
    broken = copy.deepcopy(compose)
    uv_python = ["uv", "run", "--no-sync", "python", "-m"]
    broken["services"]["catcher"]["command"] = [*uv_python, "distretto_dev.catcher", *CATCHER_TYPO]
    broken["services"]["membership"]["command"] = [*uv_python, "membership.nowhere"]
    problems = check_commands(broken, parsed)
    assert any("catcher" in p and "unrecognized arguments: --prot" in p for p in problems)
    assert any("membership.nowhere does not exist" in p for p in problems)


def test_a_misspelt_variable_or_a_shared_database_is_caught(compose: Compose) -> None:
    broken = copy.deepcopy(compose)
    env = broken["services"]["newsletter"]["environment"]
    env["NEWSLETTER_SMTP_SERVER"] = env.pop("NEWSLETTER_SMTP_SERVERS")
    broken["services"]["projects"]["environment"]["PROJECTS_DATABASE_URL"] = broken["services"]["membership"][
        "environment"
    ]["MEMBERSHIP_DATABASE_URL"]
    problems = check_environment(broken)
    assert any("NEWSLETTER_SMTP_SERVER is not a setting of newsletter" in p for p in problems)
    assert any("NEWSLETTER_SMTP_SERVERS keeps its loopback default" in p for p in problems)
    problems = check_databases(broken, POSTGRES_INIT.read_text())
    assert any("database membership is used by ['membership', 'projects']" in p for p in problems)
    assert any("database projects is used by no service" in p for p in problems)


def test_an_unknown_metric_or_label_is_caught(
    prometheus_config: dict[str, Any], compose: Compose, listening: dict[str, set[int]]
) -> None:
    metrics = exported_metrics()
    problems, _ = check_promql("x", 'sum by (service) (rate(distretto_http_requests_totl{status=~"5.."}[5m]))', metrics)
    assert any("distretto_http_requests_totl is not exported" in p for p in problems)
    problems, _ = check_promql(
        "x", 'sum by (code) (rate(distretto_http_requests_total{status_code="500"}[5m]))', metrics
    )
    assert any("no label 'status_code'" in p for p in problems)
    assert any("groups by 'code'" in p for p in problems)
    problems, _ = check_promql("x", "rat(distretto_dead_letters_total[5m])", metrics)
    assert any("unknown PromQL function rat()" in p for p in problems)

    broken = copy.deepcopy(prometheus_config)
    broken["scrape_configs"][0]["static_configs"][0]["targets"] = ["membership:8081"]
    assert any("membership:8081" in p for p in check_prometheus(broken, compose, listening))
