"""Untrusted runs: planted pickles and code tags are refused, nothing they hold ever runs, and run
files that do not fit (shapes, dtypes, domain, format version) are refused with a clear error."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_polyvae
from polyvae_gaussmix import mixture

import polyvae
from polyvae.files import save_tensors

FAST = {"batch_size": 32, "latent_dim": 3, "hidden": 16, "threads": 1, "epochs": 1}


class Payload:
    """Unpickling this writes ``marker``: proof that the file was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def payload_bytes(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    from polyvae_gaussmix import GaussMixDomain

    folder = tmp_path_factory.mktemp("trained")
    data = folder / "data.csv"
    data.write_text("".join(",".join(repr(float(v)) for v in row) + "\n" for row in mixture(96)))
    polyvae.train(
        GaussMixDomain(), data=data, config=FAST, out=folder / "run", progress=False, log=print
    )
    return folder / "run"


@pytest.fixture
def run_copy(clean_run, tmp_path, registry):
    target = tmp_path / "run"
    shutil.copytree(clean_run, target)
    (target / ".lock").unlink(missing_ok=True)
    return target


def test_the_payload_really_executes_when_unpickled(tmp_path):
    # Guards the tests below: a payload that did nothing would prove nothing.
    marker = tmp_path / "marker"
    pickle.loads(payload_bytes(marker))
    assert marker.exists()


def load_and_cli(run: Path, plugin_site: Path, message: str, cli: bool = True) -> None:
    """The run is refused by the library and by the installed command, each time in one line."""
    with pytest.raises(polyvae.RunError, match=message):
        polyvae.load(run).sample(2, seed=0)
    if not cli:
        return
    result = run_polyvae(["sample", run, "-n", 2, "--set", "threads=1"], site=plugin_site)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert re.search(message, lines[0]), lines[0]


def edit_meta(run: Path, **changes) -> None:
    meta = json.loads((run / "run.json").read_text())
    meta.update(changes)
    (run / "run.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"format_version": 99}, "has run format 99.*upgrade polyvae"),
        ({"format_version": "1"}, "has run format '1'"),
        ({"format": "something-else"}, "is not a polyvae run file"),
        ({"domain": "molecules"}, "is a 'molecules' run, not 'gaussmix'"),
        ({"config": {"hidden": "wide"}}, "run.json"),
    ],
)
def test_run_metadata_that_does_not_fit_is_refused(run_copy, changes, message):
    from polyvae_gaussmix import GaussMixDomain

    edit_meta(run_copy, **changes)
    with pytest.raises(polyvae.RunError, match=message):
        polyvae.load(run_copy, domain=GaussMixDomain())


@pytest.mark.parametrize("fault", ["shape", "dtype", "missing", "extra"])
def test_weights_that_do_not_fit_are_refused(run_copy, plugin_site, fault):
    from polyvae.files import load_tensors

    state = load_tensors(run_copy / "model.safetensors")
    name = sorted(state)[0]
    if fault == "shape":
        state[name] = torch.zeros(*state[name].shape, 2)
        message = f"'{name}' is .*the model expects"
    elif fault == "dtype":
        state[name] = state[name].double()
        message = f"'{name}' is .*float64, the model expects"
    elif fault == "missing":
        del state[name]
        message = "does not fit this model: missing"
    else:
        state["smuggled.weight"] = torch.zeros(1)
        message = "does not fit this model.*unexpected"
    save_tensors(run_copy / "model.safetensors", state)
    load_and_cli(run_copy, plugin_site, message, cli=False)


def test_weights_stored_in_half_precision_load_widened(run_copy):
    from polyvae.files import load_tensors
    from polyvae.run import narrowed_weights

    full = polyvae.load(run_copy).vae.state_dict()
    state = load_tensors(run_copy / "model.safetensors")
    half = narrowed_weights(state, "float16")
    assert all(t.dtype == torch.float16 for t in half.values() if t.is_floating_point())
    save_tensors(run_copy / "model.safetensors", half)
    loaded = polyvae.load(run_copy).vae.state_dict()
    for name, tensor in loaded.items():
        assert tensor.dtype == torch.float32
        torch.testing.assert_close(tensor, full[name], rtol=1e-3, atol=1e-4)


def test_weights_stored_as_int8_rows_load_widened(run_copy):
    from polyvae.files import load_tensors
    from polyvae.run import QUANTIZED_MIN_ELEMENTS, ROW_SCALE_SUFFIX, narrowed_weights

    full = polyvae.load(run_copy).vae.state_dict()
    state = load_tensors(run_copy / "model.safetensors")
    # The test model's matrices are small: quantize one as a bundled model's large ones are.
    big = max(state, key=lambda name: state[name].numel() if state[name].dim() == 2 else 0)
    state[big] = state[big].repeat(QUANTIZED_MIN_ELEMENTS // state[big].numel() + 1, 1)
    stored = narrowed_weights(state, "int8")
    assert stored[big].dtype == torch.int8 and big + ROW_SCALE_SUFFIX in stored
    assert all(
        t.dtype == torch.float16
        for n, t in stored.items()
        if n != big and t.is_floating_point() and not n.endswith(ROW_SCALE_SUFFIX)
    )
    rows = full[big].shape[0]
    stored[big] = stored[big][:rows]
    stored[big + ROW_SCALE_SUFFIX] = stored[big + ROW_SCALE_SUFFIX][:rows]
    save_tensors(run_copy / "model.safetensors", stored)
    loaded = polyvae.load(run_copy).vae.state_dict()
    for name, tensor in loaded.items():
        assert tensor.dtype == full[name].dtype
        # Rounding to 1/127 of the row's largest magnitude: half a step at most.
        step = full[name].abs().amax(dim=-1, keepdim=True) / 127 if name == big else 1e-3
        assert ((tensor - full[name]).abs() <= step / 2 + 1e-4 * full[name].abs()).all()


@pytest.mark.parametrize("fault", ["shape", "orphan"])
def test_int8_row_scales_that_do_not_fit_are_refused(run_copy, plugin_site, fault):
    from polyvae.files import load_tensors
    from polyvae.run import ROW_SCALE_SUFFIX

    state = load_tensors(run_copy / "model.safetensors")
    name = next(n for n in sorted(state) if state[n].dim() == 2)
    state[name] = state[name].round().to(torch.int8)
    rows = state[name].shape[0]
    state[name + ROW_SCALE_SUFFIX] = torch.ones(rows + 1 if fault == "shape" else rows)
    if fault == "orphan":
        del state[name]
    save_tensors(run_copy / "model.safetensors", state)
    load_and_cli(
        run_copy, plugin_site, f"'{name}{ROW_SCALE_SUFFIX}' is not the row scale", cli=False
    )
