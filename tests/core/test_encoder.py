"""CDEEncoder: golden parity, prefixes, batch order, truncation, progress, bad input, devices."""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from cde_rag import (
    CDEEncoder,
    ContextMismatchError,
    CorpusContext,
    InvalidInputError,
)
from cde_rag.config import ModernBertConfig
from cde_rag.context import new_provenance
from tests.conftest import V1_TINY, V2_TINY, corpus_texts, fixture_texts, golden

DOC = "search_document: "
QUERY = "search_query: "
GOLDEN_MAX_LENGTH = 40  # the golden texts were tokenised with max_length=40
ATOL = 1e-5  # the fixture README's tolerance for embeddings
LONG_TEXT = " ".join(f"word{i}" for i in range(300))


@dataclasses.dataclass(frozen=True)
class Reference:
    """A fixture folder's encoder (max_length=40), texts, golden tensors and golden context."""

    name: str
    encoder: CDEEncoder
    texts: dict[str, list[str]]
    golden: dict[str, torch.Tensor]
    context: CorpusContext

    def context_from(self, rows: torch.Tensor) -> CorpusContext:
        """A context of ``rows`` attributed to this encoder."""
        provenance = new_provenance(
            self.encoder.identity,
            size=rows.shape[0],
            seed=None,
            strategy="given",
            n_source_documents=rows.shape[0],
        )
        return CorpusContext(rows.clone(), provenance)


def _reference(name: str, session: CDEEncoder) -> Reference:
    encoder = copy.deepcopy(session)
    encoder.max_length = GOLDEN_MAX_LENGTH
    folder = V2_TINY if name == "v2" else V1_TINY
    texts = fixture_texts(folder)
    context = encoder.build_context(texts["minicorpus"], show_progress_bar=False)
    return Reference(name, encoder, texts, golden(folder), context)


@pytest.fixture(scope="module")
def v2_ref(v2_encoder_session: CDEEncoder) -> Reference:
    return _reference("v2", v2_encoder_session)


@pytest.fixture(scope="module")
def v1_ref(v1_encoder_session: CDEEncoder) -> Reference:
    return _reference("v1", v1_encoder_session)


@pytest.fixture(scope="module", params=["v2", "v1"])
def ref(request: pytest.FixtureRequest) -> Reference:
    reference: Reference = request.getfixturevalue(f"{request.param}_ref")
    return reference


def _split_docs(docs: list[str]) -> tuple[list[int], list[int]]:
    prefixed = [i for i, t in enumerate(docs) if t.startswith(DOC)]
    bare = [i for i, t in enumerate(docs) if not t.startswith(DOC)]
    assert len(bare) == 2, "the fixture has two documents without the prefix"
    return prefixed, bare


def _embed_golden_docs(ref: Reference, context: CorpusContext, **kwargs: Any) -> np.ndarray:
    """The golden documents, the two unprefixed ones with prefix=""."""
    docs = ref.texts["docs"]
    prefixed, bare = _split_docs(docs)
    out = np.full((len(docs), ref.encoder.dim), np.nan, dtype=np.float32)
    out[prefixed] = ref.encoder.embed_documents([docs[i] for i in prefixed], context, **kwargs)
    out[bare] = ref.encoder.embed_documents([docs[i] for i in bare], context, prefix="", **kwargs)
    return out


def _close(actual: np.ndarray | torch.Tensor, expected: torch.Tensor, atol: float = ATOL) -> None:
    got = torch.from_numpy(actual) if isinstance(actual, np.ndarray) else actual
    torch.testing.assert_close(got, expected, rtol=0, atol=atol)


def _unit(rows: torch.Tensor) -> torch.Tensor:
    return F.normalize(rows, dim=-1)


# -- golden parity ---------------------------------------------------------------------------


