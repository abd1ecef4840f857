"""deploy/k8s/, checked against the schemas and against the code.

No cluster runs here, so this checks what can be checked without one: the committed files are the
generator's (deploy/k8s/generate.py); every Kubernetes object validates against Kubernetes' own
schema (kubernetes-validate, strict: an unknown field is an error), every Strimzi resource against
the openAPIV3Schema of Strimzi's CRDs (generated from its API model on Maven Central,
deploy/k8s/strimzi_crds.py), with fields the schema does not know refused too (the API server would
drop them silently); the topics are the catalogue's (partitions, retention, compaction, replicated
three times with two in sync), the Kafka users have exactly the ACLs the code derives
(deploy/kafka/service-acls.json, itself checked against the specs by test_compose.py); every
Deployment runs its service from the one Dockerfile on the port of its settings, with probes,
resources and several replicas, and sets only real settings, every secret by reference. The tests at
the end feed broken copies to show the checks bite.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import AliasChoices

from tests.platform.test_compose import SHARED_ENV, env_prefix, http_port, service_names, settings_cls

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33"
REPLICAS, MIN_INSYNC = 3, 2


def _module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sys.path.insert(0, str(ROOT / "deploy"))  # kafka_access: the ACL file's reader
generator = _module("distretto_k8s_generate", K8S / "generate.py")
strimzi = _module("distretto_strimzi_crds", K8S / "strimzi_crds.py")

Docs = list[dict[str, Any]]


def load(files: dict[Path, str] | None = None) -> Docs:
    """Every object of the manifests (the committed files, or ``files``)."""
    texts = files.values() if files is not None else [p.read_text() for p in sorted(K8S.glob("*.yaml"))]
    return [doc for text in texts for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module")
def docs() -> Docs:
    return load()


@functools.cache
def crd_schemas() -> dict[str, dict[str, Any]]:
    return strimzi.schemas()


def by_kind(docs: Docs, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


# --------------------------------------------------------------------------- checks


def unknown_fields(instance: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Fields of ``instance`` a structural schema does not declare (the API server prunes them)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(instance, dict) and "properties" in schema:
        for key, value in instance.items():
            if key in schema["properties"]:
                found += unknown_fields(value, schema["properties"][key], f"{where}.{key}")
            elif not schema.get("additionalProperties"):
                found.append(f"{where}.{key}")
    elif isinstance(instance, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, value in instance.items():
            found += unknown_fields(value, schema["additionalProperties"], f"{where}.{key}")
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for i, value in enumerate(instance):
            found += unknown_fields(value, schema["items"], f"{where}[{i}]")
    return found


def check_schemas(docs: Docs) -> list[str]:
    """Kubernetes objects against Kubernetes' schemas, Strimzi resources against Strimzi's CRDs."""
    problems = []
    for doc in docs:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if str(doc.get("apiVersion", "")).startswith("kafka.strimzi.io/"):
            if doc["apiVersion"] != f"kafka.strimzi.io/{strimzi.API_VERSION}" or doc["kind"] not in strimzi.KINDS:
                problems.append(f"{name}: {doc['apiVersion']} {doc['kind']} is not a Strimzi kind checked here")
                continue
            schema = crd_schemas()[doc["kind"]]
            validator = jsonschema.Draft7Validator(schema)
            problems += [
                f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
            ]
            problems += [f"{name}: unknown field {f}" for f in unknown_fields(doc, schema)]
            if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", doc["metadata"]["name"]):
                problems.append(f"{name}: not a valid resource name")
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{name}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except Exception as exc:  # an unknown kind or version
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
    return problems


def check_topics(docs: Docs) -> list[str]:
    """One KafkaTopic per catalogue topic and per dead-letter topic, as the catalogue says."""
    import distretto_shared.contracts  # noqa: F401
    from distretto_shared.topics import CATALOGUE

    problems = []
    wanted = {t.name: t for spec in CATALOGUE.values() for t in (spec, spec.dead_letter())}
    topics = {d["spec"].get("topicName", name): d for name, d in by_kind(docs, "KafkaTopic").items()}
    for missing in sorted(set(wanted) - set(topics)):
        problems.append(f"topic {missing} of the catalogue has no KafkaTopic")
    for extra in sorted(set(topics) - set(wanted)):
        problems.append(f"KafkaTopic {extra} is not in the catalogue")
    for name in sorted(set(wanted) & set(topics)):
        spec, doc = wanted[name], topics[name]["spec"]
        config = {k: str(v) for k, v in doc.get("config", {}).items()}
        if doc.get("partitions") != spec.partitions:
            problems.append(f"{name}: {doc.get('partitions')} partitions, the catalogue says {spec.partitions}")
        if doc.get("replicas") != REPLICAS or config.get("min.insync.replicas") != str(MIN_INSYNC):
            problems.append(
                f"{name}: replicas {doc.get('replicas')}, min.insync.replicas {config.get('min.insync.replicas')}"
            )
        for key, value in spec.config().items():
            if config.get(key) != value:
                problems.append(f"{name}: {key}={config.get(key)}, the catalogue says {value}")
        if "cleanup.policy" in config and not spec.compacted:
            problems.append(f"{name}: compacted, the catalogue says not")
        if topics[name]["metadata"].get("labels", {}).get("strimzi.io/cluster") != generator.CLUSTER:
            problems.append(f"{name}: not labelled for the cluster {generator.CLUSTER}")
    return problems


def check_cluster(docs: Docs) -> list[str]:
    """Three KRaft nodes, broker and controller each; SCRAM listener; ACLs enforced; no auto-create."""
    problems = []
    (kafka,) = by_kind(docs, "Kafka").values()
    pools = [
        p
        for p in by_kind(docs, "KafkaNodePool").values()
        if p["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    ]
    controllers = sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"])
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    if (controllers, brokers) != (3, 3):
        problems.append(f"{controllers} controllers and {brokers} brokers, three of each wanted")
    annotations = kafka["metadata"].get("annotations", {})
    if annotations.get("strimzi.io/kraft") != "enabled" or annotations.get("strimzi.io/node-pools") != "enabled":
        problems.append("the Kafka resource is not KRaft with node pools")
    spec = kafka["spec"]["kafka"]
    if any(lst.get("authentication", {}).get("type") != "scram-sha-512" for lst in spec["listeners"]):
        problems.append("a listener takes clients without SCRAM-SHA-512")
    if spec.get("authorization", {}).get("type") != "simple":
        problems.append("the brokers do not authorise requests by ACL")
    config = spec.get("config", {})
    if config.get("auto.create.topics.enable") is not False:
        problems.append("topics can be auto-created")
    if config.get("default.replication.factor") != REPLICAS or config.get("min.insync.replicas") != MIN_INSYNC:
        problems.append("default replication is not 3 with 2 in sync")
    return problems


def check_users(docs: Docs) -> list[str]:
    """Each service's KafkaUser: SCRAM, the password from the service's Secret, exactly the derived ACLs."""
    from kafka_access import ACLS_FILE, load_acls

    from distretto_shared.kafka_security import service_user

    problems = []
    rights = load_acls((ROOT / ACLS_FILE).read_text())
    users = by_kind(docs, "KafkaUser")
    for service in sorted(rights):
        user = users.pop(service_user(service), None)
        if user is None:
            problems.append(f"{service}: no KafkaUser {service_user(service)}")
            continue
        auth = user["spec"]["authentication"]
        ref = auth.get("password", {}).get("valueFrom", {}).get("secretKeyRef", {})
        if auth["type"] != "scram-sha-512" or ref != {"name": f"distretto-{service}", "key": "KAFKA_SASL_PASSWORD"}:
            problems.append(f"{service}: the user's password is not the service's KAFKA_SASL_PASSWORD secret")
        granted = set()
        for rule in user["spec"].get("authorization", {}).get("acls", []):
            resource = rule["resource"]
            rtype = {v: k for k, v in generator.RESOURCE_TYPES.items()}[resource["type"]]
            pattern = {v: k for k, v in generator.PATTERNS.items()}[resource.get("patternType", "literal")]
            name = resource.get("name", "kafka-cluster")
            for op in rule["operations"]:
                granted.add((rtype, name, pattern, {v: k for k, v in generator.OPERATIONS.items()}[op]))
        derived = {(a.resource_type, a.name, a.pattern, a.operation) for a in rights[service]}
        for acl in sorted(derived - granted):
            problems.append(f"{service}: ACL {acl} derived from the spec is not granted")
        for acl in sorted(granted - derived):
            problems.append(f"{service}: ACL {acl} granted but not derived from the spec")
    for stray in users:
        problems.append(f"KafkaUser {stray} belongs to no service")
    return problems


def secret_variables(name: str) -> dict[str, bool]:
    """Variables of ``name`` that hold secrets (→ required), as tests/platform/test_compose.py."""
    from distretto_shared.secrets import env_name

    cls = settings_cls(name)
    instance = cls.model_construct()
    names = {env_name(instance, spec.field): spec.required for spec in getattr(cls, "secret_settings", ())}
    names |= {f"{env_prefix(name)}SIGNING_KEY": True, "KAFKA_SASL_PASSWORD": True, "DISTRETTO_TRUSTED_KEYS": True}
    names[f"{env_prefix(name)}DATABASE_URL"] = True  # several instances: PostgreSQL, by URL from the Secret
    return names


def check_deployments(docs: Docs) -> list[str]:
    """Every service: a Deployment from the one Dockerfile on its settings' port, probes, resources,
    several replicas, only real settings, secrets by reference; a Service on the same port."""
    from distretto_shared.kafka_security import service_user

    problems = []
    deployments, services = by_kind(docs, "Deployment"), by_kind(docs, "Service")
    (kafka,) = by_kind(docs, "Kafka").values()
    listener = kafka["spec"]["kafka"]["listeners"][0]
    bootstrap = f"{kafka['metadata']['name']}-kafka-bootstrap:{listener['port']}"
    ports = {n: s["spec"]["ports"][0]["port"] for n, s in services.items()}
    config_maps = {n: d.get("data", {}) for n, d in by_kind(docs, "ConfigMap").items()}
    for name in service_names():
        dep = deployments.get(name)
        if dep is None:
            problems.append(f"{name}: no Deployment")
            continue
        spec = dep["spec"]
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        port = http_port(name)
        if spec.get("replicas", 1) < 2:
            problems.append(f"{name}: {spec.get('replicas', 1)} replica")
        if (
            spec["template"]["metadata"].get("annotations", {}).get("distretto.build-args")
            != f"SERVICE={name} PORT={port}"
        ):
            problems.append(f"{name}: not built from the Dockerfile with SERVICE={name} PORT={port}")
        if container["image"].split(":")[0] != f"distretto-{name}":
            problems.append(f"{name}: image {container['image']}")
        declared = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if declared.get("http") != port:
            problems.append(f"{name}: container port {declared.get('http')}, its settings listen on {port}")
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container.get(probe, {}).get("httpGet", {})
            if get.get("path") != path or declared.get(get.get("port"), get.get("port")) != port:
                problems.append(f"{name}: {probe} is not GET {path} on port {port}")
        resources = container.get("resources", {})
        if not resources.get("requests", {}).get("memory") or not resources.get("limits", {}).get("memory"):
            problems.append(f"{name}: no memory request and limit")
        if ports.get(name) != port:
            problems.append(f"{name}: Service port {ports.get(name)}, the service listens on {port}")
        # Environment: real settings only; secrets from Secrets; site values from the ConfigMap.
        prefix = env_prefix(name)
        fields = settings_cls(name).model_fields
        allowed = {f"{prefix}{f.upper()}" for f, info in fields.items() if info.validation_alias is None}
        allowed |= {
            str(c)
            for f in fields.values()
            if isinstance(f.validation_alias, AliasChoices)
            for c in f.validation_alias.choices
        }
        allowed |= set(SHARED_ENV)
        env = {e["name"]: e for e in container.get("env", [])}
        for var in sorted(set(env) - allowed):
            problems.append(f"{name}: {var} is not a setting of {name} (prefix {prefix})")
        for var, required in secret_variables(name).items():
            entry = env.get(var)
            if entry is None:
                if required:
                    problems.append(f"{name}: the secret {var} is not passed to the container")
            elif "value" in entry or "secretKeyRef" not in entry.get("valueFrom", {}):
                problems.append(f"{name}: the secret {var} is not a Secret reference")
        for var, entry in env.items():
            ref = entry.get("valueFrom", {}).get("configMapKeyRef")
            if ref and ref["key"] not in config_maps.get(ref["name"], {}):
                problems.append(f"{name}: {var} names {ref['name']}/{ref['key']}, which no ConfigMap here holds")
        if env.get("KAFKA_BOOTSTRAP_SERVERS", {}).get("value") != bootstrap:
            problems.append(f"{name}: Kafka bootstrap is not {bootstrap}")
        if env.get("KAFKA_SASL_USERNAME", {}).get("value") != service_user(name):
            problems.append(f"{name}: does not connect to Kafka as {service_user(name)}")
        for var, entry in env.items():
            value = str(entry.get("value", ""))
            if "://" in value:
                host, target_port = urlsplit(value).hostname, urlsplit(value).port
                if host in ports and target_port != ports[host]:
                    problems.append(f"{name}: {var} calls {host}:{target_port}, its Service listens on {ports[host]}")
                elif host not in ports and host not in KNOWN_OUTSIDE:
                    problems.append(f"{name}: {var} calls {host}, no Service of these manifests")
    return problems


KNOWN_OUTSIDE = {"prometheus"}
"""Hosts the services call that these manifests do not run (Prometheus: deploy/kubernetes/prometheus-config.yaml)."""


def all_problems(docs: Docs) -> list[str]:
    return check_schemas(docs) + check_topics(docs) + check_cluster(docs) + check_users(docs) + check_deployments(docs)


# --------------------------------------------------------------------------- tests


def test_the_committed_manifests_are_the_generators() -> None:
    files = generator.manifests()
    stale = [p.name for p, text in files.items() if not p.is_file() or p.read_text() != text]
    extra = sorted(p.name for p in set(K8S.glob("*.yaml")) - set(files))
    assert not stale and not extra, f"run python deploy/k8s/generate.py (stale {stale}, extra {extra})"


def test_every_object_validates_against_kubernetes_and_strimzi_schemas(docs: Docs) -> None:
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "KafkaTopic", "KafkaUser", "Kafka", "KafkaNodePool"} <= kinds
    assert check_schemas(docs) == []


def test_three_kraft_brokers_and_the_catalogues_topics(docs: Docs) -> None:
    assert check_cluster(docs) == []
    assert check_topics(docs) == []


def test_each_service_has_its_kafka_user_with_exactly_its_acls(docs: Docs) -> None:
    assert check_users(docs) == []


def test_each_service_runs_several_instances_with_probes_and_secrets_by_reference(docs: Docs) -> None:
    assert check_deployments(docs) == []
    for path in K8S.glob("*.yaml"):
        text = path.read_text()
        assert "kind: Secret\n" not in text, f"{path.name}: a Secret with its values"
        assert not re.search(r"postgresql(\+\w+)?://", text), f"{path.name}: a database URL in the file"


def _broken(docs: Docs, mutate: Any) -> list[str]:
    copy_ = copy.deepcopy(docs)
    mutate(copy_)
    return all_problems(copy_)


def _first(docs: Docs, kind: str, name: str | None = None) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


def test_broken_manifests_are_caught(docs: Docs) -> None:
    def typo_in_kafka(d: Docs) -> None:
        _first(d, "Kafka")["spec"]["kafka"]["listners"] = []

    def string_port(d: Docs) -> None:
        _first(d, "Deployment", "membership")["spec"]["template"]["spec"]["containers"][0]["ports"][0][
            "containerPort"
        ] = "8001"

    def wrong_partitions(d: Docs) -> None:
        _first(d, "KafkaTopic", "membership.organisation.v1")["spec"]["partitions"] = 12

    def missing_topic(d: Docs) -> None:
        d.remove(_first(d, "KafkaTopic", "public.project.v1.dlq"))

    def extra_acl(d: Docs) -> None:
        _first(d, "KafkaUser", "service.projects")["spec"]["authorization"]["acls"].append(
            {
                "resource": {"type": "topic", "name": "membership.contact.v2", "patternType": "literal"},
                "operations": ["Write"],
                "host": "*",
            }
        )

    def misspelt_variable(d: Docs) -> None:
        _first(d, "Deployment", "newsletter")["spec"]["template"]["spec"]["containers"][0]["env"].append(
            {"name": "NEWSLETTER_SMTP_SERVER", "value": "smtp:25"}
        )

    def secret_in_clear(d: Docs) -> None:
        env = _first(d, "Deployment", "partners")["spec"]["template"]["spec"]["containers"][0]["env"]
        (entry,) = [e for e in env if e["name"] == "PARTNERS_SECRET_KEY"]
        entry.pop("valueFrom")
        entry["value"] = "changeme"

    def one_replica(d: Docs) -> None:
        _first(d, "Deployment", "gateway")["spec"]["replicas"] = 1

    def wrong_probe(d: Docs) -> None:
        probe = _first(d, "Deployment", "projects")["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
        probe["httpGet"]["path"] = "/healthz"

    def wrong_listener_type(d: Docs) -> None:
        _first(d, "Kafka")["spec"]["kafka"]["listeners"][0]["type"] = "ingres"

    def one_broker(d: Docs) -> None:
        _first(d, "KafkaNodePool")["spec"]["replicas"] = 1

    expected = {
        typo_in_kafka: "unknown field .spec.kafka.listners",
        string_port: "containerPort",
        wrong_partitions: "12 partitions",
        missing_topic: "public.project.v1.dlq of the catalogue has no KafkaTopic",
        extra_acl: "granted but not derived",
        misspelt_variable: "NEWSLETTER_SMTP_SERVER is not a setting",
        secret_in_clear: "PARTNERS_SECRET_KEY is not a Secret reference",
        one_replica: "gateway: 1 replica",
        wrong_probe: "readinessProbe is not GET /readyz",
        one_broker: "controllers",
        wrong_listener_type: "'ingres' is not one of",
    }
    for mutate, message in expected.items():
        problems = _broken(docs, mutate)
        assert any(message in p for p in problems), (mutate.__name__, problems)
