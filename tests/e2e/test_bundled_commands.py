"""The bundled pretrained models through the installed command, right after install:
`polyvae sample molecules` and `polyvae sample/interpolate text`."""

from __future__ import annotations

import csv
import os
import subprocess

from conftest import polyvae_command


def test_installed_command_samples_the_bundled_molecules_model(tmp_path):
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