def test_build_context_of_the_minicorpus_matches_golden(ref: Reference) -> None:
    assert len(ref.texts["minicorpus"]) == ref.encoder.context_size == 16
    assert ref.context.shape == (16, ref.encoder.dim)
    assert ref.context.provenance.strategy == "given"
    _close(ref.context.embeddings, ref.golden["dataset_embeddings"])


def test_first_stage_embeddings_match_golden(ref: Reference) -> None:
    rows = ref.encoder.first_stage_embeddings(ref.texts["minicorpus"], show_progress_bar=False)
    assert rows.dtype == np.float32
    _close(rows, ref.golden["dataset_embeddings"])


def test_documents_match_normalised_golden(ref: Reference) -> None:
    _close(_embed_golden_docs(ref, ref.context), _unit(ref.golden["docs.embeddings"]))


def test_queries_match_normalised_golden(ref: Reference) -> None:
    vectors = ref.encoder.embed_queries(ref.texts["queries"], ref.context)
    _close(vectors, _unit(ref.golden["queries.embeddings"]))


def test_normalize_false_returns_the_raw_golden(ref: Reference) -> None:
    _close(_embed_golden_docs(ref, ref.context, normalize=False), ref.golden["docs.embeddings"])
    queries = ref.encoder.embed_queries(ref.texts["queries"], ref.context, normalize=False)
    _close(queries, ref.golden["queries.embeddings"])
    # the raw vectors are not unit length, so normalisation is really switched off
    assert not np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-3)


def test_numpy_output_is_float32_unit_norm(ref: Reference) -> None:
    vectors = ref.encoder.embed_queries(ref.texts["queries"], ref.context)
    assert isinstance(vectors, np.ndarray)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(ref.texts["queries"]), ref.encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=0, atol=1e-6)


def test_torch_output_is_a_float32_cpu_tensor(ref: Reference) -> None:
    queries = ref.texts["queries"]
    tensor = ref.encoder.embed_queries(queries, ref.context, output="torch")
    assert isinstance(tensor, torch.Tensor)
    assert tensor.dtype == torch.float32
    assert tensor.device.type == "cpu"
    assert tensor.shape == (len(queries), ref.encoder.dim)
    _close(tensor, _unit(ref.golden["queries.embeddings"]))
    raw = ref.encoder.embed_documents(queries, ref.context, output="torch", normalize=False)
    assert isinstance(raw, torch.Tensor)


def test_empty_list_gives_an_empty_array(ref: Reference) -> None:
    vectors = ref.encoder.embed_documents([], ref.context)
    assert vectors.shape == (0, ref.encoder.dim)
    assert vectors.dtype == np.float32


def test_more_context_rows_use_the_first_ones(ref: Reference) -> None:
    more = ref.context_from(ref.golden["dataset_embeddings_more"])
    assert more.shape[0] == ref.encoder.context_size + 4
    vectors = _embed_golden_docs(ref, more, normalize=False)
    _close(vectors, ref.golden["docs_more_context.embeddings"])
    _close(vectors, ref.golden["docs.embeddings"])


def test_v2_accepts_fewer_context_rows(v2_ref: Reference) -> None:
    fewer = v2_ref.context_from(v2_ref.golden["dataset_embeddings"][:10])
    vectors = _embed_golden_docs(v2_ref, fewer, normalize=False)
    _close(vectors, v2_ref.golden["docs_fewer_context.embeddings"])


def test_v1_refuses_fewer_context_rows(v1_ref: Reference) -> None:
    fewer = v1_ref.context_from(v1_ref.golden["dataset_embeddings"][:10])
    with pytest.raises(ContextMismatchError, match="have 10 rows; this v1 model needs at least 16"):
        v1_ref.encoder.embed_documents(["cats"], fewer)
    with pytest.raises(ContextMismatchError, match="at least 16"):
        v1_ref.encoder.embed_queries(["cats"], fewer)


