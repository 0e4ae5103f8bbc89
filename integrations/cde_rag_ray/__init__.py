"""cde-rag on Ray: embed large corpora on an actor pool that shares one corpus context.

Example:
    >>> from cde_rag_ray import ModelSpec, RayEmbedder, RayOptions  # doctest: +SKIP
    >>> spec = ModelSpec("jxm/cde-small-v2")  # doctest: +SKIP
    >>> with RayEmbedder(spec, context, RayOptions(actors=4, gpus_per_actor=1)) as pool:
    ...     vectors = pool.embed(texts)  # doctest: +SKIP
"""

from __future__ import annotations

from cde_rag_ray.dataset import embed_dataset
from cde_rag_ray.engine import RayEmbedder, RayOptions
from cde_rag_ray.worker import ModelSpec, model_spec_for

__all__ = ["ModelSpec", "RayEmbedder", "RayOptions", "embed_dataset", "model_spec_for"]
