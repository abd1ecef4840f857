"""Top-20 query latency of the matchmaking engine over 100,000 competence profiles.

What is measured, honestly:

- BM25 runs over 100,000 generated profile texts (each a different mix of
  life-sciences competences, techniques, diseases and project phrases).
- Dense vectors: the ONNX model's encoding rate is measured on a real sample
  (``--real`` texts, 2,000 by default). Encoding all 100,000 texts on this
  machine's two shared cores would take many minutes per run, so the other
  vectors are built from the real ones: each synthetic vector is a real vector
  of a similar text plus a second real vector at 0.35 weight plus Gaussian
  noise, re-normalised. The matrix-vector work — what latency depends on — is
  the same as with 100,000 real vectors.
- Queries: 200 opportunity texts, really encoded; each query ranks every
  profile (hybrid fusion, filters, top-20 with explanations), exactly the
  engine code the service runs. Variants side by side: hybrid, BM25 only,
  dense only, and hybrid with a sector + organisation-kind filter.
- Build time: adding 100,000 documents to the index, then the bm25s build.
  Memory: resident set size (VmRSS) before and after.

    uv run python bench/matchmaking/latency.py [--profiles 100000] [--real 2000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from pathlib import Path

import numpy as np

from matchmaking.search.document import Document, Filter
from matchmaking.search.embeddings import BATCH, DIM, shared_encoder
from matchmaking.search.engine import Engine, Ranking
from matchmaking.search.index import REDUCED_DIM, Index, fit_projection, project

TECHNIQUES = (
    "CAR-T cell engineering|monoclonal antibodies|AAV gene therapy|CRISPR gene editing|mRNA vaccines|"
    "liquid biopsy|next-generation sequencing|mass spectrometry proteomics|microfluidic lab-on-chip|"
    "real-time PCR assays|deep learning on histology images|microwave imaging|MRI image analysis|"
    "wearable motion sensors|robotic exoskeletons|3D bioprinting|organoid models|induced pluripotent stem cells|"
    "nanoparticle drug delivery|biosensors|pharmacogenetic testing|health data platforms|clinical decision support|"
    "olive polyphenol extraction|probiotic strains|metagenomics|peptide synthesis|GMP manufacturing|"
    "bioreactor process development|flow cytometry|single-cell RNA sequencing|radiopharmaceuticals"
).split("|")
DISEASES = (
    "breast cancer|acute myeloid leukaemia|lung cancer|colorectal cancer|melanoma|glioblastoma|"
    "cerebral palsy|multiple sclerosis|Alzheimer's disease|Parkinson's disease|type 2 diabetes|"
    "cystic fibrosis|Duchenne muscular dystrophy|retinal dystrophies|rare metabolic disorders|sepsis|"
    "antimicrobial resistance|inflammatory bowel disease|osteoarthritis|stroke|heart failure|COVID-19"
).split("|")
ROLES = (
    "university laboratory|research institute|hospital clinical unit|biotech SME|diagnostics company|"
    "medical device manufacturer|pharmaceutical company|digital health start-up|nutraceutical producer"
).split("|")
SECTORS = ["biotech", "pharma", "medical_devices", "diagnostics", "nutraceutics", "cosmeceutics", "ict_life_sciences"]
KINDS = ["company"] * 6 + ["university", "research_institute", "hospital", "foundation"]


def rss_mb() -> float:
    """Resident set size of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def profile_text(rng: random.Random) -> tuple[str, str, str]:
    """(description, competences, keywords) of a generated profile."""
    techniques = rng.sample(TECHNIQUES, 3)
    diseases = rng.sample(DISEASES, 2)
    role = rng.choice(ROLES)
    description = (
        f"A {role} working on {techniques[0]} and {techniques[1]} for {diseases[0]}; "
        f"collaborations on {diseases[1]} and translational studies with {techniques[2]}."
    )
    return description, "; ".join(techniques), "; ".join(diseases)


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def main() -> None:
    """Build the 100k index, run the queries in each variant, print the figures side by side."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--real", type=int, default=2_000, help="profiles really encoded with the ONNX model")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1, help="measure the query loop this many times")
    parser.add_argument("--no-check", action="store_true", help="skip the comparison with the exact ranking")
    args = parser.parse_args()
    rng = random.Random(7)
    np_rng = np.random.default_rng(7)
    rss_start = rss_mb()

    encoder = shared_encoder(2)
    texts = [profile_text(rng) for _ in range(args.profiles)]
    real = min(args.real, args.profiles)
    encoder.encode([f"{c}. {k}. {d}" for d, c, k in texts[:BATCH]])  # warm-up: first runs are slower
    started = time.perf_counter()
    base = encoder.encode([f"{c}. {k}. {d}" for d, c, k in texts[:real]])
    encode_s = time.perf_counter() - started
    rate = real / encode_s

    vectors = np.empty((args.profiles, DIM), dtype=np.float32)
    vectors[:real] = base
    others = np_rng.integers(0, real, size=(args.profiles, 2))
    noise = np_rng.normal(0, 0.02, size=(args.profiles - real, DIM)).astype(np.float32)
    mixed = base[others[real:, 0]] + 0.35 * base[others[real:, 1]] + noise
    vectors[real:] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)

    rss_before = rss_mb()
    engine = Engine()
    engine.merge_threshold = args.profiles + 1  # one build at the end, as at start-up
    started = time.perf_counter()
    for i, (description, competences, keywords) in enumerate(texts):
        engine.index.upsert(
            Document(
                key=f"profile:{i}",
                kind="profile",
                entity_id=str(i),
                fields={"description": description, "competences": competences, "keywords": keywords},
                vector=vectors[i],
                org_kind=KINDS[i % len(KINDS)],
                sectors=(SECTORS[i % len(SECTORS)], SECTORS[(i * 3) % len(SECTORS)]),
                country="IT" if i % 5 else "DE",
                owner_id=str(i),
            )
        )
    add_s = time.perf_counter() - started
    started = time.perf_counter()
    snapshot = engine.index.snapshot()
    engine.index.install(Index.build(snapshot))
    build_s = time.perf_counter() - started
    del snapshot
    rss_after = rss_mb()
    started = time.perf_counter()
    matrix = engine.index.vectors[: engine.index.size]
    project(matrix, fit_projection(matrix))  # the projection's share of the build, timed on its own
    projection_s = time.perf_counter() - started

    query_texts = []
    for _ in range(args.queries):
        t = rng.sample(TECHNIQUES, 2)
        d = rng.choice(DISEASES)
        query_texts.append(f"Technology request: partner with {t[0]} expertise for a {d} project using {t[1]}.")
    started = time.perf_counter()
    query_vectors = encoder.encode(query_texts)
    query_encode_ms = (time.perf_counter() - started) / len(query_texts) * 1000
    queries = [
        Document(key=f"opportunity:q{i}", kind="opportunity", entity_id=f"q{i}", fields={"title": t}, vector=v)
        for i, (t, v) in enumerate(zip(query_texts, query_vectors, strict=True))
    ]

    variants = [
        ("hybrid", None, Filter(kind="profile")),
        ("bm25 only", 1.0, Filter(kind="profile")),
        ("dense only", 0.0, Filter(kind="profile")),
        (
            "hybrid + filters",
            None,
            Filter(kind="profile", sectors=frozenset({"biotech"}), org_kinds=frozenset({"university", "hospital"})),
        ),
    ]
    print(
        f"matchmaking latency: {args.profiles:,} profiles, top-20 with explanations, {args.queries} queries per variant"
    )
    print(f"BLAS threads: {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}; load average {load()}")
    print(
        f"ONNX encoding rate (2 threads, batches of 32, after a warm-up batch): {rate:.1f} texts/s "
        f"({real:,} real profile vectors in {encode_s:.1f} s; the other {args.profiles - real:,} built from them)"
    )
    print(f"query encoding: {query_encode_ms:.1f} ms per query text (not part of the ranking latency below)")
    print(
        f"index build: {add_s:.1f} s to add rows + {build_s:.1f} s build (bm25s + a {REDUCED_DIM}-dimension "
        f"projection, of which the projection {projection_s:.1f} s); RSS {rss_start:.0f} MB at start, "
        f"{rss_before:.0f} MB with texts and vectors, {rss_after:.0f} MB with the index (+{rss_after - rss_before:.0f} MB)"
    )
    exact = {}
    if not args.no_check:
        # The same queries ranked exactly (every eligible row's exact cosine): what the two stages must match.
        two_stage_rows = engine.index.two_stage_rows
        engine.index.two_stage_rows = args.profiles + 1
        for name, weight, flt in variants:
            exact[name] = [ids(engine.rank(q, flt, limit=20, bm25_weight=weight, explain=False)) for q in queries]
        engine.index.two_stage_rows = two_stage_rows
    header = f"{'variant':<20}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'eligible':>10}"
    print(header + ("" if args.no_check else f"{'top-20 = exact':>16}{'overlap@20':>12}"))
    for run in range(args.runs):
        if args.runs > 1:
            print(f"run {run + 1} of {args.runs} (load average {load()})")
        for name, weight, flt in variants:
            for q in queries[:10]:  # warm-up
                engine.rank(q, flt, limit=20, bm25_weight=weight)
            times = []
            eligible = 0
            got = []
            for q in queries:
                started = time.perf_counter()
                ranking = engine.rank(q, flt, limit=20, bm25_weight=weight)
                times.append((time.perf_counter() - started) * 1000)
                eligible = ranking.total
                got.append(ids(ranking))
            line = (
                f"{name:<20}{statistics.median(times):>9.2f}{percentile(times, 95):>9.2f}"
                f"{max(times):>9.2f}{eligible:>10,}"
            )
            if exact:
                pairs = list(zip(got, exact[name], strict=True))
                overlap = statistics.mean(len(set(g) & set(e)) / max(1, len(e)) for g, e in pairs)
                same = sum(g == e for g, e in pairs)
                line += f"{same:>10}/{len(got):<5}{overlap:>12.4f}"
            print(line)
    print("goal: p95 <= 20 ms")


def ids(ranking: Ranking) -> list[str]:
    """The keys of a ranking's hits, in order."""
    return [h.key for h in ranking.hits]


def load() -> str:
    """The 1-minute load average."""
    return Path("/proc/loadavg").read_text().split()[0]


if __name__ == "__main__":
    main()
