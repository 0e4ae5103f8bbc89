"""Retrieval with LlamaIndex over an embedded Qdrant store that keeps its CDE context.

Phase 1 (ingest) creates a cde-rag collection (LlamaIndex would create one lazily, without a
context), builds a ``VectorStoreIndex`` over it and closes the store. Phase 2 (query) runs in a
fresh process: it reopens the store with an embedding bound to the stored context and
retrieves. No LLM is involved.

    python examples/llamaindex_rag.py                        # both phases, jxm/cde-small-v2
    python examples/llamaindex_rag.py --model ./cde-small-v2 # a local model folder, offline
    python examples/llamaindex_rag.py --phase query --query "how do I keep bread fresh?"
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from llama_index.core import Document, StorageContext, VectorStoreIndex
from qdrant_client import QdrantClient

from cde_rag import CDEEncoder
from cde_rag_llamaindex import create_qdrant_store, open_qdrant_store
from cde_rag_qdrant import ContextualCollection

DOCUMENTS = [
    ("Toast whole cumin and coriander seeds in a dry pan, then grind them.", "cooking"),
    ("Store bread in a paper bag at room temperature; the fridge stales it.", "cooking"),
    ("A sourdough starter needs regular feeds of equal weights of flour and water.", "cooking"),
    ("Run the full test suite and the linter before you open a pull request.", "software"),
    ("Pin dependency versions in CI so that a new release cannot break the build.", "software"),
    ("Rotate API keys regularly and never commit them to the repository.", "software"),
    ("Tomatoes need at least six hours of direct sunlight a day to fruit well.", "garden"),
    ("Water seedlings from below to keep their leaves dry and avoid mildew.", "garden"),
    ("Prune roses in late winter, just before the buds start to swell.", "garden"),
    ("Compost needs a mix of green material, brown material, air and moisture.", "garden"),
]
QUERIES = [
    "how do I bring out the flavour of spices?",
    "keeping secrets out of git",
    "when should I cut back my roses?",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="jxm/cde-small-v2", help="hub id or local folder")
    parser.add_argument("--store", default="cde_data_example", help="embedded Qdrant folder")
    parser.add_argument("--collection", default="llamaindex_example")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--phase", choices=["all", "ingest", "query"], default="all")
    parser.add_argument("--query", action="append", help="query text (repeatable)")
    parser.add_argument("-k", type=int, default=2, help="hits per query")
    return parser.parse_args(argv)


def ingest(args: argparse.Namespace) -> None:
    """Create the collection with a context built from the documents and index them."""
    encoder = CDEEncoder.from_pretrained(args.model, device=args.device)
    client = QdrantClient(path=args.store)  # one client per embedded store
    try:
        if client.collection_exists(args.collection):
            ContextualCollection.open(client, args.collection, encoder).drop()
        texts = [text for text, _ in DOCUMENTS]
        store, embed_model = create_qdrant_store(client, args.collection, encoder, corpus=texts)
        VectorStoreIndex.from_documents(
            [Document(text=text, metadata={"topic": topic}) for text, topic in DOCUMENTS],
            storage_context=StorageContext.from_defaults(vector_store=store),
            embed_model=embed_model,
        )
        print(f"ingested {len(DOCUMENTS)} documents into {args.collection!r} at {args.store}")
        print(f"context {store.fingerprint[:12]} stored in the collection metadata")
    finally:
        client.close()


def query(args: argparse.Namespace) -> None:
    """Reopen the store, bind the stored context and print the top hits of each query."""
    encoder = CDEEncoder.from_pretrained(args.model, device=args.device)
    client = QdrantClient(path=args.store)
    try:
        store, embed_model = open_qdrant_store(client, args.collection, encoder)
        print(f"reopened {args.collection!r}: context {store.fingerprint[:12]}")
        index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
        retriever = index.as_retriever(similarity_top_k=args.k)
        for text in args.query or QUERIES:
            print(f"\nQ: {text}")
            for hit in retriever.retrieve(text):
                topic = hit.node.metadata["topic"]
                print(f"  {hit.score or 0.0:.3f}  [{topic}] {hit.node.get_content()}")
    finally:
        client.close()


def main(argv: list[str] | None = None) -> None:
    """Run the phases; "all" runs the query phase in a fresh process."""
    args = parse_args(argv)
    if Path(args.model).expanduser().is_dir():
        args.model = str(Path(args.model).expanduser().resolve())
    if args.phase in ("all", "ingest"):
        ingest(args)
    if args.phase == "query":
        query(args)
    if args.phase == "all":
        command = [sys.executable, str(Path(__file__).resolve()), "--phase", "query"]
        command += ["--model", args.model, "--store", args.store]
        command += ["--collection", args.collection, "--device", args.device, "-k", str(args.k)]
        for text in args.query or []:
            command += ["--query", text]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
