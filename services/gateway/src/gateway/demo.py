"""Demo users and a partner API key, loaded through the gateway's API (idempotent).

    python -m gateway.demo --base-url http://127.0.0.1:8080 [--admin-email E --admin-password P]

The admin defaults to GATEWAY_ADMIN_EMAIL / GATEWAY_ADMIN_PASSWORD (the bootstrap admin).
Running it twice adds nothing the second time. Each demo user gets a random password, printed
once when the user is created (no password is published with the code); the partner key is
scoped to reading the API and expires after 90 days.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys

import httpx

DEMO_USERS = (
    ("staff@distretto.example", "staff", None),
    ("member@toscana-life-sciences.example", "member", None),
    ("partner@een.example", "partner", None),
)
DEMO_KEY_NAME = "Demo partner system"
DEMO_KEY_SCOPES = ["GET /api/*"]
DEMO_KEY_DAYS = 90


def load(base_url: str, admin_email: str, admin_password: str) -> dict[str, int]:
    """Create what is missing; returns counts of created and existing things."""
    counts = {"created": 0, "existing": 0}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        token = client.post("/auth/token", json={"email": admin_email, "password": admin_password})
        if token.status_code != 200:
            sys.exit(f"cannot log in as {admin_email}: {token.status_code} {token.text}")
        admin = {"Authorization": f"Bearer {token.json()['access_token']}"}
        for email, role, organisation_id in DEMO_USERS:
            body = {
                "email": email,
                "password": secrets.token_urlsafe(12),
                "role": role,
                "organisation_id": organisation_id,
            }
            response = client.post("/auth/users", json=body, headers=admin)
            if response.status_code == 201:
                counts["created"] += 1
                print(f"user {email} ({role}), password {body['password']}")
            elif response.status_code == 409:
                counts["existing"] += 1
            else:
                sys.exit(f"creating {email} failed: {response.status_code} {response.text}")
        keys = client.get("/auth/api-keys", params={"limit": 500}, headers=admin).json()["items"]
        if any(k["name"] == DEMO_KEY_NAME for k in keys):
            counts["existing"] += 1
        else:
            issued = client.post(
                "/auth/api-keys",
                json={
                    "name": DEMO_KEY_NAME,
                    "role": "partner",
                    "scopes": DEMO_KEY_SCOPES,
                    "expires_in_days": DEMO_KEY_DAYS,
                },
                headers=admin,
            )
            issued.raise_for_status()
            counts["created"] += 1
            print(f"API key for '{DEMO_KEY_NAME}' (shown once): {issued.json()['key']}")
    return counts


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default="http://127.0.0.1:8080")
    parser.add_argument("--admin-email", default=os.environ.get("GATEWAY_ADMIN_EMAIL", "admin@distretto.example"))
    parser.add_argument("--admin-password", default=os.environ.get("GATEWAY_ADMIN_PASSWORD", ""))
    args = parser.parse_args()
    counts = load(args.base_url, args.admin_email, args.admin_password)
    print(f"gateway demo: {counts['created']} created, {counts['existing']} already there")


if __name__ == "__main__":
    main()
