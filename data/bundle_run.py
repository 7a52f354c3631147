"""Copy a finished run into data/DOMAIN/pretrained, the model `polyvae sample DOMAIN` uses.

    python data/bundle_run.py RUN_DIR [--data data/DOMAIN/FILE] [--half]

Copies run.json, model.safetensors, codec/, prior/ and metrics.jsonl (not the checkpoint: the
bundled model is for sampling; resume from the original run to train further). The run must have
been trained on a file inside data/DOMAIN/, or on a file with the same bytes as the one --data
names there; its source is rewritten relative to the installed polyvae.data package so
evaluation finds the training data after install. A run stopped early (interrupted) is bundled
only when it has a fitted prior (`polyvae fit-prior RUN`), as a finished one does. `--half`
stores the float32 weights as float16 (polyvae widens them when loading): half the bytes in the
wheel, for a large vocabulary's embeddings and output layer.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", type=Path, help="the bundled copy of the run's training file")
    parser.add_argument("--half", action="store_true", help="store the weights as float16")
    args = parser.parse_args()
    run = args.run
    meta = json.loads((run / "run.json").read_text())
    domain = meta.get("domain", "")
    finished = meta.get("status") in ("complete", "early_stopped")
    if not finished and not (run / "prior" / "prior.json").is_file():
        raise SystemExit(f"{run}: not finished (status {meta.get('status')!r}) and no prior")
    folder = HERE / domain
    source = Path(meta["data"]["source"]).resolve()
    if args.data is not None:
        if not filecmp.cmp(source, args.data, shallow=False):
            raise SystemExit(f"{args.data} does not hold the same bytes as {source}")
        source = args.data.resolve()
    if not domain or not source.is_relative_to(folder.resolve()):
        raise SystemExit(f"{run} was trained on {source}, not on data bundled in {folder}")
    meta["data"]["source"] = source.relative_to(HERE.resolve()).as_posix()
    target = folder / "pretrained"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    if args.half:
        from polyvae.files import load_tensors, save_tensors

        weights = load_tensors(run / "model.safetensors")
        save_tensors(
            target / "model.safetensors",
            {
                name: tensor.half() if tensor.dtype == torch.float32 else tensor
                for name, tensor in weights.items()
            },
        )
    else:
        shutil.copy2(run / "model.safetensors", target)
    shutil.copy2(run / "metrics.jsonl", target)
    shutil.copytree(run / "codec", target / "codec")
    if (run / "prior").is_dir():
        shutil.copytree(run / "prior", target / "prior")
    (target / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"bundled {run} into {target}")


if __name__ == "__main__":
    main()
