"""``cde-rag serve`` as a command: lazy imports, exit codes, the API key from the environment."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cde_rag import CDEEncoder
from cde_rag_qdrant.cli import main
from tests.conftest import V2_TINY, corpus_texts
from tests.qdrant.conftest import REPO, cli_env
from tests.server.conftest import start_server, stop_server

MODEL = ["--model", str(V2_TINY), "--device", "cpu"]


def test_help_does_not_import_the_server_stack() -> None:
    code = (
        "import sys\n"
        "from cde_rag_qdrant.cli import main\n"
        "for argv in (['--help'], ['serve', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'uvicorn', 'starlette', 'prometheus_client')]\n"
        "sys.exit(f'imported {bad}' if bad else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), cwd=REPO,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "--api-key KEY" in result.stdout and "CDE_RAG_API_KEY" in result.stdout
    assert "--no-batching" in result.stdout and "--default-input-type" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--context", "no-equals-sign"], 2, "expected NAME=PATH"),
        (["--context", "kb=missing.safetensors"], 2, "no context file"),
        ([], 2, "nothing to serve"),
        (["--qdrant-path", "nowhere"], 6, "no embedded Qdrant store"),
        (["--port", "70000"], 2, "0..65535"),
        (["--max-inputs", "0"], 2, "positive integer"),
        (["--dtype", "float64"], 2, "invalid choice"),
    ],
)
def test_serve_refuses_bad_setups(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        result = main(["serve", *MODEL, *args, "--port", "0"])
    except SystemExit as exc:  # argparse
        result = int(str(exc.code))
    assert result == code
    assert message in capsys.readouterr().err


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_api_keys_from_the_environment_and_sigterm_exits_cleanly(
    tmp_path: Path, v2_encoder_session: CDEEncoder
) -> None:
    context = v2_encoder_session.build_context(corpus_texts(), show_progress_bar=False)
    context.save(tmp_path / "kb.safetensors")
    env = {**cli_env(), "CDE_RAG_API_KEY": "first, second"}
    proc, url = start_server([*MODEL, "--context", "kb=kb.safetensors", "-q"], tmp_path, env)
    body = {"model": "kb:query", "input": "hello"}
    try:
        assert httpx.post(url + "/v1/embeddings", json=body, timeout=30).status_code == 401
        for key in ("first", "second"):
            headers = {"Authorization": f"Bearer {key}"}
            response = httpx.post(url + "/v1/embeddings", json=body, headers=headers, timeout=30)
            assert response.status_code == 200, response.text
    finally:
        err = stop_server(proc)
    # uvicorn finishes, then re-raises the captured SIGTERM (the conventional exit status)
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err


def test_compose_service_and_image_use_real_serve_flags() -> None:
    import json
    import re

    import yaml

    from cde_rag_qdrant.cli import build_parser

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    service = compose["services"]["cde-rag"]
    assert service["build"] == "." and "server" in service["profiles"]
    assert "CDE_RAG_API_KEY" in service["environment"]
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    assert entrypoint[:2] == ["cde-rag", "serve"]
    command = [re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", arg) for arg in service["command"]]
    args = build_parser().parse_args(entrypoint[1:] + command)
    assert (args.host, args.port) == ("0.0.0.0", 8000)
    assert args.qdrant_url == "http://qdrant:6333" and args.model == "jxm/cde-small-v2"


@pytest.mark.parametrize(("flag", "dtype"), [([], "auto"), (["--dtype", "bfloat16"], "bfloat16")])
def test_serve_loads_the_model_in_the_dtype_asked(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    v2_encoder_session: CDEEncoder,
    flag: list[str],
    dtype: str,
) -> None:
    from cde_rag.errors import InvalidInputError

    v2_encoder_session.build_context(corpus_texts(), show_progress_bar=False).save(
        tmp_path / "kb.safetensors"
    )
    seen: dict[str, object] = {}

    def record(cls: type[CDEEncoder], model: object, /, **options: object) -> CDEEncoder:
        seen.update(options)
        msg = "stop after loading"
        raise InvalidInputError(msg)

    monkeypatch.setattr(CDEEncoder, "from_pretrained", classmethod(record))
    monkeypatch.chdir(tmp_path)
    result = main(["serve", *MODEL, "--context", "kb=kb.safetensors", *flag, "--port", "0"])
    assert result == 2
    assert seen["dtype"] == dtype and seen["device"] == "cpu"
