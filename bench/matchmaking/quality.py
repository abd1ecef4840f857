"""Ranking quality of the matchmaking engine on the labelled set in ``data/`` (see data/README.md).

46 competence profiles (Italian and English; description, competences,
projects) and 42 opportunities used as queries, every (query, profile) pair
graded 0–3 (``data/qrels.tsv``: 1,932 judged pairs). The queries are split by
topic into a training part and a held-out part. On the training part the
fusion settings of the new ranking are chosen (BM25 weight, cosine floor,
aggregation of a profile's items) by the lowest pairwise loss; on the held-out
part today's ranking and the new one are compared:

- nDCG@10: graded gains (2^g − 1), log2 discount, ideal ordering from the labels;
- pairwise loss: over every pair of profiles with different grades, the share
  ranked the wrong way round, each pair weighted by its grade gap (0 perfect,
  0.5 random; ties count half);
- MRR: reciprocal rank of the first profile graded 3;

each a mean over queries, with a bootstrap 95 % confidence interval of the
difference new − today (queries resampled, 2,000 times).

Today's ranking: one all-MiniLM-L6-v2 vector per profile (English only, first
256 tokens of one text), the hand-written English stemmer, BM25 weight 0.45 on
the raw cosine. The new ranking: multilingual-e5-small, one vector per item of
a profile, Snowball stemming per detected language with the glossary, and the
settings learned on the training part.

    uv run python bench/matchmaking/quality.py            # ≈ 1 minute on two idle cores
    uv run python bench/matchmaking/quality.py --queries train   # the tuning table only
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import TodayDocument
from baseline import opportunity_text as today_opportunity_text
from baseline import profile_text as today_profile_text

from matchmaking.search.document import Document, Filter, centroid, opportunity_items, profile_items
from matchmaking.search.embeddings import Encoder, MiniLMEncoder
from matchmaking.search.engine import AGGREGATIONS, Engine

DATA = Path(__file__).resolve().parent / "data"
WEIGHTS = [round(w, 2) for w in np.arange(0.0, 1.0001, 0.05)]
FLOORS = [0.0, 0.6, 0.65, 0.7, 0.75, 0.8]
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Settings:
    weight: float
    floor: float
    aggregation: str

    def label(self) -> str:
        return f"w={self.weight:.2f} floor={self.floor:.2f} {self.aggregation}"


def load() -> tuple[dict[str, Any], dict[tuple[str, str], int]]:
    data = json.loads((DATA / "labelled.json").read_text())
    grades: dict[tuple[str, str], int] = {}
    with (DATA / "qrels.tsv").open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            grades[(row["query"], row["profile"])] = int(row["grade"])
    return data, grades


def ns_profile(p: dict[str, Any]) -> tuple[Any, list[Any]]:
    org = SimpleNamespace(
        organisation_id=p["id"], description=p["description"], competences=p["competences"], keywords=p["keywords"]
    )
    projects = [
        SimpleNamespace(
            project_id=x["id"], acronym=x["acronym"], title=x["title"], objective=x["objective"], topics=[], keywords=[]
        )
        for x in p["projects"]
    ]
    return org, projects


def ns_query(q: dict[str, Any]) -> Any:
    return SimpleNamespace(
        id=q["id"],
        title=q["title"],
        keywords=q["keywords"],
        summary=q["summary"],
        technology_fields=[],
        market_fields=[],
    )


def profile_fields(p: dict[str, Any]) -> dict[str, str]:
    projects = "\n".join(f"{x['acronym']}: {x['title']}. {x['objective']}" for x in p["projects"])
    return {
        "description": p["description"],
        "competences": "; ".join(p["competences"]),
        "keywords": "; ".join(p["keywords"]),
        "projects": projects,
    }


def query_fields(q: dict[str, Any]) -> dict[str, str]:
    return {"title": q["title"], "summary": q["summary"], "keywords": "; ".join(q["keywords"])}


def build_today(data: dict[str, Any]) -> tuple[Engine, dict[str, Document], float]:
    encoder = MiniLMEncoder(2)
    profiles, queries = data["profiles"], data["queries"]
    texts = [
        today_profile_text(
            p["description"],
            p["competences"],
            p["keywords"],
            [SimpleNamespace(title=x["title"], keywords=[]) for x in p["projects"]],
        )
        for p in profiles
    ] + [today_opportunity_text(q["title"], q["keywords"], q["summary"]) for q in queries]
    started = time.perf_counter()
    vectors = encoder.encode(texts)
    seconds = time.perf_counter() - started
    engine = Engine(bm25_weight=0.45, dense_floor=0.0, aggregation="max")
    for i, p in enumerate(profiles):
        engine.upsert(
            TodayDocument(
                key=f"profile:{p['id']}", kind="profile", entity_id=p["id"], fields=profile_fields(p), vector=vectors[i]
            )
        )
    engine.index.merge()
    qdocs = {
        q["id"]: TodayDocument(
            key=f"opportunity:{q['id']}",
            kind="opportunity",
            entity_id=q["id"],
            fields=query_fields(q),
            vector=vectors[len(profiles) + i],
        )
        for i, q in enumerate(queries)
    }
    return engine, qdocs, seconds


def build_new(data: dict[str, Any]) -> tuple[Engine, dict[str, Document], float, int]:
    encoder = Encoder(2)
    profiles, queries = data["profiles"], data["queries"]
    p_items = [profile_items(*ns_profile(p)) for p in profiles]
    q_items = [opportunity_items(ns_query(q)) for q in queries]
    texts = [it.text for items in p_items + q_items for it in items]
    started = time.perf_counter()
    vectors = encoder.encode(texts)
    seconds = time.perf_counter() - started
    engine = Engine()
    at = 0
    for p, items in zip(profiles, p_items, strict=True):
        v = vectors[at : at + len(items)]
        at += len(items)
        engine.upsert(
            Document(
                key=f"profile:{p['id']}",
                kind="profile",
                entity_id=p["id"],
                fields=profile_fields(p),
                vector=centroid(v),
                items=tuple(items),
                item_vectors=v,
                lang=p["lang"],
            )
        )
    engine.index.merge()
    qdocs = {}
    for q, items in zip(queries, q_items, strict=True):
        v = vectors[at : at + len(items)]
        at += len(items)
        qdocs[q["id"]] = Document(
            key=f"opportunity:{q['id']}",
            kind="opportunity",
            entity_id=q["id"],
            fields=query_fields(q),
            vector=centroid(v),
        )
    return engine, qdocs, seconds, len(texts)


def dcg(grades: list[int]) -> float:
    return sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(grades[:10]))


def metrics(scores: dict[str, float], grades: dict[str, int]) -> tuple[float, float, float]:
    """(nDCG@10, pairwise loss, reciprocal rank of the first grade-3 profile) of one query."""
    ranked = sorted(scores, key=lambda k: (-scores[k], k))
    ideal = dcg(sorted(grades.values(), reverse=True))
    ndcg = dcg([grades[k] for k in ranked]) / ideal if ideal else 0.0
    wrong = total = 0.0
    keys = list(grades)
    for a, b in itertools.combinations(keys, 2):
        if grades[a] == grades[b]:
            continue
        hi, lo = (a, b) if grades[a] > grades[b] else (b, a)
        gap = grades[hi] - grades[lo]
        total += gap
        if scores[hi] < scores[lo]:
            wrong += gap
        elif scores[hi] == scores[lo]:
            wrong += gap / 2
    rr = next((1.0 / (i + 1) for i, k in enumerate(ranked) if grades[k] == 3), 0.0)
    return ndcg, wrong / total if total else 0.0, rr


def evaluate(
    engine: Engine,
    qdocs: dict[str, Document],
    qids: list[str],
    grades: dict[tuple[str, str], int],
    pids: list[str],
    s: Settings,
) -> np.ndarray:
    """Per-query (nDCG@10, loss, RR), shape (len(qids), 3)."""
    out = np.zeros((len(qids), 3))
    for i, qid in enumerate(qids):
        ranking = engine.rank(
            qdocs[qid],
            Filter(kind="profile"),
            limit=len(pids),
            bm25_weight=s.weight,
            dense_floor=s.floor,
            aggregation=s.aggregation,
            explain=False,
        )
        scores = {h.entity_id: h.score for h in ranking.hits}
        scores = {p: scores.get(p, -1.0) for p in pids}
        out[i] = metrics(scores, {p: grades[(qid, p)] for p in pids})
    return out


def bootstrap(diff: np.ndarray, seed: int = 19) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(BOOTSTRAP, diff.size))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", choices=["train", "held_out"], default="held_out")
    args = parser.parse_args()
    data, grades = load()
    pids = [p["id"] for p in data["profiles"]]
    train = [q["id"] for q in data["queries"] if q["split"] == "train"]
    held = [q["id"] for q in data["queries"] if q["split"] == "held_out"]
    load_avg = Path("/proc/loadavg").read_text().split()[0] if os.path.exists("/proc/loadavg") else "?"
    print(
        f"labelled set: {len(pids)} profiles, {len(data['queries'])} queries ({len(train)} train, {len(held)} "
        f"held-out), {len(grades)} judged pairs; load average {load_avg}"
    )

    today, today_q, today_s = build_today(data)
    new, new_q, new_s, n_texts = build_new(data)
    flat = Engine()  # the same profiles and vectors, each profile one vector: the centroid of its items
    for row, key in enumerate(new.index.keys):
        if key is not None:
            doc = new.index.document(row, with_vector=True)
            flat.upsert(
                Document(
                    key=doc.key,
                    kind=doc.kind,
                    entity_id=doc.entity_id,
                    fields=doc.fields,
                    vector=doc.vector,
                    lang=doc.lang,
                )
            )
    flat.index.merge()
    print(f"embedding: today {len(pids) + len(today_q)} texts in {today_s:.1f} s; new {n_texts} items in {new_s:.1f} s")

    started = time.perf_counter()
    grid = [Settings(w, f, a) for w in WEIGHTS for f in FLOORS for a in AGGREGATIONS]
    tuned = []
    for s in grid:
        m = evaluate(new, new_q, train, grades, pids, s).mean(axis=0)
        tuned.append((m[1], -m[0], s, m))
    tuned.sort(key=lambda t: (t[0], t[1], t[2].weight))
    best = tuned[0][2]
    print(
        f"tuning on the training queries: {len(grid)} settings in {time.perf_counter() - started:.1f} s; "
        f"chosen {best.label()} (train loss {tuned[0][3][1]:.3f}, nDCG@10 {tuned[0][3][0]:.3f})"
    )
    print("  best five on train:")
    for loss, _, s, m in tuned[:5]:
        print(f"    {s.label():<32} loss {loss:.3f}  nDCG@10 {m[0]:.3f}")
    today_default = Settings(0.45, 0.0, "max")
    for agg in AGGREGATIONS:
        row = min((t for t in tuned if t[2].aggregation == agg), key=lambda t: t[0])
        print(f"  best with {agg:<6}: {row[2].label():<32} train loss {row[0]:.3f}  nDCG@10 {row[3][0]:.3f}")

    qids = held if args.queries == "held_out" else train
    base = evaluate(today, today_q, qids, grades, pids, today_default)
    variants: list[tuple[str, Engine, dict[str, Document], Settings]] = [
        ("today: hybrid w=0.45 (MiniLM, one vector)", today, today_q, today_default),
        ("today: embeddings only", today, today_q, Settings(0.0, 0.0, "max")),
        ("today: BM25 only", today, today_q, Settings(1.0, 0.0, "max")),
        (f"new: learned ({best.label()})", new, new_q, best),
        ("new: embeddings only (items, max)", new, new_q, Settings(0.0, best.floor, "max")),
        ("new: BM25 only (it/en analysis)", new, new_q, Settings(1.0, best.floor, best.aggregation)),
        ("new: one vector a profile (centroid of its items)", flat, new_q, Settings(best.weight, best.floor, "max")),
    ]
    print(f"\n{args.queries} queries ({len(qids)}):")
    print(f"{'ranking':<58}{'nDCG@10':>9}{'loss':>8}{'MRR':>8}")
    results = {}
    for name, engine, qdocs, s in variants:
        m = evaluate(engine, qdocs, qids, grades, pids, s)
        results[name] = m
        mean = m.mean(axis=0)
        print(f"{name:<58}{mean[0]:>9.3f}{mean[1]:>8.3f}{mean[2]:>8.3f}")
    learned = results[variants[3][0]]
    print("\nnew (learned) − today (hybrid w=0.45), bootstrap 95 % CI over queries:")
    for col, label in ((0, "nDCG@10"), (1, "pairwise loss"), (2, "MRR")):
        diff = learned[:, col] - base[:, col]
        lo, hi = bootstrap(diff)
        print(f"  {label:<14} {diff.mean():+.3f}  [{lo:+.3f}, {hi:+.3f}]")
    by_lang = {
        lang: [i for i, qid in enumerate(qids) if next(q for q in data["queries"] if q["id"] == qid)["lang"] == lang]
        for lang in ("it", "en")
    }
    print("\nby query language (nDCG@10 / loss):")
    for lang, idx in by_lang.items():
        if not idx:
            continue
        a, b = base[idx].mean(axis=0), learned[idx].mean(axis=0)
        print(f"  {lang} ({len(idx)} queries): today {a[0]:.3f} / {a[1]:.3f}   new {b[0]:.3f} / {b[1]:.3f}")


if __name__ == "__main__":
    main()
