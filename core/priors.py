"""Priors to sample the latent space from: the standard normal the VAE was trained against, and
densities fitted after training to the codes of the training items (the aggregate posterior).

The more a VAE keeps in z, the further the codes' aggregate drifts from N(0, I), and decoding
points the decoder never saw costs sample quality. Fitting a density to the codes and sampling
from it closes that gap (Ghosh et al. 2020, "From variational to deterministic autoencoders").
Two kinds: a Gaussian mixture with full covariances (fitted by scikit-learn's EM) and a masked
autoregressive flow (zuko). A fitted prior is stored in the run's ``prior/`` folder as
``prior.json`` (kind, sizes, fit record) and ``prior.safetensors`` (its numbers); no pickle.

Conditional models: the codes are taken under each item's own condition and the prior is fitted
to all of them together. A conditional VAE learns a z that does not depend on the condition, so
one prior serves every condition; the condition itself is given to the decoder as before.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from polyvae.config import PRIOR_COMPONENTS, PRIOR_FIT_ITEMS
from polyvae.errors import RunError, UserError
from polyvae.files import atomic_write_json, load_tensors, read_json, save_tensors
from polyvae.vae import standard_normal_log_density
from polyvae.wording import plural

if TYPE_CHECKING:
    from polyvae.model import Model

PRIOR_KINDS = ("gmm", "flow")
# The names ``--prior`` takes: the standard normal, or the run's fitted prior.
PRIOR_CHOICES = ("standard", "fitted")
# Share of the codes held out to measure the fitted density.
HELD_OUT_SHARE = 0.1
# The flow: transforms, hidden units per layer, batch size, and its training: FLOW_PASSES
# passes over the codes, at most FLOW_MAX_STEPS optimiser steps.
FLOW_TRANSFORMS = 4
FLOW_HIDDEN = (256, 256)
FLOW_BATCH = 512
FLOW_PASSES = 20
FLOW_MAX_STEPS = 3000


class Prior(ABC):
    """A density over the latent space that can be sampled with a seeded generator."""

    kind: str

    def __init__(self, latent_dim: int) -> None:
        self.latent_dim = latent_dim

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` points, ``(n, latent_dim)`` float32 on the CPU, from ``generator`` alone."""

    @abstractmethod
    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log density of each row of ``z``, differentiable in ``z``."""

    def spread(self) -> torch.Tensor:
        """Each dimension's standard deviation under this prior."""
        return torch.ones(self.latent_dim)

    def centre(self) -> torch.Tensor:
        """The prior's mean."""
        return torch.zeros(self.latent_dim)


class StandardNormal(Prior):
    kind = "standard"

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return standard_normal_log_density(z)


class FittedPrior(Prior):
    """A prior fitted to codes, saved as settings (JSON) and tensors (safetensors)."""

    @abstractmethod
    def tensors(self) -> dict[str, torch.Tensor]:
        """Its numbers, for prior.safetensors."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Its sizes, for prior.json."""

    @classmethod
    @abstractmethod
    def from_saved(
        cls, settings: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
    ) -> FittedPrior:
        """The prior that :meth:`settings` and :meth:`tensors` describe."""


class GaussianMixture(FittedPrior):
    """Weights, means and Cholesky factors of full covariances of K Gaussian components."""

    kind = "gmm"

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, scale_tril: torch.Tensor):
        super().__init__(means.shape[1])
        self.weights, self.means, self.scale_tril = weights, means, scale_tril

    @classmethod
    def fit(cls, codes: np.ndarray, components: int, seed: int) -> GaussianMixture:
        from sklearn.mixture import GaussianMixture as SklearnMixture
        from threadpoolctl import threadpool_limits

        components = min(components, len(codes))
        mixture = SklearnMixture(
            components, covariance_type="full", reg_covar=1e-5, max_iter=100, random_state=seed
        )
        # BLAS and OpenMP would each start a thread per core beside torch's: on a 2-core machine
        # busy with a training, 10 EM rounds on 18,000 64-D codes took 7.1 s, and 2.7 s with
        # one thread (a whole fit there had taken 13 minutes).
        with threadpool_limits(torch.get_num_threads()):
            mixture.fit(codes)
        return cls(
            torch.as_tensor(mixture.weights_, dtype=torch.float32),
            torch.as_tensor(mixture.means_, dtype=torch.float32),
            torch.linalg.cholesky(
                torch.as_tensor(mixture.covariances_, dtype=torch.float64)
            ).float(),
        )

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.latent_dim, 1, generator=generator)
        return self.means[component] + (self.scale_tril[component] @ noise).squeeze(-1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        distribution = torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(probs=self.weights.to(z.device)),
            torch.distributions.MultivariateNormal(
                self.means.to(z.device), scale_tril=self.scale_tril.to(z.device)
            ),
        )
        return distribution.log_prob(z)

    def spread(self) -> torch.Tensor:
        covariance = self.scale_tril @ self.scale_tril.transpose(-1, -2)
        variance = covariance.diagonal(dim1=-2, dim2=-1)  # (K, D)
        mean = self.centre()
        within = (self.weights[:, None] * variance).sum(0)
        between = (self.weights[:, None] * (self.means - mean).pow(2)).sum(0)
        return (within + between).sqrt()

    def centre(self) -> torch.Tensor:
        return (self.weights[:, None] * self.means).sum(0)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights, "means": self.means, "scale_tril": self.scale_tril}

    def settings(self) -> dict[str, Any]:
        return {"components": len(self.weights)}

    @classmethod
    def from_saved(
        cls, settings: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
    ) -> GaussianMixture:
        return cls(tensors["weights"], tensors["means"], tensors["scale_tril"])