def test_build_context_is_batch_invariant(ref: Reference) -> None:
    minicorpus = ref.texts["minicorpus"]
    one = ref.encoder.build_context(minicorpus, batch_size=1, show_progress_bar=False)
    three = ref.encoder.build_context(minicorpus, batch_size=3, show_progress_bar=False)
    sixteen = ref.encoder.build_context(minicorpus, batch_size=16, show_progress_bar=False)
    _close(one.embeddings, sixteen.embeddings, atol=1e-6)
    _close(three.embeddings, sixteen.embeddings, atol=1e-6)


# -- context compatibility -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["embed_documents", "embed_queries"])
def test_context_of_another_model_is_refused(
    v2_encoder_session: CDEEncoder, v1_context: CorpusContext, method: str
) -> None:
    embed = getattr(v2_encoder_session, method)
    with pytest.raises(
        ContextMismatchError, match=r"built by model '.*v1-tiny'.*the encoder is '.*v2-tiny'"
    ):
        embed(["cats"], v1_context)


def test_context_with_other_weights_hash_is_refused(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    fake = dataclasses.replace(v2_context.provenance, weights_hash="f" * 64)
    context = CorpusContext(v2_context.embeddings, fake)
    with pytest.raises(ContextMismatchError, match=r"weights ffffffffffff…"):
        v2_encoder_session.embed_documents(["cats"], context)


def test_context_of_the_wrong_width_is_refused(v2_encoder_session: CDEEncoder) -> None:
    provenance = new_provenance(
        v2_encoder_session.identity, size=16, seed=None, strategy="given", n_source_documents=16
    )
    narrow = CorpusContext(torch.ones(16, 8), provenance)
    with pytest.raises(ContextMismatchError, match="context width 8 != model width 64"):
        v2_encoder_session.embed_queries(["cats"], narrow)


# -- prefixes --------------------------------------------------------------------------------


def test_default_prefixes(v2_encoder_session: CDEEncoder, v1_encoder_session: CDEEncoder) -> None:
    for encoder in (v2_encoder_session, v1_encoder_session):
        assert encoder.document_prefix == DOC
        assert encoder.query_prefix == QUERY


def test_document_prefix_is_added_automatically(ref: Reference) -> None:
    docs = ref.texts["docs"]
    prefixed, _ = _split_docs(docs)
    stripped = [docs[i].removeprefix(DOC) for i in prefixed]
    vectors = ref.encoder.embed_documents(stripped, ref.context)
    _close(vectors, _unit(ref.golden["docs.embeddings"][prefixed]))


def test_query_prefix_is_added_automatically(ref: Reference) -> None:
    queries = ref.texts["queries"]
    keep = [i for i, q in enumerate(queries) if q.removeprefix(QUERY).strip()]
    assert len(keep) == 3, "one golden query is the bare prefix"
    vectors = ref.encoder.embed_queries([queries[i].removeprefix(QUERY) for i in keep], ref.context)
    _close(vectors, _unit(ref.golden["queries.embeddings"][keep]))


def test_prefix_is_never_doubled(ref: Reference) -> None:
    encoder, context = ref.encoder, ref.context
    docs = encoder.embed_documents([DOC + "cats", "cats"], context)
    _close(docs[0:1], torch.from_numpy(docs[1:2]), atol=1e-6)
    queries = encoder.embed_queries([QUERY + "cats", "cats"], context)
    _close(queries[0:1], torch.from_numpy(queries[1:2]), atol=1e-6)
    # a doubled prefix would have changed the vector, so the check above means something
    doubled = encoder.embed_documents([DOC + DOC + "cats"], context, prefix="")
    assert not np.allclose(doubled, docs[1:2], atol=1e-3)


def test_empty_prefix_disables_the_prefix(ref: Reference) -> None:
    encoder, context = ref.encoder, ref.context
    bare_doc = encoder.embed_documents(["cats"], context, prefix="")
    bare_query = encoder.embed_queries(["cats"], context, prefix="")
    # without prefixes a document and a query are the same input
    _close(bare_doc, torch.from_numpy(bare_query), atol=1e-6)
    prefixed = encoder.embed_documents(["cats"], context)
    assert not np.allclose(bare_doc, prefixed, atol=1e-3)
    explicit = encoder.embed_documents([DOC + "cats"], context, prefix="")
    _close(explicit, torch.from_numpy(prefixed), atol=1e-6)


def test_prefix_argument_overrides_for_one_call(v2_ref: Reference) -> None:
    encoder, context = v2_ref.encoder, v2_ref.context
    custom = encoder.embed_documents(["cats"], context, prefix="passage: ")
    manual = encoder.embed_documents(["passage: cats"], context, prefix="")
    _close(custom, torch.from_numpy(manual), atol=1e-6)
    query = encoder.embed_queries(["cats"], context, prefix="question: ")
    manual_query = encoder.embed_queries(["question: cats"], context, prefix="")
    _close(query, torch.from_numpy(manual_query), atol=1e-6)
    assert encoder.document_prefix == DOC
    assert encoder.query_prefix == QUERY


def test_prefix_attributes_are_used(v2_encoder: CDEEncoder, v2_context: CorpusContext) -> None:
    v2_encoder.document_prefix = "passage: "
    v2_encoder.query_prefix = "question: "
    doc = v2_encoder.embed_documents(["cats"], v2_context)
    # the custom prefix is not doubled either
    already = v2_encoder.embed_documents(["passage: cats"], v2_context)
    _close(doc, torch.from_numpy(already), atol=1e-6)
    manual_doc = v2_encoder.embed_documents(["passage: cats"], v2_context, prefix="")
    _close(doc, torch.from_numpy(manual_doc), atol=1e-6)
    query = v2_encoder.embed_queries(["cats"], v2_context)
    manual_query = v2_encoder.embed_queries(["question: cats"], v2_context, prefix="")
    _close(query, torch.from_numpy(manual_query), atol=1e-6)


def test_build_context_applies_the_document_prefix(ref: Reference) -> None:
    minicorpus = ref.texts["minicorpus"]
    assert all(t.startswith(DOC) for t in minicorpus)
    stripped = [t.removeprefix(DOC) for t in minicorpus]
    context = ref.encoder.build_context(stripped, show_progress_bar=False)
    _close(context.embeddings, ref.golden["dataset_embeddings"])
    assert context == ref.context


def test_build_context_uses_the_document_prefix_attribute(v2_ref: Reference) -> None:
    encoder = copy.deepcopy(v2_ref.encoder)
    encoder.document_prefix = ""
    minicorpus = v2_ref.texts["minicorpus"]
    same = encoder.build_context(minicorpus, show_progress_bar=False)  # prefix is in the texts
    _close(same.embeddings, v2_ref.golden["dataset_embeddings"])
    stripped = encoder.build_context(
        [t.removeprefix(DOC) for t in minicorpus], show_progress_bar=False
    )
    assert stripped != v2_ref.context


# -- batching order --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed(ref: Reference) -> tuple[Reference, list[str], np.ndarray]:
    """A shuffled list of short and long texts and their one-at-a-time embeddings."""
    texts = corpus_texts()[:8] + [t.removeprefix(DOC) for t in ref.texts["docs"]] + [LONG_TEXT]
    random.Random(0).shuffle(texts)
    assert sorted(texts, key=len, reverse=True) != texts
    singles = np.concatenate([ref.encoder.embed_documents([t], ref.context) for t in texts])
    return ref, texts, singles


@pytest.mark.parametrize("batch_size", [2, 3])
def test_batched_embeddings_keep_the_callers_order(
    mixed: tuple[Reference, list[str], np.ndarray], batch_size: int
) -> None:
    ref, texts, singles = mixed
    vectors = ref.encoder.embed_documents(texts, ref.context, batch_size=batch_size)
    _close(vectors, torch.from_numpy(singles))


@pytest.mark.parametrize("max_batch_tokens", [1, 100, 300, 100_000])
def test_max_batch_tokens_gives_identical_results(
    mixed: tuple[Reference, list[str], np.ndarray], max_batch_tokens: int
) -> None:
    ref, texts, singles = mixed
    vectors = ref.encoder.embed_documents(texts, ref.context, max_batch_tokens=max_batch_tokens)
    _close(vectors, torch.from_numpy(singles))


def test_max_batch_tokens_counts_context_rows_and_soft_prompt(
    v2_ref: Reference, capsys: pytest.CaptureFixture[str]
) -> None:
    encoder, context = v2_ref.encoder, v2_ref.context
    length = len(Tokenizer.from_file(str(V2_TINY / "tokenizer.json")).encode(DOC + "cats").ids)
    extra = context.shape[0] + encoder.config.n_soft_prompt  # 16 context rows + 8 prompt tokens
    cap = 2 * (extra + length)
    assert 4 * length <= cap, "without the extra tokens all four texts would fit one batch"
    encoder.embed_documents(["cats"] * 4, context, max_batch_tokens=cap, show_progress_bar=True)
    assert "2/2" in capsys.readouterr().err
    encoder.embed_documents(["cats"] * 4, context, max_batch_tokens=cap - 1, show_progress_bar=True)
    assert "4/4" in capsys.readouterr().err


# -- truncation ------------------------------------------------------------------------------


def _truncation_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("truncated")]


