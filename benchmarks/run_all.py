"""Run every CPU benchmark in benchmarks/ (the `bench_*.py` scripts), one after another.

Each runs in its own process with this Python, so one's imports, threads and memory never
disturb the next; their output is passed through unchanged. `make bench` runs this.
simulate_cluster.py (the scheduler on a virtual clock) runs too; `--gpu` also runs
gpu_sdxl.py (full-size SDXL; needs a CUDA GPU). Exits non-zero if any script failed.

    .venv/bin/python benchmarks/run_all.py [--gpu] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="also run gpu_sdxl.py (needs CUDA)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="run only the scripts whose file name contains one of these")
    args = parser.parse_args(argv)

    scripts = sorted(HERE.glob("bench_*.py"))
    scripts.append(HERE / "simulate_cluster.py")  # virtual time: seconds, no machine dependence
    if args.gpu:
        scripts.append(HERE / "gpu_sdxl.py")
    if args.only:
        scripts = [s for s in scripts if any(key in s.name for key in args.only)]
    failed: list[str] = []
    summary: list[tuple[str, float, int]] = []
    for script in scripts:
        print(f"\n{'=' * 20} {script.name} {'=' * 20}", flush=True)
        started = time.perf_counter()
        # From the repo root, so every script's printed command is the one to paste.
        code = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        seconds = time.perf_counter() - started
        summary.append((script.name, seconds, code))
        if code:
            failed.append(script.name)
    print(f"\n{'=' * 20} summary {'=' * 20}")
    for name, seconds, code in summary:
        print(f"{name:<32}{seconds:>7.1f} s  {'ok' if code == 0 else f'FAILED (exit {code})'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
