"""Writes qrels.tsv: the grade (0–3) of every (query, profile) pair of labelled.json, by the rubric in README.md.

uv run python bench/matchmaking/data/make_qrels.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def grade(query_topic: str, profile: dict, themes: dict[str, str]) -> int:
    """3 main activity on the query's topic; 2 a project on it; 1 any facet in the same theme; else 0."""
    if profile["topic"] == query_topic:
        return 3
    facets = [profile["topic"]] + [p["topic"] for p in profile["projects"]]
    if query_topic in facets:
        return 2
    theme = themes.get(query_topic)
    return 1 if theme is not None and any(themes.get(t) == theme for t in facets) else 0


def main() -> None:
    data = json.loads((HERE / "labelled.json").read_text())
    lines = ["query\tprofile\tgrade"]
    for q in data["queries"]:
        for p in data["profiles"]:
            lines.append(f"{q['id']}\t{p['id']}\t{grade(q['topic'], p, data['themes'])}")
    (HERE / "qrels.tsv").write_text("\n".join(lines) + "\n")
    print(f"{len(lines) - 1} judged pairs")


if __name__ == "__main__":
    main()
