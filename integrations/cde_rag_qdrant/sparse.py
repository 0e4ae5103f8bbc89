r"""Lexical sparse vectors for hybrid search, computed offline (no model download).

Texts are split into lowercase Unicode word tokens (``\w+``, so ``ERR_CONN_4012`` and
``parse_config_file`` stay whole), stemmed with the Snowball stemmer of the chosen language
(``snowballstemmer``) and hashed into a stable 32-bit id space (BLAKE2b, 4 bytes). Documents get
BM25's term-frequency part, ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))``;
queries get 1 per distinct term. The inverse document frequency is left to Qdrant: the sparse
vector is created with ``modifier=IDF``, so the server keeps the corpus statistics current as
points come and go. Together this is BM25 scored by Qdrant (the same split as fastembed's
``Qdrant/bm25``, without its download).

The encoder's settings live in the collection metadata under :data:`SPARSE_METADATA_KEY`, so
queries are always encoded the way the documents were.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

from qdrant_client import models

from cde_rag.errors import InvalidInputError
from cde_rag_qdrant.errors import CollectionConfigError

SPARSE_METADATA_KEY = "cde_rag_sparse"
"""Collection metadata key holding the sparse encoder's settings (next to ``cde_rag``)."""
SPARSE_VECTOR_NAME = "langchain-sparse"
"""Default name of the sparse vector: ``langchain_qdrant.QdrantVectorStore``'s default."""
SPARSE_FORMAT = "cde-rag-sparse"
SPARSE_VERSION = 1

