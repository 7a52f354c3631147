"""Copy a trained molecules run into data/molecules/pretrained, the model `polyvae sample
molecules` uses.

    python data/molecules/bundle_run.py RUN_DIR

Copies run.json, model.safetensors, codec/ and metrics.jsonl (not the checkpoint: the bundled
model is for sampling; resume from the original run to train further), and names the training
data relative to the installed polyvae.data package so evaluation finds it after install.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = HERE / "pretrained"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    run = parser.parse_args().run
    meta = json.loads((run / "run.json").read_text())
    if meta.get("domain") != "molecules" or meta.get("status") not in ("complete", "early_stopped"):
        raise SystemExit(f"{run}: not a finished molecules run (status {meta.get('status')!r})")
    source = Path(meta["data"]["source"])
    if source.resolve() != (HERE / "train.smi.gz").resolve():
        raise SystemExit(f"{run} was trained on {source}, not the bundled training sample")
    meta["data"]["source"] = "molecules/train.smi.gz"
    shutil.rmtree(TARGET, ignore_errors=True)
    TARGET.mkdir()
    shutil.copy2(run / "model.safetensors", TARGET)
    shutil.copy2(run / "metrics.jsonl", TARGET)
    shutil.copytree(run / "codec", TARGET / "codec")
    (TARGET / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"bundled {run} into {TARGET}")


if __name__ == "__main__":
    main()
