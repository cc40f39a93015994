"""Run ``redis_worker.py`` in several OS processes at once, bounded in time."""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("redis_worker.py")
TIMEOUT_S = 60.0  # imports on a loaded 2-core machine take most of it; a hang ends here


def run_workers(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Start one process per job, let them all go at once, and return what each printed."""
    processes = [
        subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(job)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for job in jobs
    ]
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for process in processes:
            assert _line(process, deadline) == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        results = [json.loads(_line(process, deadline)) for process in processes]
        for process in processes:
            process.wait(timeout=max(deadline - time.monotonic(), 1.0))
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _line(process: subprocess.Popen[str], deadline: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=max(deadline - time.monotonic(), 0.0)):
            process.kill()
            raise AssertionError(f"worker gave no answer in time; stderr: {_stderr(process)}")
    line = process.stdout.readline()
    if not line:
        raise AssertionError(f"worker ended early; stderr: {_stderr(process)}")
    return line.strip()


def _stderr(process: subprocess.Popen[str]) -> str:
    process.kill()
    assert process.stderr is not None
    return process.stderr.read()[-3000:]
