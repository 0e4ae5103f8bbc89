"""Collection options at creation (quantization, on-disk, HNSW, shards) and query-time params."""

from __future__ import annotations

from typing import Any

import pytest
from qdrant_client import QdrantClient, models

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import InvalidInputError
from cde_rag_qdrant import ContextualCollection
from cde_rag_qdrant.options import CollectionOptions, search_params
from tests.conftest import corpus_texts

TEXTS = corpus_texts()


@pytest.mark.parametrize("quantization", ["int8", "binary"])
def test_options_are_applied_shown_and_kept(
    client: QdrantClient,
    name: str,
    v2_encoder_session: CDEEncoder,
    v2_context: CorpusContext,
    location: str,
    quantization: str,
) -> None:
    opts = CollectionOptions(
        quantization=quantization,  # type: ignore[arg-type]
        on_disk=True,
        on_disk_payload=True,
        hnsw_m=8,
        hnsw_ef_construct=64,
    )
    col = ContextualCollection.create(
        client, name, v2_encoder_session, context=v2_context, options=opts
    )
    col.add(TEXTS)
    shown = col.info().options
    assert shown["quantization"] == quantization
    assert (shown["on_disk"], shown["on_disk_payload"]) == (True, True)
    assert (shown["hnsw_m"], shown["hnsw_ef_construct"]) == (8, 64)
    assert shown["hybrid"] is False
    config = client.get_collection(name).config
    vectors = config.params.vectors
    assert isinstance(vectors, models.VectorParams) and vectors.on_disk is True
    if location == "server":  # local mode keeps no quantization / HNSW config
        quant = config.quantization_config
        kind = models.ScalarQuantization if quantization == "int8" else models.BinaryQuantization
        assert isinstance(quant, kind)
        assert (config.hnsw_config.m, config.hnsw_config.ef_construct) == (8, 64)
    exact = col.search(TEXTS[0], limit=5)
    rescored = col.search(TEXTS[0], limit=5, rescore=True, oversampling=2.0)
    assert [h.id for h in rescored][:1] == [h.id for h in exact][:1]
    col.recontextualize(size=8)  # the rebuilt collection keeps the options
    assert col.info().options == shown
    if location == "server":
        assert isinstance(client.get_collection(name).config.quantization_config, kind)


def test_search_passes_quantization_params(
    client: QdrantClient,
    name: str,
    v2_encoder_session: CDEEncoder,
    v2_context: CorpusContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    col = ContextualCollection.create(
        client,
        name,
        v2_encoder_session,
        context=v2_context,
        options=CollectionOptions(quantization="int8"),
    )
    col.add(TEXTS[:4])
    seen: list[dict[str, Any]] = []
    real = client.query_points

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(client, "query_points", spy)
    col.search("x", limit=2, rescore=True, oversampling=2.0, hnsw_ef=32)
    params = seen[-1]["search_params"]
    assert params == models.SearchParams(
        hnsw_ef=32, quantization=models.QuantizationSearchParams(rescore=True, oversampling=2.0)
    )
    col.search("x", limit=2)
    assert seen[-1]["search_params"] is None  # Qdrant's defaults


def test_option_errors() -> None:
    with pytest.raises(InvalidInputError, match="quantization='int4'"):
        CollectionOptions(quantization="int4")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="hnsw_m=-1"):
        CollectionOptions(hnsw_m=-1)
    with pytest.raises(InvalidInputError, match="shards=0"):
        CollectionOptions(shards=0)
    with pytest.raises(InvalidInputError, match=r"oversampling=0\.5"):
        search_params(rescore=True, oversampling=0.5, hnsw_ef=None)
    kwargs = CollectionOptions(shards=3, replicas=2).create_kwargs(64)
    assert (kwargs["shard_number"], kwargs["replication_factor"]) == (3, 2)
