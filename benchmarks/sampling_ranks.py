"""Sampling throughput with 1 and more processes (`polyvae sample ... --nproc N`), as JSON.

Times the whole command (start-up included) writing N items to a file, and checks that every
process count wrote the same file for the same seed.

    python benchmarks/sampling_ranks.py --run molecules --count 20000 --nproc 1 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="molecules", help="Run directory or bundled domain.")
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--suffix", default=".txt", help="Output file type (.csv adds RDKit).")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    command = Path(sys.executable).with_name("polyvae")
    # One thread per process, as torchrun gives its workers.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for nproc in args.nproc:
            output = Path(folder) / f"out{nproc}{args.suffix}"
            started = time.perf_counter()
            sample = [command, "sample", args.run, "-n", str(args.count), "--seed", str(args.seed)]
            subprocess.run(
                [*sample, "-o", str(output), "--nproc", str(nproc)],
                check=True,
                env=env,
                capture_output=True,
            )
            seconds = time.perf_counter() - started
            results.append(
                {
                    "nproc": nproc,
                    "seconds": round(seconds, 2),
                    "items_per_second": round(args.count / seconds, 1),
                    "output_sha256": hashlib.sha256(output.read_bytes()).hexdigest(),
                    "load_average": os.getloadavg()[0],
                }
            )
    print(
        json.dumps(
            {
                "run": args.run,
                "count": args.count,
                "suffix": args.suffix,
                "cpus": os.cpu_count(),
                "same_output": len({result["output_sha256"] for result in results}) == 1,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
