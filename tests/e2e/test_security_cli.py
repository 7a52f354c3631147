"""Planted pickles and YAML Python tags are refused by the installed `polyvae` command too, in
one line, and never run (the `run_copy` fixture is test_security's, through
tests/e2e/conftest.py)."""

from __future__ import annotations

import pytest
from conftest import run_polyvae
from polyvae_gaussmix import mixture
from test_security import edit_meta, load_and_cli, payload_bytes

import polyvae
from polyvae.config import load_config_file


@pytest.mark.parametrize(
    "place, message",
    [
        ("model.safetensors", "is not a readable safetensors file"),
        ("weights.pt", "refusing to load .*weights.pt"),
        ("codec/extra.pkl", "refusing to load .*codec/extra.pkl"),
        ("codec/standardiser.json", "codec cannot be read"),
        ("checkpoint/optimizer.safetensors", "is not a readable safetensors file"),
    ],
)
def test_planted_pickle_is_refused_and_never_runs(run_copy, plugin_site, tmp_path, place, message):
    marker = tmp_path / "marker"
    (run_copy / place).write_bytes(payload_bytes(marker))
    if place.startswith("checkpoint/"):
        with pytest.raises(polyvae.RunError, match=message):
            polyvae.train("gaussmix", resume=run_copy, progress=False)
    else:
        # One file type of each kind also through the installed command.
        cli = place in ("weights.pt", "codec/standardiser.json")
        load_and_cli(run_copy, plugin_site, message, cli=cli)
    assert not marker.exists()


def test_python_tag_in_a_config_file_is_refused(tmp_path, plugin_site, registry):
    marker = tmp_path / "marker"
    config = tmp_path / "evil.yaml"
    config.write_text(f"epochs: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(polyvae.UserError, match="is not valid yaml"):
        load_config_file(config)
    data = tmp_path / "data.csv"
    data.write_text("".join(",".join(map(str, row)) + "\n" for row in mixture(64)))
    result = run_polyvae(
        ["train", "gaussmix", "--data", data, "--out", tmp_path / "r", "--config", config],
        site=plugin_site,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().startswith("Error: config file") and "not valid yaml" in (
        result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "r").exists()


def test_python_tag_in_run_json_is_refused(run_copy, plugin_site, tmp_path):
    marker = tmp_path / "marker"
    (run_copy / "run.json").write_text(
        f"!!python/object/apply:os.system ['touch {marker}']\nformat: polyvae-run\n"
    )
    load_and_cli(run_copy, plugin_site, "run.json is not valid JSON")
    assert not marker.exists()


def test_unknown_domain_is_refused_from_the_cli(run_copy, plugin_site):
    edit_meta(run_copy, domain="nosuchdomain")
    result = run_polyvae(["sample", run_copy, "-n", 2], site=plugin_site)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("Error: ") and "nosuchdomain" in result.stderr
