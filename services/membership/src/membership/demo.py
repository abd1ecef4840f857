"""Demo data: the district the foundation describes, loaded through the service's HTTP API.

The seeds name the actors — the universities of Firenze, Pisa and Siena, the
Scuola Normale, Sant'Anna and IMT Lucca, the CNR institutes, the university
hospitals, the local health authorities and the foundations — and give the
aggregates of the 190+ member companies: 11,000+ staff, ~1,400 in R&D, €5.5 bn
turnover, 37,000 m² of labs, 800+ patents. The institutions are real names;
the companies, people and numbers are fictional, generated from a fixed seed
so every run produces the same register, with totals just above the seeds'.

Idempotent: organisations are matched by name, contacts by email, fee plans by
name; a second run changes nothing.

    python -m membership.demo --base-url http://127.0.0.1:8001 [--token BEARER]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import httpx

from membership.organisations.domain import Sector, partita_iva_check_digit

YEAR = 2024
TARGETS = {"staff": 11_300, "rd_staff": 1_420, "turnover_eur": 5.6e9, "lab_m2": 37_500, "patents": 830}
"""Company totals: just above the seeds' 11,000 / ~1,400 / 5.5 bn / 37,000 m² / 800."""
COMPANIES = 194

FEE_PLANS = [
    {"name": "Impresa", "amount_eur": 1200, "period_months": 12, "grace_days": 60},
    {"name": "Ente pubblico e di ricerca", "amount_eur": 0, "period_months": 12, "grace_days": 90},
]

# (name, city, province, ISTAT-like tax office code) of Tuscan provinces, weighted by where the district is.
PLACES = [
    ("Siena", "SI", "052", 5),
    ("Firenze", "FI", "048", 6),
    ("Sesto Fiorentino", "FI", "048", 3),
    ("Pisa", "PI", "050", 5),
    ("Pontedera", "PI", "050", 1),
    ("Lucca", "LU", "046", 2),
    ("Livorno", "LI", "049", 1),
    ("Arezzo", "AR", "051", 1),
    ("Prato", "PO", "100", 1),
    ("Pistoia", "PT", "047", 1),
    ("Grosseto", "GR", "053", 1),
    ("Massa", "MS", "045", 1),
]

SECTOR_PROFILE: dict[Sector, dict[str, Any]] = {
    Sector.biotech: {
        "ateco": "72.11",
        "words": ["Bio", "Gen", "Cell", "Immuno", "Proteo", "Vacci"],
        "competences": ["monoclonal antibodies", "cell therapy", "vaccine adjuvants", "gene editing", "bioprocess"],
    },
    Sector.pharma: {
        "ateco": "21.20",
        "words": ["Pharma", "Farmaceutici", "Thera", "Galenica", "Medicinali"],
        "competences": ["drug formulation", "GMP manufacturing", "clinical trials", "rare diseases", "oncology"],
    },
    Sector.medical_devices: {
        "ateco": "32.50",
        "words": ["Medical", "Devices", "Ortho", "Cardio", "Surgical"],
        "competences": [
            "microwave imaging",
            "implantable devices",
            "robotic surgery",
            "biomaterials",
            "MDR compliance",
        ],
    },
    Sector.diagnostics: {
        "ateco": "26.60",
        "words": ["Diagnostica", "Lab", "Dx", "Screening", "Assay"],
        "competences": ["in vitro diagnostics", "liquid biopsy", "point-of-care tests", "breast cancer screening"],
    },
    Sector.nutraceutics: {
        "ateco": "10.89",
        "words": ["Nutra", "Natura", "Botanica", "Integra", "Olea"],
        "competences": ["food supplements", "probiotics", "botanical extracts", "clinical nutrition"],
    },
    Sector.cosmeceutics: {
        "ateco": "20.42",
        "words": ["Cosmetica", "Derma", "Skin", "Bellezza", "Cosmo"],
        "competences": ["dermocosmetics", "active ingredients", "skin microbiome", "safety testing"],
    },
    Sector.ict_life_sciences: {
        "ateco": "62.01",
        "words": ["Data", "Digital", "Health", "Bioinformatica", "AI"],
        "competences": [
            "bioinformatics",
            "medical AI",
            "clinical data platforms",
            "personalised medicine",
            "telemedicine",
        ],
    },
}
SECTOR_WEIGHTS = {
    Sector.biotech: 30,
    Sector.pharma: 18,
    Sector.medical_devices: 22,
    Sector.diagnostics: 14,
    Sector.nutraceutics: 8,
    Sector.cosmeceutics: 6,
    Sector.ict_life_sciences: 14,
}
NAME_ENDINGS = ["Toscana", "Siena", "Etruria", "Arno", "Chianti", "Tirreno", "Apuana", "Medicea", "Italia", "Lab"]
LEGAL_FORMS = ["S.r.l.", "S.p.A.", "S.r.l.", "S.r.l. SB", "S.r.l."]
FIRST_NAMES = ["Giulia", "Marco", "Francesca", "Luca", "Chiara", "Alessandro", "Sara", "Matteo", "Elena", "Lorenzo"]
LAST_NAMES = ["Rossi", "Bianchi", "Ricci", "Marini", "Galli", "Conti", "Bruno", "Fabbri", "Lombardi", "Moretti"]
ROLES = ["CEO", "R&D director", "Business development", "Technology transfer officer", "Project manager"]


