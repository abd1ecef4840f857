from console.models import Base
from distretto_shared.migrations import run_env

run_env(target_metadata=Base.metadata)
