"""Peak memory of `polyvae train` as the data set grows; prints JSON.

    python benchmarks/train_memory.py [--domain molecules] [--data FILE] [--items 100000 0]

Each size runs `polyvae train DOMAIN --data FILE --set max_items=N --set max_steps=1` (the
`small` preset, one thread, no prior fitted) in a fresh process and reports its peak resident
memory (ru_maxrss of the child) and wall time; N=0 is the whole file. One step is enough: the
peak comes from reading and encoding the data set, which happens once before training. The
default data is all of MOSES (data/molecules/build.py writes it). Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from sampling_memory import measure

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default="molecules")
    parser.add_argument("--data", default=str(ROOT / "data/molecules/moses_train.smi.gz"))
    parser.add_argument("--items", type=int, nargs="+", default=[100_000, 0])
    args = parser.parse_args()

    polyvae = str(Path(sys.executable).with_name("polyvae"))
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for items in args.items:
            out = Path(scratch) / f"run-{items}"
            row = {"max_items": items, "load_average_before": os.getloadavg()}
            row |= measure(
                [polyvae, "train", args.domain, "--data", args.data, "--out", str(out)]
                + [
                    f"--set={setting}"
                    for setting in (
                        "preset=small",
                        f"max_items={items}",
                        "max_steps=1",
                        "threads=1",
                        "fit_prior=none",
                    )
                ]
            )
            row["items_trained_on"] = json.loads((out / "run.json").read_text())["data"]["items"]
            row["load_average_after"] = os.getloadavg()
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
    report = {
        "benchmark": "train_memory",
        "domain": args.domain,
        "data": Path(args.data).name,
        "results": results,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