def _inst(name: str, kind: str, city: str, province: str, sectors: list[str], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "city": city,
        "province": province,
        "sectors": sectors,
        "description": description,
    }


ALL_SECTORS = [s.value for s in Sector]
INSTITUTIONS: list[dict[str, Any]] = [
    _inst("Università degli Studi di Firenze", "university", "Firenze", "FI", ALL_SECTORS, "University of Florence"),
    _inst("Università di Pisa", "university", "Pisa", "PI", ALL_SECTORS, "University of Pisa"),
    _inst("Università degli Studi di Siena", "university", "Siena", "SI", ALL_SECTORS, "University of Siena"),
    _inst("Scuola Normale Superiore", "university", "Pisa", "PI", ["biotech"], "School of advanced studies"),
    _inst("Scuola Superiore Sant'Anna", "university", "Pisa", "PI", ["medical_devices"], "Biorobotics, medicine"),
    _inst("IMT Scuola Alti Studi Lucca", "university", "Lucca", "LU", ["ict_life_sciences"], "Advanced studies"),
    _inst("CNR - Istituto di Fisiologia Clinica", "research_institute", "Pisa", "PI", ["diagnostics"], "CNR IFC"),
    _inst("CNR - Istituto di Neuroscienze", "research_institute", "Pisa", "PI", ["biotech"], "CNR IN"),
    _inst(
        "CNR - Istituto di Fisica Applicata Nello Carrara",
        "research_institute",
        "Sesto Fiorentino",
        "FI",
        ["medical_devices"],
        "CNR IFAC: photonics and sensors for health",
    ),
    _inst(
        "CNR - Istituto di Chimica dei Composti Organometallici",
        "research_institute",
        "Sesto Fiorentino",
        "FI",
        ["pharma"],
        "CNR ICCOM",
    ),
    _inst("AOU Careggi", "hospital", "Firenze", "FI", ["diagnostics"], "Azienda Ospedaliero-Universitaria Careggi"),
    _inst("AOU Pisana", "hospital", "Pisa", "PI", ["diagnostics"], "Azienda Ospedaliero-Universitaria Pisana"),
    _inst("AOU Senese", "hospital", "Siena", "SI", ["diagnostics"], "Azienda Ospedaliero-Universitaria Senese"),
    _inst("AOU Meyer", "hospital", "Firenze", "FI", ["diagnostics"], "Paediatric university hospital"),
    _inst("Azienda USL Toscana Centro", "health_authority", "Firenze", "FI", [], "Local health authority"),
    _inst("Azienda USL Toscana Nord Ovest", "health_authority", "Pisa", "PI", [], "Local health authority"),
    _inst("Azienda USL Toscana Sud Est", "health_authority", "Siena", "SI", [], "Local health authority"),
    _inst(
        "Fondazione Toscana Life Sciences",
        "foundation",
        "Siena",
        "SI",
        ALL_SECTORS,
        "Runs the Tuscan life-sciences district: technology transfer, incubation, EU projects",
    ),
    _inst("Fondazione Pisana per la Scienza", "foundation", "Pisa", "PI", ["biotech"], "Research foundation"),
    _inst("Fondazione Monasterio", "foundation", "Pisa", "PI", ["medical_devices"], "Cardiology and research"),
]


