from sqlmodel import SQLModel

import membership.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from distretto_shared.migrations import run_env

run_env(target_metadata=SQLModel.metadata)
