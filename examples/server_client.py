"""Serve a collection over the OpenAI embeddings API and use it from the ``openai`` client.

Builds a small cde-rag collection in an embedded store, starts ``cde-rag serve`` on a free
loopback port with an API key, then, as any other service would:

* embeds queries with the official ``openai`` client (``model="NAME:query"``) and checks they
  equal what ``CDEEncoder.embed_queries`` computes with the collection's stored context;
* searches the collection through ``POST /collections/NAME/search``;
* adds a document through ``POST /collections/NAME/documents`` (chunked and synced like
  ``cde-rag ingest``) and finds it.

It stops the server with SIGTERM (which finishes accepted requests first).

    python examples/server_client.py                         # jxm/cde-small-v2
    python examples/server_client.py --model ./cde-small-v2  # a local model folder, offline
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from openai import OpenAI

from cde_rag import CDEEncoder, CorpusContext
from cde_rag_qdrant import ContextualCollection, Document, connect

API_KEY = "example-key"
DOCUMENTS = {
    "spices.md": "# Spices\n\nToast whole cumin and coriander seeds in a dry pan, then grind.",
    "bread.md": "# Bread\n\nStore bread in a paper bag at room temperature; the fridge stales it.",
    "ci.md": "# CI\n\nPin dependency versions in CI so a new release cannot break the build.",
    "keys.md": "# Secrets\n\nRotate API keys regularly and never commit them to the repository.",
    "roses.md": "# Roses\n\nPrune roses in late winter, just before the buds start to swell.",
    "seedlings.md": "# Seedlings\n\nWater seedlings from below to keep their leaves dry.",
}
QUERIES = ["keeping secrets out of git", "when should I cut back my roses?"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="jxm/cde-small-v2", help="hub id or local folder")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto (default: cpu)")
    parser.add_argument("--collection", default="kitchen")
    return parser.parse_args(argv)


def build_store(folder: Path, args: argparse.Namespace) -> CorpusContext:
    """A collection whose context is built from the documents; returns that context."""
    encoder = CDEEncoder.from_pretrained(args.model, device=args.device)
    client = connect(str(folder))
    try:
        col = ContextualCollection.create(
            client, args.collection, encoder, corpus=list(DOCUMENTS.values())
        )
        docs = [Document(name, text, {}, "markdown") for name, text in DOCUMENTS.items()]
        col.sync(docs, show_progress_bar=False)
        print(
            f"collection {args.collection!r}: {col.count()} chunks, context {col.fingerprint[:12]}"
        )
        return col.context
    finally:
        client.close()  # the server opens the embedded store next (one process at a time)


def start_server(folder: Path, args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    """``cde-rag serve`` on a free loopback port; returns the process and its base URL."""
    command = [sys.executable, "-m", "cde_rag_qdrant.cli", "serve", "--qdrant-path", str(folder)]
    command += ["--model", args.model, "--device", args.device, "--port", "0", "-q"]
    env = {**os.environ, "CDE_RAG_API_KEY": API_KEY}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    # the first line, once the model and contexts are loaded: "cde-rag: serving NAMES on URL"
    line = server.stdout.readline() if server.stdout is not None else ""
    if "http://" not in line:
        server.kill()
        sys.exit(f"the server did not start: {line!r}")
    url = "http://" + line.split("http://", 1)[1].split()[0]
    while httpx.get(url + "/ready", timeout=30).status_code != 200:  # 503 while starting
        time.sleep(0.1)
    print(line.strip())
    return server, url


def use_server(url: str, context: CorpusContext, args: argparse.Namespace) -> None:
    """What a client service does: embeddings via openai, search and upsert via HTTP."""
    name = args.collection
    client = OpenAI(base_url=url + "/v1", api_key=API_KEY)
    print("models:", ", ".join(m.id for m in client.models.list().data))
    answer = client.embeddings.create(model=f"{name}:query", input=QUERIES)
    vectors = np.array([d.embedding for d in answer.data], dtype=np.float32)
    print(f"openai client: {vectors.shape[0]} query vectors of {vectors.shape[1]} dims")
    encoder = CDEEncoder.from_pretrained(args.model, device=args.device)
    expected = encoder.embed_queries(QUERIES, context)  # the library, same stored context
    print(f"equal to CDEEncoder.embed_queries: {bool(np.abs(vectors - expected).max() <= 1e-5)}")

    headers = {"Authorization": f"Bearer {API_KEY}"}
    for query in QUERIES:
        found = httpx.post(
            f"{url}/collections/{name}/search",
            json={"query": query, "limit": 1},
            headers=headers,
            timeout=60,
        ).json()
        top = found["hits"][0]
        print(f"search {query!r}: {top['metadata']['document_id']} ({top['score']:.3f})")

    tea = {"id": "tea.md", "text": "# Tea\n\nBrew green tea at 80 degrees for two minutes."}
    report = httpx.post(
        f"{url}/collections/{name}/documents", json={"documents": [tea]}, headers=headers,
        timeout=120,
    ).json()  # fmt: skip
    print(f"documents route: {report['documents']['added']} added, {report['points']} points")
    found = httpx.post(
        f"{url}/collections/{name}/search",
        json={"query": "Brew green tea at 80 degrees for two minutes.", "limit": 1},
        headers=headers,
        timeout=60,
    ).json()
    print(f"search after the upsert: {found['hits'][0]['metadata']['document_id']}")


def main(argv: list[str] | None = None) -> None:
    """Build the store, serve it, use it, stop the server."""
    args = parse_args(argv)
    if Path(args.model).expanduser().is_dir():
        args.model = str(Path(args.model).expanduser().resolve())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cde_data"
        context = build_store(folder, args)
        server, url = start_server(folder, args)
        try:
            use_server(url, context, args)
        finally:
            server.send_signal(signal.SIGTERM)  # finishes accepted requests, then exits
            server.wait(timeout=60)
        print("server stopped")


if __name__ == "__main__":
    main()