@dataclass
class DemoOrganisation:
    """One organisation of the demo register."""

    body: dict[str, Any]
    figures: dict[str, Any] | None = None
    contacts: list[dict[str, Any]] = field(default_factory=list)
    plan: str = "Ente pubblico e di ricerca"


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def _vat(progressive: int, office: str) -> str:
    first_ten = f"{progressive:07d}{office}"
    return first_ten + str(partita_iva_check_digit(first_ten))


def _scale(weights: list[float], total: float) -> list[float]:
    s = sum(weights)
    return [w * total / s for w in weights]


def _contacts(rng: random.Random, domain: str, n: int) -> list[dict[str, Any]]:
    people: list[dict[str, Any]] = []
    for _ in range(n):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = f"{_slug(first)}.{_slug(last)}@{domain}"
        if any(p["email"] == email for p in people):
            continue
        people.append(
            {
                "first_name": first,
                "last_name": last,
                "email": email,
                "role": rng.choice(ROLES),
                "consent_newsletter": rng.random() < 0.7,
                "consent_data_processing": True,
                "consent_source": "demo import",
            }
        )
    return people


def build_demo(seed: int = 2011) -> list[DemoOrganisation]:
    """The demo register: institutions first, then the companies (deterministic for a seed)."""
    rng = random.Random(seed)
    out = [
        DemoOrganisation(
            body=inst | {"country": "IT", "keywords": ["research", "life sciences"]},
            contacts=_contacts(rng, f"{_slug(inst['name'])[:30]}.example", 2) if i % 3 == 0 else [],
        )
        for i, inst in enumerate(INSTITUTIONS)
    ]

    sectors = list(SECTOR_WEIGHTS)
    # Firm sizes are heavy-tailed: many micro and small firms, a few large manufacturers.
    size_weights = [rng.lognormvariate(0, 1.3) for _ in range(COMPANIES)]
    staff = [max(1, round(x)) for x in _scale(size_weights, TARGETS["staff"])]
    staff[staff.index(max(staff))] += max(0, int(TARGETS["staff"]) - sum(staff))
    productivity = [rng.lognormvariate(0, 0.5) for _ in range(COMPANIES)]
    turnover = _scale([s * p for s, p in zip(staff, productivity, strict=True)], TARGETS["turnover_eur"])
    rd_share = [rng.uniform(0.03, 0.4) for _ in range(COMPANIES)]
    rd_raw = _scale([s * r for s, r in zip(staff, rd_share, strict=True)], TARGETS["rd_staff"])
    rd = [min(s, round(r)) for s, r in zip(staff, rd_raw, strict=True)]
    # Rounding and clamping lose a few: give them to firms with room, so the total holds.
    i = 0
    while sum(rd) < TARGETS["rd_staff"]:
        if rd[i % COMPANIES] < staff[i % COMPANIES]:
            rd[i % COMPANIES] += 1
        i += 1
    lab = [round(x, 1) for x in _scale([r + 1 for r in rd], TARGETS["lab_m2"] + 50)]
    patents = [round(x) for x in _scale([r * rng.uniform(0.2, 1.8) + 0.1 for r in rd], TARGETS["patents"] + 20)]

    used: set[str] = set()
    for n in range(COMPANIES):
        main = rng.choices(sectors, weights=[SECTOR_WEIGHTS[s] for s in sectors])[0]
        company_sectors = [main] + ([rng.choice(sectors)] if rng.random() < 0.3 else [])
        profile = SECTOR_PROFILE[main]
        while True:
            name = f"{rng.choice(profile['words'])}{rng.choice(NAME_ENDINGS)} {rng.choice(LEGAL_FORMS)}"
            if name not in used:
                used.add(name)
                break
        city, province, office, _ = rng.choices(PLACES, weights=[p[3] for p in PLACES])[0]
        domain = f"{_slug(name.rsplit(' ', 1)[0])}.example"
        competences = rng.sample(profile["competences"], k=min(2, len(profile["competences"])))
        out.append(
            DemoOrganisation(
                body={
                    "name": name,
                    "kind": "company",
                    "sectors": [s.value for s in dict.fromkeys(company_sectors)],
                    "address": f"Via {rng.choice(LAST_NAMES)} {rng.randint(1, 120)}",
                    "city": city,
                    "province": province,
                    "country": "IT",
                    "website": f"https://www.{domain}",
                    "vat_number": _vat(1_000_000 + n * 7919, office),
                    "ateco_code": profile["ateco"],
                    "description": f"{main.value.replace('_', ' ').capitalize()} company in {city}: "
                    + ", ".join(competences),
                    "competences": competences,
                    "keywords": [main.value.replace("_", " "), *competences],
                },
                figures={
                    "staff": staff[n],
                    "rd_staff": rd[n],
                    "turnover_eur": round(turnover[n], -3),
                    "lab_m2": lab[n],
                    "patents": patents[n],
                },
                contacts=_contacts(rng, domain, rng.choice([1, 2])) if n % 4 == 0 else [],
                plan="Impresa",
            )
        )
    return out


