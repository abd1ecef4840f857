"""The vocabularies in one case: stored CORDIS spellings rewritten in lower snake case.

project.status SIGNED/CLOSED/TERMINATED → signed/closed/terminated; participant.role
associatedPartner/thirdParty → associated_partner/third_party; deliverable.type (R, DEM, DEC, DATA,
DMP, ETHICS) and deliverable.dissemination (PU, SEN) → lower case. A data migration only (the
columns are plain strings, no schema change); downgrade writes the old spellings back.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

RENAMES = {
    ("project", "status"): {"SIGNED": "signed", "CLOSED": "closed", "TERMINATED": "terminated"},
    ("participant", "role"): {"associatedPartner": "associated_partner", "thirdParty": "third_party"},
    ("deliverable", "type"): {v: v.lower() for v in ("R", "DEM", "DEC", "DATA", "DMP", "ETHICS")},
    ("deliverable", "dissemination"): {"PU": "pu", "SEN": "sen"},
}


def _rewrite(forward: bool) -> None:
    for (table, column), values in RENAMES.items():
        statement = sa.text(f"UPDATE {table} SET {column} = :new WHERE {column} = :old")
        for old, new in values.items():
            op.execute(statement.bindparams(old=old, new=new) if forward else statement.bindparams(old=new, new=old))


def upgrade() -> None:
    _rewrite(forward=True)


def downgrade() -> None:
    _rewrite(forward=False)
