"""Qdrant quickstart: a collection that stores its CDE context, reopened from a fresh client.

Creates an embedded Qdrant store, builds a corpus context from the documents, adds them,
searches with a metadata filter, reopens the store with a new client (the context comes back
bit-identical from the collection metadata), checks drift and recontextualizes.

Run:  python examples/qdrant_quickstart.py [--model NAME_OR_PATH] [--store FOLDER]
(default model jxm/cde-small-v2; pass a local checkpoint folder to run offline).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from cde_rag import CDEEncoder
from cde_rag_qdrant import ContextualCollection, connect

DOCUMENTS = [
    ("Toast whole cumin and coriander seeds in a dry pan, then grind them.", "cooking"),
    ("Store bread in a paper bag at room temperature; the fridge stales it.", "cooking"),
    ("Run the full test suite and the linter before you open a pull request.", "software"),
    ("Rotate API keys regularly and never commit them to the repository.", "software"),
    ("Tomatoes need at least six hours of direct sunlight a day to fruit well.", "garden"),
    ("Prune roses in late winter, just before the buds start to swell.", "garden"),
]
NEW_DOCUMENTS = [
    ("Water seedlings from below to keep their leaves dry and avoid mildew.", "garden"),
    ("Pin dependency versions in CI so that a new release cannot break the build.", "software"),
]


def run(model: str, store: Path) -> None:
    """Create, fill, search, reopen, measure drift and recontextualize one collection."""
    encoder = CDEEncoder.from_pretrained(model)
    texts = [text for text, _ in DOCUMENTS]

    client = connect(store)  # embedded store; one client per folder (StoreLockedError otherwise)
    col = ContextualCollection.create(client, "notes", encoder, corpus=texts)
    col.add(
        texts,
        ids=[f"doc-{i}" for i in range(len(texts))],  # deterministic point ids: re-runs upsert
        metadatas=[{"topic": topic} for _, topic in DOCUMENTS],
    )
    print(f"created 'notes' with {col.count()} points, context {col.fingerprint[:12]}")
    for hit in col.search("keeping secrets out of git", limit=2):
        print(f"  {hit.score:.3f}  [{hit.metadata['topic']}] {hit.text[:60]}")
    garden = col.search("what should I do in winter?", limit=3, query_filter={"topic": "garden"})
    print(f"garden-only search: {[h.metadata['topic'] for h in garden]}")
    client.close()

    client = connect(store)  # a fresh client: the context comes back from the metadata
    col = ContextualCollection.open(client, "notes", encoder)
    info = col.info()
    print(f"reopened: {info.points} points, context {info.fingerprint[:12]} from {info.model_id}")

    new_texts = [text for text, _ in NEW_DOCUMENTS]
    report = col.drift(new_texts)
    print(f"drift of new documents: ratio {report.ratio:.2f}, recommended={report.recommended}")
    col.add(new_texts, metadatas=[{"topic": topic} for _, topic in NEW_DOCUMENTS])
    col.recontextualize()  # new context from all texts, re-embed, switch the alias atomically
    info = col.info()
    print(f"recontextualized: {info.points} points in {info.physical_name}")
    client.close()


def main() -> None:
    """Parse options and run in a temporary store unless --store is given."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="jxm/cde-small-v2", help="hub id or local folder")
    parser.add_argument("--store", default=None, help="embedded store folder (default: temp)")
    args = parser.parse_args()
    if args.store is not None:
        run(args.model, Path(args.store))
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(args.model, Path(tmp) / "cde_data")


if __name__ == "__main__":
    main()
