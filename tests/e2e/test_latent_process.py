"""A fitted prior, saved by training, loads and samples in a fresh `polyvae` process."""

from __future__ import annotations

import json

from conftest import run_polyvae

import polyvae


def test_training_fits_a_prior_that_loads_in_a_fresh_process(fitted_run, plugin_site, domain):
    record = json.loads((fitted_run / "prior" / "prior.json").read_text())
    assert record["kind"] == "gmm" and record["settings"]["components"] == 3
    fit = record["fit"]
    assert fit["held_out_log_likelihood"] > fit["standard_normal_held_out_log_likelihood"]
    fresh = run_polyvae(
        ["sample", fitted_run, "-n", 3, "--seed", 4, "--prior", "fitted"], site=plugin_site
    )
    assert fresh.returncode == 0, fresh.stderr
    expected = [domain.format_item(item) for item in polyvae.load(fitted_run).sample(3, seed=4)]
    assert fresh.stdout.split("\n")[:3] == expected
