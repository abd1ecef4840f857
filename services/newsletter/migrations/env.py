from sqlmodel import SQLModel

# Importing registers the tables on SQLModel.metadata: the service's, the audience read model, segments.
import newsletter.audience
import newsletter.models
import newsletter.segments  # noqa: F401
from distretto_shared.migrations import run_env

run_env(target_metadata=SQLModel.metadata)