def test_long_texts_are_cut_at_max_length_with_one_warning(
    v2_encoder: CDEEncoder, v2_context: CorpusContext, caplog: pytest.LogCaptureFixture
) -> None:
    v2_encoder.max_length = 20
    caplog.set_level(logging.WARNING, logger="cde_rag")
    texts = [LONG_TEXT, "cats", LONG_TEXT + " and a different tail that is cut away"]
    vectors = v2_encoder.embed_documents(texts, v2_context)
    # only the first 20 tokens count, so both long texts give the same vector
    _close(vectors[0:1], torch.from_numpy(vectors[2:3]), atol=1e-6)
    (record,) = _truncation_records(caplog)
    assert record.levelno == logging.WARNING
    assert record.name.startswith("cde_rag")
    assert record.getMessage() == "truncated 2 of 3 texts to max_length=20 tokens"
    # max_length changed the long texts only
    v2_encoder.max_length = 512
    full = v2_encoder.embed_documents(texts, v2_context)
    assert not np.allclose(full[0], vectors[0], atol=1e-3)
    _close(full[1:2], torch.from_numpy(vectors[1:2]), atol=1e-6)
    # once per call
    caplog.clear()
    v2_encoder.max_length = 20
    v2_encoder.embed_queries([LONG_TEXT], v2_context)
    v2_encoder.embed_queries([LONG_TEXT], v2_context)
    assert [r.getMessage() for r in _truncation_records(caplog)] == [
        "truncated 1 of 1 texts to max_length=20 tokens"
    ] * 2


