"""A small soak: rounds of train / sample / evaluate in one process, with random faults (bad
records, an interrupted and resumed training, a damaged run file, a damaged data file), leave
no child processes, no open file descriptors and no growing memory behind."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import polyvae_gaussmix
import pytest
import torch
from conftest import StopAt, processes
from polyvae_gaussmix import mixture

import polyvae
import polyvae.plugins.text as text_plugin
from polyvae.registry import Registry, reset_registry

# Part of the normal suite (about 15 s on one core); `pytest -m soak` runs it alone.
pytestmark = pytest.mark.soak

ROUNDS = 80
WARM_UP_ROUNDS = 3  # both domains and every fault once, so lazy imports and caches are filled
RSS_GROWTH_LIMIT = 200 * 2**20  # bytes; generous: the allocators keep freed memory around
ENGINE = {"epochs": 1, "batch_size": 16, "latent_dim": 2, "threads": 1, "device": "cpu"}
CONFIG = {
    "gaussmix": ENGINE | {"hidden": 8},
    "text": ENGINE | {"embedding_dim": 8, "encoder_hidden": 8, "decoder_hidden": 8},
}
SENTENCES = ["the cat sat on the mat", "a dog barked", "he ran all the way home", "she sang"]


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def child_processes() -> list[int]:
    return processes(parent=os.getpid())


def write_data(domain: str, path: Path, rng: random.Random) -> None:
    """Good records with a few bad ones at random places."""
    if domain == "gaussmix":
        good = [",".join(f"{v:.5f}" for v in row) for row in mixture(96, seed=rng.randrange(99))]
        bad = ["not numbers", "1,2", "nan,nan,nan,nan,nan,nan"]
    else:
        good = [f"{rng.choice(SENTENCES)} {n}" for n in range(64)]
        bad = ["x" * 12_000, "nul\x00bytes", "   "]
    lines = list(good)
    for record in rng.sample(bad, rng.randint(0, len(bad))):
        # Not first: the test domain takes the width of its vectors from the first line.
        lines.insert(rng.randrange(1, len(lines)), record)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def one_round(domain: str, folder: Path, rng: random.Random, fault: str) -> None:
    data = folder / f"data{'.txt' if domain == 'text' else '.csv'}"
    write_data(domain, data, rng)
    run = folder / "run"
    config = CONFIG[domain] | {"seed": rng.randrange(1000)}
    quiet = {"progress": False, "log": lambda message: None}
    if fault == "damaged data" and domain == "text":
        data.write_bytes(b"\xff\xfe not utf-8\n" * 3)
        with pytest.raises(polyvae.UserError, match=r"all 3 were skipped .* not UTF-8 text"):
            polyvae.train(domain, data=data, config=config, out=run, **quiet)
        return
    if fault == "interrupted":
        stopped = polyvae.train(
            domain, data=data, config=config, out=run, callbacks=[StopAt(2)], **quiet
        )
        assert stopped.status == "interrupted"
        result = polyvae.train(domain, data=data, resume=run, **quiet)
    else:
        result = polyvae.train(domain, data=data, config=config, out=run, **quiet)
    assert result.status == "complete"
    if fault == "damaged run":
        damaged = folder / "damaged"
        shutil.copytree(run, damaged)
        weights = damaged / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        with pytest.raises(polyvae.RunError, match="is not a readable safetensors file"):
            polyvae.load(damaged).sample(2, seed=0)
    model = polyvae.load(run, device="cpu")
    samples = model.sample(8, seed=rng.randrange(1000))
    model.domain.write(samples, folder / f"samples{model.domain.default_suffix}", model.codec)
    items, _ = model.domain.read(data, model.config)
    metrics = model.evaluate(items[:24], k=2, samples=8, likelihood_items=12)
    assert torch.isfinite(torch.tensor(metrics["iwae_nll"]))


@pytest.fixture
def two_domains():
    loaded = Registry()
    loaded.add_plugin(polyvae_gaussmix, "gaussmix", "0.1")
    loaded.add_plugin(text_plugin, "text", "0.1")
    reset_registry(loaded)
    yield
    reset_registry(None)


def test_soak_leaks_no_processes_descriptors_or_memory(tmp_path, two_domains):
    rng = random.Random(0)
    faults = ["none", "interrupted", "damaged run", "damaged data"]
    descriptors, memory = [], []
    # Earlier tests may have left multiprocessing's forkserver and resource tracker running;
    # they live as long as this process and are no leak of the rounds.
    children_before = child_processes()
    for number in range(ROUNDS):
        domain = "text" if number % 3 == 1 else "gaussmix"
        fault = faults[number % len(faults)] if number < len(faults) else rng.choice(faults)
        folder = tmp_path / f"round{number}"
        folder.mkdir()
        one_round(domain, folder, rng, fault)
        shutil.rmtree(folder)
        if number + 1 >= WARM_UP_ROUNDS:
            descriptors.append(open_descriptors())
            memory.append(resident_bytes())
    assert child_processes() == children_before
    assert descriptors[-1] <= descriptors[0], descriptors
    assert memory[-1] - memory[0] < RSS_GROWTH_LIMIT, [m // 2**20 for m in memory]
