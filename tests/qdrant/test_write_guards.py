"""Guards that only show against a real server's behaviour, checked with client wrappers.

* A server applies ``wait=False`` writes later: the last write of every operation must wait,
  or a count or search right after misses points.
* Readers must always find the collection: the alias switch is one atomic operation.
* A rebuild whose new collection lost points must not be published.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from qdrant_client import QdrantClient

from cde_rag import CDEEncoder, CorpusContext
from cde_rag_qdrant import CollectionConfigError, ContextualCollection
from cde_rag_qdrant._store import alias_target
from tests.conftest import corpus_texts

TEXTS = corpus_texts()


class _Wrapper:
    """Delegates everything to a real client; subclasses intercept some calls."""

    def __init__(self, inner: QdrantClient) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class ServerLikeWrites(_Wrapper):
    """Queues ``wait=False`` writes and applies them, in order, only when a write waits."""

    def __init__(self, inner: QdrantClient) -> None:
        super().__init__(inner)
        self.waits: list[tuple[str, bool]] = []
        self.pending: list[Callable[[], object]] = []

    def _write(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        wait = bool(kwargs.pop("wait", True))
        self.waits.append((method, wait))
        self.pending.append(lambda: getattr(self.inner, method)(*args, wait=True, **kwargs))
        if wait:
            for apply in self.pending:
                apply()
            self.pending.clear()

    def upsert(self, *args: Any, **kwargs: Any) -> None:
        self._write("upsert", args, kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> None:
        self._write("delete", args, kwargs)


def _server_like(encoder: CDEEncoder, context: CorpusContext) -> tuple[ServerLikeWrites, Any]:
    client = ServerLikeWrites(QdrantClient(":memory:"))
    col = ContextualCollection.create(client, "notes", encoder, context=context)  # type: ignore[arg-type]
    return client, col


def test_add_and_delete_end_with_a_waiting_write(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    client, col = _server_like(v2_encoder_session, v2_context)
    ids = col.add(TEXTS, batch_size=3, show_progress_bar=False)
    assert len(client.waits) > 3 and client.waits[-1] == ("upsert", True)
    assert client.pending == [] and client.inner.count("notes").count == len(TEXTS)
    col.delete(ids[:2])
    assert client.waits[-1] == ("delete", True) and client.pending == []
    assert col.count() == len(TEXTS) - 2


def test_recontextualize_ends_with_a_waiting_write(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    client, col = _server_like(v2_encoder_session, v2_context)
    col.add(TEXTS, batch_size=len(TEXTS), show_progress_bar=False)
    client.waits.clear()
    col.recontextualize(batch_size=3, show_progress_bar=False)
    upserts = [wait for method, wait in client.waits if method == "upsert"]
    assert len(upserts) > 3 and upserts[-1] is True and client.pending == []
    assert client.inner.count("notes").count == len(TEXTS)


class AliasWatcher(_Wrapper):
    """After every alias change, records where ``notes`` points (None: readers find nothing)."""

    def __init__(self, inner: QdrantClient) -> None:
        super().__init__(inner)
        self.seen: list[str | None] = []

    def update_collection_aliases(self, *args: Any, **kwargs: Any) -> object:
        result = self.inner.update_collection_aliases(*args, **kwargs)
        self.seen.append(alias_target(self.inner, "notes"))
        return result


def test_the_alias_switch_is_one_atomic_operation(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    client = AliasWatcher(QdrantClient(":memory:"))
    col = ContextualCollection.create(client, "notes", v2_encoder_session, context=v2_context)  # type: ignore[arg-type]
    col.add(TEXTS[:6], show_progress_bar=False)
    col.recontextualize(show_progress_bar=False)
    assert client.seen == ["notes__cde_g1", "notes__cde_g2"]  # never None in between


class LosesOneWrite(_Wrapper):
    """Silently drops the second upsert into a rebuilt generation (a lost write)."""

    def __init__(self, inner: QdrantClient) -> None:
        super().__init__(inner)
        self.rebuild_upserts = 0

    def upsert(self, collection_name: str, *args: Any, **kwargs: Any) -> object:
        if collection_name.endswith("__cde_g2"):
            self.rebuild_upserts += 1
            if self.rebuild_upserts == 2:
                return None
        return self.inner.upsert(collection_name, *args, **kwargs)


def test_a_rebuild_that_lost_points_is_not_published(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    client = LosesOneWrite(QdrantClient(":memory:"))
    col = ContextualCollection.create(client, "notes", v2_encoder_session, context=v2_context)  # type: ignore[arg-type]
    col.add(TEXTS, show_progress_bar=False)
    with pytest.raises(
        CollectionConfigError, match=r"holds \d+ points, expected 20; .*not switched"
    ):
        col.recontextualize(batch_size=3, show_progress_bar=False)
    assert alias_target(client.inner, "notes") == "notes__cde_g1"
    assert [c.name for c in client.inner.get_collections().collections] == ["notes__cde_g1"]
    assert col.count() == len(TEXTS)