def test_short_texts_are_not_reported_as_truncated(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cde_rag")
    v2_encoder_session.embed_documents(["cats", "dogs"], v2_context)
    assert _truncation_records(caplog) == []


def test_build_context_reports_the_truncation_count(
    v2_ref: Reference, caplog: pytest.LogCaptureFixture
) -> None:
    tokenizer = Tokenizer.from_file(str(V2_TINY / "tokenizer.json"))
    minicorpus = v2_ref.texts["minicorpus"]
    expected = sum(len(tokenizer.encode(t).ids) > GOLDEN_MAX_LENGTH for t in minicorpus)
    assert 0 < expected < len(minicorpus)
    caplog.set_level(logging.WARNING, logger="cde_rag")
    v2_ref.encoder.build_context(minicorpus, show_progress_bar=False)
    assert [r.getMessage() for r in _truncation_records(caplog)] == [
        f"truncated {expected} of 16 texts to max_length=40 tokens"
    ]


def test_max_length_defaults_to_the_config(v2_encoder_session: CDEEncoder) -> None:
    assert v2_encoder_session.max_length == v2_encoder_session.config.max_seq_length


def test_max_length_is_settable_up_to_the_position_limit(v2_encoder: CDEEncoder) -> None:
    config = v2_encoder.config
    assert isinstance(config.backbone, ModernBertConfig)
    limit = config.backbone.max_position_embeddings - v2_encoder.context_size - config.n_soft_prompt
    v2_encoder.max_length = limit
    assert v2_encoder.max_length == limit
    v2_encoder.max_length = 1
    assert v2_encoder.max_length == 1
    with pytest.raises(InvalidInputError, match=rf"expected an int in 1\.\.{limit}"):
        v2_encoder.max_length = limit + 1


@pytest.mark.parametrize("value", [0, -1, 10**6, 40.0, True, "40", None])
def test_invalid_max_length_is_refused(v2_encoder: CDEEncoder, value: object) -> None:
    with pytest.raises(InvalidInputError, match=rf"max_length={value!r}; expected an int"):
        v2_encoder.max_length = value  # type: ignore[assignment]
    assert v2_encoder.max_length == v2_encoder.config.max_seq_length


def test_from_pretrained_honours_max_length(
    v1_context: CorpusContext, caplog: pytest.LogCaptureFixture
) -> None:
    encoder = CDEEncoder.from_pretrained(
        V1_TINY, device="cpu", nomic_rotary_mode="repo_hf", max_length=12
    )
    assert encoder.max_length == 12
    caplog.set_level(logging.WARNING, logger="cde_rag")
    encoder.embed_documents([LONG_TEXT], v1_context)
    assert [r.getMessage() for r in _truncation_records(caplog)] == [
        "truncated 1 of 1 texts to max_length=12 tokens"
    ]
    with pytest.raises(InvalidInputError, match="max_length=0"):
        CDEEncoder.from_pretrained(V1_TINY, device="cpu", max_length=0)


# -- progress --------------------------------------------------------------------------------


def test_progress_bar_off_prints_nothing(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext, capsys: pytest.CaptureFixture[str]
) -> None:
    v2_encoder_session.embed_documents(["cats", "dogs"], v2_context, show_progress_bar=False)
    v2_encoder_session.embed_queries(["cats"], v2_context, show_progress_bar=False)
    v2_encoder_session.build_context(["cats", "dogs"], size=2, show_progress_bar=False)
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""


def test_progress_bar_on_prints_a_tqdm_bar(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext, capsys: pytest.CaptureFixture[str]
) -> None:
    v2_encoder_session.embed_documents(["cats", "dogs"], v2_context, show_progress_bar=True)
    err = capsys.readouterr().err
    assert "Embedding" in err
    assert "100%" in err
    assert "1/1" in err
    v2_encoder_session.build_context(["cats", "dogs"], size=2, show_progress_bar=True)
    assert "Context (stage 1)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("level", "shown"), [(logging.DEBUG, True), (logging.INFO, True), (logging.WARNING, False)]
)
def test_progress_bar_default_follows_the_logger_level(
    v2_encoder_session: CDEEncoder,
    v2_context: CorpusContext,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    level: int,
    shown: bool,
) -> None:
    caplog.set_level(level, logger="cde_rag")
    v2_encoder_session.embed_queries(["cats"], v2_context)
    assert ("Embedding" in capsys.readouterr().err) is shown


