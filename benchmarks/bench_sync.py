"""Sync benchmark (issue #9): chunk and sync a folder vs raw embedding; re-sync when unchanged.

Builds the random-weight ModernBERT-base CDE of ``bench_encoder.py`` and a folder of ``--docs``
text files of 1.2..2.6 model windows each (so every file becomes several chunks), then measures
side by side in one run:

* first sync: ``ContextualCollection.sync(files)`` into an embedded Qdrant store (read, hash,
  chunk with the model's tokenizer, embed, upsert);
* raw: ``encoder.embed_documents(chunks, context)`` on exactly the chunk texts that were stored;
* re-sync of the unchanged folder (counts the texts embedded: must be 0);
* peak RSS of reading and chunking one large file (``--rss-mb``), against its size.

Targets: first sync >= 0.9x raw chunks/s; re-sync <= 5% of the first sync.

Usage::

    python benchmarks/bench_sync.py              # full size (22 layers, 512 rows), 12 files
    python benchmarks/bench_sync.py --docs 1000  # the issue's size (hours on a 2-core CPU)
    python benchmarks/bench_sync.py --quick      # smoke run (2 layers, 64 rows)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    REPO_ROOT,
    TINY_TOKENIZER,
    CDEEncoder,
    Timer,
    backbone_layers,
    build_random_checkpoint,
    random_context,
    spread_lengths,
    texts_with_token_lengths,
)

sys.path.insert(0, str(REPO_ROOT / "integrations"))


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _paragraphs(texts: list[str]) -> str:
    """Join texts into one document with paragraph breaks every few sentences."""
    return "\n\n".join(texts)


def _rss_child(big: Path, model: Path) -> int:
    """In a fresh process: peak RSS growth of reading and chunking ``big``.

    Uses the tiny test checkpoint, whose tokenizer is the benchmark model's, so loading a
    large model does not set the high-water mark that ``ru_maxrss`` reports.
    """
    from cde_rag_qdrant.chunking import Chunker
    from cde_rag_qdrant.ingest_files import discover

    encoder = CDEEncoder.from_pretrained(model, device="cpu")
    chunker = Chunker(encoder)
    chunker.spans("warm up the splitter. " * 50)
    before = _rss_mib()
    start = time.perf_counter()
    (source,) = discover([big]).documents
    spans = chunker.spans(source.load().text, text_format="text")
    seconds = time.perf_counter() - start
    growth = _rss_mib() - before
    print(json.dumps({"chunks": len(spans), "seconds": seconds, "growth_mib": growth}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["--rss-child"]:
        return _rss_child(Path(given[1]), Path(given[2]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (< 60 s)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--docs", type=int, default=None, help="files in the folder")
    parser.add_argument("--rss-mb", type=float, default=None, help="size of the large file")
    parser.add_argument("--layers", type=int, default=None, help="override backbone layers")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)

    from qdrant_client import QdrantClient

    from cde_rag_qdrant import ContextualCollection
    from cde_rag_qdrant.ingest_files import discover

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    quick = args.quick
    n_docs = args.docs or (24 if quick else 12)
    rss_mb = args.rss_mb if args.rss_mb is not None else (2.0 if quick else 20.0)
    command = shlex.join(["python", *sys.argv])
    print(f"command: {command}")
    print(f"torch {torch.__version__}, python {platform.python_version()}, threads {threads}")
    t_start = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="cde-sync-") as tmp:
        root = Path(tmp)
        layers = args.layers or (2 if quick else None)
        folder = build_random_checkpoint(
            root / "model", layers=layers, corpus_size=64 if quick else 512
        )
        encoder = CDEEncoder.from_pretrained(folder, device=args.device)
        context = random_context(encoder)
        print(
            f"model: random-weight ModernBERT-base CDE, "
            f"{backbone_layers(encoder)} layers, {encoder.context_size} rows"
        )
        docs = root / "docs"
        docs.mkdir()
        window = encoder.max_length
        sizes = spread_lengths(n_docs, int(1.2 * window), int(2.6 * window), seed=1)
        for i, n in enumerate(sizes):
            pieces = texts_with_token_lengths(encoder, spread_lengths(n // 60, 40, 80, seed=i))
            (docs / f"doc{i:04d}.txt").write_text(_paragraphs(pieces), encoding="utf-8")
        inputs = discover([docs])
        client = QdrantClient(path=str(root / "qdrant"))
        warm = ContextualCollection.create(client, "warmup", encoder, context=context)
        warm.sync(inputs.documents[:1], show_progress_bar=False)

        col = ContextualCollection.create(client, "bench", encoder, context=context)
        with Timer(encoder.device) as t_first:
            first = col.sync(inputs.documents, show_progress_bar=False)
        points, _ = client.scroll("bench", limit=100_000, with_payload=True)
        chunks = [str((p.payload or {})["page_content"]) for p in points]
        with Timer(encoder.device) as t_raw:
            encoder.embed_documents(chunks, context, show_progress_bar=False)
        with Timer(encoder.device) as t_again:
            again = col.sync(discover([docs]).documents, show_progress_bar=False)
        client.close()

        big = root / "big.txt"
        line = texts_with_token_lengths(encoder, [60])[0]
        with big.open("w", encoding="utf-8") as f:
            written = 0
            while written < rss_mb * 2**20:
                f.write(line + ("\n\n" if written % 5 == 0 else " "))
                written += len(line) + 1
        child = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(big), str(TINY_TOKENIZER)],
            capture_output=True,
            text=True,
            check=True,
        )
        big_mib = big.stat().st_size / 2**20
        rss = json.loads(child.stdout.strip().splitlines()[-1])

    results = {
        "command": command,
        "quick": quick,
        "threads": threads,
        "files": n_docs,
        "chunks": first.chunks_added,
        "first_sync_s": t_first.seconds,
        "raw_embed_s": t_raw.seconds,
        "first_vs_raw": t_raw.seconds / t_first.seconds,
        "resync_s": t_again.seconds,
        "resync_fraction": t_again.seconds / t_first.seconds,
        "resync_embedded": again.chunks_embedded,
        "resync_unchanged": again.documents_unchanged,
        "big_file_mib": big_mib,
        "big_file_chunks": rss["chunks"],
        "big_file_chunk_s": rss["seconds"],
        "big_file_peak_rss_growth_mib": rss["growth_mib"],
        "elapsed_s": time.perf_counter() - t_start,
    }
    print(f"\nfolder: {n_docs} files -> {first.chunks_added} chunks (window {window} tokens)")
    print(f"first sync (read, chunk, embed, upsert)  {t_first.seconds:8.2f} s")
    print(f"raw embed_documents on the same chunks   {t_raw.seconds:8.2f} s")
    print(f"ratio first sync / raw (speed)           {results['first_vs_raw']:8.2f}x (>= 0.9x)")
    print(
        f"re-sync unchanged                        {t_again.seconds:8.2f} s = "
        f"{100 * results['resync_fraction']:.2f}% of the first (<= 5%), "
        f"{again.chunks_embedded} texts embedded"
    )
    print(
        f"large file {big_mib:.1f} MiB: read + chunked into {rss['chunks']} chunks in "
        f"{rss['seconds']:.1f} s, peak RSS +{rss['growth_mib']:.0f} MiB"
    )
    print(f"\nelapsed {results['elapsed_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
