from sqlmodel import SQLModel

import partners.models  # noqa: F401  (registers the tables)
from distretto_shared.migrations import run_env

run_env(target_metadata=SQLModel.metadata)
