"""CorpusContext: the dataset embeddings plus provenance, fingerprint and persistence.

A CDE vector only means something together with the dataset embeddings it was computed with.
The fingerprint (SHA-256 over the weights hash, the shape and the exact float32 bytes) names a
context; vectors made under different fingerprints must never be compared.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from cde_rag._version import __version__
from cde_rag.errors import ContextCorruptError, ContextMismatchError, ContextSaveError

logger = logging.getLogger(__name__)

FORMAT_VERSION = "1"
TENSOR_KEY = "dataset_embeddings"


@dataclass(frozen=True)
class ModelIdentity:
    """What identifies the model a vector or context was made with.

    Attributes:
        model_id: Hub id or absolute folder path the model was loaded from.
        weights_hash: SHA-256 of ``model.safetensors``: the identity that matters.
        revision: Hub commit hash, or None for local folders.
        version: ``"v1"`` or ``"v2"``.
        dim: Embedding width.
    """

    model_id: str
    weights_hash: str
    revision: str | None
    version: str
    dim: int


class HasIdentity(Protocol):
    """Anything with a model identity (``CDEEncoder`` satisfies it)."""

    @property
    def identity(self) -> ModelIdentity:
        """The model identity."""
        ...


@dataclass(frozen=True)
class ContextProvenance:
    """Where a context came from.

    Attributes:
        model_id: Model that computed it.
        weights_hash: SHA-256 of that model's weights.
        revision: Hub commit hash of the model, or None.
        size: Number of context rows (minicorpus documents).
        seed: Sampling seed, or None when the rows were given as-is.
        strategy: Sampling strategy (``uniform``, ``diverse``, ``given``, ``random_strings``).
        n_source_documents: Number of documents the minicorpus was drawn from.
        created_at: ISO-8601 UTC creation time.
        library_version: cde-rag version that built it.
    """

    model_id: str
    weights_hash: str
    revision: str | None
    size: int
    seed: int | None
    strategy: str
    n_source_documents: int
    created_at: str
    library_version: str


def compute_fingerprint(embeddings: torch.Tensor, weights_hash: str) -> str:
    """SHA-256 hex over the model's weights hash, the shape and the exact float32 bytes."""
    data = embeddings.detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.sha256()
    digest.update(f"cde-rag-context:{FORMAT_VERSION}\0{weights_hash}\0".encode())
    digest.update(f"{tuple(data.shape)}\0float32\0".encode())
    digest.update(data.numpy().astype("<f4", copy=False).tobytes())
    return digest.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class CorpusContext:
    """Dataset embeddings (``embeddings``, an (N, d) float32 CPU tensor) with provenance.

    Build one with ``CDEEncoder.build_context``; persist it with :meth:`save` /
    :meth:`to_bytes`. Every constructor validates shape, dtype and finiteness.

    Example:
        >>> context = encoder.build_context(corpus)  # doctest: +SKIP
        >>> context.save("notes.context.safetensors")  # doctest: +SKIP
        >>> same = CorpusContext.load("notes.context.safetensors")  # doctest: +SKIP
        >>> same.fingerprint == context.fingerprint  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        embeddings: torch.Tensor,
        provenance: ContextProvenance,
        *,
        expected_fingerprint: str | None = None,
    ) -> None:
        """Validate and wrap dataset embeddings.

        Args:
            embeddings: (N, d) float32 tensor.
            provenance: Where it came from.
            expected_fingerprint: When given (loading stored contexts), the recomputed
                fingerprint must equal it.

        Raises:
            ContextCorruptError: Wrong rank, dtype, empty, non-finite values, or a fingerprint
                that does not match the bytes.
        """
        if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
            shape = getattr(embeddings, "shape", None)
            msg = f"context embeddings must be a 2-D (N, d) tensor; got shape {shape}."
            raise ContextCorruptError(msg)
        if embeddings.dtype != torch.float32:
            msg = f"context embeddings must be float32; got {embeddings.dtype}."
            raise ContextCorruptError(msg)
        if embeddings.shape[0] == 0 or embeddings.shape[1] == 0:
            msg = f"context embeddings are empty (shape {tuple(embeddings.shape)})."
            raise ContextCorruptError(msg)
        if not bool(torch.isfinite(embeddings).all()):
            bad = int((~torch.isfinite(embeddings)).sum())
            msg = f"context embeddings hold {bad} NaN/inf values; rebuild the context."
            raise ContextCorruptError(msg)
        self._embeddings = embeddings.detach().to("cpu").contiguous().clone()
        self.provenance = provenance
        self.fingerprint = compute_fingerprint(self._embeddings, provenance.weights_hash)
        if expected_fingerprint is not None and expected_fingerprint != self.fingerprint:
            msg = (
                f"stored context fingerprint {expected_fingerprint[:12]}… does not match its "
                f"bytes ({self.fingerprint[:12]}…): the context was modified or corrupted. "
                "Rebuild it with CDEEncoder.build_context()."
            )
            raise ContextCorruptError(msg)

    @property
    def embeddings(self) -> torch.Tensor:
        """The (N, d) float32 dataset embeddings (a copy: the context itself never changes)."""
        return self._embeddings.clone()

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, width) of the dataset embeddings."""
        rows, width = self._embeddings.shape
        return int(rows), int(width)

    def __repr__(self) -> str:
        """Short description with the fingerprint."""
        p = self.provenance
        return (
            f"CorpusContext(fingerprint={self.fingerprint[:12]}…, shape={self.shape}, "
            f"model={p.model_id!r}, strategy={p.strategy!r}, seed={p.seed})"
        )

    def __eq__(self, other: object) -> bool:
        """Contexts are equal when their fingerprints are."""
        if not isinstance(other, CorpusContext):
            return NotImplemented
        return other.fingerprint == self.fingerprint

    def __hash__(self) -> int:
        """Hash of the fingerprint."""
        return hash(self.fingerprint)

    # -- compatibility -------------------------------------------------------------------

    def check_compatible(self, target: HasIdentity | ModelIdentity) -> None:
        """Refuse a model other than the one that made this context.

        Args:
            target: A ``CDEEncoder`` (or anything with ``identity``) or a ``ModelIdentity``.

        Raises:
            ContextMismatchError: Different weights or a different width.
        """
        ident = target if isinstance(target, ModelIdentity) else target.identity
        p = self.provenance
        if ident.weights_hash != p.weights_hash:
            msg = (
                f"this context was built by model {p.model_id!r} (weights {p.weights_hash[:12]}…"
                f", revision {p.revision}) but the encoder is {ident.model_id!r} (weights "
                f"{ident.weights_hash[:12]}…). Vectors from different models or contexts are "
                "not comparable: build a new context with this encoder "
                f"(encoder.build_context(corpus)) or load {p.model_id!r}"
                + (f" at revision {p.revision!r}." if p.revision else ".")
            )
            raise ContextMismatchError(msg)
        if ident.dim != self.shape[1]:
            msg = f"context width {self.shape[1]} != model width {ident.dim}; rebuild it."
            raise ContextMismatchError(msg)

    # -- persistence ---------------------------------------------------------------------

    def _metadata(self) -> dict[str, str]:
        meta = {"format": "cde-rag-context", "format_version": FORMAT_VERSION}
        meta["fingerprint"] = self.fingerprint
        meta["provenance"] = json.dumps(asdict(self.provenance), sort_keys=True)
        return meta

    def to_bytes(self) -> bytes:
        """Serialise as safetensors bytes (tensor + JSON metadata; no pickle)."""
        data: bytes = st_save({TENSOR_KEY: self._embeddings}, metadata=self._metadata())
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> CorpusContext:
        """Inverse of :meth:`to_bytes`, with full validation.

        Raises:
            ContextCorruptError: Not a cde-rag context, truncated, or fingerprint mismatch.
        """
        try:
            data = bytes(data)
            (header_len,) = struct.unpack("<Q", data[:8])
            header = json.loads(data[8 : 8 + header_len])
            tensors = st_load(data)
        except (struct.error, TypeError, ValueError, SafetensorError, UnicodeDecodeError) as exc:
            msg = f"context bytes are not a valid safetensors payload ({exc})."
            raise ContextCorruptError(msg) from exc
        return cls._from_parts(tensors, header.get("__metadata__") or {}, "context bytes")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the context to a ``.safetensors`` file (atomically) and return its path.

        Missing parent folders are created, like ``mkdir -p``.

        Raises:
            ContextSaveError: ``path`` is a folder, a parent is a file, or the location is
                not writable; nothing is left behind.
        """
        target = Path(path)
        if target.is_dir():
            msg = (
                f"{target} is a folder; pass a file path such as {target / 'context.safetensors'}."
            )
            raise ContextSaveError(msg)
        tmp = target.with_name(target.name + ".tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(self.to_bytes())
            tmp.replace(target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            msg = (
                f"could not save the context to {target}: {exc.strerror or exc}. "
                "Pick a writable path."
            )
            raise ContextSaveError(msg) from exc
        logger.info("saved context %s to %s", self.fingerprint[:12], target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CorpusContext:
        """Read a context written by :meth:`save`.

        Raises:
            FileNotFoundError: No such file.
            ContextCorruptError: Not a cde-rag context, truncated, or fingerprint mismatch.
        """
        target = Path(path)
        if not target.is_file():
            msg = f"no context file at {target}; create one with CorpusContext.save()."
            raise FileNotFoundError(msg)
        try:
            return cls.from_bytes(target.read_bytes())
        except ContextCorruptError as exc:
            msg = f"{target}: {exc}"
            raise ContextCorruptError(msg) from exc

    @classmethod
    def _from_parts(
        cls, tensors: dict[str, torch.Tensor], meta: dict[str, str], where: str
    ) -> CorpusContext:
        if meta.get("format") != "cde-rag-context" or TENSOR_KEY not in tensors:
            msg = f"{where} is not a cde-rag context (missing format marker or tensor)."
            raise ContextCorruptError(msg)
        if meta.get("format_version") != FORMAT_VERSION:
            msg = (
                f"{where} has context format {meta.get('format_version')!r}; this cde-rag "
                f"({__version__}) reads format {FORMAT_VERSION!r}. Upgrade cde-rag."
            )
            raise ContextCorruptError(msg)
        try:
            raw = json.loads(meta["provenance"])
            names = {f.name for f in fields(ContextProvenance)}
            provenance = ContextProvenance(**{k: raw[k] for k in names})
            fingerprint = meta["fingerprint"]
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"{where} has invalid provenance metadata ({exc})."
            raise ContextCorruptError(msg) from exc
        return cls(tensors[TENSOR_KEY], provenance, expected_fingerprint=fingerprint)


def new_provenance(
    identity: ModelIdentity,
    *,
    size: int,
    seed: int | None,
    strategy: str,
    n_source_documents: int,
) -> ContextProvenance:
    """Provenance for a context built now by the model ``identity``."""
    return ContextProvenance(
        model_id=identity.model_id,
        weights_hash=identity.weights_hash,
        revision=identity.revision,
        size=size,
        seed=seed,
        strategy=strategy,
        n_source_documents=n_source_documents,
        created_at=_now(),
        library_version=__version__,
    )
