"""Latent-space search in the engine: neighbours, gradient ascent on the head, cross-entropy."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import gaussmix_only
from polyvae_gaussmix import mixture

import polyvae


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    with gaussmix_only():
        config = {"epochs": 8, "batch_size": 64, "latent_dim": 4, "predict": ["first"]}
        out = tmp_path_factory.mktemp("search") / "run"
        polyvae.train(
            "gaussmix",
            data=list(mixture(1500, seed=4)),
            config=config,
            out=out,
            progress=False,
            log=print,
        )
        yield polyvae.load(out)


def test_neighbours_stay_close_and_widen_with_radius(model):
    seed_item = mixture(1, seed=8)[0]
    near = np.array(model.neighbours(seed_item, n=200, radius=0.1, seed=0))
    far = np.array(model.neighbours(seed_item, n=200, radius=2.0, seed=0))
    centre = np.array(model.reconstruct([seed_item])[0])
    near_distance = np.linalg.norm(near - centre, axis=1).mean()
    far_distance = np.linalg.norm(far - centre, axis=1).mean()
    assert near_distance < far_distance / 3


def test_gradient_ascent_on_the_property_head_raises_the_property(model):
    prior = [item[0] for item in model.sample(2000, seed=1, temperature=0.0, prior="standard")]
    ranked = model.optimize("first", n=20, steps=60, seed=0, prior="standard")
    assert len(ranked) == 20
    scores = [score for _, score in ranked]
    assert scores == sorted(scores, reverse=True)
    # Scores are the real property of the decoded items, not the head's prediction.
    assert all(score == pytest.approx(item[0]) for item, score in ranked)
    # The search lands above what all but the top 5% of prior samples reach.
    assert np.mean(scores) > np.quantile(prior, 0.95)
    # Held by the fitted prior (the run's default), it climbs at least as high.
    fitted = [score for _, score in model.optimize("first", n=20, steps=60, seed=0)]
    assert np.mean(fitted) > np.quantile(prior, 0.95)


def test_cross_entropy_search_with_a_scoring_function(model):
    target = np.array([0.5, -0.5, 0.5, -0.5, 0.5, -0.5])

    def closeness(items):
        return -np.linalg.norm(np.asarray(items) - target, axis=1)

    random_best = closeness(model.sample(200, seed=2, temperature=0.0)).max()
    ranked = model.optimize(closeness, n=5, steps=80, seed=0)
    assert ranked[0][1] >= random_best


def test_unknown_head_property_is_a_clear_error(model):
    with pytest.raises(polyvae.UserError, match="does not predict 'norm'"):
        model.optimize("norm", n=2)