_TOKEN = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class SparseEncoder:
    """Offline BM25-style sparse encoder (see the module docstring).

    Attributes:
        vector_name: Name of the sparse vector in the collection.
        language: Snowball stemmer language (``snowballstemmer.algorithms()``), or ``""``
            for no stemming.
        k1: BM25 term-frequency saturation.
        b: BM25 length normalisation.
        avg_len: Assumed average document length in tokens (BM25's ``avgdl``).
        max_token_len: Longer tokens are dropped (base64 blobs, hashes).

    Example:
        >>> enc = SparseEncoder()
        >>> vec = enc.embed_query("ERR_CONN_4012 timeout")
        >>> len(vec.indices)
        2
    """

    vector_name: str = SPARSE_VECTOR_NAME
    language: str = "english"
    k1: float = 1.2
    b: float = 0.75
    avg_len: float = 256.0
    max_token_len: int = 64

    def __post_init__(self) -> None:
        """Check the settings (a bad language fails here, not at the first document)."""
        if not isinstance(self.vector_name, str) or not self.vector_name:
            msg = f"vector_name={self.vector_name!r}; expected a non-empty str."
            raise InvalidInputError(msg)
        if self.k1 < 0 or not 0 <= self.b <= 1 or self.avg_len <= 0 or self.max_token_len < 1:
            msg = (
                f"sparse settings k1={self.k1}, b={self.b}, avg_len={self.avg_len}, "
                f"max_token_len={self.max_token_len}; expected k1 >= 0, 0 <= b <= 1, "
                "avg_len > 0, max_token_len >= 1."
            )
            raise InvalidInputError(msg)
        if self.language:
            _ = self._stemmer

    @cached_property
    def _stemmer(self) -> Any:
        import snowballstemmer  # type: ignore[import-untyped]

        try:
            return snowballstemmer.stemmer(self.language)
        except KeyError as exc:
            msg = (
                f"no Snowball stemmer for language {self.language!r}; pick one of "
                f"{', '.join(sorted(snowballstemmer.algorithms()))} (or '' for none)."
            )
            raise InvalidInputError(msg) from exc

    # -- encoding ----------------------------------------------------------------------------

    def terms(self, text: str) -> list[str]:
        """The stemmed lowercase terms of ``text``, in order."""
        tokens = [t for t in _TOKEN.findall(text.lower()) if len(t) <= self.max_token_len]
        if not self.language:
            return tokens
        stemmed: list[str] = self._stemmer.stemWords(tokens)
        return stemmed

    @staticmethod
    def term_id(term: str) -> int:
        """Stable 32-bit id of a term (BLAKE2b, 4 bytes, big-endian)."""
        return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "big")

    def _vector(self, counts: Mapping[int, float]) -> models.SparseVector:
        ids = sorted(counts)
        return models.SparseVector(indices=ids, values=[float(counts[i]) for i in ids])

    def embed_documents(self, texts: Sequence[str]) -> list[models.SparseVector]:
        """BM25 term-frequency weights per document (IDF is applied by Qdrant)."""
        out = []
        for text in texts:
            terms = self.terms(text)
            norm = self.k1 * (1 - self.b + self.b * len(terms) / self.avg_len)
            counts: Counter[int] = Counter(self.term_id(t) for t in terms)
            out.append(
                self._vector({i: tf * (self.k1 + 1) / (tf + norm) for i, tf in counts.items()})
            )
        return out

    def embed_query(self, text: str) -> models.SparseVector:
        """Weight 1 per distinct query term (IDF is applied by Qdrant)."""
        return self._vector(dict.fromkeys((self.term_id(t) for t in self.terms(text)), 1.0))

    # -- collection config ---------------------------------------------------------------

    def vector_params(self, *, on_disk: bool | None = None) -> models.SparseVectorParams:
        """Sparse vector config: Qdrant computes the IDF (``modifier=IDF``)."""
        return models.SparseVectorParams(
            index=models.SparseIndexParams(on_disk=on_disk), modifier=models.Modifier.IDF
        )

    def to_metadata(self) -> dict[str, Any]:
        """The collection metadata entry ``{SPARSE_METADATA_KEY: settings}``."""
        return {
            SPARSE_METADATA_KEY: {
                "format": SPARSE_FORMAT,
                "version": SPARSE_VERSION,
                "tokenizer": "unicode-words-lower",
                "hash": "blake2b-32",
                **asdict(self),
            }
        }

    @classmethod
    def from_metadata(
        cls, metadata: Mapping[str, Any] | None, collection_name: str
    ) -> SparseEncoder | None:
        """The encoder stored in a collection's metadata; None for a dense-only collection.

        Raises:
            CollectionConfigError: The entry is unreadable or from a newer cde-rag.
        """
        raw = (metadata or {}).get(SPARSE_METADATA_KEY)
        if raw is None:
            return None
        fields = {"vector_name", "language", "k1", "b", "avg_len", "max_token_len"}
        if (
            not isinstance(raw, Mapping)
            or raw.get("format") != SPARSE_FORMAT
            or raw.get("version") != SPARSE_VERSION
            or not fields <= set(raw)
        ):
            msg = (
                f"collection {collection_name!r}: metadata[{SPARSE_METADATA_KEY!r}] is not a "
                f"version-{SPARSE_VERSION} sparse encoder record (found {raw!r:.120}). It was "
                "written by a newer cde-rag (upgrade) or edited by another tool."
            )
            raise CollectionConfigError(msg)
        try:
            return cls(**{k: raw[k] for k in fields})
        except (TypeError, InvalidInputError) as exc:
            msg = f"collection {collection_name!r}: invalid sparse encoder record ({exc})."
            raise CollectionConfigError(msg) from exc


def sparse_of(info: models.CollectionInfo, collection_name: str) -> SparseEncoder | None:
    """The sparse encoder a collection records, checked against its sparse vectors.

    Raises:
        CollectionConfigError: The recorded sparse vector is missing (edited by another tool),
            or its record is unreadable.
    """
    sparse = SparseEncoder.from_metadata(info.config.metadata, collection_name)
    if sparse is not None and sparse.vector_name not in (info.config.params.sparse_vectors or {}):
        msg = (
            f"collection {collection_name!r} records the sparse vector {sparse.vector_name!r} "
            "but has no such sparse vector; it was edited by another tool. Rebuild it with "
            "`cde-rag recontextualize`."
        )
        raise CollectionConfigError(msg)
    return sparse
