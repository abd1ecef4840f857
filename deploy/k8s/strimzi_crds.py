"""Strimzi's CustomResourceDefinitions, generated from its API model on Maven Central.

``python deploy/k8s/strimzi_crds.py`` (and :func:`schemas`, used by tests/platform/test_k8s.py)
fetches ``io.strimzi:api`` and ``io.strimzi:crd-generator`` with Maven (deploy/k8s/strimzi/pom.xml)
into ``.cache/strimzi-<version>/``, runs the generator as Strimzi's own build does, and returns the
``openAPIV3Schema`` of each kind the manifests use. Needs Java 17 and Maven (``make bootstrap``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "deploy" / "k8s" / "strimzi" / "pom.xml"
VERSION = re.search(r"<strimzi.version>([^<]+)</strimzi.version>", POM.read_text()).group(1)  # type: ignore[union-attr]
CACHE = ROOT / ".cache" / f"strimzi-{VERSION}"
API_VERSION = "v1beta2"
KINDS = {
    "Kafka": "io.strimzi.api.kafka.model.kafka.Kafka",
    "KafkaNodePool": "io.strimzi.api.kafka.model.nodepool.KafkaNodePool",
    "KafkaTopic": "io.strimzi.api.kafka.model.topic.KafkaTopic",
    "KafkaUser": "io.strimzi.api.kafka.model.user.KafkaUser",
}


def generate(cache: Path = CACHE) -> Path:
    """The folder of the generated CRD files (made once per version)."""
    crds = cache / "crds"
    if all((crds / f"{kind}.yaml").is_file() for kind in KINDS):
        return crds
    jars = cache / "jars"
    mvn = shutil.which("mvn")
    java = shutil.which("java")
    if not mvn or not java:
        raise RuntimeError("Java and Maven are needed to generate Strimzi's CRDs (`make bootstrap` installs them)")
    subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={jars}"],
        check=True,
        timeout=900,
    )
    tmp = cache / "crds.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    subprocess.run(
        [java, "-cp", f"{jars}/*", "io.strimzi.crdgenerator.CrdGenerator", "--crd-api-version", "v1"]
        + ["--api-versions", API_VERSION, "--storage-version", API_VERSION, "--yaml"]
        + [f"{cls}={tmp / kind}.yaml" for kind, cls in KINDS.items()],
        check=True,
        timeout=600,
        capture_output=True,
    )
    shutil.rmtree(crds, ignore_errors=True)
    tmp.rename(crds)
    return crds


def schemas(cache: Path = CACHE) -> dict[str, dict[str, Any]]:
    """``openAPIV3Schema`` of each kind's ``v1beta2`` version, by kind."""
    crds = generate(cache)
    out = {}
    for kind in KINDS:
        crd = yaml.safe_load((crds / f"{kind}.yaml").read_text())
        assert crd["spec"]["names"]["kind"] == kind, crd["spec"]["names"]
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == API_VERSION]
        out[kind] = version["schema"]["openAPIV3Schema"]
    return out


if __name__ == "__main__":
    found = schemas()
    print(f"Strimzi {VERSION} CRDs in {generate().relative_to(ROOT)}: {', '.join(sorted(found))}", file=sys.stderr)
