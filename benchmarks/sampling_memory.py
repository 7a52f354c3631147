"""Peak memory of `polyvae sample` as the number of samples grows; prints JSON.

    python benchmarks/sampling_memory.py [--run molecules] [--sizes 1 10000 100000] [--format txt]
                                         [--in-memory]

Each size runs `polyvae sample RUN -n N --seed 0 -o FILE` in a fresh process and reports its
peak resident memory (ru_maxrss of the child) and wall time. Sampling streams: chunks of
4,096 items are decoded, written to a temporary file and dropped, so the peak should not grow
with N. N=1 gives the baseline: loading torch, the plugins and the model. `--in-memory` also
measures the list-then-write path (`Model.sample` + `Domain.write`) for comparison. `.txt`
skips the RDKit properties of the `.csv` table (about 5 ms a molecule), which cost time, not
memory. Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MEASURE = """
import resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
seconds = time.perf_counter() - started
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(code, seconds, peak_kib)
"""

IN_MEMORY = """
import sys, torch
import polyvae
torch.set_num_threads(1)
model = polyvae.load(sys.argv[1])
items = model.sample(int(sys.argv[2]), seed=0)
model.domain.write(items, __import__("pathlib").Path(sys.argv[3]), codec=model.codec)
"""


def measure(command: list[str]) -> dict[str, float]:
    """Run ``command`` in a fresh process (through a small parent that reads its rusage)."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=True
    )
    code, seconds, peak_kib = out.stdout.split()
    if int(code) != 0:
        raise SystemExit(f"failed ({code}): {' '.join(command)}")
    return {"seconds": round(float(seconds), 1), "peak_rss_mib": round(int(peak_kib) / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="molecules", help="run directory or domain name")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10_000, 100_000])
    parser.add_argument("--format", default="txt", help="file suffix to write (txt, csv, ...)")
    parser.add_argument("--in-memory", action="store_true", help="also the non-streamed path")
    args = parser.parse_args()

    polyvae = str(Path(sys.executable).with_name("polyvae"))
    env_threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # one thread: the machine is shared (see load_average)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            out = Path(scratch) / f"samples.{args.format}"
            row = {"n": size, "load_average_before": os.getloadavg()}
            row["streamed"] = measure(
                [polyvae, "sample", args.run, "-n", str(size), "--seed", "0", "-o", str(out)]
            )
            lines = sum(1 for _ in out.open())
            row["lines_written"] = lines
            if args.in_memory:
                row["in_memory"] = measure(
                    [sys.executable, "-c", IN_MEMORY, args.run, str(size), str(out)]
                )
            row["load_average_after"] = os.getloadavg()
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
    if env_threads is not None:
        os.environ["OMP_NUM_THREADS"] = env_threads
    report = {
        "benchmark": "sampling_memory",
        "run": args.run,
        "format": args.format,
        "results": results,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "note": "timings taken on a shared machine; see each row's load averages",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
