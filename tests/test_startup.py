"""The command line starts without torch, qdrant-client or any server/cluster library.

`cde-rag --help`, every `cde-rag COMMAND --help` and argument errors only need argparse; the
heavy imports happen inside the command handlers. Each case runs in a fresh interpreter and
reports which heavy modules it loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "qdrant_client", "transformers", "fastapi", "uvicorn", "ray", "numpy")

PROBE = """
import json, sys
from cde_rag_qdrant.cli import main
try:
    main(json.loads(sys.argv[1]))
except SystemExit:
    pass
heavy = json.loads(sys.argv[2])
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


def _loaded(argv: list[str]) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "integrations")])}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def _commands() -> list[str]:
    from cde_rag_qdrant.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sub.choices, "the parser has no subcommands"
    return sorted(sub.choices)


def test_top_level_help_and_version_load_nothing_heavy() -> None:
    assert _loaded(["--help"]) == []
    assert _loaded(["--version"]) == []


@pytest.mark.parametrize("command", _commands())
def test_command_help_loads_nothing_heavy(command: str) -> None:
    assert _loaded([command, "--help"]) == []


@pytest.mark.parametrize(
    "argv",
    [["ingest"], ["search"], ["nosuchcommand"], ["search", "q", "--limit", "many"]],
)
def test_usage_errors_load_nothing_heavy(argv: list[str]) -> None:
    assert _loaded(argv) == []


def test_the_probe_sees_heavy_imports() -> None:
    """A command that reaches a store does import qdrant-client: the empty lists mean something."""
    loaded = _loaded(["info", "--qdrant-url", "http://127.0.0.1:9", "--json"])  # refused port
    assert "qdrant_client" in loaded
