"""Run every benchmark script: ``make bench``, and the test suite's smoke run of them all.

A full run gives each script a process of its own: memory.py reads the process's RSS, and no
script should inherit another's warm caches or imports. A quick run (``--quick``) only checks
that every script works, so the scripts run one after another in this process and LiteLLM,
which takes seconds to import, is imported once.

    python benchmarks/run_all.py                 # make bench: every script, results/ updated
    python benchmarks/run_all.py --quick --out DIR
    python benchmarks/run_all.py throughput streaming   # some of them
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import traceback
from importlib import import_module
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = (
    "overhead",
    "imports",
    "throughput",
    "streaming",
    "failover",
    "memory",
    "hedging",
    "redis_store",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke runs, in this process")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("names", nargs="*", default=list(SCRIPTS), help=f"of {SCRIPTS}")
    args = parser.parse_args(argv)
    flags = ["--out", str(args.out)] + (["--quick"] if args.quick else [])
    failed = []
    began = time.perf_counter()
    for name in args.names:
        started = time.perf_counter()
        print(f"== benchmarks/{name}.py", flush=True)
        if args.quick:
            try:
                code = import_module(name).main(flags)
            except Exception:  # report it and go on: one broken script must not hide others
                traceback.print_exc()
                code = 1
        else:
            code = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *flags]).returncode
        print(f"== {name}: exit {code} in {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(name)
    print(f"all in {time.perf_counter() - began:.0f} s" + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
