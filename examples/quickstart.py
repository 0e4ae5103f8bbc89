"""Core quickstart: build a corpus context, embed documents and queries, rank, save the context.

Run:  python examples/quickstart.py [--model NAME_OR_PATH]
(default model jxm/cde-small-v2; pass a local checkpoint folder to run offline).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from cde_rag import CDEEncoder, CorpusContext

CORPUS = [
    "The printing press, developed in Mainz around 1450, changed how ideas moved across Europe.",
    "Tomatoes grow best in full sun, with at least six to eight hours of direct light each day.",
    "Compound interest means you earn returns on your earlier returns.",
    "A contract is enforceable when it includes an offer, an acceptance and consideration.",
    "Jupiter's moon Europa is covered by a thick shell of ice above a salty ocean.",
    "Before merging a pull request, run the full test suite locally and check the linter.",
    "Volcanic islands such as those in Hawaii form as the ocean floor drifts over a hot spot.",
    "Drink water regularly, even when you do not feel thirsty.",
]
QUERIES = ["when was the printing press invented?", "how do I grow tomatoes?"]


def main() -> None:
    """Build a context, embed, search, and round-trip the context through a file."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="jxm/cde-small-v2", help="hub id or local folder")
    args = parser.parse_args()

    encoder = CDEEncoder.from_pretrained(args.model)
    # A small corpus is oversampled to the model's context size (512 rows for the real models).
    context = encoder.build_context(CORPUS, seed=0, show_progress_bar=False)
    print(
        f"context {context.fingerprint[:12]} with {context.shape[0]} rows from {len(CORPUS)} docs"
    )

    docs = encoder.embed_documents(CORPUS, context, show_progress_bar=False)
    queries = encoder.embed_queries(QUERIES, context, show_progress_bar=False)
    scores = queries @ docs.T  # unit vectors: dot product = cosine similarity
    for query, row in zip(QUERIES, scores, strict=True):
        best = int(row.argmax())
        print(f"{query!r} -> {CORPUS[best][:60]!r} (score {row[best]:.3f})")

    with tempfile.TemporaryDirectory() as tmp:
        path = context.save(Path(tmp) / "corpus.context.safetensors")
        restored = CorpusContext.load(path)
        if restored != context:  # same fingerprint: bit-identical dataset embeddings
            msg = "the reloaded context differs from the saved one"
            raise SystemExit(msg)
        again = encoder.embed_queries(QUERIES, restored, show_progress_bar=False)
        print(f"reloaded context gives identical query vectors: {bool((again == queries).all())}")


if __name__ == "__main__":
    main()