class Flow(FittedPrior):
    """A masked autoregressive flow (zuko's MAF) on standardised codes: z = mean + std * f(e)
    with e ~ N(0, I)."""

    kind = "flow"

    def __init__(
        self,
        latent_dim: int,
        transforms: int,
        hidden: tuple[int, ...],
        mean: torch.Tensor,
        std: torch.Tensor,
        state: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        import zuko

        super().__init__(latent_dim)
        self.transforms, self.hidden = transforms, tuple(hidden)
        self.mean, self.std = mean, std
        self.flow = zuko.flows.MAF(latent_dim, transforms=transforms, hidden_features=self.hidden)
        if state is not None:
            self.flow.load_state_dict(dict(state))
        self.flow.eval()

    @classmethod
    def fit(cls, codes: np.ndarray, seed: int) -> Flow:
        data = torch.as_tensor(codes, dtype=torch.float32)
        mean, std = data.mean(0), data.std(0).clamp(min=1e-6)
        torch.manual_seed(seed)
        prior = cls(data.shape[1], FLOW_TRANSFORMS, FLOW_HIDDEN, mean, std)
        prior.flow.train()
        scaled = (data - mean) / std
        optimizer = torch.optim.Adam(prior.flow.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(seed)
        steps = min(FLOW_MAX_STEPS, max(1, FLOW_PASSES * len(scaled) // FLOW_BATCH))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        for _ in range(steps):
            rows = torch.randint(len(scaled), (FLOW_BATCH,), generator=generator)
            loss = -prior.flow().log_prob(scaled[rows]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        prior.flow.eval()
        return prior

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(n, self.latent_dim, generator=generator)
        with torch.no_grad():
            scaled = self.flow().transform.inv(noise)
        return (self.mean + self.std * scaled).float()

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        scaled = (z - self.mean.to(z.device)) / self.std.to(z.device)
        return self.flow().log_prob(scaled) - self.std.log().sum()

    def spread(self) -> torch.Tensor:
        return self.std.clone()

    def centre(self) -> torch.Tensor:
        return self.mean.clone()

    def tensors(self) -> dict[str, torch.Tensor]:
        state = {f"flow.{name}": value for name, value in self.flow.state_dict().items()}
        return state | {"mean": self.mean, "std": self.std}

    def settings(self) -> dict[str, Any]:
        return {"transforms": self.transforms, "hidden": list(self.hidden)}

    @classmethod
    def from_saved(cls, settings: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Flow:
        state = {
            name.removeprefix("flow."): value
            for name, value in tensors.items()
            if name.startswith("flow.")
        }
        return cls(
            len(tensors["mean"]),
            int(settings["transforms"]),
            tuple(settings["hidden"]),
            tensors["mean"],
            tensors["std"],
            state,
        )


FITTED_KINDS: dict[str, type[FittedPrior]] = {"gmm": GaussianMixture, "flow": Flow}


def fit_prior(
    codes: np.ndarray, kind: str = "gmm", components: int = PRIOR_COMPONENTS, seed: int = 0
) -> tuple[FittedPrior, dict[str, Any]]:
    """Fit a prior of ``kind`` to ``codes`` (one row per item) with HELD_OUT_SHARE of them held
    out; the prior and a record of the fit: items, and the held-out mean log-likelihood of the
    codes under the fitted prior and under N(0, I), in nats per item.

    A Gaussian mixture has at most ``components``: mixtures of that many, half as many and so
    on down to one are fitted, and the one that gives the held-out codes the highest likelihood
    is kept (the record lists each count's figure). A full-covariance component of a 64-D
    latent has 2,144 numbers to estimate, and 20 of them fitted to the 1,764 codes of a small
    fine-tune gave held-out codes -135.8 nats where one gave -90.9
    (benchmarks/prior_components.py)."""
    if kind not in FITTED_KINDS:
        raise UserError(f"prior kind {kind!r} is not one of: {', '.join(PRIOR_KINDS)}")
    if components < 1:
        raise UserError("a Gaussian mixture needs at least 1 component")
    codes = np.asarray(codes, dtype=np.float64)
    if len(codes) < 10:
        raise UserError(f"fitting a prior needs at least 10 items, got {len(codes)}")
    order = np.random.default_rng(seed).permutation(len(codes))
    held = max(1, round(len(codes) * HELD_OUT_SHARE))
    fitted_on, held_out = codes[order[held:]], codes[order[:held]]
    held_tensor = torch.as_tensor(held_out, dtype=torch.float32)
    candidates: dict[int, tuple[FittedPrior, float]] = {}
    if kind == "gmm":
        count = min(components, len(fitted_on))
        while count not in candidates:
            mixture = GaussianMixture.fit(fitted_on, count, seed)
            candidates[count] = (mixture, mean_log_likelihood(mixture, held_tensor))
            count = max(1, count // 2)
    else:
        flow = Flow.fit(fitted_on, seed)
        candidates[0] = (flow, mean_log_likelihood(flow, held_tensor))
    # A fit that gives the held-out codes no finite likelihood loses to any that does.
    prior, fitted_ll = max(
        candidates.values(),
        key=lambda candidate: candidate[1] if math.isfinite(candidate[1]) else -math.inf,
    )
    standard_ll = mean_log_likelihood(StandardNormal(codes.shape[1]), held_tensor)
    record: dict[str, Any] = {
        "items": len(fitted_on),
        "held_out_items": held,
        "held_out_log_likelihood": fitted_ll,
        "standard_normal_held_out_log_likelihood": standard_ll,
        "seed": seed,
    }
    if kind == "gmm":
        record["components"] = prior.settings()["components"]
        record["held_out_log_likelihood_by_components"] = {
            str(count): figure for count, (_, figure) in candidates.items()
        }
    return prior, record


def fit_model_prior(
    model: Model,
    items: Sequence[Any],
    kind: str = "gmm",
    components: int = PRIOR_COMPONENTS,
    max_items: int = PRIOR_FIT_ITEMS,
    seed: int = 0,
    source: str | None = None,
) -> dict[str, Any]:
    """Fit a prior to one posterior sample of the codes of (a seeded random subset of at most
    ``max_items`` of) ``items`` and save it in ``model``'s run, which then samples from it by
    default; the record of the fit. ``items`` are the training items unless ``source`` names
    the file they came from instead: the record keeps it, and the prior then covers the part of
    the latent space those items occupy."""
    chosen = list(items)
    if 0 < max_items < len(chosen):
        order = np.random.default_rng(seed).permutation(len(chosen))[:max_items]
        chosen = [chosen[i] for i in sorted(order)]
    unencodable: dict[int, str] = {}
    codes = model.encode(chosen, sample=True, seed=seed, skipped=unencodable)
    prior, record = fit_prior(codes[~np.isnan(codes).any(axis=1)], kind, components, seed)
    if source is not None:
        record["data"] = source
    if unencodable:  # only items from elsewhere than the training data can be
        record["unencodable_items"] = len(unencodable)
    model.set_prior(prior, record)
    return record


def describe_fit(kind: str, record: Mapping[str, Any]) -> str:
    """One line on a fit: how many codes of which items, and how much better than N(0, I) it
    covers held-out codes."""
    size = f" of {plural(record['components'], 'component')}" if "components" in record else ""
    line = (
        f"fitted a {kind} prior{size} to {record['items']:,} codes of "
        f"{record.get('data', 'the training items')}: held-out log-likelihood "
        f"{record['held_out_log_likelihood']:.2f} nats per code (N(0, I): "
        f"{record['standard_normal_held_out_log_likelihood']:.2f})"
    )
    if record.get("unencodable_items"):
        skipped = plural(record["unencodable_items"], "item")
        line += f"; {skipped} the run's codec cannot encode left out"
    return line


def save_prior(folder: Path, prior: FittedPrior, record: Mapping[str, Any]) -> None:
    """Write ``prior`` into ``folder`` (the run's ``prior/``): the tensors first, then the JSON
    that names them, so a reader never sees a JSON without its tensors."""
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(folder / "prior.safetensors", prior.tensors())
    atomic_write_json(
        folder / "prior.json",
        {
            "kind": prior.kind,
            "latent_dim": prior.latent_dim,
            "settings": prior.settings(),
            "fit": dict(record),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


def load_prior(folder: Path, latent_dim: int) -> tuple[FittedPrior, dict[str, Any]] | None:
    """The prior saved in ``folder`` and its JSON record, or None when there is none."""
    if not (folder / "prior.json").is_file():
        return None
    meta = read_json(folder / "prior.json")
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind not in FITTED_KINDS:
        raise RunError(f"{folder / 'prior.json'} names no known prior kind ({kind!r})")
    if meta.get("latent_dim") != latent_dim:
        raise RunError(
            f"{folder / 'prior.json'} is for a {meta.get('latent_dim')}-dimensional latent, "
            f"the model's has {latent_dim}"
        )
    tensors = load_tensors(folder / "prior.safetensors")
    try:
        prior = FITTED_KINDS[kind].from_saved(meta.get("settings", {}), tensors)
    except (KeyError, RuntimeError, ValueError) as error:
        raise RunError(
            f"{folder / 'prior.safetensors'} does not hold a {kind} prior: {error}"
        ) from None
    return prior, meta


def mean_log_likelihood(prior: Prior, codes: torch.Tensor) -> float:
    """Mean log density of ``codes`` under ``prior``, nats per item (NaN for no codes)."""
    if len(codes) == 0:
        return math.nan
    with torch.no_grad():
        return float(prior.log_prob(codes.float()).double().mean())
