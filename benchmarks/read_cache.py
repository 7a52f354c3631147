"""Time a cold read (parse every record) and a warm one (the read cache) of a data file.

    python benchmarks/read_cache.py --domain molecules --data data/molecules/train.smi.gz

Prints JSON: items, seconds for each read, and the speed-up. The cache goes to a fresh
temporary folder, so the first read is always cold.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default="molecules")
    parser.add_argument("--data", default="data/molecules/train.smi.gz")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ["POLYVAE_CACHE_DIR"] = tempfile.mkdtemp(prefix="polyvae-read-cache-")

    import torch

    from polyvae.dataset import read_items
    from polyvae.registry import get_domain

    torch.set_num_threads(args.threads)
    domain = get_domain(args.domain)
    config = domain.resolve_config({})
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        items, report = read_items(domain, args.data, config)
        seconds.append(time.perf_counter() - started)
    print(
        json.dumps(
            {
                "domain": args.domain,
                "data": args.data,
                "items": len(items),
                "skipped": len(report.skipped),
                "cold_seconds": round(seconds[0], 2),
                "warm_seconds": round(seconds[1], 2),
                "speedup": round(seconds[0] / seconds[1], 1),
                "load_average": os.getloadavg()[0],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
