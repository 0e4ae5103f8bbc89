"""Embed a Ray Dataset of texts with one shared context (for users who already hold one)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cde_rag import CorpusContext
from cde_rag.errors import InvalidInputError
from cde_rag_ray.engine import RayOptions, import_ray
from cde_rag_ray.worker import EmbedWorker, ModelSpec


class _DatasetWorker(EmbedWorker):
    """``map_batches`` body: an :class:`EmbedWorker` that adds a vector column."""

    def __init__(
        self,
        spec: ModelSpec,
        fingerprint: str,
        prefix: str | None,
        device: str,
        column: str,
        output_column: str,
    ) -> None:
        super().__init__(spec, None, fingerprint, prefix, device)
        self.column = column
        self.output_column = output_column

    def __call__(self, batch: dict[str, Any], context: list[Any]) -> dict[str, Any]:
        texts = [str(t) for t in batch[self.column]]
        batch[self.output_column] = self.embed(texts, context)
        batch["cde_context"] = np.array([self.fingerprint()] * len(texts), dtype=object)
        return batch


def embed_dataset(
    dataset: Any,
    spec: ModelSpec,
    context: CorpusContext,
    *,
    column: str = "text",
    output_column: str = "vector",
    batch_size: int = 512,
    options: RayOptions | None = None,
    prefix: str | None = None,
) -> Any:
    """Add document vectors to a Ray Dataset, every actor embedding with ``context``.

    Each actor loads the model once and receives the context by object reference (one copy in
    the object store; fetched on the actor's first batch, again after a restart), checks its
    fingerprint and that it matches the model's weights.

    Args:
        dataset: A ``ray.data.Dataset`` with a text column.
        spec: How each actor loads the model (hub id or a folder every node can read).
        context: The shared context.
        column: The text column.
        output_column: The vector column to add (float32, the model's width, unit norm).
        batch_size: Texts per ``map_batches`` call (the encoder sorts each by length).
        options: Actor count, GPUs and CPUs per actor.
        prefix: Document prefix (None: the model's).

    Returns:
        A lazy Dataset with ``output_column`` and ``cde_context`` (the fingerprint) added.

    Raises:
        InvalidInputError: Bad ``batch_size``.
        OptionalDependencyError: Ray is not installed.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        msg = f"batch_size={batch_size!r}; expected a positive int"
        raise InvalidInputError(msg)
    ray = import_ray()
    opts = options or RayOptions()
    device = "cuda" if opts.gpus_per_actor > 0 else "cpu"
    context_ref = ray.put(context.to_bytes())
    return dataset.map_batches(
        _DatasetWorker,
        fn_constructor_args=(
            spec,
            context.fingerprint,
            prefix,
            device,
            column,
            output_column,
        ),
        fn_kwargs={"context": [context_ref]},  # boxed: fetched by an actor without a context
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=opts.actors,
        num_cpus=opts.cpus_per_actor,
        num_gpus=opts.gpus_per_actor,
        max_restarts=opts.max_restarts,
        max_task_retries=opts.max_task_retries,
        runtime_env=opts.runtime_env,
    )
