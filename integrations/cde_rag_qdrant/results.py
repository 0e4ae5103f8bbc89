"""Value objects returned by collections: search hits, collection summaries, drift reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from cde_rag.context import ContextProvenance


@dataclass(frozen=True)
class SearchHit:
    """One search result.

    Attributes:
        id: Point id (UUID string).
        score: Cosine similarity.
        text: The document text (``page_content``).
        metadata: The document metadata.
    """

    id: str
    score: float
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CollectionSummary:
    """What :meth:`ContextualCollection.info` reports.

    Attributes:
        name: Name users pass (an alias, normally).
        physical_name: The collection behind it.
        points: Points searchable under the stored context.
        points_total: All points, including ones made with another context.
        dim: Vector width.
        fingerprint: Fingerprint of the stored context.
        context_shape: (rows, width) of the stored context.
        model_id: Model that built the context.
        weights_hash: SHA-256 of that model's weights.
        revision: Hub commit of the model, or None.
        model_version: ``"v1"`` or ``"v2"``.
        query_prefix: Prefix queries are embedded with.
        document_prefix: Prefix documents are embedded with.
        generation: Number of context builds this collection has seen.
        record_version: Layout version of the stored record.
        provenance: How the context was built.
        location: Where the data lives.
        options: How the collection is stored and indexed (quantization, on-disk, HNSW,
            shards, hybrid; see ``CollectionOptions``).
        tenant: The tenant reported on (its context and points), or None.
        tenants: Tenants of the collection that have their own context.
        points_unstamped: Points without a context fingerprint (written around cde-rag);
            never searched. Fix: ``recontextualize`` re-embeds them.
        orphans: Unpublished physical collections an interrupted rebuild left behind (the
            next ``recontextualize`` removes them).
    """

    name: str
    physical_name: str
    points: int
    points_total: int
    dim: int
    fingerprint: str
    context_shape: tuple[int, int]
    model_id: str
    weights_hash: str
    revision: str | None
    model_version: str
    query_prefix: str
    document_prefix: str
    generation: int
    record_version: int
    provenance: ContextProvenance
    location: str
    options: dict[str, Any] = field(default_factory=dict)
    tenant: str | None = None
    tenants: list[str] = field(default_factory=list)
    points_unstamped: int = 0
    orphans: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict (for ``--json`` output)."""
        data = asdict(self)
        data["context_shape"] = list(self.context_shape)
        data["orphans"] = list(self.orphans)
        return data


@dataclass(frozen=True)
class DriftReport:
    """How far documents sit from a stored context, in stage-1 (dataset-embedding) space.

    For each document, its distance is ``1 - max cosine`` to the context rows. The baseline is
    the same quantity for each context row against the other (distinct) rows, which is what a
    document from the corpus the context was sampled from would typically score. So ``ratio``
    is about 1 without drift and grows as documents move away from the context.

    Attributes:
        n_documents: Documents measured.
        mean_distance: Mean distance of the documents to their nearest context row.
        baseline_distance: Mean leave-one-out distance among the context rows.
        ratio: ``mean_distance / baseline_distance``.
        outlier_fraction: Share of documents farther than the 95th percentile of the
            baseline distances (about 0.05 without drift).
        recommended: True when recontextualizing is worth it (``ratio`` or
            ``outlier_fraction`` above the thresholds used).
    """

    n_documents: int
    mean_distance: float
    baseline_distance: float
    ratio: float
    outlier_fraction: float
    recommended: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)
