"""Request and response bodies (OpenAI's embeddings schema plus cde-rag's collection routes)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

InputTypeField = Literal["query", "document"]


class _Strict(BaseModel):
    """Unknown fields are refused (as OpenAI does), so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


class EmbeddingRequest(_Strict):
    """``POST /v1/embeddings``.

    ``input`` is checked by the route (a string or a list of non-empty strings; token-id arrays
    are refused with a message saying so).
    """

    input: Any
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    input_type: InputTypeField | None = Field(
        default=None,
        description="'query' or 'document' (as Voyage and Cohere name it); "
        "a ':query' / ':document' suffix on model does the same.",
    )


class EmbeddingItem(BaseModel):
    """One vector of an embeddings response."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    """Token counts (prefix and special tokens included, as the model sees the text)."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    """The embeddings response."""

    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models``."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "cde-rag"
    kind: Literal["collection", "context"]
    input_type: InputTypeField | None
    fingerprint: str
    dim: int


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class SearchRequest(_Strict):
    """``POST /collections/{name}/search``.

    ``filter`` is ``{"key": value}`` on metadata (a list value matches any of its items), or a
    Qdrant filter object (``{"must": [...], "should": [...], "must_not": [...]}``).
    """

    query: str = Field(min_length=1)
    limit: int = Field(default=10, ge=1, le=1000)
    filter: dict[str, Any] | None = None
    score_threshold: float | None = None


class Hit(BaseModel):
    """One search hit."""

    id: str
    score: float
    text: str
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    """Search results, best first."""

    collection: str
    fingerprint: str
    hits: list[Hit]


class DocumentIn(_Strict):
    """One document to store: your id, its text, JSON metadata."""

    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentsRequest(_Strict):
    """``POST /collections/{name}/documents``."""

    documents: list[DocumentIn] = Field(min_length=1)


class DocumentsResponse(BaseModel):
    """What was stored: the sync report's document and chunk counts, and the point count."""

    collection: str
    fingerprint: str
    documents: dict[str, int]
    chunks: dict[str, int]
    points: int


class ErrorDetail(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error envelope: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorDetail
