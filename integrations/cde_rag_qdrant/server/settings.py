"""Server settings (limits, keys, batching)."""

from __future__ import annotations

from dataclasses import dataclass

from cde_rag.errors import InvalidInputError
from cde_rag_qdrant.server.registry import InputType


@dataclass(frozen=True)
class ServerSettings:
    """How a server batches, limits and authenticates requests.

    Attributes:
        api_keys: Accepted ``Authorization: Bearer`` keys; empty: no authentication.
        batching: Coalesce concurrent requests into shared encoder calls.
        max_batch_tokens: Token budget of one coalesced encoder call.
        max_batch_inputs: Most texts in one coalesced encoder call.
        forward_batch_size: Most texts per forward pass inside an encoder call.
        max_inputs: Most texts (or documents) in one request.
        max_input_chars: Most characters in one input text.
        max_body_bytes: Largest request body.
        max_search_limit: Largest ``limit`` of a search.
        default_input_type: Input type when neither ``input_type`` nor a model suffix says.
        truncate: Cut inputs longer than the model's token window instead of refusing them.
        warmup: Run the model once per input type before accepting requests, so the first
            requests do not pay the device's one-time start-up (CUDA kernels, workspaces).
            None: on GPUs and other accelerators, off on CPU (nothing to gain there).
    """

    api_keys: tuple[str, ...] = ()
    batching: bool = True
    max_batch_tokens: int = 16384
    max_batch_inputs: int = 1024
    forward_batch_size: int = 128
    max_inputs: int = 2048
    max_input_chars: int = 100_000
    max_body_bytes: int = 32 * 1024 * 1024
    max_search_limit: int = 1000
    default_input_type: InputType = "document"
    truncate: bool = False
    warmup: bool | None = None

    def __post_init__(self) -> None:
        """Check the values.

        Raises:
            InvalidInputError: A limit below 1, an empty key, or an unknown input type.
        """
        for name in (
            "max_batch_tokens",
            "max_batch_inputs",
            "forward_batch_size",
            "max_inputs",
            "max_input_chars",
            "max_body_bytes",
            "max_search_limit",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                msg = f"{name}={value!r}; expected a positive int."
                raise InvalidInputError(msg)
        if any(not key or not key.strip() for key in self.api_keys):
            msg = "an API key is empty; pass non-empty keys (or none to disable authentication)."
            raise InvalidInputError(msg)
        if self.default_input_type not in ("query", "document"):
            msg = f"default_input_type={self.default_input_type!r}; expected query or document."
            raise InvalidInputError(msg)
