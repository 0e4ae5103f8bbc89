"""The README's first screen runs as written (with the tiny checkpoint instead of the hub id)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import V2_TINY

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FIRST_SCREEN = README[: README.index("## Why a context?")]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "integrations")])
    return subprocess.run(
        args, capture_output=True, text=True, cwd=cwd, env=env, timeout=300, check=False
    )


@pytest.mark.slow
def test_readme_first_screen_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```(bash|python)\n(.*?)```", FIRST_SCREEN, flags=re.DOTALL)
    assert [kind for kind, _ in blocks] == ["bash", "python", "python"]
    main_job = blocks[0][1].splitlines()[1].split("#")[0].strip()
    assert main_job.startswith("cde-rag ingest ./docs --collection notes && cde-rag search")

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "keys.txt").write_text("Rotate API keys every 90 days and keep them in a vault.\n")
    (docs / "garden.md").write_text("# Garden\nTomatoes need at least six hours of sun.\n")
    cli = str(Path(sys.executable).parent / "cde-rag")  # the installed entry point
    model = ["--model", str(V2_TINY)]
    for command in main_job.split("&&"):
        words = command.split()
        quoted = re.findall(r'"([^"]+)"', command)
        args = (
            [w for w in words[1:3] if not w.startswith('"')]
            if words[1] == "ingest"
            else [
                "search",
                *quoted,
            ]
        )
        rest = ["--collection", "notes"]
        result = _run([cli, *args, *rest, *model], tmp_path)
        assert result.returncode == 0, result.stderr
    assert "Rotate API keys" in result.stdout

    core = blocks[1][1].replace('"jxm/cde-small-v2"', repr(str(V2_TINY)))
    frameworks = blocks[2][1]
    script = tmp_path / "snippet.py"
    script.write_text(core + "\nassert doc_vectors.shape == (3, 64)\n" + frameworks)
    result = _run([sys.executable, str(script)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Rotate API keys") == 2  # LangChain and LlamaIndex both find it
