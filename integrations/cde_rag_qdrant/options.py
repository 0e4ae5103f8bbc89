"""Collection options chosen at creation: quantization, on-disk storage, HNSW, shards, hybrid.

:class:`CollectionOptions` turns into ``create_collection`` arguments, and
:func:`options_of` reads them back from a collection's config (so ``info`` shows them and a
recontextualized collection is rebuilt with the same ones).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Literal

from qdrant_client import models

from cde_rag.errors import InvalidInputError
from cde_rag_qdrant.sparse import SparseEncoder

OPTIONS_METADATA_KEY = "cde_rag_options"
"""Collection metadata key recording the options a collection was created with."""

logger = logging.getLogger(__name__)

Quantization = Literal["int8", "binary"]
QUANTIZATIONS: tuple[str, ...] = ("int8", "binary")


def _positive(name: str, value: int | None, minimum: int = 1) -> None:
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool) or value < minimum
    ):
        msg = f"{name}={value!r}; expected an int >= {minimum} (or None for Qdrant's default)."
        raise InvalidInputError(msg)


@dataclass(frozen=True)
class CollectionOptions:
    """How Qdrant stores and indexes a collection (None: Qdrant's default).

    Quantization keeps a compressed copy of every vector in RAM for the first search pass;
    search with ``rescore=True`` (the default on servers) to re-rank with the full vectors.
    Quantization, HNSW, shards and replicas take effect on a Qdrant server; local mode
    (``:memory:``, ``path=``) stores the settings but always searches exactly.

    Attributes:
        quantization: ``"int8"`` (scalar, 4x smaller) or ``"binary"`` (32x smaller), or None.
        quantization_always_ram: Keep the quantized vectors in RAM (with ``on_disk``).
        on_disk: Keep the full vectors on disk (memory-mapped).
        on_disk_payload: Keep payloads on disk.
        hnsw_m: Edges per HNSW node.
        hnsw_ef_construct: HNSW build-time candidate list size.
        shards: Shards (servers in distributed mode).
        replicas: Replication factor (servers in distributed mode).
        hybrid: Add a lexical sparse vector for hybrid search.
        sparse: The sparse encoder when ``hybrid`` (default: :class:`SparseEncoder()`).

    Example:
        >>> CollectionOptions(quantization="int8", on_disk=True).quantization
        'int8'
    """

    quantization: Quantization | None = None
    quantization_always_ram: bool = True
    on_disk: bool | None = None
    on_disk_payload: bool | None = None
    hnsw_m: int | None = None
    hnsw_ef_construct: int | None = None
    shards: int | None = None
    replicas: int | None = None
    hybrid: bool = False
    sparse: SparseEncoder | None = None

    def __post_init__(self) -> None:
        """Validate the values."""
        if self.quantization is not None and self.quantization not in QUANTIZATIONS:
            msg = f"quantization={self.quantization!r}; expected one of {QUANTIZATIONS} or None."
            raise InvalidInputError(msg)
        _positive("hnsw_m", self.hnsw_m, 0)
        _positive("hnsw_ef_construct", self.hnsw_ef_construct, 4)
        _positive("shards", self.shards)
        _positive("replicas", self.replicas)
        if self.sparse is not None and not self.hybrid:
            msg = "sparse= was given without hybrid=True; pass hybrid=True to use it."
            raise InvalidInputError(msg)

    @property
    def sparse_encoder(self) -> SparseEncoder | None:
        """The sparse encoder of a hybrid collection, else None."""
        if not self.hybrid:
            return None
        return self.sparse or SparseEncoder()

    def create_kwargs(self, dim: int) -> dict[str, Any]:
        """Keyword arguments for ``client.create_collection`` (besides name and metadata)."""
        kwargs: dict[str, Any] = {
            "vectors_config": models.VectorParams(
                size=dim, distance=models.Distance.COSINE, on_disk=self.on_disk
            )
        }
        always_ram = self.quantization_always_ram
        if self.quantization == "int8":
            kwargs["quantization_config"] = models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(
                    type=models.ScalarType.INT8, quantile=0.99, always_ram=always_ram
                )
            )
        elif self.quantization == "binary":
            kwargs["quantization_config"] = models.BinaryQuantization(
                binary=models.BinaryQuantizationConfig(always_ram=always_ram)
            )
        if self.hnsw_m is not None or self.hnsw_ef_construct is not None:
            kwargs["hnsw_config"] = models.HnswConfigDiff(
                m=self.hnsw_m, ef_construct=self.hnsw_ef_construct
            )
        extra = {
            "on_disk_payload": self.on_disk_payload,
            "shard_number": self.shards,
            "replication_factor": self.replicas,
        }
        kwargs.update({k: v for k, v in extra.items() if v is not None})
        sparse = self.sparse_encoder
        if sparse is not None:
            kwargs["sparse_vectors_config"] = {
                sparse.vector_name: sparse.vector_params(on_disk=self.on_disk)
            }
        return kwargs

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict (for ``info``)."""
        data = asdict(self)
        sparse = self.sparse_encoder
        data["sparse"] = None if sparse is None else asdict(sparse)
        return data

    def to_metadata(self) -> dict[str, Any]:
        """Collection metadata entries: the options, and the sparse encoder of a hybrid one."""
        data = {k: v for k, v in asdict(self).items() if k != "sparse"}
        sparse = self.sparse_encoder
        return {OPTIONS_METADATA_KEY: data, **({} if sparse is None else sparse.to_metadata())}


def options_of(info: models.CollectionInfo, sparse: SparseEncoder | None) -> CollectionOptions:
    """The options a collection was created with (as recorded, else read from its config).

    Local mode keeps no quantization or sharding config, so the recorded options are
    preferred; collections made before options were recorded are read from their config.

    Args:
        info: ``client.get_collection(name)``.
        sparse: The collection's sparse encoder (from its metadata), or None.
    """
    stored = (info.config.metadata or {}).get(OPTIONS_METADATA_KEY)
    if isinstance(stored, dict):
        known = {f for f in CollectionOptions.__dataclass_fields__ if f not in ("sparse", "hybrid")}
        try:
            return CollectionOptions(
                **{k: v for k, v in stored.items() if k in known},
                hybrid=sparse is not None,
                sparse=sparse,
            )
        except (TypeError, InvalidInputError):
            logger.warning("ignoring unreadable %s in collection metadata", OPTIONS_METADATA_KEY)
    params = info.config.params
    vectors = params.vectors
    on_disk = None if isinstance(vectors, dict) or vectors is None else vectors.on_disk
    quant = info.config.quantization_config
    quantization: Quantization | None = None
    always_ram = True
    if isinstance(quant, models.ScalarQuantization):
        quantization, always_ram = "int8", bool(quant.scalar.always_ram)
    elif isinstance(quant, models.BinaryQuantization):
        quantization, always_ram = "binary", bool(quant.binary.always_ram)
    hnsw = info.config.hnsw_config
    return CollectionOptions(
        quantization=quantization,
        quantization_always_ram=always_ram,
        on_disk=on_disk,
        on_disk_payload=params.on_disk_payload,
        hnsw_m=hnsw.m,
        hnsw_ef_construct=hnsw.ef_construct,
        shards=params.shard_number,
        replicas=params.replication_factor,
        hybrid=sparse is not None,
        sparse=sparse,
    )


def search_params(
    *, rescore: bool | None, oversampling: float | None, hnsw_ef: int | None
) -> models.SearchParams | None:
    """Query-time search parameters (None when all are left at Qdrant's defaults).

    Raises:
        InvalidInputError: ``oversampling`` below 1 or ``hnsw_ef`` below 1.
    """
    if oversampling is not None and (isinstance(oversampling, bool) or not oversampling >= 1):
        msg = f"oversampling={oversampling!r}; expected a number >= 1 (e.g. 2.0)."
        raise InvalidInputError(msg)
    _positive("hnsw_ef", hnsw_ef)
    if rescore is None and oversampling is None and hnsw_ef is None:
        return None
    quantization = None
    if rescore is not None or oversampling is not None:
        quantization = models.QuantizationSearchParams(
            rescore=rescore, oversampling=None if oversampling is None else float(oversampling)
        )
    return models.SearchParams(hnsw_ef=hnsw_ef, quantization=quantization)