# -- bad inputs ------------------------------------------------------------------------------

BAD_TEXTS = [
    pytest.param("a bare string", r"not a single str; wrap it", id="bare-str"),
    pytest.param([None], r"texts\[0\] is None \(NoneType\)", id="none-item"),
    pytest.param(["ok", 3], r"texts\[1\] is 3 \(int\)", id="int-item"),
    pytest.param([""], r"texts\[0\] is '': empty or whitespace-only", id="empty"),
    pytest.param(["ok", " \n\t "], r"texts\[1\] is .*: empty or whitespace-only", id="blank"),
    pytest.param({"ok": 1}, r"texts must be a list of strings; got dict", id="mapping"),
    pytest.param(["ok", "bad \udcff byte"], r"texts\[1\] holds a lone surrogate", id="surrogate"),
]


@pytest.mark.parametrize("method", ["embed_documents", "embed_queries"])
@pytest.mark.parametrize(("texts", "match"), BAD_TEXTS)
def test_bad_texts_are_refused(
    v2_encoder_session: CDEEncoder,
    v2_context: CorpusContext,
    method: str,
    texts: object,
    match: str,
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        getattr(v2_encoder_session, method)(texts, v2_context)


@pytest.mark.parametrize(
    ("corpus", "match"),
    [
        pytest.param([], r"corpus is empty", id="empty"),
        pytest.param("one document", r"not a single str; wrap it", id="bare-str"),
        pytest.param(["ok", "\udc80"], r"corpus\[1\] holds a lone surrogate", id="surrogate"),
        pytest.param(["ok", None], r"corpus\[1\] is None", id="none-item"),
        pytest.param(["ok", "  "], r"corpus\[1\] is '  ': empty or whitespace-only", id="blank"),
    ],
)
def test_bad_corpus_is_refused(v2_encoder_session: CDEEncoder, corpus: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        v2_encoder_session.build_context(corpus, show_progress_bar=False)  # type: ignore[arg-type]


@pytest.mark.parametrize("context", [None, "context", torch.zeros(16, 64)])
def test_a_non_context_is_refused(v2_encoder_session: CDEEncoder, context: object) -> None:
    name = type(context).__name__
    with pytest.raises(InvalidInputError, match=rf"context must be a CorpusContext; got {name}"):
        v2_encoder_session.embed_documents(["cats"], context)  # type: ignore[call-overload]


def test_unknown_output_is_refused(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    with pytest.raises(InvalidInputError, match=r"output='list'; expected 'numpy' or 'torch'"):
        v2_encoder_session.embed_queries(["cats"], v2_context, output="list")  # type: ignore[call-overload]


@pytest.mark.parametrize("batch_size", [0, -1, 2.5])
def test_bad_batch_size_is_refused(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext, batch_size: object
) -> None:
    match = rf"batch_size={batch_size!r}; expected a positive int"
    with pytest.raises(InvalidInputError, match=match):
        v2_encoder_session.embed_documents(["cats"], v2_context, batch_size=batch_size)  # type: ignore[call-overload]
    with pytest.raises(InvalidInputError, match=match):
        v2_encoder_session.build_context(["cats"], size=1, batch_size=batch_size)  # type: ignore[arg-type]


def test_bad_max_batch_tokens_is_refused(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    with pytest.raises(InvalidInputError, match=r"max_batch_tokens=0; expected a positive int"):
        v2_encoder_session.embed_documents(["cats"], v2_context, max_batch_tokens=0)


def test_unknown_strategy_is_refused(v2_encoder_session: CDEEncoder) -> None:
    with pytest.raises(InvalidInputError, match=r"strategy='random'; expected one of uniform"):
        v2_encoder_session.build_context(corpus_texts(), strategy="random")  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, -3])
def test_bad_context_size_is_refused(v2_encoder_session: CDEEncoder, size: int) -> None:
    with pytest.raises(InvalidInputError, match=rf"size must be a positive integer, got {size}"):
        v2_encoder_session.build_context(corpus_texts(), size=size)


# -- devices and dtypes ----------------------------------------------------------------------


def test_auto_device_picks_the_available_device() -> None:
    encoder = CDEEncoder.from_pretrained(V1_TINY, device="auto", nomic_rotary_mode="repo_hf")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert encoder.device.type == expected


@pytest.fixture(scope="module")
def bf16_encoders() -> dict[str, CDEEncoder]:
    return {
        "v2": CDEEncoder.from_pretrained(V2_TINY, device="cpu", dtype="bfloat16"),
        "v1": CDEEncoder.from_pretrained(
            V1_TINY, device="cpu", dtype="bfloat16", nomic_rotary_mode="repo_hf"
        ),
    }


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_bfloat16_is_close_to_float32(
    request: pytest.FixtureRequest, bf16_encoders: dict[str, CDEEncoder], version: str
) -> None:
    fp32: CDEEncoder = request.getfixturevalue(f"{version}_encoder_session")
    fp32_context: CorpusContext = request.getfixturevalue(f"{version}_context")
    bf16 = bf16_encoders[version]
    assert bf16.dtype == torch.bfloat16
    assert fp32.dtype == torch.float32
    texts = corpus_texts()
    context = bf16.build_context(texts, show_progress_bar=False)
    assert context.embeddings.dtype == torch.float32
    vectors = bf16.embed_documents(texts, context)
    assert vectors.dtype == np.float32
    reference = fp32.embed_documents(texts, fp32_context)
    cosine = (vectors * reference).sum(axis=1)
    assert cosine.min() >= 0.99
    # same weights: a float32 context is accepted by the bfloat16 encoder
    queries = bf16.embed_queries(texts[:2], fp32_context, output="torch")
    assert queries.dtype == torch.float32


@pytest.mark.parametrize("dtype", ["float64", "fp32", torch.int8])
def test_unsupported_dtype_is_refused(dtype: object) -> None:
    with pytest.raises(InvalidInputError, match=r"dtype=.* is not supported; use one of float32"):
        CDEEncoder.from_pretrained(V1_TINY, device="cpu", dtype=dtype)  # type: ignore[arg-type]


@pytest.mark.parametrize("device", ["gpu", "not-a-device"])
def test_unknown_device_is_refused(device: str) -> None:
    with pytest.raises(InvalidInputError, match=rf"device='{device}' is not a torch device"):
        CDEEncoder.from_pretrained(V1_TINY, device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="CUDA is not available; use device='auto'"):
        CDEEncoder.from_pretrained(V1_TINY, device="cuda")


@pytest.mark.parametrize("bad", [True, 2.5])
def test_batching_options_reject_wrong_types(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext, bad: Any
) -> None:
    with pytest.raises(InvalidInputError, match="batch_size"):
        v2_encoder_session.embed_documents(["a text"], v2_context, batch_size=bad)
    with pytest.raises(InvalidInputError, match="max_batch_tokens"):
        v2_encoder_session.embed_documents(["a text"], v2_context, max_batch_tokens=bad)


def test_concurrent_calls_with_different_max_lengths_share_the_tokenizer_safely(
    v2_encoder_session: CDEEncoder,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    tokenizer = v2_encoder_session.tokenizer
    text = ["search_document: " + "word " * 200]

    def run(length: int) -> int:
        return max(len(ids) for ids in tokenizer.encode(text * 4, length)[0])

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, [8, 300, 8, 300] * 10))
    assert results == [8, 300, 8, 300] * 10


def test_cpu_default_token_budget_is_applied(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cde_rag.encoder as encoder_module
    from cde_rag._batching import length_sorted_batches

    seen: list[int | None] = []
    real = length_sorted_batches

    def spy(
        lengths: Sequence[int], *, batch_size: int, max_batch_tokens: int | None, extra_tokens: int
    ) -> list[list[int]]:
        seen.append(max_batch_tokens)
        return real(
            lengths,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            extra_tokens=extra_tokens,
        )

    monkeypatch.setattr(encoder_module, "length_sorted_batches", spy)
    v2_encoder_session.embed_documents(["a text"], v2_context)
    v2_encoder_session.embed_documents(["a text"], v2_context, max_batch_tokens=100)
    assert seen == [encoder_module.CPU_BATCH_TOKENS, 100]
