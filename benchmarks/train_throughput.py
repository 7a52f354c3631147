"""Training-step throughput (items/s) of each domain's `small` preset, against the batch size and
with 1 or 2 processes (DDP through `polyvae train --nproc 2`); prints JSON.

    python benchmarks/train_throughput.py [--domains molecules text images]
        [--batch-sizes 32 128 512] [--nproc 1 2] [--steps 10] [--threads 1] [--set KEY=VALUE]

Each point is a fresh `polyvae train DOMAIN --data BUNDLED --set preset=small` in its own process
for `--steps` optimizer steps (one epoch cut short, so validation and the checkpoint follow);
the number is the run's `items_per_second` from metrics.jsonl: training items over the seconds
of the training loop alone (reading, encoding and validation not counted), summed over ranks for
2 processes. `batch_size` is per process, so 2 processes step on twice the items. Each process
gets `--threads` threads; `--set` adds config keys to every run (e.g. `--set compile=true`,
whose compilation then counts in the first step). Not run in CI; on a shared machine compare
rows taken together, and read the load averages.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = {
    "molecules": ROOT / "data" / "molecules" / "train.smi.gz",
    "text": ROOT / "data" / "text" / "train.txt.gz",
    "images": ROOT / "data" / "images" / "train-images-idx3-ubyte.gz",
}


def subset(domain: str, count: int, folder: Path) -> Path:
    """The first ``count`` items of the bundled data, so that reading stays short."""
    source = DATA[domain]
    target = folder / source.name
    with gzip.open(source, "rb") as handle:
        if domain == "images":  # IDX: magic, count, rows, columns (big-endian), then pixels
            header = bytearray(handle.read(16))
            rows, columns = (
                int.from_bytes(header[8:12], "big"),
                int.from_bytes(header[12:16], "big"),
            )
            count = min(count, int.from_bytes(header[4:8], "big"))
            header[4:8] = count.to_bytes(4, "big")
            payload = bytes(header) + handle.read(count * rows * columns)
        else:
            payload = b"".join(line for _, line in zip(range(count), handle, strict=False))
    with gzip.open(target, "wb") as handle:
        handle.write(payload)
    return target


def point(domain: str, batch: int, nproc: int, args: argparse.Namespace) -> dict:
    polyvae = str(Path(sys.executable).with_name("polyvae"))
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run"
        # Enough items for --steps steps of every rank, besides the validation share.
        data = subset(domain, int(batch * nproc * (args.steps + 1) / 0.95) + 64, Path(scratch))
        settings = {
            "preset": "small",
            "batch_size": batch,
            "max_steps": args.steps,  # this process's steps
            "val_fraction": 0.05,
            "threads": args.threads,
            "device": "cpu",
            "patience": 0,
            **dict(assignment.partition("=")[::2] for assignment in args.set),
        }
        command = [polyvae, "train", domain, "--data", str(data), "--out", str(out)]
        command += ["--epochs", "1", "--quiet", "--nproc", str(nproc)]
        command += [f"--set={key}={value}" for key, value in settings.items()]
        load = os.getloadavg()
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    row = {
        "domain": domain,
        "batch_size_per_process": batch,
        "processes": nproc,
        "steps": record["step"],
        "items_per_second": round(record["items_per_second"], 1),
        "load_average_before": load,
    }
    print(json.dumps(row), file=sys.stderr)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--domains", nargs="+", default=list(DATA), choices=list(DATA))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    rows = [
        point(domain, batch, nproc, args)
        for domain in args.domains
        for batch in args.batch_sizes
        for nproc in args.nproc
    ]
    report = {
        "benchmark": "train_throughput",
        "preset": "small",
        "threads_per_process": args.threads,
        "set": args.set,
        "rows": rows,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_average_after": os.getloadavg(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
