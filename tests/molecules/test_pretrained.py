"""The bundled pretrained model: `polyvae sample molecules` works right after install."""

from __future__ import annotations

import csv
import os
import subprocess

from conftest import polyvae_command

import polyvae
from polyvae.plugins.molecules import chemistry
from polyvae.registry import reset_registry


def test_bundled_model_samples_valid_diverse_molecules():
    reset_registry(None)
    model = polyvae.load("molecules")
    assert model.meta["status"] in ("complete", "early_stopped")
    samples = model.sample(300, temperature=1.0, seed=0)
    valid = [smiles for smiles in samples if chemistry.parse(smiles) is not None]
    assert len(valid) / len(samples) >= 0.95
    assert len(set(valid)) / len(valid) >= 0.95
    novel = model.codec.novel(valid)
    assert novel.mean() >= 0.8


def test_installed_command_samples_the_bundled_model(tmp_path):
    out = tmp_path / "molecules.csv"
    env = dict(os.environ, POLYVAE_LOAD_PLUGINS="molecules")
    result = subprocess.run(
        [polyvae_command(), "sample", "molecules", "-n", "20", "--seed", "1", "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 20
    assert {"smiles", "valid", "novel", "mw", "logp", "qed", "sa", "lipinski"} <= set(rows[0])
    assert all(row["novel"] in ("true", "false") for row in rows)
