"""How well a trained model fits data: per-item scores, the likelihood with latent diagnostics,
and the full evaluation (likelihood, reconstruction and sample metrics), run from one set of
settings by both ``polyvae evaluate`` and ``polyvae report``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from polyvae.device import autocast
from polyvae.distributed import SINGLE, Context, derived_seeds, share
from polyvae.errors import UserError
from polyvae.priors import mean_log_likelihood
from polyvae.registry import get_registry
from polyvae.vae import MI_MIN_ITEMS, LatentStatistics

if TYPE_CHECKING:
    from polyvae.model import Model

# Samples an evaluation generates for its sample-quality metrics unless told otherwise.
DEFAULT_SAMPLES = 1000


class Progress(Protocol):
    """Told how long work advances: ``done`` of ``total`` units of ``stage`` are finished
    (``total`` 0: not known) and ``numbers`` are its live figures (the running ELBO, the items
    kept). The CLI draws it as progress bars; the library itself never prints."""

    def __call__(self, stage: str, done: int, total: int, **numbers: float) -> None: ...


@dataclass(frozen=True)
class EvaluationSettings:
    """What an evaluation runs: ``k`` importance samples on up to ``likelihood_items`` held-out
    items (None: the domain's defaults), and ``samples`` items generated at ``temperature``
    (None: DEFAULT_SAMPLES) from the ``prior`` (None: the fitted one when the run has one); the
    noise and the item subset are seeded with ``seed``. ``data`` names the held-out file, if
    one was given, for the record."""

    k: int | None = None
    samples: int | None = None
    likelihood_items: int | None = None
    temperature: float = 1.0
    seed: int = 0
    data: str | None = None
    prior: str | None = None

    def resolved(self, model: Model) -> EvaluationSettings:
        """These settings with the domain's defaults filled in."""
        domain = model.domain
        return replace(
            self,
            k=domain.importance_samples if self.k is None else self.k,
            likelihood_items=(
                domain.likelihood_items if self.likelihood_items is None else self.likelihood_items
            ),
            samples=DEFAULT_SAMPLES if self.samples is None else self.samples,
            prior=self.prior or ("fitted" if model.fitted_prior is not None else "standard"),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_evaluation(
    model: Model,
    items: Sequence[Any],
    training: Sequence[Any],
    settings: EvaluationSettings,
    skipped: dict[int, str] | None = None,
    progress: Progress | None = None,
) -> tuple[dict[str, float], EvaluationSettings]:
    """:func:`evaluate` with ``settings`` (defaults resolved); the results and the settings used."""
    settings = settings.resolved(model)
    assert settings.k is not None and settings.likelihood_items is not None
    assert settings.samples is not None
    results = evaluate(
        model,
        items,
        k=settings.k,
        samples=settings.samples,
        temperature=settings.temperature,
        seed=settings.seed,
        training=training,
        likelihood_items=settings.likelihood_items,
        prior=settings.prior,
        skipped=skipped,
        progress=progress,
    )
    return results, settings


@torch.no_grad()
def score(
    model: Model,
    items: Sequence[Any],
    k: int = 1,
    seed: int = 0,
    place: Context = SINGLE,
    skipped: dict[int, str] | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Per-item anomaly score in nats: the negative ELBO (``k=1``) or the IWAE estimate of
    -log p(x) with ``k`` importance samples (tighter; ``k`` times the cost). Items the codec
    cannot encode score NaN, and ``skipped``, if given, receives their positions and why. Batch
    b's noise is seeded from (``seed``, b) alone. With a distributed ``place``, each rank scores
    a contiguous share of the batches and every rank gets all the scores, in item order (and
    all the skipped items); ``progress`` hears of this rank's share."""
    if k < 1:
        raise UserError("k must be at least 1")
    size = model.batch_size
    numbers = share(math.ceil(len(items) / size), place)
    start, stop = numbers.start * size, numbers.stop * size
    mine = list(items[start:stop])
    reasons: dict[int, str] = {}
    # A rank may have no batches at all (fewer batches than ranks).
    kept, batch = model.encodable(mine, reasons) if mine else ([], {})
    condition = model.item_conditions([mine[position] for position in kept])
    scores = torch.full((len(mine),), math.nan)
    total = 0.0
    for offset in range(0, len(kept), size):
        index = slice(offset, offset + size)
        with model.seeded(derived_seeds(seed, numbers.start + offset // size)[0]):
            part = {name: tensor[index].to(model.device) for name, tensor in batch.items()}
            cond = condition[index].to(model.device) if model.condition_names else None
            with autocast(model.device, model.precision):
                if k == 1:
                    terms = model.vae(part, cond)
                    value = -(terms.log_px - terms.kl_per_dim.sum(-1))
                else:
                    value = -model.vae.iwae_log_likelihood(part, cond, samples=k)
            scores[kept[index]] = value.float().cpu()
        if progress is not None:
            done = min(offset + size, len(kept))
            total += float(value.double().sum())
            progress("scoring", done, len(kept), mean_score=total / done)
    shares = place.gather((scores.numpy(), {start + at: why for at, why in reasons.items()}))
    if skipped is not None:
        for _, rank_reasons in shares:
            skipped.update(rank_reasons)
    return np.concatenate([rank_scores for rank_scores, _ in shares])


@torch.no_grad()
def likelihood(
    model: Model,
    items: Sequence[Any],
    k: int = 50,
    seed: int = 0,
    skipped: dict[int, str] | None = None,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Likelihood and latent diagnostics on ``items``: ELBO, IWAE NLL, reconstruction, KL (nats
    per item), active units and mutual information; with the domain's ``likelihood_unit`` also
    the IWAE NLL per unit, in bits per unit and as a perplexity. Items the codec cannot encode
    are left out (``items`` counts the rest), and ``skipped``, if given, receives their
    positions and why."""
    kept, batch = model.encodable(items, {} if skipped is None else skipped)
    items = [items[position] for position in kept]
    condition = model.item_conditions(items)
    unit = model.domain.likelihood_unit
    units = float(model.domain.unit_counts(batch).sum()) if unit and len(items) else 0.0
    statistics = LatentStatistics(model.latent_dim, model.device)
    iwae_nll = elbo = 0.0
    with model.seeded(seed):
        for index in torch.arange(len(items)).split(model.batch_size):
            part = {name: tensor[index].to(model.device) for name, tensor in batch.items()}
            cond = condition[index].to(model.device) if model.condition_names else None
            with autocast(model.device, model.precision):
                terms = model.vae(part, cond)
                iwae = model.vae.iwae_log_likelihood(part, cond, samples=k)
            statistics.add(terms)
            iwae_nll += float(-iwae.double().sum())
            if progress is not None:
                done = statistics.count
                elbo += float((terms.log_px - terms.kl_per_dim.sum(-1)).double().sum())
                progress("likelihood", done, len(items), elbo=elbo / done, iwae_nll=iwae_nll / done)
        results: dict[str, float] = {
            name: float(value) for name, value in statistics.results().items()
        }
    results["iwae_nll"] = iwae_nll / max(len(items), 1)
    results["kl_per_dim_max"] = statistics.kl_per_dim_max()
    if units:
        per_unit = iwae_nll / units
        results[f"nll_per_{unit}"] = per_unit
        results[f"bits_per_{unit}"] = per_unit / math.log(2)
        results["perplexity"] = math.exp(min(per_unit, 700.0))
    results["items"] = float(len(items))
    return results


def evaluate(
    model: Model,
    items: Sequence[Any],
    k: int = 50,
    samples: int = DEFAULT_SAMPLES,
    temperature: float = 1.0,
    seed: int = 0,
    training: Sequence[Any] = (),
    likelihood_items: int = 1000,
    prior: str | None = None,
    skipped: dict[int, str] | None = None,
    progress: Progress | None = None,
) -> dict[str, float]:
    """:func:`likelihood`, the domain's reconstruction metrics and the priors' log density of
    the codes on a seeded random subset of ``likelihood_items`` of ``items`` (the IWAE bound
    costs ``k`` decoder passes an item), plus the domain's sample-quality metrics (and those
    plugins add) for ``samples`` items generated from the ``prior`` against all ``items`` and
    ``training``. When the run has a fitted prior, the sample metrics under the other prior
    follow too, their names prefixed ``standard_prior/`` or ``fitted_prior/``. Items of the
    subset that the codec cannot encode are left out, and ``skipped``, if given, receives their
    positions in ``items`` and why. ``progress`` hears of each stage."""
    positions = list(range(len(items)))
    if 0 < likelihood_items < len(items):
        chosen = torch.randperm(len(items), generator=model.generator(seed))
        positions = chosen[:likelihood_items].tolist()
    subset = [items[position] for position in positions]
    unencodable: dict[int, str] = {}
    results = likelihood(model, subset, k=k, seed=seed, skipped=unencodable, progress=progress)
    if skipped is not None:
        skipped.update({positions[at]: why for at, why in unencodable.items()})
    subset = [item for at, item in enumerate(subset) if at not in unencodable]
    rebuilt = model.reconstruct(subset, progress=progress)
    results.update(model.domain.reconstruction_metrics(subset, rebuilt))
    results.update(code_log_likelihoods(model, subset, seed))
    if samples:
        results.update(
            sample_metrics(model, samples, temperature, seed, items, training, prior, progress)
        )
        if model.fitted_prior is not None:
            other = "standard" if (prior or "fitted") == "fitted" else "fitted"
            extra = sample_metrics(
                model, samples, temperature, seed, items, training, other, progress
            )
            results.update({f"{other}_prior/{name}": value for name, value in extra.items()})
    return results


def sample_metrics(
    model: Model,
    samples: int,
    temperature: float,
    seed: int,
    reference: Sequence[Any],
    training: Sequence[Any],
    prior: str | None,
    progress: Progress | None = None,
) -> dict[str, float]:
    """The domain's sample-quality metrics, and those plugins add, for ``samples`` items
    generated from ``prior``."""
    generated = model.sample(
        samples, temperature=temperature, seed=seed, prior=prior, progress=progress
    )
    if progress is not None:  # the domain's metrics cannot say how far they are
        progress(f"sample metrics ({model.domain.name})", 0, 0)
    reference, training = list(reference), list(training)
    results = dict(model.domain.metrics(generated, reference, training))
    for metric in get_registry().extra_metrics(model.domain.name).values():
        results.update(metric(generated, reference, training))
    return results


def mutual_information_note(results: dict[str, float]) -> str | None:
    """Why ``mutual_info`` is NaN in ``results`` (too few items for its estimate), or None."""
    if not math.isnan(results.get("mutual_info", 0.0)):
        return None
    return (
        f"mutual_info is n/a: its estimate needs at least {MI_MIN_ITEMS} items, and "
        f"{results.get('items', 0):.0f} were evaluated"
    )


def code_log_likelihoods(model: Model, items: Sequence[Any], seed: int) -> dict[str, float]:
    """Mean log density, in nats per item, of one posterior sample of each of ``items`` under
    N(0, I) and, when the run has one, under the fitted prior: how well each prior covers the
    codes of held-out items."""
    if not items:
        return {}
    codes = torch.as_tensor(model.encode(items, sample=True, seed=seed))
    results = {"standard_prior_log_likelihood": mean_log_likelihood(model.prior("standard"), codes)}
    if model.fitted_prior is not None:
        results["fitted_prior_log_likelihood"] = mean_log_likelihood(model.fitted_prior, codes)
    return results
