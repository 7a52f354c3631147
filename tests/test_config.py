"""Configuration: layering, coercion, and one-line errors that name the valid choices."""

from __future__ import annotations

import pytest

from polyvae.config import (
    Option,
    load_config_file,
    parse_assignments,
    resolve_config,
    schema_for,
)
from polyvae.errors import ConfigError

DOMAIN_OPTIONS = (Option("hidden", 64, "width"), Option("mode", "a", "mode", choices=("a", "b")))
PRESETS = {"small": {"hidden": 16, "latent_dim": 4}}


def resolve(*layers):
    return resolve_config(schema_for(DOMAIN_OPTIONS), PRESETS, *layers)


def test_layers_override_in_order():
    config = resolve({"preset": "small"}, {"hidden": "32"}, {"epochs": 3})
    assert config["hidden"] == 32 and config["latent_dim"] == 4 and config["epochs"] == 3
    assert config["preset"] == "small"


def test_strings_from_the_command_line_are_coerced():
    config = resolve(parse_assignments(["lr=3e-4", "compile=yes", "condition=qed, logp"]))
    assert config["lr"] == 3e-4 and config["compile"] is True
    assert config["condition"] == ["qed", "logp"]


def test_unknown_key_names_valid_keys_and_a_suggestion():
    with pytest.raises(ConfigError) as error:
        resolve({"laten_dim": 8})
    message = str(error.value)
    assert "unknown config key 'laten_dim'" in message
    assert "did you mean 'latent_dim'" in message and "hidden" in message
    assert "\n" not in message


def test_bad_choice_lists_the_choices():
    with pytest.raises(
        ConfigError,
        match=r"'beta_schedule': 'cosine' is not one of: constant, linear, cyclical, logistic",
    ):
        resolve({"beta_schedule": "cosine"})
    with pytest.raises(ConfigError, match="'mode': 'c' is not one of: a, b"):
        resolve({"mode": "c"})


@pytest.mark.parametrize(
    ("layer", "fragment"),
    [
        ({"epochs": "many"}, "'epochs': 'many' is not a valid int"),
        ({"epochs": 2.5}, "'epochs': 2.5 is not a valid int"),
        ({"epochs": 0}, "'epochs': 0 is below the minimum 1"),
        ({"lr": "nan"}, "'lr': 'nan' is not a valid float"),
        ({"lr": 0}, "'lr': 0.0 must be above 0$"),  # nothing would be learned
        ({"compile": "maybe"}, "'compile': 'maybe' is not a valid bool"),
        ({"preset": "huge"}, "'preset': 'huge' is not one of: small"),
    ],
)
def test_bad_values(layer, fragment):
    with pytest.raises(ConfigError, match=fragment):
        resolve(layer)


def test_domain_option_may_not_shadow_an_engine_option():
    with pytest.raises(ValueError, match="clashes"):
        schema_for([Option("lr", 1.0, "no")])


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("c.toml", 'preset = "small"\nepochs = 7\ncondition = ["qed"]\n'),
        ("c.yaml", "preset: small\nepochs: 7\ncondition: [qed]\n"),
        ("c.json", '{"preset": "small", "epochs": 7, "condition": ["qed"]}'),
    ],
)
def test_config_files(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    config = resolve(load_config_file(path))
    assert config["epochs"] == 7 and config["hidden"] == 16 and config["condition"] == ["qed"]


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1\n")
    with pytest.raises(ConfigError, match="is not valid yaml"):
        load_config_file(bad)
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("epochs: !!python/object/apply:os.system ['touch x']\n")
    with pytest.raises(ConfigError, match="is not valid yaml"):
        load_config_file(unsafe)
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="mapping"):
        load_config_file(listing)
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignments(["epochs"])
