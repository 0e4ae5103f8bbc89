"""Server load benchmark (issue #14): `cde-rag serve` with dynamic batching vs batching off.

Starts `cde-rag serve` twice on loopback (one after the other, same machine, same settings but
`--no-batching` the second time) with the tiny test model `tests/data/cde-reference/v2-tiny`
and a context file, then lets N concurrent clients send R requests each (one text each unless
`--texts-per-request` says otherwise;
half the clients asking for `bench:query`, half for `bench:document`).

Checks: every request answered 200 with one vector per text (nothing lost), and every vector
equals `CDEEncoder.embed_queries/embed_documents` of its own texts on the server's device and
dtype (<= 1e-5 in float32, where batch composition may move a float by ~1e-7; --atol sets it),
so no answer went to the wrong request. Prints texts/s, requests/s,
p50/p99 request latency for both servers and the throughput ratio (target >= 3x).

Usage::

    python benchmarks/bench_server.py            # 64 clients x 20 requests
    python benchmarks/bench_server.py --quick    # 16 clients x 5 requests (smoke run)
    python benchmarks/bench_server.py --device cuda --dtype auto   # server on a GPU
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
for _p in (REPO_ROOT, REPO_ROOT / "integrations"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

TINY = REPO_ROOT / "tests" / "data" / "cde-reference" / "v2-tiny"
WORDS = [
    *("river", "stone", "garden", "light", "engine", "cloud", "paper", "forest", "signal"),
    *("winter", "harbor", "copper", "field", "market", "violin", "glacier", "lantern", "orbit"),
]


TEXTS_PER_REQUEST = [1]
ATOL = [1e-5]
WORDS_PER_TEXT = [4, 40]


def _texts(client: int, request: int) -> list[str]:
    rng = np.random.default_rng(client * 1000 + request)
    low, high = TEXTS_PER_REQUEST[0], TEXTS_PER_REQUEST[-1]
    n = int(rng.integers(low, high + 1))
    out = []
    for i in range(n):
        size = int(rng.integers(WORDS_PER_TEXT[0], WORDS_PER_TEXT[1] + 1))
        words = rng.choice(WORDS, size=size)
        out.append(f"c{client} r{request} t{i}: " + " ".join(words))
    return out


def _ready(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url + "/ready", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def _start(args: list[str], cwd: Path, threads: int) -> tuple[subprocess.Popen[str], str]:

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["OMP_NUM_THREADS"] = str(threads)
    paths = [str(REPO_ROOT), str(REPO_ROOT / "integrations"), os.environ.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    cmd = [sys.executable, "-m", "cde_rag_qdrant.cli", "serve", *args, "--port", "0", "-q"]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        msg = f"server did not start: {line!r}"
        raise RuntimeError(msg)
    url = "http://" + line.split("http://", 1)[1].split()[0]
    for _ in range(600):
        if _ready(url):
            return proc, url
        time.sleep(0.1)
    proc.kill()
    msg = "server never became ready"
    raise RuntimeError(msg)


class _Connection:
    """A minimal HTTP/1.1 keep-alive client.

    The load generator should cost the CPU (shared with the server on small machines) as little
    as possible. Bodies are parsed after timing.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str
    ) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        header = await self.reader.readuntil(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(line.split(":", 1)[1])
            for line in lines
            if line.lower().startswith("content-length")
        )
        return status, await self.reader.readexactly(length)


