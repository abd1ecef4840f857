"""Demo data: opportunities on the foundation's themes and a call for matches, through the HTTP API.

The themes come from the seeds: personalised medicine (EP PerMed), oncology and
cell therapy (ArTCell, Impact-AML), rare diseases, medical devices and
breast-cancer screening (MammoScreen), early detection of cerebral palsy
(BORNTOGEtTHERe), diagnostics, nutraceutics. Owners are member organisations
that matchmaking learnt of from membership's events (waits for them a while;
without them the opportunities get placeholder owners).

Idempotent: opportunities are found by their reference, and a call for matches
is made only for an opportunity that has no match yet.

    python -m matchmaking.demo --base-url http://127.0.0.1:8004
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import date, timedelta
from typing import Any

import httpx

DEADLINE = (date.today() + timedelta(days=120)).isoformat()

# (reference, preferred owner kind, owner sector, opportunity)
OPPORTUNITIES: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "TOIT-DEMO-001",
        "company",
        "biotech",
        {
            "opportunity_type": "technology_offer",
            "title": "Closed automated manufacturing of CAR-T cells for haematological cancers",
            "summary": "A Tuscan biotech has developed a closed, automated bioreactor process that halves the "
            "cost of autologous CAR-T manufacturing while keeping GMP compliance. Licensing or joint "
            "development with hospitals' cell factories is sought.",
            "keywords": ["CAR-T", "cell therapy", "GMP manufacturing", "acute myeloid leukaemia"],
            "technology_fields": ["cell therapy", "bioprocessing"],
            "market_fields": ["oncology", "haematology"],
            "sectors": ["biotech"],
            "development_stage": "prototype",
            "country": "IT",
        },
    ),
    (
        "TRIT-DEMO-002",
        "hospital",
        "biotech",
        {
            "opportunity_type": "technology_request",
            "title": "Hospital cell factory seeks scalable process for engineered T cell therapies",
            "summary": "A university hospital's cell factory looks for a scalable, closed process to produce "
            "engineered T lymphocytes for clinical trials in refractory leukaemia.",
            "keywords": ["cell therapy", "T cells", "clinical trials", "leukaemia"],
            "technology_fields": ["cell therapy"],
            "market_fields": ["oncology"],
            "sectors": ["biotech"],
            "country": "IT",
        },
    ),
    (
        "RDIT-DEMO-003",
        "company",
        "medical_devices",
        {
            "opportunity_type": "rd_request",
            "title": "Research partner for clinical validation of a microwave breast imaging device",
            "summary": "A medical device SME needs a research group with breast cancer screening and imaging "
            "expertise to validate a microwave mammography prototype in a clinical study.",
            "keywords": ["breast cancer", "screening", "microwave imaging", "clinical validation"],
            "technology_fields": ["medical imaging"],
            "market_fields": ["diagnostics", "women's health"],
            "sectors": ["medical_devices"],
            "development_stage": "lab_tested",
            "country": "IT",
        },
    ),
    (
        "TOIT-DEMO-004",
        "company",
        "diagnostics",
        {
            "opportunity_type": "technology_offer",
            "title": "Liquid biopsy panel for therapy selection in solid tumours",
            "summary": "A next-generation sequencing panel on circulating tumour DNA guides targeted therapy "
            "choice, a building block of personalised medicine in oncology.",
            "keywords": ["liquid biopsy", "ctDNA", "NGS", "personalised medicine", "companion diagnostics"],
            "technology_fields": ["molecular diagnostics", "genomics"],
            "market_fields": ["oncology"],
            "sectors": ["diagnostics"],
            "development_stage": "field_tested",
            "country": "IT",
        },
    ),
    (
        "TRIT-DEMO-005",
        "company",
        "pharma",
        {
            "opportunity_type": "technology_request",
            "title": "Companion diagnostic for patient stratification in a targeted oncology trial",
            "summary": "A pharmaceutical company seeks a validated molecular test, ideally on blood, to stratify "
            "patients for a targeted therapy trial in lung cancer.",
            "keywords": ["companion diagnostics", "patient stratification", "biomarkers", "liquid biopsy"],
            "technology_fields": ["molecular diagnostics"],
            "market_fields": ["oncology"],
            "sectors": ["pharma", "diagnostics"],
            "country": "IT",
        },
    ),
    (
        "PSEU-DEMO-006",
        "foundation",
        "biotech",
        {
            "opportunity_type": "partner_search",
            "title": "Partners for a personalised medicine implementation project (EP PerMed call)",
            "summary": "Consortium in formation on implementing personalised medicine in regional health "
            "systems: pharmacogenomics, health data integration, patient pathways.",
            "keywords": ["personalised medicine", "pharmacogenomics", "health data", "implementation"],
            "technology_fields": ["genomics", "health informatics"],
            "market_fields": ["healthcare"],
            "sectors": ["biotech", "ict_life_sciences"],
            "country": "IT",
            "topic_code": "EP-PERMED-JTC2025",
            "role_sought": "partner",
            "deadline": DEADLINE,
        },
    ),
    (
        "PSEU-DEMO-007",
        "university",
        "medical_devices",
        {
            "opportunity_type": "partner_search",
            "title": "Coordinator wanted: early detection of cerebral palsy in infants with wearable sensors",
            "summary": "Clinical and engineering partners are assembling a proposal on early detection and early "
            "intervention for infants at risk of cerebral palsy, using wearable motion sensors and AI.",
            "keywords": ["cerebral palsy", "early detection", "wearable sensors", "paediatrics"],
            "technology_fields": ["wearables", "machine learning"],
            "market_fields": ["paediatrics", "rehabilitation"],
            "sectors": ["medical_devices", "ict_life_sciences"],
            "country": "IT",
            "topic_code": "HORIZON-HLTH-2025-CARE-04",
            "role_sought": "coordinator",
            "deadline": DEADLINE,
        },
    ),
    (
        "RDIT-DEMO-008",
        "company",
        "pharma",
        {
            "opportunity_type": "rd_request",
            "title": "Natural history study partner for a rare neuromuscular disease",
            "summary": "A pharma SME developing an orphan drug seeks clinical research groups with patient "
            "registries and natural history data for a rare neuromuscular disease.",
            "keywords": ["rare diseases", "orphan drug", "patient registry", "natural history"],
            "technology_fields": ["clinical research"],
            "market_fields": ["rare diseases"],
            "sectors": ["pharma"],
            "country": "IT",
        },
    ),
    (
        "BOIT-DEMO-009",
        "company",
        "nutraceutics",
        {
            "opportunity_type": "business_offer",
            "title": "Distribution of standardised olive polyphenol extracts for supplements",
            "summary": "A producer of standardised olive leaf and olive fruit polyphenol extracts offers supply "
            "and distribution agreements to nutraceutical and cosmeceutical manufacturers.",
            "keywords": ["polyphenols", "olive extract", "nutraceuticals", "supply agreement"],
            "technology_fields": ["natural extracts"],
            "market_fields": ["food supplements", "cosmetics"],
            "sectors": ["nutraceutics"],
            "country": "IT",
        },
    ),
    (
        "BRIT-DEMO-010",
        "company",
        "cosmeceutics",
        {
            "opportunity_type": "business_request",
            "title": "Supplier of natural antioxidant extracts wanted for a dermocosmetic line",
            "summary": "A cosmeceutical company looks for suppliers of standardised natural antioxidants, such as "
            "polyphenols, for an anti-ageing dermocosmetic line.",
            "keywords": ["antioxidants", "polyphenols", "dermocosmetics", "supplier"],
            "technology_fields": ["natural extracts"],
            "market_fields": ["cosmetics"],
            "sectors": ["cosmeceutics"],
            "country": "IT",
        },
    ),
    (
        "TOIT-DEMO-011",
        "research_institute",
        "ict_life_sciences",
        {
            "opportunity_type": "technology_offer",
            "title": "AI platform for digital pathology and tumour grading",
            "summary": "Deep learning models that grade tumours on whole-slide images and quantify biomarkers, "
            "ready for licensing to diagnostics companies.",
            "keywords": ["digital pathology", "artificial intelligence", "tumour grading", "whole-slide imaging"],
            "technology_fields": ["machine learning", "medical imaging"],
            "market_fields": ["diagnostics", "oncology"],
            "sectors": ["ict_life_sciences", "diagnostics"],
            "development_stage": "prototype",
            "country": "IT",
        },
    ),
    (
        "TRIT-DEMO-012",
        "company",
        "diagnostics",
        {
            "opportunity_type": "technology_request",
            "title": "Image analysis software to automate histology reading",
            "summary": "A diagnostics laboratory network wants software that automates the reading of "
            "histology slides and highlights suspicious regions for pathologists.",
            "keywords": ["digital pathology", "image analysis", "histology"],
            "technology_fields": ["medical imaging"],
            "market_fields": ["diagnostics"],
            "sectors": ["diagnostics"],
            "country": "IT",
        },
    ),
]


def _organisations(client: httpx.Client, wait: float) -> list[dict[str, Any]]:
    """Active member organisations known to matchmaking (waits until their number stops growing)."""
    deadline = time.monotonic() + wait
    seen = -1
    orgs: list[dict[str, Any]] = []
    while True:
        orgs = []
        offset = 0
        while True:
            page = client.get("/organisations", params={"status": "active", "limit": 500, "offset": offset})
            page.raise_for_status()
            body = page.json()
            orgs += body["items"]
            offset += body["limit"]
            if offset >= body["total"]:
                break
        if (orgs and len(orgs) == seen) or time.monotonic() > deadline:
            return orgs
        seen = len(orgs)
        time.sleep(2.0)


def _owner(orgs: list[dict[str, Any]], kind: str, sector: str, index: int) -> str:
    for wanted in (
        lambda o: o["kind"] == kind and sector in o["sectors"],
        lambda o: o["kind"] == kind,
        lambda o: sector in o["sectors"],
    ):
        candidates = sorted((o for o in orgs if wanted(o)), key=lambda o: o["organisation_id"])
        if candidates:
            return str(candidates[index % len(candidates)]["organisation_id"])
    # No member organisation known yet: a made-up owner, still an id in membership's form (a UUID).
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"distretto:demo-organisation-{index + 1}"))


def load(
    base_url: str, token: str | None = None, wait: float = 60.0, headers: dict[str, str] | None = None
) -> dict[str, int]:
    """Load the demo opportunities and ask for matches; returns what was created."""
    headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    created = {"opportunities": 0, "matches": 0}
    with httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=60) as client:
        orgs = _organisations(client, wait)
        ids = []
        for i, (reference, kind, sector, body) in enumerate(OPPORTUNITIES):
            found = client.get("/opportunities", params={"reference": reference})
            found.raise_for_status()
            if found.json()["items"]:
                ids.append(found.json()["items"][0]["id"])
                continue
            payload = {**body, "reference": reference, "owner_organisation_id": _owner(orgs, kind, sector, i)}
            r = client.post("/opportunities", json=payload)
            if r.status_code != 201:
                sys.exit(f"cannot create {reference}: {r.status_code} {r.text}")
            ids.append(r.json()["id"])
            created["opportunities"] += 1
        for oid in ids:
            existing = client.get("/matches", params={"opportunity_id": oid, "limit": 1})
            existing.raise_for_status()
            if existing.json()["total"]:
                continue
            r = client.post(f"/opportunities/{oid}/matches", json={"limit": 3, "min_score": 0.2})
            if r.status_code != 201:
                sys.exit(f"call for matches failed for {oid}: {r.status_code} {r.text}")
            created["matches"] += len(r.json())
    return created


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default="http://127.0.0.1:8004")
    parser.add_argument("--token", default=None, help="bearer token (when going through the gateway)")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for member profiles")
    args = parser.parse_args()
    created = load(args.base_url, args.token, args.wait)
    print(f"matchmaking demo: {created['opportunities']} opportunities and {created['matches']} matches created")


if __name__ == "__main__":
    main()
