"""Settings of the matchmaking service (environment prefix ``MATCHMAKING_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from distretto_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """Matchmaking settings; every field can be set as ``MATCHMAKING_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="MATCHMAKING_", extra="ignore")

    http_port: int = 8004
    bm25_weight: float = 0.5
    """Starting weight of the normalised BM25 score in the fused score (the calibrated cosine gets the rest);
    chosen on the labelled set (bench/matchmaking/quality.py), then nudged by this installation's feedback."""
    feedback_pair_weight: float = 0.25
    """Score added (or removed) for a counterpart marked useful (not useful) for the same pair."""
    feedback_counterpart_weight: float = 0.05
    """Score added for a counterpart others found useful, across every query (saturating)."""
    delta_merge_threshold: int = 500
    """Documents changed since the last BM25 build before the BM25 index is rebuilt (at least: an eighth
    of the index when that is more), by the merge task in a worker thread."""
    merge_interval: float = 30.0
    """Seconds between two checks that merge the BM25 delta into the main index."""
    expiry_check_interval: float = 3600.0
    """Seconds between two scans for expired opportunities."""
    default_validity_months: int = 12
    """How long an opportunity stays published when no expiry is given (EEN: 12 months)."""
    embedding_threads: int = 2
    """Intra-op threads of the ONNX embedding model."""
    blas_threads: int = 1
    """BLAS threads for the index's matrix products: a query is a matrix-vector product, fastest on one
    thread (several threads on a busy machine made it ten times slower), and the other core stays free."""
    index_encoder: bool = True
    """Run the encoder worker in this instance (off: the instance only serves and follows the index;
    another instance encodes the queued texts)."""
    index_encoder_process: bool = True
    """Run that worker in a child process at a lower OS priority (``encoder_process``), so encoding
    never takes the CPU the requests need; off: a task of the serving process."""
    index_encoder_nice: int = 10
    """How much the encoder process lowers its priority (``os.nice``; 0: not at all)."""
    index_poll_interval: float = 0.5
    """Seconds between two reads of the index change log (writes of this instance wake it at once)."""
    index_encode_poll: float = 2.0
    """Seconds between two looks at the encoder queue when it was empty (local writes wake it at once)."""
    index_encode_batch: int = 32
    """Texts the encoder worker claims and encodes at a time (the shortest queued first)."""
    index_encode_lease: float = 120.0
    """Seconds a claim on queued texts lasts: a dead worker's texts are encoded by another after it."""
    index_change_retention: float = 86400.0
    """Seconds change-log entries are kept (a starting instance rebuilds from the tables, not the log)."""
