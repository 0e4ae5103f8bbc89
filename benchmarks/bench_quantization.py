"""Recall@10 of int8 / binary quantized collections against the unquantized one, same vectors.

Three collections are created with ``CollectionOptions`` (none, ``int8``, ``binary``) and get
the same vectors: clustered unit vectors shaped like sentence embeddings (a few hundred
topic centres plus noise, so neighbours are close but not trivial). The reference neighbours
are exact (brute force in numpy); each collection is then searched with and without
rescoring (and with 2x oversampling). Quantization is applied by a Qdrant server
(``--qdrant-url``); local mode (the default, an embedded store) always searches exactly, so
its figures are 1.0 by construction: the script says so.

Usage: ``python benchmarks/bench_quantization.py [--quick] [--qdrant-url URL] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
for extra in (ROOT, ROOT / "integrations"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from qdrant_client import QdrantClient, models  # noqa: E402

from cde_rag_qdrant._qdrant_internals import is_local  # noqa: E402
from cde_rag_qdrant._upload import UploadOptions, make_points, upload_session  # noqa: E402
from cde_rag_qdrant.options import CollectionOptions, search_params  # noqa: E402

K = 10


def clustered(n: int, dim: int, seed: int) -> npt.NDArray[np.float32]:
    """``n`` unit vectors around ``n // 50`` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 50, 4), dim)).astype(np.float32)
    rows = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, dim))
    rows = rows.astype(np.float32)
    out: npt.NDArray[np.float32] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return out


def wait_green(client: QdrantClient, name: str) -> None:
    """Wait until a server has built its indexes (local mode is always green)."""
    for _ in range(600):
        if client.get_collection(name).status == models.CollectionStatus.GREEN:
            return
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table (and write ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (CI)")
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--qdrant-url", default=None, help="a server (quantization applies)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    print("command: python " + shlex.join(["benchmarks/bench_quantization.py", *sys.argv[1:]]))
    n, dim, nq = (2_000, 128, 50) if args.quick else (args.points, args.dim, args.queries)
    data = clustered(n + nq, dim, seed=0)
    vectors, queries = data[:n], data[n:]
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :K]
    client = QdrantClient(url=args.qdrant_url) if args.qdrant_url else QdrantClient(":memory:")
    local = is_local(client)
    print(f"{n} points, dim {dim}, {nq} queries, recall@{K} against exact neighbours")
    print("location: " + ("in-memory store (local mode)" if local else args.qdrant_url))
    if local:
        print(
            "NOTE: local mode stores the quantization config but searches exactly; run "
            "against a server (--qdrant-url) for figures that measure quantization."
        )
    ids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(n)]
    results: dict[str, Any] = {"points": n, "dim": dim, "queries": nq, "local": local}
    for quant in (None, "int8", "binary"):
        name = f"bench_quant_{quant or 'none'}"
        if client.collection_exists(name):
            client.delete_collection(name)
        client.create_collection(name, **CollectionOptions(quantization=quant).create_kwargs(dim))
        start = time.perf_counter()
        with upload_session(client, name, UploadOptions(parallel=4)) as uploader:
            for s in range(0, n, 512):
                chunk = ids[s : s + 512]
                points = make_points(chunk, vectors[s : s + 512].tolist(), [{}] * len(chunk))
                uploader.send(points, wait_applied=s + 512 >= n)
        wait_green(client, name)
        upload_s = time.perf_counter() - start
        settings: list[tuple[str, models.SearchParams | None]] = [("default", None)]
        if quant is not None:
            settings = [
                ("no rescore", search_params(rescore=False, oversampling=None, hnsw_ef=None)),
                ("rescore", search_params(rescore=True, oversampling=None, hnsw_ef=None)),
                ("rescore x2", search_params(rescore=True, oversampling=2.0, hnsw_ef=None)),
            ]
        for label, params in settings:
            found = 0
            start = time.perf_counter()
            for qi, query in enumerate(queries):
                with warnings.catch_warnings():  # local mode: "search_params has no effect"
                    warnings.simplefilter("ignore", UserWarning)
                    response = client.query_points(
                        name, query=query.tolist(), limit=K, search_params=params
                    )
                got = {int(str(p.id).rsplit("-", 1)[1]) for p in response.points}
                found += len(got & set(truth[qi].tolist()))
            elapsed = time.perf_counter() - start
            recall = found / (K * nq)
            key = f"{quant or 'none'} {label}"
            results[key] = {"recall": recall, "query_ms": 1000 * elapsed / nq, "upload_s": upload_s}
            print(f"{key:<22} recall@{K} {recall:.4f}   {1000 * elapsed / nq:6.2f} ms/query")
        client.delete_collection(name)
    client.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
