"""Copy a finished run into data/DOMAIN/pretrained, the model `polyvae sample DOMAIN` uses.

    python data/bundle_run.py RUN_DIR

Copies run.json, model.safetensors, codec/ and metrics.jsonl (not the checkpoint: the bundled
model is for sampling; resume from the original run to train further). The run must have been
trained on a file inside data/DOMAIN/; its source is rewritten relative to the installed
polyvae.data package so evaluation finds the training data after install.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    run = parser.parse_args().run
    meta = json.loads((run / "run.json").read_text())
    domain = meta.get("domain", "")
    if meta.get("status") not in ("complete", "early_stopped"):
        raise SystemExit(f"{run}: not a finished run (status {meta.get('status')!r})")
    folder = HERE / domain
    source = Path(meta["data"]["source"]).resolve()
    if not domain or not source.is_relative_to(folder.resolve()):
        raise SystemExit(f"{run} was trained on {source}, not on data bundled in {folder}")
    meta["data"]["source"] = source.relative_to(HERE.resolve()).as_posix()
    target = folder / "pretrained"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    shutil.copy2(run / "model.safetensors", target)
    shutil.copy2(run / "metrics.jsonl", target)
    shutil.copytree(run / "codec", target / "codec")
    (target / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"bundled {run} into {target}")


if __name__ == "__main__":
    main()
