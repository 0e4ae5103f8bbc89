"""Each package's public names are pinned: changing them is a deliberate API change."""

from __future__ import annotations

import cde_rag
import cde_rag_qdrant


def test_core_exports() -> None:
    assert sorted(cde_rag.__all__) == [
        "CDEEncoder",
        "CDERagError",
        "CheckpointError",
        "ContextError",
        "ContextMismatchError",
        "CorpusContext",
        "InvalidInputError",
        "__version__",
    ]
    for name in cde_rag.__all__:
        assert getattr(cde_rag, name) is not None


def test_qdrant_exports() -> None:
    assert sorted(cde_rag_qdrant.__all__) == sorted(
        [
            "CONTENT_PAYLOAD_KEY",
            "FINGERPRINT_PAYLOAD_KEY",
            "METADATA_KEY",
            "METADATA_PAYLOAD_KEY",
            "AsyncContextualCollection",
            "ClientTypeError",
            "CollectionConfigError",
            "CollectionEmptyError",
            "CollectionExistsError",
            "CollectionNotFoundError",
            "CollectionOptions",
            "CollectionSummary",
            "ContextMissingError",
            "ContextRecord",
            "ContextualCollection",
            "Document",
            "DocumentSource",
            "DriftReport",
            "DuplicateDocumentError",
            "QdrantUnavailableError",
            "RequestTooLargeError",
            "SearchHit",
            "SparseEncoder",
            "StoreLockedError",
            "StoreUnusableError",
            "SyncReport",
            "TenantContextMissingError",
            "UploadOptions",
            "build_payload",
            "connect",
            "point_id",
            "read_context",
            "read_record",
        ]
    )
    for name in cde_rag_qdrant.__all__:
        assert getattr(cde_rag_qdrant, name) is not None


def test_errors_refine_builtins() -> None:
    from cde_rag import errors

    assert issubclass(errors.CheckpointNotFoundError, FileNotFoundError)
    assert issubclass(errors.CheckpointFormatError, ValueError)
    assert issubclass(errors.ModelDownloadError, OSError)
    assert issubclass(errors.ContextMismatchError, ValueError)
    assert issubclass(errors.InvalidInputError, ValueError)
    assert issubclass(errors.OptionalDependencyError, ImportError)
    assert issubclass(cde_rag_qdrant.StoreLockedError, cde_rag.CDERagError)
    assert issubclass(cde_rag_qdrant.DuplicateDocumentError, errors.InvalidInputError)
    assert issubclass(cde_rag_qdrant.DuplicateDocumentError, ValueError)
    err = errors.OptionalDependencyError("LangChain is missing.", extra="langchain")
    assert err.extra == "langchain"
    assert "pip install 'cde-rag[langchain]'" in str(err)


def test_server_exports() -> None:
    import cde_rag_qdrant.server as server

    assert sorted(server.__all__) == [
        "ContextRegistry",
        "ModelEntry",
        "ServerSettings",
        "create_app",
    ]
