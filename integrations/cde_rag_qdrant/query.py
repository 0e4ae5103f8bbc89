"""Query API requests for dense, sparse and hybrid search (fusion done by Qdrant).

Hybrid search sends one ``query_points`` request with two prefetches (the unnamed dense CDE
vector and the named sparse vector), each under the same filter, fused by Qdrant with
Reciprocal Rank Fusion (``"rrf"``) or Distribution-Based Score Fusion (``"dbsf"``). The scores
returned are Qdrant's fused scores; nothing is re-ranked on the client.
"""

from __future__ import annotations

from typing import Any, Literal

from qdrant_client import models

from cde_rag.errors import InvalidInputError
from cde_rag_qdrant.errors import CollectionConfigError
from cde_rag_qdrant.sparse import SparseEncoder

SearchMode = Literal["dense", "sparse", "hybrid"]
Fusion = Literal["rrf", "dbsf"]
SEARCH_MODES: tuple[str, ...] = ("dense", "sparse", "hybrid")
FUSIONS: dict[str, models.Fusion] = {"rrf": models.Fusion.RRF, "dbsf": models.Fusion.DBSF}


def check_mode(mode: str, fusion: str, sparse: SparseEncoder | None, collection_name: str) -> None:
    """Refuse an unknown mode or fusion, and lexical modes on a dense-only collection.

    Raises:
        InvalidInputError: Unknown ``mode`` or ``fusion``.
        CollectionConfigError: ``"sparse"``/``"hybrid"`` on a collection without a sparse vector.
    """
    if mode not in SEARCH_MODES:
        msg = f"mode={mode!r}; expected one of {SEARCH_MODES}."
        raise InvalidInputError(msg)
    if fusion not in FUSIONS:
        msg = f"fusion={fusion!r}; expected one of {tuple(FUSIONS)}."
        raise InvalidInputError(msg)
    if mode != "dense" and sparse is None:
        msg = (
            f"collection {collection_name!r} has no sparse vector, so mode={mode!r} cannot "
            "run. Search with mode='dense', or create the collection with hybrid=True "
            "(CLI: cde-rag ingest --hybrid) and ingest again."
        )
        raise CollectionConfigError(msg)


def query_kwargs(
    *,
    mode: str,
    fusion: str,
    dense: list[float] | None,
    sparse_vector: models.SparseVector | None,
    sparse_name: str | None,
    limit: int,
    query_filter: models.Filter,
    search_params: models.SearchParams | None,
    prefetch_limit: int | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``client.query_points`` (besides the collection name).

    Args:
        mode: ``"dense"``, ``"sparse"`` or ``"hybrid"``.
        fusion: ``"rrf"`` or ``"dbsf"`` (hybrid only).
        dense: The query's dense vector (dense and hybrid).
        sparse_vector: The query's sparse vector (sparse and hybrid).
        sparse_name: Name of the sparse vector.
        limit: Hits to return.
        query_filter: Applied to every branch.
        search_params: Dense search parameters (quantization rescoring, ``hnsw_ef``).
        prefetch_limit: Candidates per branch before fusion (default: ``max(2 * limit, 20)``).
    """
    if mode == "dense":
        return {"query": dense, "query_filter": query_filter, "search_params": search_params}
    if mode == "sparse":
        return {"query": sparse_vector, "using": sparse_name, "query_filter": query_filter}
    depth = prefetch_limit or max(2 * limit, 20)
    return {
        "prefetch": [
            models.Prefetch(query=dense, filter=query_filter, params=search_params, limit=depth),
            models.Prefetch(
                query=sparse_vector, using=sparse_name, filter=query_filter, limit=depth
            ),
        ],
        "query": models.FusionQuery(fusion=FUSIONS[fusion]),
        "query_filter": query_filter,
    }
