"""The versioned context record stored in a Qdrant collection's metadata: encode, decode, check.

The record lives under one top-level metadata key (:data:`METADATA_KEY`). It carries the model
identity, the query/document prefixes, provenance and the exact float32 bytes of the dataset
embeddings (base64, little-endian, row-major). Decoding re-verifies the fingerprint over those
bytes, so a record that was edited or truncated is refused instead of silently embedding with
a different context.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.context import ContextProvenance
from cde_rag.errors import ContextCorruptError
from cde_rag_qdrant.errors import ContextMissingError

logger = logging.getLogger(__name__)

METADATA_KEY = "cde_rag"
"""Collection metadata key holding the versioned context record."""

RECORD_VERSION = 1

_HEX64 = r"^[0-9a-f]{64}$"


class ProvenanceRecord(BaseModel):
    """How the stored context was built (mirrors ``cde_rag.context.ContextProvenance``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=1)
    seed: int | None
    strategy: str
    n_source_documents: int = Field(ge=0)
    created_at: str
    library_version: str


class ContextRecord(BaseModel):
    """The context record of a collection (``metadata["cde_rag"]``), version 1.

    Attributes:
        format: Always ``"cde-rag-context"``.
        record_version: Layout version of this record (1).
        model_id: Hub id or local folder of the model that built the context.
        weights_hash: SHA-256 of that model's ``model.safetensors``.
        revision: Hub commit of the model, or None.
        model_version: ``"v1"`` or ``"v2"``.
        fingerprint: SHA-256 over weights hash, shape and the exact tensor bytes.
        shape: (rows, width) of the dataset embeddings.
        dtype: Always ``"float32"``.
        query_prefix: Prefix that queries were embedded with.
        document_prefix: Prefix that documents were embedded with.
        generation: 1 for a new collection, +1 for each recontextualization.
        provenance: How the context was built.
        tensor_b64: Base64 of the little-endian float32 bytes, row-major.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    format: Literal["cde-rag-context"] = "cde-rag-context"
    record_version: Literal[1] = 1
    model_id: str = Field(min_length=1)
    weights_hash: str = Field(pattern=_HEX64)
    revision: str | None
    model_version: str
    fingerprint: str = Field(pattern=_HEX64)
    shape: tuple[int, int]
    dtype: Literal["float32"] = "float32"
    query_prefix: str
    document_prefix: str
    generation: int = Field(default=1, ge=1)
    provenance: ProvenanceRecord
    tensor_b64: str = Field(min_length=1)

    # -- encode ---------------------------------------------------------------------------

    @classmethod
    def from_context(
        cls, context: CorpusContext, encoder: CDEEncoder, *, generation: int = 1
    ) -> ContextRecord:
        """Build the record for ``context``, made by ``encoder``.

        Args:
            context: The context to store.
            encoder: The encoder the collection embeds with (its prefixes are recorded).
            generation: Generation number of the physical collection.

        Returns:
            The record.

        Raises:
            ContextMismatchError: The context was made by another model.
        """
        context.check_compatible(encoder)
        p = context.provenance
        raw = context.embeddings.numpy().astype("<f4", copy=False).tobytes()
        return cls(
            model_id=p.model_id,
            weights_hash=p.weights_hash,
            revision=p.revision,
            model_version=encoder.identity.version,
            fingerprint=context.fingerprint,
            shape=context.shape,
            query_prefix=encoder.query_prefix,
            document_prefix=encoder.document_prefix,
            generation=generation,
            provenance=ProvenanceRecord(
                size=p.size,
                seed=p.seed,
                strategy=p.strategy,
                n_source_documents=p.n_source_documents,
                created_at=p.created_at,
                library_version=p.library_version,
            ),
            tensor_b64=base64.b64encode(raw).decode("ascii"),
        )

    def to_metadata(self) -> dict[str, Any]:
        """The collection metadata entry: ``{METADATA_KEY: record}`` as JSON-able values."""
        return {METADATA_KEY: self.model_dump(mode="json")}

    # -- decode ---------------------------------------------------------------------------

    @classmethod
    def from_metadata(
        cls, metadata: Mapping[str, Any] | None, collection_name: str
    ) -> ContextRecord:
        """Parse and validate the record in a collection's metadata.

        Args:
            metadata: ``client.get_collection(name).config.metadata`` (may be None).
            collection_name: For messages.

        Returns:
            The validated record (the tensor is not decoded yet: see :meth:`to_context`).

        Raises:
            ContextMissingError: No record under :data:`METADATA_KEY`.
            ContextCorruptError: The record is not valid (wrong type, fields, version).
        """
        if not metadata or METADATA_KEY not in metadata:
            msg = (
                f"collection {collection_name!r} has no cde-rag context (no {METADATA_KEY!r} "
                "key in its metadata): it was made by another tool or without a context. "
                "Attach one with ContextualCollection.attach_context(client, name, encoder, "
                "context), or rebuild it from its own texts with `cde-rag recontextualize "
                f"--collection {collection_name}` (re-embeds every point)."
            )
            raise ContextMissingError(msg)
        raw = metadata[METADATA_KEY]
        if not isinstance(raw, Mapping):
            msg = (
                f"collection {collection_name!r}: metadata[{METADATA_KEY!r}] is a "
                f"{type(raw).__name__}, expected a context record (object). The record was "
                "overwritten by another tool; recreate the context with `cde-rag "
                f"recontextualize --collection {collection_name}`."
            )
            raise ContextCorruptError(msg)
        version = raw.get("record_version")
        if version != RECORD_VERSION:
            msg = (
                f"collection {collection_name!r} has a context record of version {version!r}; "
                f"this cde-rag reads version {RECORD_VERSION}. Upgrade cde-rag "
                "(pip install -U cde-rag) if the record is newer."
            )
            raise ContextCorruptError(msg)
        try:
            return cls.model_validate(dict(raw))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<record>'}: {err['msg']}"
                for err in exc.errors()[:5]
            )
            msg = (
                f"collection {collection_name!r} has an invalid context record ({problems}). "
                "It was modified or truncated; nothing was read. Rebuild the context with "
                f"`cde-rag recontextualize --collection {collection_name}`."
            )
            raise ContextCorruptError(msg) from exc

    def to_context(self, collection_name: str) -> CorpusContext:
        """Decode the tensor bytes and verify the fingerprint.

        Args:
            collection_name: For messages.

        Returns:
            The stored context, bit-exact.

        Raises:
            ContextCorruptError: Bad base64, wrong byte count, non-finite values, or bytes
                that do not match the recorded fingerprint.
        """
        where = f"collection {collection_name!r}"
        rows, width = self.shape
        try:
            raw = base64.b64decode(self.tensor_b64.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
            msg = (
                f"{where}: the context tensor is not valid base64 ({exc}); the record was "
                f"truncated or edited. Rebuild it with `cde-rag recontextualize --collection "
                f"{collection_name}`."
            )
            raise ContextCorruptError(msg) from exc
        expected = rows * width * 4
        if rows < 1 or width < 1 or len(raw) != expected:
            msg = (
                f"{where}: the context tensor has {len(raw)} bytes, expected {expected} for "
                f"shape ({rows}, {width}) float32; the record was truncated or edited. Rebuild "
                f"it with `cde-rag recontextualize --collection {collection_name}`."
            )
            raise ContextCorruptError(msg)
        array = np.frombuffer(raw, dtype="<f4").reshape(rows, width).astype(np.float32)
        try:
            return CorpusContext(
                torch.from_numpy(array.copy()),
                self.context_provenance(),
                expected_fingerprint=self.fingerprint,
            )
        except ContextCorruptError as exc:
            msg = f"{where}: {exc}"
            raise ContextCorruptError(msg) from exc

    def context_provenance(self) -> ContextProvenance:
        """The core provenance object of the stored context."""
        return ContextProvenance(
            model_id=self.model_id,
            weights_hash=self.weights_hash,
            revision=self.revision,
            size=self.provenance.size,
            seed=self.provenance.seed,
            strategy=self.provenance.strategy,
            n_source_documents=self.provenance.n_source_documents,
            created_at=self.provenance.created_at,
            library_version=self.provenance.library_version,
        )

    def summary(self) -> dict[str, Any]:
        """Everything but the tensor bytes (for info output)."""
        return self.model_dump(mode="json", exclude={"tensor_b64"})
