"""CDEEncoder.count_tokens (prefix-aware), max_chunk_tokens, stage-1 dedupe, context size checks."""

from __future__ import annotations

import pytest
import torch

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import InvalidInputError
from cde_rag.sampling import sample_minicorpus
from tests.conftest import corpus_texts


def test_count_tokens_counts_what_the_model_reads(v2_encoder_session: CDEEncoder) -> None:
    enc = v2_encoder_session
    tok = enc.tokenizer._tokenizer
    text = "Rotate keys every ninety days."
    doc = len(tok.encode("search_document: " + text).ids)
    assert enc.count_tokens([text]) == [doc]
    assert enc.count_tokens(["search_document: " + text]) == [doc]  # prefix never doubled
    assert enc.count_tokens([text], kind="query") == [len(tok.encode("search_query: " + text).ids)]
    bare = len(tok.encode(text, add_special_tokens=False).ids)
    assert enc.count_tokens([text], kind=None) == [bare]
    long = "word " * 2000
    n = enc.count_tokens([long])[0]
    assert n > enc.max_length  # counted before truncation
    ids, truncated = enc.tokenizer.encode(["search_document: " + long], enc.max_length)
    assert truncated == 1 and len(ids[0]) == enc.max_length
    with pytest.raises(InvalidInputError, match=r"texts must be a list of strings, got str"):
        enc.count_tokens(text)
    with pytest.raises(InvalidInputError, match="kind='passage'"):
        enc.count_tokens([text], kind="passage")  # type: ignore[arg-type]


def test_max_chunk_tokens_leaves_room_for_prefix_and_specials(
    v2_encoder_session: CDEEncoder,
) -> None:
    enc = v2_encoder_session
    overhead = enc.count_tokens([""])[0]
    assert enc.max_chunk_tokens == enc.max_length - overhead - 1
    text = "Token " * enc.max_chunk_tokens  # about one token per word in the tiny vocabulary
    fitted = enc.tokenizer._tokenizer.decode(
        enc.tokenizer._tokenizer.encode(text, add_special_tokens=False).ids[: enc.max_chunk_tokens]
    )
    assert enc.count_tokens([fitted])[0] <= enc.max_length


def test_stage_one_embeds_each_distinct_text_once(
    v2_encoder: CDEEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = corpus_texts()[:3]
    seen: list[int] = []
    original = v2_encoder._first_stage

    def spy(texts, batch_size, show):  # type: ignore[no-untyped-def]
        seen.append(len(texts))
        return original(texts, batch_size, show)

    monkeypatch.setattr(v2_encoder, "_first_stage", spy)
    context = v2_encoder.build_context(corpus, show_progress_bar=False)
    assert seen == [3]  # 16 rows from 3 documents: 3 texts embedded, not 16
    assert context.embeddings.shape[0] == v2_encoder.context_size
    rows = sample_minicorpus(corpus, v2_encoder.context_size, seed=0)
    monkeypatch.undo()
    full = v2_encoder._first_stage(rows, 32, False)
    torch.testing.assert_close(context.embeddings, full, atol=1e-6, rtol=0)  # exact reuse


def test_context_size_is_checked_against_the_model(
    v2_encoder_session: CDEEncoder, v1_encoder_session: CDEEncoder
) -> None:
    rows = v2_encoder_session.context_size
    with pytest.raises(InvalidInputError, match=rf"exceeds the {rows} rows"):
        v2_encoder_session.build_context(corpus_texts(), size=rows + 1)
    with pytest.raises(InvalidInputError, match="need exactly"):
        v1_encoder_session.build_context(corpus_texts(), size=v1_encoder_session.context_size - 1)
    v2_encoder_session.check_context_size(rows - 1)  # v2 accepts fewer rows


def test_progress_callback_moves_per_forward_pass(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    done: list[int] = []
    texts = [f"note {i} " * (i + 1) for i in range(10)]
    v2_encoder_session.embed_documents(
        texts, v2_context, batch_size=3, show_progress_bar=False, progress_callback=done.append
    )
    assert sum(done) == 10 and len(done) == 4  # one call per batch of at most 3
