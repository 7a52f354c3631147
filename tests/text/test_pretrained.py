"""The bundled pretrained text model: `polyvae sample text` works right after install, and the
shipped model keeps its latent in use."""

from __future__ import annotations

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