async def _load(url: str, clients: int, requests: int) -> dict[str, object]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    raw: dict[tuple[int, int], tuple[int, bytes]] = {}
    latencies: list[float] = []
    bodies = {
        (c, r): json.dumps(
            {
                "model": "bench:query" if c % 2 == 0 else "bench:document",
                "input": _texts(c, r),
                "encoding_format": "float",
            }
        ).encode()
        for c in range(clients)
        for r in range(requests)
    }

    async def client(c: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        conn = _Connection(reader, writer, host)
        for r in range(requests):
            start = time.perf_counter()
            raw[c, r] = await conn.post("/v1/embeddings", bodies[c, r])
            latencies.append(time.perf_counter() - start)
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed = time.perf_counter() - start
    answers = {
        key: (status, [d["embedding"] for d in json.loads(body)["data"]] if status == 200 else [])
        for key, (status, body) in raw.items()
    }
    return {"answers": answers, "latencies": latencies, "elapsed": elapsed}


def _check(
    run: dict[str, object], expected: dict[tuple[int, int], np.ndarray]
) -> dict[str, object]:
    answers = run["answers"]
    assert isinstance(answers, dict)
    lost = [key for key in expected if key not in answers or answers[key][0] != 200]
    worst = 0.0
    wrong = 0
    for key, want in expected.items():
        if key in lost:
            continue
        got = np.asarray(answers[key][1], dtype=np.float64)
        if got.shape != want.shape:
            wrong += 1
            continue
        diff = float(np.abs(got - want).max())
        worst = max(worst, diff)
        wrong += diff > ATOL[0]
    lat = np.asarray(run["latencies"], dtype=np.float64)
    n_texts = sum(len(v) for v in expected.values())
    elapsed = float(run["elapsed"])  # type: ignore[arg-type]
    return {
        "requests": len(expected),
        "texts": n_texts,
        "lost": len(lost),
        "wrong": wrong,
        "max_abs_diff": worst,
        "elapsed_s": elapsed,
        "texts_per_s": n_texts / elapsed,
        "requests_per_s": len(expected) / elapsed,
        "p50_ms": float(np.percentile(lat, 50) * 1000),
        "p99_ms": float(np.percentile(lat, 99) * 1000),
    }


def _batches(url: str) -> dict[str, float]:
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("cde_rag_batch_inputs_sum", "cde_rag_batch_inputs_count",
                    "cde_rag_batch_seconds_sum"):  # fmt: skip
            values[name] = float(value)
    calls = values.get("cde_rag_batch_inputs_count", 0.0)
    texts = values.get("cde_rag_batch_inputs_sum", 0.0)
    busy = values.get("cde_rag_batch_seconds_sum", 0.0)
    return {
        "encoder_calls": calls,
        "mean_texts_per_call": texts / max(calls, 1.0),
        "encoder_busy_s": busy,
        "encoder_ms_per_text": 1000 * busy / max(texts, 1.0),
    }


def _ceiling(encoder: Any, context: Any, clients: int) -> dict[str, float]:
    """Per-text encoder time, one text per call vs all in one call (no server involved)."""
    texts = [t for c in range(clients) for t in _texts(c, 0)]
    times = []
    for size in (1, len(texts)):
        start = time.perf_counter()
        for i in range(0, len(texts), size):
            encoder.embed_queries(texts[i : i + size], context, show_progress_bar=False)
        times.append((time.perf_counter() - start) / len(texts) * 1000)
    return {
        "batch": len(texts),
        "single_ms_per_text": times[0],
        "batched_ms_per_text": times[1],
        "ratio": times[0] / times[1],
    }


def _line(label: str, r: dict[str, object]) -> str:
    return (
        f"{label:<12} {r['texts_per_s']:8.1f} texts/s {r['requests_per_s']:7.1f} req/s  "
        f"p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  {r['encoder_calls']:.0f} encoder "
        f"calls ({r['mean_texts_per_call']:.1f} texts each, {r['encoder_ms_per_text']:.2f} "
        f"ms/text, encoder busy {r['encoder_busy_s']:.1f} s); lost {r['lost']}, wrong "
        f"{r['wrong']}, max abs diff {r['max_abs_diff']:.1e}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 clients x 5 requests")
    parser.add_argument("--clients", type=int, default=None, help="concurrent clients (64)")
    parser.add_argument("--requests", type=int, default=None, help="requests per client (20)")
    parser.add_argument("--threads", type=int, default=1, help="server torch threads (1)")
    parser.add_argument("--device", default="cpu", help="server device: cpu (default) or cuda")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="server compute dtype (default: float32; auto = bfloat16 on CUDA)",
    )
    parser.add_argument(
        "--atol",
        type=float,
        default=None,
        help="largest abs difference from the expected vector that counts as right (default: "
        "1e-5 for float32, 2e-2 for half precision, where batch shapes move roundings)",
    )
    parser.add_argument(
        "--texts-per-request",
        type=int,
        nargs=2,
        default=[1, 1],
        metavar=("MIN", "MAX"),
        help="texts per request, drawn uniformly (default: 1 1, one query per request)",
    )
    parser.add_argument(
        "--words",
        type=int,
        nargs=2,
        default=[4, 40],
        metavar=("MIN", "MAX"),
        help="words per text, drawn uniformly (default: 4 40)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    clients = args.clients or (16 if args.quick else 64)
    requests = args.requests or (5 if args.quick else 20)
    TEXTS_PER_REQUEST[:] = sorted(args.texts_per_request)
    WORDS_PER_TEXT[:] = sorted(args.words)

    from cde_rag import CDEEncoder
    from tests.conftest import corpus_texts

    command = shlex.join(["python", *sys.argv])
    print(f"command: {command}")
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus")
    print(f"model: {TINY.relative_to(REPO_ROOT)}; {clients} clients x {requests} requests")
    print(f"server: --device {args.device} --dtype {args.dtype}")
    context = CDEEncoder.from_pretrained(TINY, device="cpu").build_context(
        corpus_texts(), show_progress_bar=False
    )
    # The expected answers come from the same device and dtype as the server, one request per
    # call: what the server must return whatever batch a request shared.
    encoder = CDEEncoder.from_pretrained(TINY, device=args.device, dtype=args.dtype)
    atol = args.atol if args.atol is not None else (1e-5 if args.dtype == "float32" else 2e-2)
    ATOL[0] = atol
    expected: dict[tuple[int, int], np.ndarray] = {}
    for c in range(clients):
        embed = encoder.embed_queries if c % 2 == 0 else encoder.embed_documents
        for r in range(requests):
            expected[c, r] = embed(_texts(c, r), context, show_progress_bar=False)

    results: dict[str, object] = {"command": command, "clients": clients, "requests": requests}
    results.update(device=args.device, dtype=args.dtype, atol=atol)
    results["encoder_alone"] = _ceiling(encoder, context, clients)
    alone = results["encoder_alone"]
    assert isinstance(alone, dict)
    print(
        f"encoder alone, same texts: {alone['single_ms_per_text']:.2f} ms/text one per call vs "
        f"{alone['batched_ms_per_text']:.2f} ms/text {alone['batch']} per call = "
        f"{alone['ratio']:.2f}x (the most batching can gain without HTTP)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        context.save(Path(tmp) / "bench.safetensors")
        base = ["--context", "bench=bench.safetensors", "--model", str(TINY)]
        base += ["--device", args.device, "--dtype", args.dtype]
        for label, extra in (("batching", []), ("no_batching", ["--no-batching"])):
            proc, url = _start(base + extra, Path(tmp), args.threads)
            try:
                run = asyncio.run(_load(url, clients, requests))
                summary = _check(run, expected)
                summary.update(_batches(url))
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            results[label] = summary
            print(_line(label, summary))
    on, off = results["batching"], results["no_batching"]
    assert isinstance(on, dict)
    assert isinstance(off, dict)
    ratio = on["texts_per_s"] / off["texts_per_s"]
    results["throughput_ratio"] = ratio
    ok = all(r["lost"] == 0 and r["wrong"] == 0 for r in (on, off))
    results["all_answers_correct"] = ok
    print(f"throughput with dynamic batching / without: {ratio:.2f}x (target >= 3x)")
    print(f"every request answered with its own vectors: {'yes' if ok else 'NO'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float), encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
