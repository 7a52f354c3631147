"""The bundled pretrained text model: `polyvae sample text` works right after install, and the
shipped model keeps its latent in use."""

from __future__ import annotations

import os
import subprocess

from conftest import polyvae_command

import polyvae
from polyvae.registry import reset_registry


def test_bundled_model_samples_diverse_texts_from_a_used_latent():
    reset_registry(None)
    model = polyvae.load("text")
    assert model.meta["status"] in ("complete", "early_stopped")
    samples = model.sample(200, temperature=1.0, seed=0)
    assert samples == model.sample(200, temperature=1.0, seed=0)
    assert all(isinstance(text, str) and text for text in samples)
    assert len(set(samples)) / len(samples) >= 0.95
    # Posterior collapse would show as a KL near 0 and no active units on validation texts.
    last = model.meta["summary"]["last"]
    assert last["val_kl"] >= 3 and last["val_active_units"] >= 5


def test_installed_command_samples_and_interpolates_the_bundled_model():
    env = dict(os.environ, POLYVAE_LOAD_PLUGINS="text", OMP_NUM_THREADS="1")

    def run(*args: str) -> list[str]:
        result = subprocess.run(
            [polyvae_command(), *args], capture_output=True, text=True, env=env, timeout=300
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    assert len(run("sample", "text", "-n", "5", "--seed", "1", "--strategy", "beam")) == 5
    path = run("interpolate", "text", "the cat sat on the mat", "he ran home", "--steps", "4")
    assert len(path) == 4
