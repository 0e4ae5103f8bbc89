"""The README's recipes for LangChain and LlamaIndex splitters give chunks that fit the window."""

from __future__ import annotations

import pytest

from cde_rag import CDEEncoder
from tests.qdrant.long_docs import LONG_DOCS


def test_langchain_splitter_measured_with_count_tokens_fits(
    v2_encoder_session: CDEEncoder,
) -> None:
    splitters = pytest.importorskip("langchain_text_splitters")
    encoder = v2_encoder_session
    splitter = splitters.RecursiveCharacterTextSplitter(
        chunk_size=encoder.max_length,
        chunk_overlap=50,
        length_function=lambda t: encoder.count_tokens([t])[0],
    )
    chunks = splitter.split_text(LONG_DOCS["no-blank-lines.txt"][:20_000])
    counts = encoder.count_tokens(chunks)
    assert len(chunks) > 5 and max(counts) <= encoder.max_length


def test_llamaindex_splitter_with_max_chunk_tokens_fits(v2_encoder_session: CDEEncoder) -> None:
    node_parser = pytest.importorskip("llama_index.core.node_parser")
    encoder = v2_encoder_session
    splitter = node_parser.SentenceSplitter(
        chunk_size=encoder.max_chunk_tokens,
        chunk_overlap=50,
        tokenizer=lambda t: range(encoder.count_tokens([t], kind=None)[0]),
    )
    chunks = splitter.split_text(LONG_DOCS["nested.md"][:20_000])
    counts = encoder.count_tokens(chunks)
    assert len(chunks) > 5 and max(counts) <= encoder.max_length
