"""Zygote for the crash-safety test: imports and warms up once, then forks one ingest per request.

Protocol: the test writes a JSON list of ``cde-rag`` arguments (or an object ``{"args": [...],
"env": {...}}`` whose ``env`` is set in the child, e.g. ``CDE_RAG_TEST_CRASH_AT``); the driver
forks a child that runs ``cde_rag_qdrant.cli.main(args)`` and prints ``PID <pid>``. The test
then writes ``kill`` (SIGKILL the child now) or ``wait``; the driver reaps the child and prints
``EXIT <status>``.
Only the driver signals and reaps its own child, so a pid is never reused under it. Forking
keeps each trial to the cost of the ingest, not a fresh interpreter with torch (seconds).
"""

from __future__ import annotations

import json
import os
import signal
import sys

import torch

from cde_rag import CDEEncoder
from cde_rag_qdrant.cli import main

if __name__ == "__main__":
    torch.set_num_threads(1)  # no OpenMP pool in the parent: forking stays safe
    CDEEncoder.from_pretrained(sys.argv[1], device="cpu")  # warm the lazy imports
    print("READY", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        args = request["args"] if isinstance(request, dict) else request
        env = request.get("env", {}) if isinstance(request, dict) else {}
        pid = os.fork()
        if pid == 0:
            os.environ.update(env)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            code = main(args)
            os._exit(code)
        print(f"PID {pid}", flush=True)
        if sys.stdin.readline().strip() == "kill":
            os.kill(pid, signal.SIGKILL)  # a finished child is a zombie until reaped: harmless
        _, status = os.waitpid(pid, 0)
        print(f"EXIT {status}", flush=True)
