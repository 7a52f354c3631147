"""Copy a finished run into data/DOMAIN/pretrained, the model `polyvae sample DOMAIN` uses.

    python data/bundle_run.py RUN_DIR [--data data/DOMAIN/FILE] [--store float16|int8]

Copies run.json, model.safetensors, codec/, prior/ and metrics.jsonl (not the checkpoint: the
bundled model is for sampling; resume from the original run to train further). The run must have
been trained on a file inside data/DOMAIN/, or on a file with the same bytes as the one --data
names there; its source is rewritten relative to the installed polyvae.data package so
evaluation finds the training data after install; so is the file a prior was fitted to
(`polyvae fit-prior --data`) when it lies in data/. A run stopped early (interrupted) is bundled
only when it has a fitted prior (`polyvae fit-prior RUN`), as a finished one does. `--store`
narrows the float32 weights to keep the wheel small (polyvae widens them when loading):
`float16` halves their bytes; `int8` stores each large matrix as int8 with one scale per row and
the rest as float16, about a quarter of the bytes (its cost in quality is measured in
docs/molecules.md and docs/text.md).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
from pathlib import Path

from polyvae.files import load_tensors, save_tensors
from polyvae.run import WEIGHT_STORAGES, narrowed_weights

HERE = Path(__file__).resolve().parent


def bundled_name(path: str) -> str:
    """A path inside data/ as the installed polyvae.data package names it (the build machine's
    folders mean nothing after install); any other path as it is."""
    resolved = Path(path).resolve()
    return resolved.relative_to(HERE).as_posix() if resolved.is_relative_to(HERE) else path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", type=Path, help="the bundled copy of the run's training file")
    parser.add_argument(
        "--store", choices=WEIGHT_STORAGES, default="float32", help="how to store the weights"
    )
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
    meta["data"]["source"] = bundled_name(str(source))
    target = folder / "pretrained"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    if args.store == "float32":
        shutil.copy2(run / "model.safetensors", target)
    else:
        weights = load_tensors(run / "model.safetensors")
        save_tensors(target / "model.safetensors", narrowed_weights(weights, args.store))
    shutil.copy2(run / "metrics.jsonl", target)
    shutil.copytree(run / "codec", target / "codec")
    if (run / "prior").is_dir():
        shutil.copytree(run / "prior", target / "prior")
        prior = json.loads((target / "prior" / "prior.json").read_text())
        if "data" in prior["fit"]:
            prior["fit"]["data"] = bundled_name(prior["fit"]["data"])
            (target / "prior" / "prior.json").write_text(json.dumps(prior, indent=2) + "\n")
    (target / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"bundled {run} into {target}")


if __name__ == "__main__":
    main()
