"""What a server can embed with: the contexts of Qdrant collections and of context files.

Every entry is one name a client may put in ``model`` (optionally with a ``:query`` or
``:document`` suffix). A collection entry re-reads its stored context when the collection's
alias moves (``cde-rag recontextualize``), so the server never hands out vectors made under a
context the collection no longer holds.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import ContextError, InvalidInputError

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from cde_rag_qdrant.collection import ContextualCollection

logger = logging.getLogger(__name__)

InputType = Literal["query", "document"]
INPUT_TYPES: tuple[InputType, ...] = ("query", "document")
SUFFIX_SEPARATOR = ":"


@dataclass
class ModelEntry:
    """One servable context.

    Attributes:
        name: The name clients pass as ``model``.
        kind: ``"collection"`` (a Qdrant collection) or ``"context"`` (a context file).
        context: The context vectors are made with.
        query_prefix: Prefix for queries (the collection's stored one, else the model's).
        document_prefix: Prefix for documents.
        collection: The open collection (collection entries only).
        source: Where the context came from (file path or store description).
    """

    name: str
    kind: Literal["collection", "context"]
    context: CorpusContext
    query_prefix: str
    document_prefix: str
    collection: ContextualCollection | None = None
    source: str = ""
    _target: str | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the context in use."""
        return self.context.fingerprint

    def prefix(self, input_type: InputType) -> str:
        """The prefix for ``input_type``."""
        return self.query_prefix if input_type == "query" else self.document_prefix

    def refresh(self) -> bool:
        """Re-open a collection whose alias moved since it was opened (cheap check otherwise).

        Returns:
            Whether the context changed.
        """
        col = self.collection
        if col is None:
            return False
        from cde_rag_qdrant import _store
        from cde_rag_qdrant.collection import ContextualCollection

        with self._lock:
            target = _store.alias_target(col.client, self.name) or self.name
            if target == self._target:
                return False
            fresh = ContextualCollection.open(col.client, self.name, col.encoder)
            changed = fresh.fingerprint != self.context.fingerprint
            if changed:
                logger.info(
                    "collection %r now holds context %s (was %s); serving the new one",
                    self.name,
                    fresh.fingerprint[:12],
                    self.context.fingerprint[:12],
                )
            self.collection, self.context, self._target = fresh, fresh.context, target
            self.query_prefix = fresh.record.query_prefix
            self.document_prefix = fresh.record.document_prefix
            return changed


