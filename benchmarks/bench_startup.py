"""Start-up cost of the command line and the packages, next to `import torch`, in one run.

Each figure is the median wall time of N fresh interpreters (`python -c ...` or the installed
`cde-rag` entry point), so the numbers are comparable within the run whatever the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

CASES: list[tuple[str, list[str]]] = [
    ("python -c pass (interpreter floor)", ["-c", "pass"]),
    ("python -c 'import torch'", ["-c", "import torch"]),
    ("python -c 'import qdrant_client'", ["-c", "import qdrant_client"]),
    ("cde-rag --help", ["-m", "cde_rag_qdrant.cli", "--help"]),
    ("cde-rag ingest --help", ["-m", "cde_rag_qdrant.cli", "ingest", "--help"]),
    ("cde-rag search (usage error)", ["-m", "cde_rag_qdrant.cli", "search"]),
    ("python -c 'import cde_rag'", ["-c", "import cde_rag"]),
    ("python -c 'import cde_rag_qdrant'", ["-c", "import cde_rag_qdrant"]),
    ("python -c 'from cde_rag import CDEEncoder'", ["-c", "from cde_rag import CDEEncoder"]),
]


def _time(args: list[str], repeats: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, *args], env=env, capture_output=True, check=False, cwd=REPO_ROOT
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    """Run the cases and print a table (and `--json PATH`)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="fresh interpreters per case")
    parser.add_argument("--quick", action="store_true", help="2 repeats (CI smoke run)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    print("command: python " + " ".join(sys.argv))
    print(f"python {platform.python_version()}, {platform.machine()}, {repeats} runs per case")
    entry = shutil.which("cde-rag")
    print(f"cde-rag entry point: {entry or 'not installed (cases run as python -m)'}")
    env = {**os.environ}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "integrations")])
    results = {name: _time(argv, repeats, env) for name, argv in CASES}
    torch_s = results["python -c 'import torch'"]
    width = max(len(n) for n in results)
    for name, seconds in results.items():
        ratio = seconds / torch_s
        print(f"{name:<{width}}  {seconds * 1000:8.0f} ms  ({ratio:5.2f}x import torch)")
    help_ratio = results["cde-rag --help"] / torch_s
    verdict = "ok" if help_ratio < 0.5 else "SLOW"
    print(f"cde-rag --help / import torch = {help_ratio:.2f} (target < 0.5: {verdict})")
    if args.json:
        args.json.write_text(json.dumps({"seconds": results, "help_vs_torch": help_ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
