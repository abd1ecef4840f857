"""Demo data: the five projects the foundation's texts name, loaded through the HTTP API.

    python -m projects.demo --base-url http://127.0.0.1:8002

Facts from the seeds are kept as given (ArTCell under the EIC Pathfinder,
"bottom-up manufacturing of artificial anti-tumor T cells"; BORNTOGEtTHERe on
early detection of cerebral palsy; EP PerMed: 50+ partners, 24 countries,
€335 M over 10 years, TLS sustaining the innovation and internationalisation
pillars; Impact-AML under Mission Cancer, pragmatic trials for refractory AML;
MammoScreen: microwave breast imaging, four years, €7 M, co-funded by the EC
and the UK). Everything else (dates, topics, amounts, consortia, work plans)
is a plausible demo value: such projects carry the keyword ``demo`` and a note
saying so.

Some deliverables are placed relative to today (one due at the end of this
month, one at the end of last month) so the deadline engine has something to
say in a demo. Idempotent: everything is matched by acronym / name / number and
only what is missing is added, so a second run adds nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import date
from typing import Any

import httpx

from projects.workplan.domain import duration_months, month_end

DEMO_NOTE = (
    "Demo data: the facts stated in the foundation's own texts are real; dates, topics, amounts, "
    "consortium and work plan are plausible demo values."
)

TLS = "Fondazione Toscana Life Sciences"

# (name, role, country, organisation type, EC contribution in €)
Partner = tuple[str, str, str, str, float | None]

PROJECTS: list[dict[str, Any]] = [
    {
        "project": {
            "acronym": "ArTCell",
            "title": "Bottom-up manufacturing of artificial anti-tumor T cells",
            "status": "signed",
            "start_date": "2023-09-01",
            "end_date": "2027-08-31",
            "total_cost": 3_050_000.0,
            "ec_max_contribution": 3_050_000.0,
            "framework_programme": "HORIZON",
            "funding_scheme": "HORIZON-EIC",
            "legal_basis": "HORIZON.3.1",
            "topics": ["HORIZON-EIC-2022-PATHFINDEROPEN-01-01"],
            "objective": "A project approved by the European Union under the Pathfinder programme with the aim "
            "of developing more effective cancer treatments based on T cells, by manufacturing artificial "
            "anti-tumour T cells bottom-up.",
            "keywords": ["T cells", "synthetic biology", "immunotherapy", "demo"],
            "foundation_role": "partner",
            "thematic_areas": ["oncology", "advanced_therapies"],
        },
        "partners": [
            ("Università degli Studi di Firenze", "coordinator", "IT", "HES", 780_000.0),
            (TLS, "participant", "IT", "OTH", 310_000.0),
            ("Technische Universiteit Delft", "participant", "NL", "HES", 690_000.0),
            ("Max-Planck-Gesellschaft zur Förderung der Wissenschaften eV", "participant", "DE", "REC", 720_000.0),
            ("Cellvia Biotech S.r.l.", "participant", "IT", "PRC", 550_000.0),
        ],
    },
    {
        "project": {
            "acronym": "BORNTOGEtTHERe",
            "title": "Early detection and early intervention for infants at risk of cerebral palsy",
            "status": "signed",
            "start_date": "2023-01-01",
            "end_date": "2027-12-31",
            "total_cost": 5_980_000.0,
            "ec_max_contribution": 5_980_000.0,
            "framework_programme": "HORIZON",
            "funding_scheme": "HORIZON-RIA",
            "legal_basis": "HORIZON.2.1",
            "topics": ["HORIZON-HLTH-2022-DISEASE-06-02"],
            "objective": "Cerebral palsy is the most common cause of physical disability in infants in both "
            "high- and low-income countries. The project implements early detection and early intervention "
            "service delivery in infants at risk for cerebral palsy, to promote psychomotor development and "
            "maternal health, through the first clinical practice guidelines in Europe, in low-income "
            "countries and among hard-to-reach populations.",
            "keywords": ["cerebral palsy", "early intervention", "clinical guidelines", "demo"],
            "foundation_role": "partner",
            "thematic_areas": ["maternal_child_health", "neurology"],
        },
        "partners": [
            ("Università di Pisa", "coordinator", "IT", "HES", 1_150_000.0),
            (TLS, "participant", "IT", "OTH", 280_000.0),
            ("IRCCS Fondazione Stella Maris", "participant", "IT", "REC", 900_000.0),
            ("Karolinska Institutet", "participant", "SE", "HES", 850_000.0),
            ("Makerere University", "participant", "UG", "HES", 600_000.0),
        ],
    },
    {
        "project": {
            "acronym": "EP PerMed",
            "title": "European Partnership for Personalised Medicine",
            "status": "signed",
            "start_date": "2023-11-01",
            "end_date": "2033-10-31",
            "total_cost": 335_000_000.0,
            "ec_max_contribution": 100_500_000.0,
            "framework_programme": "HORIZON",
            "funding_scheme": "HORIZON-COFUND",
            "legal_basis": "HORIZON.2.1",
            "topics": ["HORIZON-HLTH-2023-CARE-08-01"],
            "objective": "The largest European initiative dedicated to personalised medicine: over 50 "
            "international partners from 24 European and non-European countries, co-financed by the European "
            "Commission with a budget of 335 million euros for 10 years, to become a global platform for "
            "precision medicine through research, development, innovation and implementation. TLS sustains the "
            "innovation and internationalisation pillars.",
            "keywords": ["personalised medicine", "partnership", "co-funding", "demo"],
            "foundation_role": "partner",
            "thematic_areas": ["personalised_medicine"],
            "notes": "50+ partners in 24 countries; only a few are entered in this demo.",
        },
        "partners": [
            ("Ministero della Salute", "coordinator", "IT", "PUB", 9_000_000.0),
            (TLS, "participant", "IT", "OTH", 1_200_000.0),
            ("Regione Toscana", "participant", "IT", "PUB", 2_500_000.0),
            ("Deutsches Zentrum für Luft- und Raumfahrt eV", "participant", "DE", "REC", 6_000_000.0),
            ("Agence Nationale de la Recherche", "participant", "FR", "PUB", 7_500_000.0),
            ("Instituto de Salud Carlos III", "participant", "ES", "PUB", 5_000_000.0),
        ],
    },
    {
        "project": {
            "acronym": "Impact-AML",
            "title": "Pragmatic clinical trials to optimise treatments for patients with refractory cancers",
            "status": "signed",
            "start_date": "2024-01-01",
            "end_date": "2028-12-31",
            "total_cost": 7_490_000.0,
            "ec_max_contribution": 7_490_000.0,
            "framework_programme": "HORIZON",
            "funding_scheme": "HORIZON-RIA",
            "legal_basis": "HORIZON.2.1",
            "topics": ["HORIZON-MISS-2023-CANCER-01-03"],
            "objective": "Funded under the Horizon Europe Mission Cancer and focused on acute myeloid leukaemia, "
            "a high-impact disease with no standard of care, where new evidence on possible therapies is "
            "urgently needed: pragmatic clinical trials for refractory AML.",
            "keywords": ["acute myeloid leukaemia", "pragmatic trials", "Mission Cancer", "demo"],
            "foundation_role": "partner",
            "thematic_areas": ["oncology", "rare_diseases"],
        },
        "partners": [
            ("Stichting Hemato-Oncologie voor Volwassenen Nederland", "coordinator", "NL", "REC", 1_900_000.0),
            (TLS, "participant", "IT", "OTH", 350_000.0),
            ("Azienda Ospedaliero-Universitaria Careggi", "participant", "IT", "PUB", 800_000.0),
            ("Università degli Studi di Siena", "participant", "IT", "HES", 600_000.0),
            ("Universitätsklinikum Heidelberg", "participant", "DE", "HES", 1_100_000.0),
        ],
    },
    {
        "project": {
            "acronym": "MammoScreen",
            "title": "Innovative and safe microwave-based imaging technology to make breast cancer screening more "
            "accurate, inclusive and female-friendly",
            "status": "signed",
            "start_date": "2023-10-01",
            "end_date": "2027-09-30",
            "total_cost": 7_000_000.0,
            "ec_max_contribution": 5_900_000.0,
            "framework_programme": "HORIZON",
            "funding_scheme": "HORIZON-RIA",
            "legal_basis": "HORIZON.2.1",
            "topics": ["HORIZON-HLTH-2022-TOOL-11-01"],
            "objective": "A four-year European project, co-funded by the European Commission and the United "
            "Kingdom with a total budget of 7 million euros, developing microwave-based breast imaging to make "
            "screening more accurate, inclusive and female-friendly.",
            "keywords": ["breast cancer", "microwave imaging", "screening", "demo"],
            "foundation_role": "partner",
            "thematic_areas": ["oncology", "medical_devices", "diagnostics"],
        },
        "partners": [
            ("University of Galway", "coordinator", "IE", "HES", 1_300_000.0),
            (TLS, "participant", "IT", "OTH", 300_000.0),
            ("Scuola Superiore Sant'Anna", "participant", "IT", "HES", 700_000.0),
            ("Università di Pisa", "participant", "IT", "HES", 650_000.0),
            ("University of Bath", "associated_partner", "UK", "HES", None),  # UK-funded, not EC
        ],
    },
]

WORK_PACKAGES = [
    (1, "Project management and coordination"),
    (2, "Research and development"),
    (3, "Validation and pilots"),
    (4, "Dissemination, exploitation and communication"),
]


def work_plan(start: date, end: date, today: date) -> dict[str, list[dict[str, Any]]]:
    """A plausible work plan; two deliverables sit around today so deadline events fire in a demo."""
    months = duration_months(start, end)
    now = duration_months(start, today)  # the project month today falls in
    wps = []
    for number, title in WORK_PACKAGES:
        first = 1 if number in (1, 4) else 3
        wps.append({"number": number, "title": title, "start_month": first, "end_month": months})
    deliverables = [
        {
            "number": "D1.1",
            "title": "Project handbook and quality plan",
            "type": "R",
            "work_package": 1,
            "due_month": 3,
        },
        {"number": "D1.2", "title": "Data management plan", "type": "DMP", "work_package": 1, "due_month": 6},
        {
            "number": "D4.1",
            "title": "Project website and visual identity",
            "type": "DEC",
            "work_package": 4,
            "due_month": 4,
        },
        {
            "number": "D2.1",
            "title": "Interim research report",
            "type": "R",
            "dissemination": "SEN",
            "work_package": 2,
            "due_month": min(months, 18),
        },
        {
            "number": "D4.2",
            "title": "Final dissemination and exploitation report",
            "type": "R",
            "work_package": 4,
            "due_month": months,
        },
    ]
    if 2 <= now <= months:
        deliverables.append(
            {"number": "D3.1", "title": "Pilot protocol", "type": "R", "work_package": 3, "due_month": now}
        )
    if 3 <= now <= months + 1:
        deliverables.append(
            {
                "number": "D3.2",
                "title": "Pilot data set",
                "type": "DATA",
                "dissemination": "SEN",
                "work_package": 3,
                "due_month": now - 1,
            }
        )
    milestones = [
        {
            "number": "MS1",
            "title": "Kick-off meeting held",
            "work_package": 1,
            "due_month": 1,
            "means_of_verification": "Minutes of the kick-off meeting",
        },
        {
            "number": "MS2",
            "title": "Pilot sites ready",
            "work_package": 3,
            "due_month": min(months, 12),
            "means_of_verification": "Ethics approvals obtained at every pilot site",
        },
        {
            "number": "MS3",
            "title": "Final results presented",
            "work_package": 4,
            "due_month": months,
            "means_of_verification": "Final conference held",
        },
    ]
    periods = []
    first = 1
    number = 1
    while first <= months:
        last = min(months, first + 17)
        periods.append({"number": number, "start_month": first, "end_month": last})
        first, number = last + 1, number + 1
    return {"work-packages": wps, "deliverables": deliverables, "milestones": milestones, "reporting-periods": periods}


async def _all(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    offset = 0
    while True:
        response = await client.get(path, params={**params, "limit": 500, "offset": offset})
        response.raise_for_status()
        page = response.json()
        items += page["items"]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return items


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    if response.status_code >= 400:
        raise RuntimeError(f"POST {path} → {response.status_code}: {response.text}")
    return dict(response.json())


async def load(client: httpx.AsyncClient, today: date | None = None) -> dict[str, int]:
    """Add whatever of the demo data is missing; returns how many things were added."""
    today = today or date.today()
    added = {
        "projects": 0,
        "participants": 0,
        "work-packages": 0,
        "deliverables": 0,
        "milestones": 0,
        "reporting-periods": 0,
        "submitted": 0,
        "reached": 0,
    }
    for spec in PROJECTS:
        data = dict(spec["project"])
        data["notes"] = (data.get("notes", "") + " " + DEMO_NOTE).strip()
        existing = [p for p in await _all(client, "/projects", q=data["acronym"]) if p["acronym"] == data["acronym"]]
        if existing:
            project = existing[0]
        else:
            project = await _post(client, "/projects", data)
            added["projects"] += 1
        base = f"/projects/{project['id']}"

        present = {p["name"] for p in await _all(client, f"{base}/participants")}
        for name, role, country, kind, ec in spec["partners"]:
            if name not in present:
                body = {
                    "name": name,
                    "role": role,
                    "country": country,
                    "organisation_type": kind,
                    "ec_contribution": ec,
                }
                await _post(client, f"{base}/participants", body)
                added["participants"] += 1

        plan = work_plan(date.fromisoformat(data["start_date"]), date.fromisoformat(data["end_date"]), today)
        for part, rows in plan.items():
            have = {row["number"] for row in await _all(client, f"{base}/{part}")}
            for row in rows:
                if row["number"] not in have:
                    await _post(client, f"{base}/{part}", row)
                    added[part] += 1

        # Early deliverables and milestones long past are done (D3.x stay open: they feed the deadline engine).
        start = date.fromisoformat(data["start_date"])
        for d in await _all(client, f"{base}/deliverables"):
            due = date.fromisoformat(d["due_date"])
            # "late" too: a scheduled scan may have run while the demo was loading.
            if d["status"] in ("planned", "late") and not d["number"].startswith("D3.") and (today - due).days > 45:
                await _post(client, f"{base}/deliverables/{d['id']}/submit", {"submitted_on": d["due_date"]})
                added["submitted"] += 1
        for ms in await _all(client, f"{base}/milestones"):
            due = month_end(start, ms["due_month"])
            if ms["status"] == "planned" and (today - due).days > 30:
                await _post(client, f"{base}/milestones/{ms['id']}/reach", {"reached_on": due.isoformat()})
                added["reached"] += 1
    return added


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m projects.demo``."""
    parser = argparse.ArgumentParser(prog="projects.demo", description="Load the projects demo data")
    parser.add_argument("--base-url", default="http://127.0.0.1:8002")
    parser.add_argument("--token", default=None, help="bearer token (when going through the gateway)")
    args = parser.parse_args(argv)

    async def go() -> dict[str, int]:
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        async with httpx.AsyncClient(base_url=args.base_url, timeout=30, headers=headers) as client:
            return await load(client)

    try:
        added = asyncio.run(go())
    except (httpx.HTTPError, RuntimeError) as exc:
        print(f"demo load failed: {exc}", file=sys.stderr)
        return 1
    print("projects demo: added " + ", ".join(f"{v} {k}" for k, v in added.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
