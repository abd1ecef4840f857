"""Load the demo data through the newsletter's HTTP API (idempotent: a second run adds nothing).

    python -m newsletter.demo --base-url http://127.0.0.1:8003

Creates the public lists, a template, a handful of pre-confirmed subscribers (consent collected
at the foundation's events, recorded as such) and a draft campaign; with ``--send`` it also starts
the campaign, so the mails show up in the mail catcher.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx

LISTS = [
    {"slug": "personalised-medicine", "name": "Personalised medicine", "description": "Precision medicine news"},
    {"slug": "oncology", "name": "Oncology", "description": "Cancer research in Tuscany"},
    {"slug": "rare-diseases", "name": "Rare diseases", "description": "Rare-disease research and patient groups"},
    {"slug": "events", "name": "Events", "description": "Cluster events, brokerage days, webinars"},
    {"slug": "calls", "name": "Calls for proposals", "description": "EU and regional funding calls"},
]
SUBSCRIBERS = [
    ("giulia.rossi@example.org", "Giulia Rossi", ["oncology", "events"], ["oncology"]),
    ("marco.bianchi@example.org", "Marco Bianchi", ["personalised-medicine", "calls"], ["personalised medicine"]),
    ("sara.conti@example.org", "Sara Conti", ["rare-diseases"], ["rare diseases"]),
    ("luca.ferri@example.org", "Luca Ferri", ["events", "calls", "oncology"], ["events", "calls"]),
    ("elena.gallo@example.org", "Elena Gallo", ["personalised-medicine", "oncology"], ["oncology"]),
]
TEMPLATE = {
    "name": "Cluster newsletter",
    "subject": "Distretto Toscano Scienze della Vita — {{ campaign.name }}",
    "body_html": (
        "<h1>{{ campaign.name }}</h1><p>Gentile {{ subscriber.name }},</p>"
        "<p>{{ campaign.data.get('intro', '') }}</p>"
        "<ul>{% for item in campaign.data.get('items', []) %}<li>{{ item }}</li>{% endfor %}</ul>"
    ),
    "body_text": (
        "{{ campaign.name }}\n\nGentile {{ subscriber.name }},\n\n{{ campaign.data.get('intro', '') }}\n\n"
        "{% for item in campaign.data.get('items', []) %}- {{ item }}\n{% endfor %}"
    ),
}
CAMPAIGN = {
    "name": "Newsletter di maggio",
    "subject": TEMPLATE["subject"],
    "lists": ["oncology", "personalised-medicine", "events"],
    "data": {
        "intro": "Le novità del distretto di questo mese.",
        "items": ["Brokerage day on precision oncology, Siena", "New Horizon Europe call on rare diseases"],
    },
}


def _all(client: httpx.Client, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = client.get(path, params={"limit": 500, "offset": offset}).raise_for_status().json()
        items += page["items"]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return items


def load(base_url: str, send: bool, token: str | None = None) -> dict[str, int]:
    """Create what is missing; returns how many things were created."""
    created = {"lists": 0, "subscribers": 0, "templates": 0, "campaigns": 0}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=base_url, timeout=30, headers=headers) as client:
        have = {lst["slug"] for lst in _all(client, "/lists")}
        for lst in LISTS:
            if lst["slug"] not in have:
                client.post("/lists", json=lst).raise_for_status()
                created["lists"] += 1
        known = {s["email"] for s in _all(client, "/subscribers")}
        for email, name, lists, interests in SUBSCRIBERS:
            if email not in known:
                client.post(
                    "/subscribers",
                    json={
                        "email": email,
                        "name": name,
                        "lists": lists,
                        "interests": interests,
                        "preconfirmed": True,
                        "consent_source": "demo: paper form at the cluster's annual meeting",
                    },
                ).raise_for_status()
                created["subscribers"] += 1
        templates = {t["name"]: t for t in _all(client, "/templates")}
        template = templates.get(TEMPLATE["name"])
        if template is None:
            template = client.post("/templates", json=TEMPLATE).raise_for_status().json()
            created["templates"] += 1
        campaigns = {c["name"]: c for c in _all(client, "/campaigns")}
        campaign = campaigns.get(CAMPAIGN["name"])
        if campaign is None:
            campaign = (
                client.post("/campaigns", json={**CAMPAIGN, "template_id": template["id"]}).raise_for_status().json()
            )
            created["campaigns"] += 1
        if send and campaign["status"] in ("draft", "scheduled"):
            client.post(f"/campaigns/{campaign['id']}/start").raise_for_status()
    return created


def main() -> None:
    parser = argparse.ArgumentParser(prog="newsletter.demo", description="Load the newsletter's demo data")
    parser.add_argument("--base-url", default="http://127.0.0.1:8003")
    parser.add_argument("--send", action="store_true", help="also start the demo campaign (mails go to the catcher)")
    parser.add_argument("--token", default=None, help="bearer token (when going through the gateway)")
    args = parser.parse_args()
    try:
        created = load(args.base_url, args.send, args.token)
    except httpx.HTTPError as exc:
        print(f"demo data not loaded: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print("created: " + ", ".join(f"{n} {k}" for k, n in created.items()))


if __name__ == "__main__":
    main()
