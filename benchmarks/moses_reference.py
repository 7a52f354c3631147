"""polyvae against the MOSES reference VAE (molsets 0.3.1), side by side; prints JSON.

    python benchmarks/moses_reference.py --moses-python /tmp/moses_venv/bin/python \
        [--molecules 20000] [--steps 12] [--warmup 2] [--samples 2048] [--threads 1] \
        [--trained-run runs/moses_smiles]

The MOSES code is not a polyvae dependency and never enters polyvae's environment: put it in a
virtual environment of its own, for example

    python -m venv /tmp/moses_venv
    pip download molsets==0.3.1 --no-deps -d /tmp/moses_bench
    /tmp/moses_venv/bin/pip install --no-deps /tmp/moses_bench/molsets-0.3.1-py3-none-any.whl
    # torch and RDKit from polyvae's environment (molsets pins versions from 2019):
    echo "$VIRTUAL_ENV/lib/python3.11/site-packages" \
        > /tmp/moses_venv/lib/python3.11/site-packages/polyvae_deps.pth

Both run in turn, in fresh processes, on the same machine with the same thread count, on the same
first N molecules of data/molecules/train.smi.gz, with the same architecture (polyvae's `moses`
preset is the MOSES VAE: GRU encoder 256, 3-layer GRU decoder 512, z 128, batches of 512):

- training: molecules per second over `--steps` optimizer steps after `--warmup` steps, each
  with its own training code (MOSES: its `VAETrainer._train_epoch` over its DataLoader with its
  default worker; polyvae: `polyvae.train`);
- sampling: the models just trained (the same number of steps) sample `--samples` molecules at
  temperature 1 in batches of 512; valid molecules per second (RDKit parses them). Models this
  young are about 1% valid and write longer strings than trained ones, so their valid rate is
  noise around the decode speed.
- sampling as users meet it, with `--trained-run`: a polyvae run of the `moses` architecture,
  trained beforehand, samples the same way. MOSES cannot be trained that far here (about 13 s a
  step on one core), but its decoding costs the same for any weights: `VAE.sample` runs all 99
  steps of `max_len=100` on the whole batch, whatever it generates (the JSON has its rate before
  and after training to show it). So a trained MOSES model samples at the measured rate, and its
  valid rate is that times the paper's validity for the MOSES VAE, 0.977. MOSES is timed at
  batches of 512 like polyvae, and at 32, the default of its scripts/sample.py.

Shims for running molsets 0.3.1 on a current PyTorch, and nothing else changed: its package
`__init__` (metrics, which need old fcd_torch/pomegranate) is skipped by importing `moses.vae`
from its folder; `pandas` and `matplotlib`, imported by `moses.utils` but unused by the VAE, are
stubbed when missing; the `uint8` end-of-sequence mask of `VAE.sample`, which current PyTorch
rejects as an index, is made `bool`.
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
DATA = ROOT / "data" / "molecules" / "train.smi.gz"
MOSES_PAPER_VALIDITY = 0.977  # Polykovskiy et al. 2020, Table 2, VAE
MOSES_SAMPLE_SCRIPT_BATCH = 32  # the --n_batch default of MOSES's scripts/sample.py
# The config keys that make polyvae's `moses` preset the MOSES VAE's network.
MOSES_ARCHITECTURE = (
    "latent_dim",
    "encoder_hidden",
    "encoder_layers",
    "encoder_bidirectional",
    "decoder_hidden",
    "decoder_layers",
    "embedding_dim",
    "max_length",
)


def first_smiles(count: int) -> list[str]:
    with gzip.open(DATA, "rt") as handle:
        lines = (line.split()[0] for line in handle if line.strip())
        return [next(lines) for _ in range(count)]


def valid_count(smiles: list[str]) -> int:
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    return sum(bool(text) and Chem.MolFromSmiles(text) is not None for text in smiles)


def rates(stamps: list[float], warmup: int, batch: int) -> float:
    """Molecules per second from step-end timestamps, leaving out the first ``warmup`` steps."""
    timed = stamps[warmup:]
    return batch * (len(timed) - 1) / (timed[-1] - timed[0])


# --- polyvae ------------------------------------------------------------------------------------


def run_polyvae(args: argparse.Namespace) -> dict:
    import torch

    import polyvae
    from polyvae.callbacks import Callback
    from polyvae.plugins.molecules.domain import MOSES_PRESET

    torch.set_num_threads(args.threads)
    stamps: list[float] = []

    class Stamp(Callback):
        def on_step_end(self, trainer, logs) -> None:
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "train.smi"
        data.write_text("\n".join(first_smiles(args.molecules)) + "\n")
        config = {
            "preset": "moses",
            "epochs": 1,
            "max_steps": args.warmup + args.steps,
            "threads": args.threads,
            "val_fraction": 0.01,
            "device": "cpu",
        }
        for assignment in args.polyvae_set:  # ablations, e.g. length_buckets=0
            key, _, value = assignment.partition("=")
            config[key] = value
        started = time.perf_counter()
        polyvae.train(
            "molecules",
            data=data,
            config=config,
            out=Path(scratch) / "run",
            progress=False,
            callbacks=[Stamp()],
            log=lambda message: None,
        )
        total = time.perf_counter() - started
        model = polyvae.load(Path(scratch) / "run", device="cpu")
        model.sample(8, seed=1)  # warm-up
        began = time.perf_counter()
        smiles = model.sample(args.samples, seed=0, temperature=1.0)
        seconds = time.perf_counter() - began
    result = {
        "train_molecules_per_second": rates(stamps, args.warmup, 512),
        "train_seconds_total_with_reading_and_validation": total,
        **sampling_record(smiles, seconds),
    }
    if args.trained_run:
        trained = polyvae.load(args.trained_run, device="cpu")
        architecture = {key: trained.config[key] for key in MOSES_ARCHITECTURE}
        if architecture != {key: MOSES_PRESET[key] for key in MOSES_ARCHITECTURE}:
            raise SystemExit(f"{args.trained_run} is not the MOSES architecture: {architecture}")
        trained.sample(8, seed=1)
        began = time.perf_counter()
        smiles = trained.sample(args.samples, seed=0, temperature=1.0)
        result["trained"] = {
            "run": str(args.trained_run),
            "representation": trained.config["representation"],
            **sampling_record(smiles, time.perf_counter() - began),
        }
    return result


def sampling_record(smiles: list[str], seconds: float) -> dict:
    valid = valid_count(smiles)
    return {
        "sample_seconds": seconds,
        "sample_molecules_per_second": len(smiles) / seconds,
        "sample_valid_fraction": valid / len(smiles),
        "sample_valid_per_second": valid / seconds,
        "mean_length_chars": sum(map(len, smiles)) / max(len(smiles), 1),
    }


# --- MOSES ----------------------------------------------------------------------------------------


def import_moses():
    """``moses.vae`` from molsets 0.3.1 with the shims named in the module docstring."""
    import importlib.machinery
    import importlib.util
    import types

    spec = importlib.util.find_spec("moses")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("molsets is not installed in this environment (see --help)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    package = types.ModuleType("moses")
    package.__path__ = [str(folder)]
    sys.modules["moses"] = package  # skip moses/__init__.py (the metrics)
    for name in ("pandas", "matplotlib", "matplotlib.pyplot"):
        try:
            __import__(name)
        except ImportError:
            stub = types.ModuleType(name)
            stub.__spec__ = importlib.machinery.ModuleSpec(name, None)
            sys.modules[name] = stub
    sys.modules["matplotlib"].pyplot = sys.modules["matplotlib.pyplot"]
    source = (folder / "vae" / "model.py").read_text()
    patched = source.replace("dtype=torch.uint8", "dtype=torch.bool")
    assert patched != source, "molsets 0.3.1's VAE.sample was expected to use a uint8 mask"
    vae_package = types.ModuleType("moses.vae")
    vae_package.__path__ = [str(folder / "vae")]
    sys.modules["moses.vae"] = vae_package
    model_module = types.ModuleType("moses.vae.model")
    model_module.__file__ = str(folder / "vae" / "model.py")
    exec(compile(patched, model_module.__file__, "exec"), model_module.__dict__)
    sys.modules["moses.vae.model"] = model_module
    from moses.vae.config import get_parser
    from moses.vae.trainer import VAETrainer

    return model_module.VAE, VAETrainer, get_parser


def run_moses(args: argparse.Namespace) -> dict:
    import itertools

    import torch
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    VAE, VAETrainer, get_parser = import_moses()
    config = get_parser().parse_args([])
    torch.manual_seed(0)
    data = first_smiles(args.molecules)
    trainer = VAETrainer(config)
    vocab = trainer.get_vocabulary(data)
    model = VAE(vocab, config).to("cpu")
    loader = trainer.get_dataloader(model, data, shuffle=True)
    model.eval()
    began = time.perf_counter()
    untrained = sample_moses(model, args.samples)
    untrained_seconds = time.perf_counter() - began
    model.train()
    optimizer = torch.optim.Adam(trainer.get_optim_params(model), lr=config.lr_start)
    stamps: list[float] = []

    def stamped(batches):
        for batch in batches:
            stamps.append(time.perf_counter())  # the previous step has ended
            yield batch
        stamps.append(time.perf_counter())

    steps = args.warmup + args.steps
    batches = tqdm(stamped(itertools.islice(loader, steps)), total=steps, disable=True)
    started = time.perf_counter()
    trainer._train_epoch(model, 0, batches, config.kl_w_start, optimizer)
    total = time.perf_counter() - started
    model.eval()
    began = time.perf_counter()
    smiles = sample_moses(model, args.samples)
    seconds = time.perf_counter() - began
    began = time.perf_counter()
    default_batches = sample_moses(model, args.samples, batch=MOSES_SAMPLE_SCRIPT_BATCH)
    default_seconds = time.perf_counter() - began
    # stamps[0] is the first batch's arrival (no step yet): step ends are stamps[1:].
    return {
        "train_molecules_per_second": rates(stamps[1:], args.warmup, config.n_batch),
        "train_seconds_total": total,
        "dataloader_workers": config.n_workers,
        **sampling_record(smiles, seconds),
        "untrained_sample_molecules_per_second": len(untrained) / untrained_seconds,
        "script_default_batch_sample_molecules_per_second": len(default_batches) / default_seconds,
    }


def sample_moses(model, count: int, batch: int = 512) -> list[str]:
    """MOSES's own sampling loop, as its scripts/sample.py runs it: batches of ``batch``, up to
    100 characters."""
    model.sample(8)  # warm-up
    smiles: list[str] = []
    while len(smiles) < count:
        smiles += model.sample(min(batch, count - len(smiles)), max_len=100)
    return smiles


# --- driver ---------------------------------------------------------------------------------------


def child(python: str, impl: str, args: argparse.Namespace) -> dict:
    command = [
        python,
        str(Path(__file__).resolve()),
        "--impl",
        impl,
        *("--molecules", str(args.molecules), "--steps", str(args.steps)),
        *("--warmup", str(args.warmup), "--samples", str(args.samples)),
        *("--threads", str(args.threads)),
        *(("--trained-run", str(args.trained_run)) if args.trained_run else ()),
        *(f"--polyvae-set={assignment}" for assignment in args.polyvae_set),
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    load = os.getloadavg()
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{impl} failed:\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load_average_before"] = load
    print(impl, json.dumps(result), file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--moses-python", help="python of the environment holding molsets")
    parser.add_argument("--impl", choices=("polyvae", "moses"), help=argparse.SUPPRESS)
    parser.add_argument("--molecules", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=12, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--trained-run", help="a trained polyvae run of the moses preset")
    parser.add_argument("--rounds", type=int, default=1, help="alternate runs of each")
    parser.add_argument(
        "--polyvae-set", action="append", default=[], metavar="KEY=VALUE", help="polyvae config"
    )
    args = parser.parse_args()
    if args.impl == "polyvae":
        print(json.dumps(run_polyvae(args)))
        return
    if args.impl == "moses":
        print(json.dumps(run_moses(args)))
        return
    if not args.moses_python:
        parser.error("--moses-python is required (see --help)")
    rounds = []
    for _ in range(args.rounds):  # alternate, so that a change in load hits both alike
        rounds.append({"moses": child(args.moses_python, "moses", args)})
        rounds[-1]["polyvae"] = child(sys.executable, "polyvae", args)

    def best(impl: str, key: str) -> float:
        return max(r[impl][key] for r in rounds)

    def ratio(key: str) -> float | None:  # None where MOSES made nothing to compare with
        reference = best("moses", key)
        return best("polyvae", key) / reference if reference else None

    def best_trained(key: str) -> float:
        return max(r["polyvae"]["trained"][key] for r in rounds)

    ratios = {
        key: ratio(key)
        for key in (
            "train_molecules_per_second",
            "sample_molecules_per_second",
            "sample_valid_per_second",
        )
    }
    if args.trained_run:
        trained_valid = best_trained("sample_valid_per_second")
        for name, moses_rate in (
            ("trained_sample_valid_per_second", "sample_molecules_per_second"),
            (
                "trained_sample_valid_per_second_vs_moses_script_default",
                "script_default_batch_sample_molecules_per_second",
            ),
        ):
            ratios[name] = trained_valid / (best("moses", moses_rate) * MOSES_PAPER_VALIDITY)
        ratios["trained_sample_molecules_per_second"] = best_trained(
            "sample_molecules_per_second"
        ) / best("moses", "sample_molecules_per_second")
    report = {
        "benchmark": "moses_reference",
        "molecules": args.molecules,
        "steps": args.steps,
        "warmup": args.warmup,
        "samples": args.samples,
        "threads": args.threads,
        "polyvae_set": args.polyvae_set,
        "trained_run": args.trained_run,
        "moses_paper_validity": MOSES_PAPER_VALIDITY,
        "rounds": rounds,
        "ratios_polyvae_over_moses": ratios,
        "targets": {
            "train_molecules_per_second": 2.0,
            "sample_valid_per_second": 5.0,
            "trained_sample_valid_per_second": 5.0,
        },
        "load_average_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
