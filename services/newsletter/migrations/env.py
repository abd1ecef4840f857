# Importing registers the tables on the service's metadata: its own, the audience read model, segments.
import newsletter.audience
import newsletter.segments  # noqa: F401
from distretto_shared.migrations import run_env
from newsletter.models import Base

run_env(target_metadata=Base.metadata)