class ContextRegistry:
    """The named contexts a server holds, and how ``model`` names map onto them.

    Example:
        >>> reg = ContextRegistry.load(encoder, client, contexts={"kb": "kb.ctx"})  # doctest: +SKIP
        >>> entry, kind = reg.resolve("notes:query", None, default="document")  # doctest: +SKIP
    """

    def __init__(self, encoder: CDEEncoder, entries: Iterable[ModelEntry]) -> None:
        """Hold ``entries`` (names must be unique, contexts made by ``encoder``'s model).

        Raises:
            InvalidInputError: Two entries share a name.
            ContextMismatchError: A context was made by another model.
        """
        self.encoder = encoder
        self.entries: dict[str, ModelEntry] = {}
        for entry in entries:
            if entry.name in self.entries:
                msg = (
                    f"two contexts are named {entry.name!r} ({self.entries[entry.name].source} "
                    f"and {entry.source}); give the context file another name: "
                    f"--context OTHER={entry.source}."
                )
                raise InvalidInputError(msg)
            entry.context.check_compatible(encoder)
            self.entries[entry.name] = entry

    def __len__(self) -> int:
        """Number of entries."""
        return len(self.entries)

    @classmethod
    def load(
        cls,
        encoder: CDEEncoder,
        client: QdrantClient | None = None,
        *,
        collections: Iterable[str] | None = None,
        contexts: Mapping[str, str | os.PathLike[str]] | None = None,
    ) -> ContextRegistry:
        """Open collections of a Qdrant store and context files.

        Args:
            encoder: The loaded model.
            client: A Qdrant client, or None to serve context files only.
            collections: Collection names to serve. ``None``: every collection in the store
                that holds a cde-rag context made by ``encoder``'s model (others are skipped
                with a warning).
            contexts: ``{name: path}`` of contexts saved with ``CorpusContext.save``.

        Returns:
            The registry.

        Raises:
            InvalidInputError: Nothing to serve, or a name used twice.
            CollectionNotFoundError: A named collection does not exist.
            ContextError: A named collection or a context file cannot be used with the model.
        """
        entries: list[ModelEntry] = []
        if client is not None:
            entries += _open_collections(encoder, client, collections)
        for name, path in (contexts or {}).items():
            if not name or SUFFIX_SEPARATOR in name:
                msg = f"context name {name!r}: expected a non-empty name without ':'."
                raise InvalidInputError(msg)
            context = CorpusContext.load(path)
            entries.append(
                ModelEntry(
                    name,
                    "context",
                    context,
                    encoder.query_prefix,
                    encoder.document_prefix,
                    source=os.fspath(path),
                )
            )
        if not entries:
            msg = (
                "nothing to serve: the store holds no cde-rag collection and no --context "
                "NAME=PATH was given. Ingest documents first (cde-rag ingest PATH) or pass a "
                "context file saved with CorpusContext.save()."
            )
            raise InvalidInputError(msg)
        return cls(encoder, entries)

    def resolve(
        self, model: str, input_type: InputType | None, *, default: InputType
    ) -> tuple[ModelEntry, InputType]:
        """The entry and input type a request asks for.

        ``model`` is an entry name, optionally suffixed ``:query`` or ``:document``; an explicit
        ``input_type`` must agree with the suffix. Without either, ``default`` applies.

        Raises:
            LookupError: Unknown name (the message lists the known ones).
            ValueError: Suffix and ``input_type`` disagree.
        """
        name, suffix = model, None
        suffix_type: InputType | None = None
        if model not in self.entries:
            base, sep, tail = model.rpartition(SUFFIX_SEPARATOR)
            if sep and tail in INPUT_TYPES:
                name, suffix = base, tail
                suffix_type = "query" if tail == "query" else "document"
        entry = self.entries.get(name)
        if entry is None:
            known = ", ".join(sorted(self.entries)) or "none"
            msg = (
                f"the model {model!r} does not exist on this server; ask for a collection or "
                f"context name ({known}), optionally with ':query' or ':document' "
                "(GET /v1/models lists them)."
            )
            raise LookupError(msg)
        if suffix is not None and input_type is not None and suffix != input_type:
            msg = (
                f"model {model!r} asks for {suffix} embeddings but input_type is "
                f"{input_type!r}; drop one of them."
            )
            raise ValueError(msg)
        return entry, input_type or suffix_type or default


def _open_collections(
    encoder: CDEEncoder, client: QdrantClient, names: Iterable[str] | None
) -> list[ModelEntry]:
    from cde_rag_qdrant import _store
    from cde_rag_qdrant.collection import ContextualCollection
    from cde_rag_qdrant.errors import ContextMissingError

    explicit = names is not None
    wanted = list(names) if names is not None else _store_names(client)
    entries = []
    for name in wanted:
        try:
            col = ContextualCollection.open(client, name, encoder)
        except ContextMissingError:
            if explicit:
                raise
            logger.info("skipping collection %r: it holds no cde-rag context", name)
            continue
        except ContextError as exc:
            if explicit:
                raise
            logger.warning("skipping collection %r: %s", name, exc)
            continue
        entry = ModelEntry(
            name,
            "collection",
            col.context,
            col.record.query_prefix,
            col.record.document_prefix,
            collection=col,
            source=_store.describe(client),
            _target=_store.alias_target(client, name) or name,
        )
        entries.append(entry)
    return entries


def _store_names(client: QdrantClient) -> list[str]:
    """Alias names, plus collections no alias points at (adopted with attach_context)."""
    from cde_rag_qdrant import _store

    with _store.qdrant_errors(client, "list collections"):
        aliases = client.get_aliases().aliases
        collections = [c.name for c in client.get_collections().collections]
    targets = {a.collection_name for a in aliases}
    names = sorted(a.alias_name for a in aliases)
    names += sorted(c for c in collections if c not in targets)
    return names
