"""The Ray actor pool embeds exactly what one process embeds, with one checked context."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import ContextMismatchError, InvalidInputError
from tests.conftest import corpus_texts
from tests.ray.conftest import ENV

ray = pytest.importorskip("ray", reason="ray is in the test group: pip install -e '.[ray]'")

from cde_rag_ray import ModelSpec, RayEmbedder, RayOptions, embed_dataset  # noqa: E402
from cde_rag_ray.worker import CRASH_ENV  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.enable_socket]


def _texts() -> list[str]:
    base = corpus_texts()
    return [f"{t} (copy {i})" for i in range(3) for t in base]


def test_pool_vectors_equal_single_process_bit_for_bit(
    ray_local: None, spec: ModelSpec, v2_encoder: CDEEncoder, v2_context: CorpusContext
) -> None:
    texts = _texts()
    window = 16
    expected = np.concatenate(
        [
            v2_encoder.embed_documents(texts[i : i + window], v2_context, show_progress_bar=False)
            for i in range(0, len(texts), window)
        ]
    )
    with RayEmbedder(spec, v2_context, RayOptions(actors=2)) as pool:
        got = pool.embed(texts, window=window)
    assert got.dtype == np.float32
    assert np.array_equal(got, expected)


def test_actor_refuses_a_context_of_other_weights(
    ray_local: None, spec: ModelSpec, v1_context: CorpusContext
) -> None:
    with pytest.raises(Exception, match=r"other weights|another model|weights") as info:
        RayEmbedder(spec, v1_context, RayOptions(actors=1))
    assert "ContextMismatchError" in repr(info.value) or isinstance(
        info.value, ContextMismatchError
    )


def test_a_crashed_actor_is_restarted_and_its_window_retried(
    ray_local: None,
    spec: ModelSpec,
    v2_encoder: CDEEncoder,
    v2_context: CorpusContext,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "crashed"
    texts = _texts()
    expected = v2_encoder.embed_documents(texts[:16], v2_context, show_progress_bar=False)
    env = {"env_vars": {**ENV, CRASH_ENV: f"{marker}:2"}}  # each actor dies at its 2nd window, once
    with RayEmbedder(spec, v2_context, RayOptions(actors=2, runtime_env=env)) as pool:
        got = pool.embed(texts, window=16)
    assert marker.exists(), "the test hook never fired: nothing was checked"
    assert got.shape == (len(texts), v2_encoder.dim)
    assert np.array_equal(got[:16], expected)
    for start in range(16, len(texts), 16):  # the retried windows too: same bits
        window = v2_encoder.embed_documents(
            texts[start : start + 16], v2_context, show_progress_bar=False
        )
        assert np.array_equal(got[start : start + 16], window)


def test_an_actor_without_a_context_takes_the_boxed_one_and_checks_it(
    spec: ModelSpec, v2_encoder: CDEEncoder, v2_context: CorpusContext
) -> None:
    from cde_rag_ray.worker import EmbedWorker

    texts = corpus_texts()[:4]
    worker = EmbedWorker(spec, None, v2_context.fingerprint)  # as Ray restarts an actor
    with pytest.raises(InvalidInputError, match="holds no context yet"):
        worker.embed(texts)
    got = worker.embed(texts, [v2_context.to_bytes()])
    assert np.array_equal(
        got, v2_encoder.embed_documents(texts, v2_context, show_progress_bar=False)
    )
    assert worker.fingerprint() == v2_context.fingerprint
    other = EmbedWorker(spec, None, "0" * 64)
    with pytest.raises(ContextMismatchError, match="driver announced 000000000000"):
        other.load([v2_context.to_bytes()])


def test_embed_dataset_adds_vectors_and_the_fingerprint(
    ray_local: None, spec: ModelSpec, v2_encoder: CDEEncoder, v2_context: CorpusContext
) -> None:
    texts = _texts()
    ds = ray.data.from_items([{"text": t, "n": i} for i, t in enumerate(texts)])
    rows = embed_dataset(ds, spec, v2_context, batch_size=8, options=RayOptions(actors=2))
    rows = sorted(rows.take_all(), key=lambda r: r["n"])
    got = np.stack([r["vector"] for r in rows])
    expected = v2_encoder.embed_documents(texts, v2_context, show_progress_bar=False)
    assert np.abs(got - expected).max() <= 1e-5  # other batch composition: float noise only
    assert {r["cde_context"] for r in rows} == {v2_context.fingerprint}


def test_bad_sizes_are_refused_before_ray_starts() -> None:
    with pytest.raises(InvalidInputError, match="actors"):
        RayOptions(actors=0)
    with pytest.raises(InvalidInputError, match="gpus_per_actor"):
        RayOptions(gpus_per_actor=-1)
