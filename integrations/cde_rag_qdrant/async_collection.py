"""AsyncContextualCollection: a cde-rag collection over an ``AsyncQdrantClient``.

The same layout, record and guarantees as :class:`~cde_rag_qdrant.ContextualCollection`
(create, open, add, search, retrieve, count); embedding runs in a worker thread so the event
loop never blocks. Maintenance (drift, recontextualize) stays on the sync class.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from qdrant_client import AsyncQdrantClient, models

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import InvalidInputError
from cde_rag.validation import validate_texts
from cde_rag_qdrant import _astore
from cde_rag_qdrant._store import physical_name, qdrant_errors, vector_params
from cde_rag_qdrant.binding import BoundContext
from cde_rag_qdrant.errors import ClientTypeError, CollectionExistsError
from cde_rag_qdrant.payload import (
    FINGERPRINT_PAYLOAD_KEY,
    build_payload,
    check_ids,
    check_metadatas,
    hit_from_point,
    metadata_filter,
    point_id,
)
from cde_rag_qdrant.record import ContextRecord
from cde_rag_qdrant.results import SearchHit

logger = logging.getLogger(__name__)


class AsyncContextualCollection:
    """A cde-rag collection used through an ``AsyncQdrantClient``.

    Example:
        >>> col = await AsyncContextualCollection.open(aclient, "notes", encoder)  # doctest: +SKIP
        >>> await col.add(["a text"])  # doctest: +SKIP
        >>> await col.search("query", limit=3)  # doctest: +SKIP
    """

    def __init__(self, client: AsyncQdrantClient, encoder: CDEEncoder, bound: BoundContext) -> None:
        """Use :meth:`open` or :meth:`create`."""
        self.client = client
        self.encoder = encoder
        self.bound = bound
        self.name = str(bound.collection_name)

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the stored context."""
        return self.bound.fingerprint

    @classmethod
    async def open(
        cls, client: AsyncQdrantClient, collection_name: str, encoder: CDEEncoder
    ) -> AsyncContextualCollection:
        """Read and validate the stored context (see ``ContextualCollection.open``).

        Raises:
            ClientTypeError: ``client`` is not an ``AsyncQdrantClient``.
            CollectionNotFoundError: No such collection.
            ContextMissingError: No cde-rag context record.
            ContextMismatchError: The stored context was made by another model.
        """
        if not isinstance(cast(object, client), AsyncQdrantClient):
            msg = "AsyncContextualCollection needs an AsyncQdrantClient; use ContextualCollection."
            raise ClientTypeError(msg)
        bound = await BoundContext.aopen(client, collection_name)
        bound.context.check_compatible(encoder)
        return cls(client, encoder, bound)

    @classmethod
    async def create(
        cls,
        client: AsyncQdrantClient,
        collection_name: str,
        encoder: CDEEncoder,
        *,
        context: CorpusContext | None = None,
        corpus: Iterable[str] | None = None,
    ) -> AsyncContextualCollection:
        """Create the collection (alias over ``{name}__cde_g1``) storing its context.

        Raises:
            InvalidInputError: Neither or both of ``context`` and ``corpus``.
            CollectionExistsError: The name exists (nothing is overwritten).
        """
        if (context is None) == (corpus is None):
            msg = "pass exactly one of context= or corpus=."
            raise InvalidInputError(msg)
        if await _astore.exists(client, collection_name):
            msg = f"collection {collection_name!r} already exists; open it instead."
            raise CollectionExistsError(msg)
        if context is None:
            docs = list(corpus or [])
            context = await asyncio.to_thread(encoder.build_context, docs, show_progress_bar=False)
        record = ContextRecord.from_context(context, encoder, generation=1)
        target = physical_name(collection_name, 1)
        with qdrant_errors(client, f"create collection {target!r}"):  # type: ignore[arg-type]
            await client.create_collection(
                target, vectors_config=vector_params(encoder.dim), metadata=record.to_metadata()
            )
            await client.update_collection_aliases(
                change_aliases_operations=[
                    models.CreateAliasOperation(
                        create_alias=models.CreateAlias(
                            collection_name=target, alias_name=collection_name
                        )
                    )
                ]
            )
        return await cls.open(client, collection_name, encoder)

    async def add(
        self,
        texts: Iterable[str],
        *,
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        batch_size: int = 64,
    ) -> list[str]:
        """Embed under the stored context and upsert (ids as ``ContextualCollection.add``).

        Raises:
            InvalidInputError: Bad texts, ids or metadatas.
            ContextMismatchError: The collection was recontextualized since it was opened.
        """
        items = validate_texts(texts)
        keys = check_ids(ids, items)
        metas = check_metadatas(metadatas, len(items))
        await self.bound.averify(full=True, fix="reopen it with AsyncContextualCollection.open")
        query_prefix, document_prefix = self.bound.prefixes(self.encoder)
        del query_prefix
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            vectors = await asyncio.to_thread(
                self.encoder.embed_documents,
                chunk,
                self.bound.context,
                show_progress_bar=False,
                prefix=document_prefix,
            )
            payloads = [
                build_payload(t, m, self.fingerprint)
                for t, m in zip(chunk, metas[start : start + batch_size], strict=True)
            ]
            await self.client.upsert(
                self.name,
                points=models.Batch(
                    ids=list[models.ExtendedPointId](keys[start : start + batch_size]),
                    vectors=vectors.tolist(),
                    payloads=payloads,
                ),
                wait=True,
            )
        return keys

    async def search(
        self,
        query: str,
        *,
        limit: int = 10,
        query_filter: models.Filter | Mapping[str, Any] | None = None,
    ) -> list[SearchHit]:
        """Nearest documents of the stored context (one request when ``limit`` hits come back).

        Raises:
            ContextMismatchError: The collection was recontextualized since it was opened.
        """
        if not isinstance(query, str) or not query.strip():
            msg = f"query={query!r:.60}; expected a non-empty str."
            raise InvalidInputError(msg)
        query_prefix, _ = self.bound.prefixes(self.encoder)
        vector = await asyncio.to_thread(
            self.encoder.embed_queries,
            [query],
            self.bound.context,
            show_progress_bar=False,
            prefix=query_prefix,
        )
        response = await self.client.query_points(
            self.name,
            query=vector[0].tolist(),
            limit=limit,
            query_filter=self.bound.scoped(metadata_filter(query_filter)),
            with_payload=True,
        )
        await self.bound.aafter_search(len(response.points), limit, "reopen it")
        return [hit_from_point(p) for p in response.points]

    async def retrieve(self, ids: Sequence[str]) -> list[SearchHit]:
        """Points by id (your ids or point ids), in order; missing ones are skipped."""
        if isinstance(ids, str):
            msg = "ids must be a list of ids, not a single string; wrap it: [id]."
            raise InvalidInputError(msg)
        wanted = [point_id(str(i)) for i in ids]
        records = await self.client.retrieve(self.name, ids=list(wanted), with_payload=True)
        by_id = {str(r.id): r for r in records}
        return [
            hit_from_point(models.ScoredPoint(id=r.id, version=0, score=0.0, payload=r.payload))
            for r in (by_id[p] for p in wanted if p in by_id)
        ]

    async def count(self) -> int:
        """Points made with the stored context."""
        flt = models.Filter(
            must=[
                models.FieldCondition(
                    key=FINGERPRINT_PAYLOAD_KEY, match=models.MatchValue(value=self.fingerprint)
                )
            ]
        )
        return int((await self.client.count(self.name, count_filter=flt, exact=True)).count)
