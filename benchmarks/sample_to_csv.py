"""Sampling molecules into a .csv table, with the RDKit work on each row (parsing, properties,
novelty) done in the main process or in worker processes while it decodes; prints JSON.

    python benchmarks/sample_to_csv.py [--run molecules] [--count 20000] [--jobs 1 2] \
        [--threads 1 2] [--suffix .csv]

Each combination of torch threads and RDKit worker processes (`--jobs 1`: rows rendered in the
main process, between chunks) runs in a fresh process: the model is loaded, then
`Domain.write_stream(Model.sample_chunks(N))` is timed, as `polyvae sample RUN -n N -o out.csv`
runs it. The decoding alone (the chunks made and dropped) is timed too, in each process, so the
share of the table's RDKit work shows. Every combination must write the same file. Not run in CI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(run: str, count: int, jobs: int, threads: int, path: Path) -> dict:
    import torch

    import polyvae
    from polyvae.plugins.molecules import writers

    torch.set_num_threads(threads)
    model = polyvae.load(run, device="cpu")
    model.sample(8, seed=1)  # warm-up
    began = time.perf_counter()
    for _ in model.sample_chunks(count, seed=0):
        pass
    decoding = time.perf_counter() - began
    novel = model.codec.novel
    began = time.perf_counter()
    writers.write_stream(model.sample_chunks(count, seed=0), path, novel=novel, n_jobs=jobs)
    seconds = time.perf_counter() - began
    return {
        "threads": threads,
        "jobs": jobs,
        "decode_only_molecules_per_second": round(count / decoding, 1),
        "seconds": round(seconds, 2),
        "molecules_per_second": round(count / seconds, 1),
        "output_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "load_average_before": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="molecules", help="run directory or bundled domain")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--suffix", default=".csv", choices=(".csv", ".smi", ".sdf"))
    parser.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        count, jobs, threads = args.child
        print(json.dumps(measure(args.run, count, jobs, threads, Path(args.out))))
        return
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for threads in args.threads:
            for jobs in args.jobs:
                out = Path(folder) / f"t{threads}j{jobs}{args.suffix}"
                child = [sys.executable, __file__, "--run", args.run, "--out", str(out)]
                command = [*child, "--child", str(args.count), str(jobs), str(threads)]
                env = dict(os.environ, OMP_NUM_THREADS=str(threads))
                done = subprocess.run(command, capture_output=True, text=True, env=env)
                if done.returncode != 0:
                    raise SystemExit(done.stderr[-4000:])
                results.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(json.dumps(results[-1]), file=sys.stderr)
    print(
        json.dumps(
            {
                "benchmark": "sample_to_csv",
                "run": args.run,
                "count": args.count,
                "suffix": args.suffix,
                "same_output": len({r.pop("output_sha256") for r in results}) == 1,
                "results": results,
                "cpu_count": os.cpu_count(),
                "machine": platform.processor() or platform.machine(),
                "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
