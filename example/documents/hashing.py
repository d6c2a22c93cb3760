"""The ``hashing`` embedder: lexical feature hashing in NumPy, deterministic and dependency-free.

The test double and the last-resort fallback of :mod:`.embedders`: it finds shared words, not paraphrases.
"""

from __future__ import annotations

import math
import re
import threading
import zlib

import numpy as np


def l2_normalise(matrix: np.ndarray) -> np.ndarray:
    """Scale rows to unit length; all-zero rows (empty text) stay zero instead of becoming NaN."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.maximum(norms, np.float32(1e-12), out=norms)
    return np.ascontiguousarray(matrix / norms, dtype=np.float32)


class HashingEmbedder:
    """Signed feature hashing of word unigrams, word bigrams and character trigrams.

    Uses ``zlib.crc32`` because Python's ``hash()`` is salted per process, which would make stored
    vectors useless after a restart. Each distinct word is hashed once and remembered; the per-token work
    is then done in NumPy, about 10k chunks/s. Bump ``ALGORITHM`` whenever the output changes.
    """

    ALGORITHM = "v1"
    _BIGRAM_WEIGHT = 0.7
    _TRIGRAM_MASS = 0.5
    _VOCAB_LIMIT = 200_000
    _BATCH = 512
    _TOKEN = re.compile(r"\w+")

    name = "hashing"

    def __init__(self, dim: int = 512) -> None:
        if dim < 16:
            raise ValueError("dim must be at least 16")
        self.dim = dim
        self.version = f"hashing-{self.ALGORITHM}-{dim}"
        self._lock = threading.Lock()
        self._reset_vocab()

    def _reset_vocab(self) -> None:
        self._vocab: dict[str, int] = {}
        self._hashes = np.zeros(0, dtype=np.uint64)
        self._tri_ptr = np.zeros(1, dtype=np.int64)
        self._tri_cols = np.zeros(0, dtype=np.int64)
        self._tri_weights = np.zeros(0, dtype=np.float64)

    def _add_words(self, words: list[str]) -> None:
        hashes, ptr, cols, weights = [], [], [], []
        end = int(self._tri_ptr[-1])
        for word in words:
            self._vocab[word] = len(self._vocab)
            hashes.append(zlib.crc32(word.encode()))
            padded = f"<{word}>"
            grams = [padded[i : i + 3] for i in range(len(padded) - 2)] if len(word) > 2 else []
            mass = self._TRIGRAM_MASS / math.sqrt(len(grams)) if grams else 0.0
            for gram in grams:
                g = zlib.crc32(gram.encode(), 0x5EED)
                cols.append(g % self.dim)
                weights.append(mass if g & 0x80000000 else -mass)
            end += len(grams)
            ptr.append(end)
        self._hashes = np.concatenate([self._hashes, np.array(hashes, dtype=np.uint64)])
        self._tri_ptr = np.concatenate([self._tri_ptr, np.array(ptr, dtype=np.int64)])
        self._tri_cols = np.concatenate([self._tri_cols, np.array(cols, dtype=np.int64)])
        self._tri_weights = np.concatenate([self._tri_weights, np.array(weights, dtype=np.float64)])

    def embed(self, texts: list[str]) -> np.ndarray:
        parts = [self._embed_batch(texts[i : i + self._BATCH]) for i in range(0, len(texts), self._BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), dtype=np.float32)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        n, dim = len(texts), self.dim
        tokens = [self._TOKEN.findall(text.lower()) for text in texts]
        with self._lock:
            seen: set[str] = set().union(*tokens)
            unknown = seen.difference(self._vocab)
            if len(self._vocab) + len(unknown) > self._VOCAB_LIMIT:
                self._reset_vocab()
                unknown = seen
            if unknown:
                self._add_words(sorted(unknown))
            vocab = self._vocab
            ids = np.array([vocab[w] for words in tokens for w in words], dtype=np.int64)
            hashes, ptr, tri_cols, tri_weights = (
                self._hashes,
                self._tri_ptr,
                self._tri_cols,
                self._tri_weights,
            )
        rows = np.repeat(np.arange(n, dtype=np.int64), [len(words) for words in tokens])

        h = hashes[ids]
        uni_w = np.where(h & 0x80000000, 1.0, -1.0)
        same_text = rows[1:] == rows[:-1]
        b = ((h[:-1] * 0x9E3779B1) ^ h[1:])[same_text] & 0xFFFFFFFF
        bi_w = np.where(b & 0x80000000, self._BIGRAM_WEIGHT, -self._BIGRAM_WEIGHT)
        counts = ptr[ids + 1] - ptr[ids]
        owner = np.repeat(np.arange(len(ids)), counts)
        first = np.repeat(ptr[ids] - (np.cumsum(counts) - counts), counts)
        tri = first + np.arange(int(counts.sum()))

        flat = np.concatenate(
            [
                rows * dim + (h % dim).astype(np.int64),
                rows[1:][same_text] * dim + (b % dim).astype(np.int64),
                rows[owner] * dim + tri_cols[tri],
            ]
        )
        weights = np.concatenate([uni_w, bi_w, tri_weights[tri]])
        out = np.bincount(flat, weights=weights, minlength=n * dim).reshape(n, dim)
        # Sublinear term frequency: a word repeated 20 times should not drown the rest of the chunk.
        return l2_normalise(np.sign(out) * np.log1p(np.abs(out)))

    def estimate_seconds(self, n_chunks: int) -> float:
        return n_chunks / 5000
