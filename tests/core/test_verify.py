"""The model-card check (cde_rag.verify), offline: a synthetic "card" on the tiny checkpoint.

The card table is computed here through the public API (build_context, embed_*), independently
of the verify module, from a small dataset that contains duplicated documents (exact ties).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from cde_rag import CDEEncoder
from cde_rag.errors import (
    DatasetDownloadError,
    InvalidInputError,
    OptionalDependencyError,
    VerificationDataError,
)
from cde_rag.verify import (
    ALL_SWITCHES,
    CDE_SMALL_V2_NQ,
    CardData,
    CardTable,
    compare_table,
    format_report,
    load_card_data,
    run_card_check,
    tie_groups,
)
from tests.conftest import V2_TINY
from tests.verify_card import (
    COPIES,
    DUPLICATE,
    N_QUERIES,
    K,
    blank_card,
    published_table,
    synthetic_columns,
    write_parquet,
)


@pytest.fixture(scope="module")
def data() -> CardData:
    queries, answers = synthetic_columns()
    return CardData.from_columns(queries, answers, blank_card(), source="synthetic")


@pytest.fixture(scope="module")
def card(v2_encoder_session: CDEEncoder, data: CardData) -> CardTable:
    table = published_table(v2_encoder_session, data)
    # The synthetic card must exercise ties: query 0 is document 3's text, 10 and 11 copy it.
    assert [0, 1, 2] in tie_groups(table.values[0])
    assert set(table.indices[0][:3]) == {DUPLICATE, *COPIES}
    return table


def test_the_issue_card_is_kept_as_data() -> None:
    card = CDE_SMALL_V2_NQ
    assert (card.n_queries, card.top_k, card.n_documents, card.n_context) == (10, 5, 2000, 512)
    assert card.dataset == "sentence-transformers/natural-questions" and card.split == "train"
    assert tie_groups(card.values[5]) == [[0, 1, 2], [3], [4]]  # row 6: three 0.7742
    assert all(len(tie_groups(row)) == 5 for i, row in enumerate(card.values) if i != 5)
    assert card.indices[5] == (534, 175, 5, 1495, 575)


def test_synthetic_card_passes(v2_encoder: CDEEncoder, data: CardData, card: CardTable) -> None:
    report = run_card_check(v2_encoder, data, card, show_progress_bar=False)
    assert report.passed, format_report(report)
    assert len(report.checks) == 1
    assert report.checks[0].switches == (True, True)
    assert report.checks[0].max_abs_diff <= 5e-5  # card values are rounded to 1e-4
    assert report.suggestion() is None
    assert "PASS" in format_report(report)


def test_a_wrong_value_fails(v2_encoder: CDEEncoder, data: CardData, card: CardTable) -> None:
    values = [list(r) for r in card.values]
    values[1][2] += 3e-3
    wrong = dataclasses.replace(card, values=tuple(map(tuple, values)))
    report = run_card_check(v2_encoder, data, wrong, show_progress_bar=False)
    assert not report.passed
    (problem,) = report.checks[0].problems
    assert problem.startswith("query 1, rank 2: similarity")
    assert f"card {values[1][2]:.4f}" in problem and "> 2e-03" in problem
    text = format_report(report)
    assert "FAIL" in text and "MISMATCH" in text
    assert "output_residual" in text and "--all-switches" in text  # which switch to try


def test_a_value_inside_the_tolerance_passes(
    v2_encoder: CDEEncoder, data: CardData, card: CardTable
) -> None:
    values = [list(r) for r in card.values]
    values[1][2] += 1.5e-3
    near = dataclasses.replace(card, values=tuple(map(tuple, values)))
    assert run_card_check(v2_encoder, data, near, show_progress_bar=False).passed


def test_a_swapped_index_fails(v2_encoder: CDEEncoder, data: CardData, card: CardTable) -> None:
    q, group = next(
        (q, g) for q in range(N_QUERIES) for g in tie_groups(card.values[q])[:-1] if len(g) == 1
    )
    a, b = group[0], group[0] + 1  # a rank of its own and the next one
    indices = [list(r) for r in card.indices]
    indices[q][a], indices[q][b] = indices[q][b], indices[q][a]
    swapped = dataclasses.replace(card, indices=tuple(map(tuple, indices)))
    report = run_card_check(v2_encoder, data, swapped, show_progress_bar=False)
    assert not report.passed
    assert report.checks[0].problems[0] == (
        f"query {q}, rank {a}: document {card.indices[q][a]}, card {card.indices[q][b]}"
    )


def test_compare_table_on_hand_made_tables() -> None:
    card = blank_card(
        values=((0.9, 0.8, 0.8, 0.7),) * N_QUERIES, indices=((1, 2, 3, 4),) * N_QUERIES
    )
    same = compare_table(card.values, card.indices, card, switches=(True, True))
    assert same.passed and same.max_abs_diff == 0.0
    tied = [[1, 3, 2, 4]] * N_QUERIES
    assert compare_table(card.values, tied, card, switches=(True, True)).passed
    swapped = [[2, 1, 3, 4]] + [[1, 2, 3, 4]] * (N_QUERIES - 1)
    check = compare_table(card.values, swapped, card, switches=(True, True))
    assert check.problems == (
        "query 0, rank 0: document 2, card 1",
        "query 0, ranks 1-2 (tied at 0.8000): documents [1, 3], card [2, 3]",
    )
    off = [[0.9, 0.8, 0.8, 0.7 + 2.5e-3]] + [list(r) for r in card.values[1:]]
    check = compare_table(off, card.indices, card, switches=(False, True))
    assert check.problems == (
        "query 0, rank 3: similarity 0.7025, card 0.7000 (|diff| 2.5e-03 > 2e-03)",
    )
    assert check.as_dict()["output_residual"] is False


def test_tied_indices_compare_as_sets(
    v2_encoder: CDEEncoder, data: CardData, card: CardTable
) -> None:
    indices = [list(r) for r in card.indices]
    indices[0][:3] = reversed(indices[0][:3])
    permuted = dataclasses.replace(card, indices=tuple(map(tuple, indices)))
    assert run_card_check(v2_encoder, data, permuted, show_progress_bar=False).passed
    indices[0][2] = card.indices[0][3]  # a tie group holding another document fails
    indices[0][3] = card.indices[0][2]
    wrong = dataclasses.replace(card, indices=tuple(map(tuple, indices)))
    report = run_card_check(v2_encoder, data, wrong, show_progress_bar=False)
    assert not report.passed
    assert any("ranks 0-2 (tied at" in p for p in report.checks[0].problems)


def test_all_switches_finds_the_combination_that_reproduces(
    data: CardData, card: CardTable
) -> None:
    other = CDEEncoder.from_pretrained(V2_TINY, device="cpu", output_residual=False)
    single = run_card_check(other, data, card, show_progress_bar=False)
    assert not single.passed
    assert "from_pretrained(..., output_residual=True)" in (single.suggestion() or "")
    sweep = run_card_check(other, data, card, all_switches=True, context=single.context)
    assert sweep.checks[0].switches == (False, True)  # as loaded, first
    assert sorted(c.switches for c in sweep.checks) == sorted(ALL_SWITCHES)
    assert not sweep.passed
    assert sweep.matching == [(True, True)]  # the other switches really change the table
    assert "output_residual=True, pool_ignore_instruction_tokens=True" in (sweep.suggestion() or "")
    data_out = sweep.as_dict()
    assert data_out["passed"] is False and len(data_out["checks"]) == 4
    assert data_out["matching"] == [
        {"output_residual": True, "pool_ignore_instruction_tokens": True}
    ]


@pytest.mark.parametrize("switches", ALL_SWITCHES, ids=lambda s: f"res{s[0]}-pool{s[1]}")
def test_the_sweep_equals_encoders_loaded_with_each_switch(
    v2_encoder: CDEEncoder, data: CardData, switches: tuple[bool, bool]
) -> None:
    from tqdm import tqdm

    from cde_rag._verify_embed import embed_all_switches

    loaded = CDEEncoder.from_pretrained(
        V2_TINY,
        device="cpu",
        output_residual=switches[0],
        pool_ignore_instruction_tokens=switches[1],
    )
    context = loaded.build_context(list(data.context_documents), show_progress_bar=False)
    shared = v2_encoder.build_context(list(data.context_documents), show_progress_bar=False)
    assert context.fingerprint == shared.fingerprint  # stage 1 uses neither switch
    with tqdm(disable=True) as bar:
        swept = embed_all_switches(
            v2_encoder, data.documents, shared, "document", bar, batch_size=5
        )
        swept_q = embed_all_switches(v2_encoder, data.queries, shared, "query", bar, batch_size=32)
    np.testing.assert_allclose(
        swept[switches], loaded.embed_documents(list(data.documents), context), atol=1e-5
    )
    np.testing.assert_allclose(
        swept_q[switches], loaded.embed_queries(list(data.queries), context), atol=1e-5
    )


def test_one_progress_bar_over_every_text(
    v2_encoder: CDEEncoder, data: CardData, card: CardTable, capsys: pytest.CaptureFixture[str]
) -> None:
    run_card_check(v2_encoder, data, card, show_progress_bar=True)
    err = capsys.readouterr().err
    assert "Verifying" in err and "32/32" in err  # 16 context + 12 documents + 4 queries
    run_card_check(v2_encoder, data, card, show_progress_bar=False)
    assert capsys.readouterr().err == ""


def test_report_shows_the_tables_side_by_side(
    v2_encoder: CDEEncoder, data: CardData, card: CardTable
) -> None:
    report = run_card_check(v2_encoder, data, card, show_progress_bar=False)
    lines = format_report(report).splitlines()
    row = next(line for line in lines if line.startswith("    1  "))
    card_values = " ".join(f"{v:.4f}" for v in card.values[1])
    ours = " ".join(f"{v:.4f}" for v in report.checks[0].values[1])
    assert card_values in row and ours in row and row.endswith("ok")
    assert " ".join(map(str, card.indices[1])) in row
    assert "synthetic" in lines[1]


def test_bad_shapes_and_counts_are_refused(
    v2_encoder: CDEEncoder, data: CardData, card: CardTable
) -> None:
    with pytest.raises(InvalidInputError, match="rows of the same length"):
        blank_card(values=((0.0,) * K,) * (N_QUERIES - 1))
    with pytest.raises(InvalidInputError, match=r"table has shape \(4, 3\)"):
        compare_table([[0.0] * 3] * 4, [[0] * 3] * 4, card, switches=(True, True))
    short = dataclasses.replace(data, documents=data.documents[:-1])
    with pytest.raises(InvalidInputError, match="11 documents"):
        run_card_check(v2_encoder, short, card, show_progress_bar=False)
    with pytest.raises(VerificationDataError, match="at least 16 rows"):
        CardData.from_columns(["q"] * 10, ["a"] * 10, card)


# -- data loading -------------------------------------------------------------------------


def test_parquet_shards_are_read_in_order(tmp_path: Path, data: CardData) -> None:
    queries, answers = synthetic_columns()
    write_parquet(tmp_path / "pair" / "train-00001-of-00002.parquet", queries[25:], answers[25:])
    write_parquet(tmp_path / "pair" / "train-00000-of-00002.parquet", queries[:25], answers[:25])
    (tmp_path / "README.md").write_text("card", encoding="utf-8")
    loaded = load_card_data(blank_card(), dataset=tmp_path)
    assert loaded.queries == data.queries
    assert loaded.documents == data.documents
    assert loaded.context_documents == tuple(answers[-16:])
    assert loaded.source == str(tmp_path.resolve())
    one_file = load_card_data(
        blank_card(), dataset=tmp_path / "pair" / "train-00000-of-00002.parquet"
    )
    assert one_file.context_documents == tuple(answers[9:25])


def test_hub_datasets_download_only_the_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    queries, answers = synthetic_columns()
    snapshot = tmp_path / "snapshots" / "5567283abc"
    write_parquet(snapshot / "pair" / "train-00000-of-00001.parquet", queries, answers)
    calls: list[dict[str, Any]] = []

    def fake(repo_id: str, **kwargs: Any) -> str:
        calls.append({"repo_id": repo_id, **kwargs})
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    card = dataclasses.replace(blank_card(), dataset="sentence-transformers/natural-questions")
    loaded = load_card_data(card, revision="5567283abc")
    assert loaded.source == "sentence-transformers/natural-questions@5567283abc"
    assert loaded.context_documents == tuple(answers[-16:])
    (call,) = calls
    assert call["repo_type"] == "dataset" and call["revision"] == "5567283abc"
    assert all(p.endswith(".parquet") and "train" in p for p in call["allow_patterns"])


def test_offline_hub_dataset_says_how_to_use_a_local_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetDownloadError, match=r"HF_HUB_OFFLINE is set.*--repo-type dataset"):
        load_card_data(cache_dir=tmp_path)


def test_bad_datasets_are_typed_errors(tmp_path: Path) -> None:
    pq.write_table(pa.table({"question": ["q"], "answer": ["a"]}), tmp_path / "x.parquet")
    with pytest.raises(VerificationDataError, match=r"no column 'query'; it has 'question'"):
        load_card_data(blank_card(), dataset=tmp_path / "x.parquet")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(VerificationDataError, match="not a readable parquet file"):
        load_card_data(blank_card(), dataset=broken)
    configs = tmp_path / "configs"
    for name in ("pair", "triplet"):
        write_parquet(configs / name / "train-00000-of-00001.parquet", ["q"] * 20, ["a"] * 20)
    with pytest.raises(VerificationDataError, match="several configs"):
        load_card_data(blank_card(), dataset=configs)
    with pytest.raises(VerificationDataError, match="neither a local file"):
        load_card_data(blank_card(), dataset="no such thing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VerificationDataError, match=r"holds no \.parquet files"):
        load_card_data(blank_card(), dataset=tmp_path / "empty")


def test_new_errors_refine_builtins() -> None:
    assert issubclass(DatasetDownloadError, OSError)
    assert issubclass(VerificationDataError, ValueError)
    assert issubclass(VerificationDataError, InvalidInputError)  # the CLI exits 2 (usage)


def test_missing_pyarrow_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(OptionalDependencyError, match=r"pip install 'cde-rag\[verify\]'") as info:
        load_card_data(blank_card(), dataset=tmp_path)
    assert info.value.extra == "verify"


def test_context_rows_are_the_last_documents_in_order(
    v2_encoder: CDEEncoder, data: CardData
) -> None:
    report = run_card_check(v2_encoder, data, blank_card(), show_progress_bar=False)
    expected = v2_encoder.first_stage_embeddings(list(data.context_documents))
    torch.testing.assert_close(report.context.embeddings, torch.from_numpy(expected))
    assert report.context.provenance.strategy == "given"


def test_truncation_is_reported_once_for_all_chunks(
    v2_encoder: CDEEncoder, data: CardData, caplog: pytest.LogCaptureFixture
) -> None:
    from cde_rag import _verify_embed

    v2_encoder.max_length = 12
    big = dataclasses.replace(data, documents=data.documents * 10)  # several chunks
    card = blank_card(n_documents=len(big.documents))
    lengths = [
        len(ids)
        for ids in v2_encoder.tokenizer.encode(
            [f"search_document: {t}" for t in big.context_documents + big.documents], 10_000
        )[0]
    ]
    expected = sum(n > 12 for n in lengths)
    assert len(big.documents) > _verify_embed.CHUNK and expected > 0
    with caplog.at_level("WARNING", logger="cde_rag"):
        report = run_card_check(v2_encoder, big, card, show_progress_bar=False)
    warnings = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1, warnings
    queries_cut = v2_encoder.tokenizer.encode([f"search_query: {q}" for q in big.queries], 12)[1]
    assert report.truncated == expected + queries_cut
    assert warnings[0].startswith(f"truncated {report.truncated} of ")
    assert f"({report.truncated} texts cut at max_length)" in format_report(report)
    assert logging_filters_restored()


def logging_filters_restored() -> bool:
    import logging

    return not logging.getLogger("cde_rag.encoder").filters
