"""``cde-rag verify`` as a user runs it, offline, on the tiny checkpoint.

The real card needs the real weights (``tests/core/test_verify_network.py``). Here the card is
replaced by a synthetic one that the tiny model reproduces (``tests/verify_card.py``): in a
subprocess through ``verify_driver.py``, in-process by patching ``cde_rag.verify``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cde_rag import CDEEncoder, verify
from cde_rag.verify import CardTable
from cde_rag_qdrant import cli_verify
from cde_rag_qdrant.cli import main
from tests.conftest import V2_TINY
from tests.qdrant.conftest import CliRunner, cli_env
from tests.verify_card import card_json, synthetic_card, synthetic_columns, write_parquet

DRIVER = Path(__file__).with_name("verify_driver.py")
MODEL = ["--model", str(V2_TINY), "--device", "cpu"]


@pytest.fixture(scope="module")
def card(v2_encoder_session: CDEEncoder) -> CardTable:
    return synthetic_card(v2_encoder_session)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    queries, answers = synthetic_columns()
    path = tmp_path / "nq" / "pair" / "train-00000-of-00001.parquet"
    return write_parquet(path, queries, answers)


def _driver(tmp_path: Path, card: CardTable, *args: str) -> subprocess.CompletedProcess[str]:
    card_file = tmp_path / "card.json"
    card_file.write_text(json.dumps(card_json(card)), encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(DRIVER), str(card_file), "verify", *args],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(["verify", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out) if "--json" in args else out, err


def test_verify_passes_and_fails_as_a_user_sees_it(
    tmp_path: Path, card: CardTable, dataset: Path
) -> None:
    ok = _driver(tmp_path, card, *MODEL, "--dataset", "nq")
    assert ok.returncode == 0, ok.stderr
    assert "PASS: " in ok.stdout and "MISMATCH" not in ok.stdout
    assert "(as loaded): PASS" in ok.stdout
    assert "Verifying" in ok.stderr and "32/32" in ok.stderr  # one bar over every text
    assert not (tmp_path / "cde_data").exists()  # verify needs no store and creates none

    values = [list(r) for r in card.values]
    values[2][1] += 0.01
    wrong = CardTable(**{**card_json(card), "values": tuple(map(tuple, values))})
    bad = _driver(tmp_path, wrong, *MODEL, "--dataset", "nq", "-q")
    assert bad.returncode == cli_verify.EXIT_MISMATCH == 9, bad.stderr
    assert "FAIL: " in bad.stdout and "query 2, rank 1: similarity" in bad.stdout
    assert "--all-switches" in bad.stdout  # what to try next
    row = next(line for line in bad.stdout.splitlines() if line.startswith("    2  "))
    assert row.endswith("MISMATCH") and f"{values[2][1]:.4f}" in row
    assert bad.stderr == ""  # -q: no bar, no notes


def test_verify_json_and_all_switches(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    card: CardTable,
    dataset: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(verify, "CDE_SMALL_V2_NQ", card)
    code, data, err = _main(capsys, *MODEL, "--dataset", str(dataset), "--json", "-q")
    assert code == 0, err
    assert data["passed"] is True and len(data["checks"]) == 1
    assert data["data"] == str(dataset.resolve())
    assert data["card"]["values"] == [list(r) for r in card.values]
    assert data["default"] == {"output_residual": True, "pool_ignore_instruction_tokens": True}

    args = ["--model", str(V2_TINY), "--dataset", "nq", "--json", "-q", "--all-switches"]
    code, data, _ = _main(capsys, *args, "--batch-size", "3")
    assert code == 0
    assert len(data["checks"]) == 4 and data["checks"][0]["passed"] is True
    assert [c["passed"] for c in data["checks"][1:]] == [False, False, False]

    code, data, _ = _main(capsys, *MODEL, "--dataset", "nq", "--json", "--dtype", "bfloat16")
    assert data["dtype"] == "bfloat16" and code in (0, cli_verify.EXIT_MISMATCH)
    if code:
        assert "float32" in data["suggestion"]
    assert not (tmp_path / "cde_data").exists()


def test_verify_offline_says_what_to_download(
    tmp_path: Path, run_cli: CliRunner, dataset: Path
) -> None:
    env = {**cli_env(), "HF_HOME": str(tmp_path / "hf")}  # an empty Hugging Face cache
    no_data = run_cli("verify", *MODEL, env=env)
    assert no_data.returncode == 4, no_data.stderr
    assert "could not get the dataset 'sentence-transformers/natural-questions'" in no_data.stderr
    assert "HF_HUB_OFFLINE is set" in no_data.stderr and "--dataset" in no_data.stderr
    assert "--model PATH" not in no_data.stderr  # the model hint is for model errors only

    queries, answers = (c * 50 for c in synthetic_columns())  # the real card needs 2,000 rows
    write_parquet(tmp_path / "big.parquet", queries, answers)
    no_model = run_cli("verify", "--dataset", "big.parquet", "--json", env=env)
    assert no_model.returncode == 4, no_model.stderr
    error = json.loads(no_model.stdout)["error"]
    assert error["type"] == "ModelDownloadError" and error["exit_code"] == 4
    assert "jxm/cde-small-v2" in error["message"]
    assert "hint: pass a local checkpoint folder with --model PATH" in no_model.stderr
    assert not (tmp_path / "cde_data").exists()


def test_verify_usage(
    run_cli: CliRunner, capsys: pytest.CaptureFixture[str], dataset: Path
) -> None:
    helped = run_cli("verify", "--help")
    assert helped.returncode == 0
    text = " ".join(helped.stdout.split())
    for phrase in (
        "40-50 minutes on 2 CPU cores",
        "about a minute on a GPU",
        "--all-switches",
        "--dataset",
        "--dtype",
        "9 verify",
    ):
        assert phrase in text, phrase
    assert main(["verify", "--batch-size", "0"]) == 2  # refused before any download
    assert "--batch-size 0" in capsys.readouterr().err
    assert main(["verify", "--dataset", str(dataset)]) == 2  # 40 rows: the card needs 2,000
    assert "at least 2000 rows" in capsys.readouterr().err


def test_cli_verify_module_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(cli_verify.__file__).read_text(encoding="utf-8"))
    top = {
        ((node.module or "") if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert top <= {"__future__", "argparse", "json", "logging", "sys", "typing"}, top
