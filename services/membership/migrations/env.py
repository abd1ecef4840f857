from distretto_shared.migrations import run_env
from membership.models import Base

run_env(target_metadata=Base.metadata)