async def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise RuntimeError(f"{response.request.method} {response.request.url}: {response.status_code} {response.text}")
    return response.json()


async def _all_pages(client: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = await _check(await client.get(path, params={"limit": 500, "offset": len(items)}))
        items += page["items"]
        if len(items) >= page["total"] or not page["items"]:
            return items


async def load_demo(client: httpx.AsyncClient, seed: int = 2011, concurrency: int = 6) -> dict[str, int]:
    """Load the demo register through the API; returns what was added (all zero on a second run)."""
    added = {"fee_plans": 0, "organisations": 0, "approved": 0, "figures": 0, "contacts": 0}
    plans = {p["name"]: p for p in await _all_pages(client, "/fee-plans")}
    for plan in FEE_PLANS:
        if plan["name"] not in plans:
            plans[plan["name"]] = await _check(await client.post("/fee-plans", json=plan))
            added["fee_plans"] += 1
    existing = {o["name"]: o for o in await _all_pages(client, "/organisations")}
    # A few organisations at a time: the calls of one organisation stay in order.
    gate = asyncio.Semaphore(concurrency)

    async def load(demo: DemoOrganisation) -> None:
        async with gate:
            org = existing.get(demo.body["name"])
            if org is None:
                org = await _check(await client.post("/organisations", json=demo.body))
                added["organisations"] += 1
            oid = org["id"]
            if org["status"] == "applied":
                plan_id = plans[demo.plan]["id"]
                await _check(await client.post(f"/organisations/{oid}/approve", json={"fee_plan_id": plan_id}))
                added["approved"] += 1
            if demo.figures:
                latest = org.get("latest_figures") or {}
                if latest.get("year") != YEAR or any(latest.get(k) != v for k, v in demo.figures.items()):
                    await _check(await client.put(f"/organisations/{oid}/figures/{YEAR}", json=demo.figures))
                    added["figures"] += 1
            if demo.contacts:
                known = {c["email"].lower() for c in await _all_pages(client, f"/organisations/{oid}/contacts")}
                for person in demo.contacts:
                    if person["email"].lower() not in known:
                        await _check(await client.post(f"/organisations/{oid}/contacts", json=person))
                        added["contacts"] += 1

    await asyncio.gather(*(load(demo) for demo in build_demo(seed)))
    return added


def main() -> None:
    """``python -m membership.demo --base-url …``."""
    parser = argparse.ArgumentParser(description="Load the membership demo data through the HTTP API")
    parser.add_argument("--base-url", default="http://127.0.0.1:8001")
    parser.add_argument("--seed", type=int, default=2011)
    parser.add_argument("--token", default=None, help="bearer token (when going through the gateway)")
    args = parser.parse_args()
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}

    async def run() -> dict[str, int]:
        async with httpx.AsyncClient(base_url=args.base_url, timeout=30, headers=headers) as client:
            return await load_demo(client, args.seed)

    added = asyncio.run(run())
    print("membership demo loaded: " + ", ".join(f"{k} +{v}" for k, v in added.items()))


if __name__ == "__main__":
    main()
