from distretto_shared.migrations import run_env
from gateway.models import Base

run_env(target_metadata=Base.metadata)
