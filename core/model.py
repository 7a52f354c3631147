"""A trained model loaded from a run directory: sample, encode, decode, interpolate, score."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyvae.device import autocast, resolve_device
from polyvae.domain import Batch, Domain
from polyvae.errors import UserError
from polyvae.registry import get_registry
from polyvae.run import LoadedRun, build_vae, load_weights, open_run, resolve_run_path
from polyvae.vae import active_units, gaussian_kl, mutual_information

# Rounds of extra draws ``sample(unique=True / valid_only=True)`` makes before giving up.
MAX_SAMPLING_ROUNDS = 10


def load(run: str | Path, device: str = "auto", domain: Domain | None = None) -> Model:
    """Load a run directory, or a domain name for that domain's bundled pretrained run."""
    return Model(open_run(resolve_run_path(run), domain), device)


class Model:
    def __init__(self, loaded: LoadedRun, device: str = "auto") -> None:
        self.loaded = loaded
        self.domain = loaded.domain
        self.config = loaded.config
        self.codec = loaded.codec
        self.meta = loaded.meta
        self.run_dir = loaded.run.path
        self.device = resolve_device(device)
        self.vae = build_vae(self.domain, self.config, self.codec, loaded.condition, loaded.predict)
        load_weights(self.vae, loaded.run.weights_path)
        self.vae.to(self.device).eval()
        self.batch_size = max(1, self.config["batch_size"])

    @property
    def latent_dim(self) -> int:
        return self.vae.latent_dim

    @property
    def condition_names(self) -> list[str]:
        return list(self.loaded.condition.names) if self.loaded.condition else []

    # --- generation ----------------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        seed: int | None = None,
        condition: Mapping[str, float] | None = None,
        unique: bool = False,
        valid_only: bool = False,
        **generate_options: Any,
    ) -> list[Any]:
        """``n`` new items from z ~ N(0, I). ``temperature`` is the decoder's (0: most likely
        output for each z). For a conditional model, ``condition`` gives target property values;
        those left out are set to the training mean. ``unique`` and ``valid_only`` draw more
        until ``n`` distinct (by formatted text) or valid items are found; after
        ``MAX_SAMPLING_ROUNDS`` rounds the list may come back shorter, never padded."""
        if n < 0:
            raise UserError("the number of samples must be zero or more")
        generator = self._generator(seed)
        kept: list[Any] = []
        seen: set[str] = set()
        for round_number in range(MAX_SAMPLING_ROUNDS if unique or valid_only else 1):
            missing = n - len(kept)
            if missing <= 0:
                break
            # Ask for extra draws once we have seen how many get filtered out.
            draws = missing if round_number == 0 else min(10 * missing + 64, 20 * n)
            z = torch.randn(draws, self.latent_dim, generator=generator)
            rows = self._condition_from_targets(condition, draws)
            round_seed = None if seed is None else seed + round_number
            for item in self._generate(z, rows, temperature, round_seed, **generate_options):
                if valid_only and not self.domain.is_valid(item):
                    continue
                if unique:
                    key = self.domain.format_item(item)
                    if key in seen:
                        continue
                    seen.add(key)
                kept.append(item)
        return kept[:n]

    def decode(
        self,
        z: torch.Tensor | np.ndarray,
        temperature: float = 0.0,
        seed: int | None = None,
        condition: Mapping[str, float] | None = None,
        **generate_options: Any,
    ) -> list[Any]:
        """Items for latent points ``z`` of shape ``(n, latent_dim)``."""
        z = torch.as_tensor(np.asarray(z) if not isinstance(z, torch.Tensor) else z)
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise UserError(
                f"latent points must have shape (n, {self.latent_dim}), got {tuple(z.shape)}"
            )
        rows = self._condition_from_targets(condition, len(z))
        return self._generate(z.float(), rows, temperature, seed, **generate_options)

    @torch.no_grad()
    def encode(
        self, items: Sequence[Any], sample: bool = False, seed: int | None = None
    ) -> np.ndarray:
        """Posterior means (or one posterior sample each) of ``items``: ``(n, latent_dim)``."""
        mus, logvars = self._posterior(items)
        if not sample:
            return mus.numpy()
        noise = torch.randn(mus.shape, generator=self._generator(seed))
        return (mus + noise * (0.5 * logvars).exp()).numpy()

    def reconstruct(
        self, items: Sequence[Any], temperature: float = 0.0, seed: int | None = None
    ) -> list[Any]:
        """Decode each item's posterior mean, under the item's own condition if any."""
        z = torch.as_tensor(self.encode(items))
        return self._generate(z, self._item_conditions(items), temperature, seed)

    def interpolate(
        self, a: Any, b: Any, steps: int = 8, method: str = "slerp", temperature: float = 0.0
    ) -> list[Any]:
        """Items decoded along the path between the posterior means of ``a`` and ``b``
        (both ends included). ``slerp`` keeps the path at a typical norm under the prior."""
        if steps < 2:
            raise UserError("interpolation needs at least 2 steps")
        if method not in ("slerp", "linear"):
            raise UserError(f"interpolation method {method!r} is not one of: slerp, linear")
        start, end = torch.as_tensor(self.encode([a, b]))
        weights = torch.linspace(0, 1, steps)
        between = _slerp if method == "slerp" else torch.lerp
        path = torch.stack([between(start, end, weight) for weight in weights])
        ends = self._item_conditions([a, b])
        rows = torch.stack([torch.lerp(ends[0], ends[1], weight) for weight in weights])
        return self._generate(path, rows, temperature, None)

    # --- likelihoods ---------------------------------------------------------------------------

    @torch.no_grad()
    def score(self, items: Sequence[Any], k: int = 1, seed: int = 0) -> np.ndarray:
        """Per-item anomaly score in nats: the negative ELBO (``k=1``) or the IWAE estimate of
        -log p(x) with ``k`` importance samples (tighter; ``k`` times the cost)."""
        if k < 1:
            raise UserError("k must be at least 1")
        batch = self.codec.encode(list(items))
        condition = self._item_conditions(items)
        scores = []
        with self._seeded(seed):
            for index in torch.arange(len(items)).split(self.batch_size):
                part = {name: tensor[index].to(self.device) for name, tensor in batch.items()}
                cond = condition[index].to(self.device) if self.condition_names else None
                with autocast(self.device, self.config["precision"]):
                    if k == 1:
                        terms = self.vae(part, cond)
                        value = -(terms["log_px"] - terms["kl_per_dim"].sum(-1))
                    else:
                        value = -self.vae.iwae_log_likelihood(part, cond, samples=k)
                scores.append(value.float().cpu())
        return torch.cat(scores).numpy() if scores else np.zeros(0)

    @torch.no_grad()
    def likelihood(self, items: Sequence[Any], k: int = 50, seed: int = 0) -> dict[str, float]:
        """Likelihood and latent diagnostics on ``items``: ELBO, IWAE NLL, reconstruction, KL
        (nats per item), active units and mutual information."""
        batch = self.codec.encode(list(items))
        condition = self._item_conditions(items)
        sums = {"elbo": 0.0, "recon": 0.0, "kl": 0.0, "iwae_nll": 0.0}
        mus, logvars = [], []
        with self._seeded(seed):
            for index in torch.arange(len(items)).split(self.batch_size):
                part = {name: tensor[index].to(self.device) for name, tensor in batch.items()}
                cond = condition[index].to(self.device) if self.condition_names else None
                with autocast(self.device, self.config["precision"]):
                    terms = self.vae(part, cond)
                    iwae = self.vae.iwae_log_likelihood(part, cond, samples=k)
                kl = terms["kl_per_dim"].sum(-1)
                sums["elbo"] += float((terms["log_px"] - kl).sum())
                sums["recon"] += float(-terms["log_px"].sum())
                sums["kl"] += float(kl.sum())
                sums["iwae_nll"] += float(-iwae.sum())
                mus.append(terms["mu"].cpu())
                logvars.append(terms["logvar"].cpu())
            mu, logvar = torch.cat(mus), torch.cat(logvars)
            results = {name: value / len(items) for name, value in sums.items()}
            results["active_units"] = float(active_units(mu))
            results["mutual_info"] = mutual_information(mu[:2000], logvar[:2000])
            results["kl_per_dim_max"] = float(gaussian_kl(mu, logvar).mean(0).max())
        results["items"] = float(len(items))
        return results

    def evaluate(
        self,
        items: Sequence[Any],
        k: int = 50,
        samples: int = 1000,
        temperature: float = 1.0,
        seed: int = 0,
        training: Sequence[Any] = (),
    ) -> dict[str, float]:
        """:meth:`likelihood` on ``items``, plus the domain's sample-quality metrics (and those
        plugins add) for ``samples`` generated items against ``items`` and ``training``."""
        results = self.likelihood(items, k=k, seed=seed)
        if samples:
            generated = self.sample(samples, temperature=temperature, seed=seed)
            reference, training = list(items), list(training)
            results.update(self.domain.metrics(generated, reference, training))
            for metric in get_registry().extra_metrics(self.domain.name).values():
                results.update(metric(generated, reference, training))
        return results

    def data_splits(self) -> tuple[list[Any], list[Any]]:
        """The training and validation items of this run, read again from its data source."""
        from polyvae.trainer import read_run_data

        return read_run_data(self.loaded)

    # --- internals -----------------------------------------------------------------------------

    def _posterior(self, items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.codec.encode(list(items))
        condition = self._item_conditions(items)
        mus, logvars = [], []
        with torch.no_grad():
            for index in torch.arange(len(items)).split(self.batch_size):
                part = {name: tensor[index].to(self.device) for name, tensor in batch.items()}
                cond = condition[index].to(self.device) if self.condition_names else None
                with autocast(self.device, self.config["precision"]):
                    mu, logvar = self.vae.posterior_params(part, cond)
                mus.append(mu.float().cpu())
                logvars.append(logvar.float().cpu())
        if not mus:
            return torch.zeros(0, self.latent_dim), torch.zeros(0, self.latent_dim)
        return torch.cat(mus), torch.cat(logvars)

    def _item_conditions(self, items: Sequence[Any]) -> torch.Tensor:
        scaler = self.loaded.condition
        if scaler is None:
            return torch.zeros(len(items), 0)
        values = np.asarray(self.domain.properties(list(items), scaler.names), dtype=np.float64)
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values).all(axis=1)).sum())
            raise UserError(
                f"{bad} items have properties ({', '.join(scaler.names)}) that cannot be computed"
            )
        return scaler.normalise(values)

    def _condition_from_targets(
        self, targets: Mapping[str, float] | None, count: int
    ) -> torch.Tensor:
        scaler = self.loaded.condition
        if scaler is None:
            if targets:
                raise UserError("this model was not trained with a condition; drop --condition")
            return torch.zeros(count, 0)
        targets = dict(targets or {})
        unknown = set(targets) - set(scaler.names)
        if unknown:
            raise UserError(
                f"unknown condition {', '.join(sorted(unknown))}; this model is conditioned on "
                f"{', '.join(scaler.names)}"
            )
        row = []
        for position, name in enumerate(scaler.names):
            value = float(targets.get(name, scaler.mean[position]))
            low, high = scaler.minimum[position], scaler.maximum[position]
            if not (low <= value <= high):
                raise UserError(
                    f"condition {name}={value:g} is outside the trained range "
                    f"[{low:.4g}, {high:.4g}]"
                )
            row.append(value)
        return scaler.normalise(np.array([row])).repeat(count, 1)

    @torch.no_grad()
    def _generate(
        self,
        z: torch.Tensor,
        condition: torch.Tensor,
        temperature: float,
        seed: int | None,
        **generate_options: Any,
    ) -> list[Any]:
        """Decode latent rows in batches; ``condition`` holds one normalised row per z (or has
        width 0 for an unconditional model)."""
        items: list[Any] = []
        with self._seeded(seed):
            for index in torch.arange(len(z)).split(self.batch_size):
                cond = condition[index].to(self.device) if self.condition_names else None
                decoder_input = self.vae.decoder_input(z[index].to(self.device), cond)
                with autocast(self.device, self.config["precision"]):
                    batch = self.vae.decoder.generate(
                        decoder_input, temperature=temperature, **generate_options
                    )
                items.extend(self.codec.decode(_to_cpu(batch)))
        return items

    def _generator(self, seed: int | None) -> torch.Generator:
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        return generator

    def _seeded(self, seed: int | None):
        """Seed the decoder's and posterior's sampling for repeatable output, without disturbing
        the caller's global random state."""
        return _SeededScope(seed, self.device)


class _SeededScope:
    def __init__(self, seed: int | None, device: torch.device) -> None:
        self.seed, self.device = seed, device
        self.fork = torch.random.fork_rng(devices=[self.device] if device.type == "cuda" else [])

    def __enter__(self) -> None:
        self.fork.__enter__()
        if self.seed is not None:
            torch.manual_seed(self.seed)

    def __exit__(self, *exc: Any) -> None:
        self.fork.__exit__(*exc)


def _slerp(a: torch.Tensor, b: torch.Tensor, weight: float) -> torch.Tensor:
    cosine = torch.dot(a, b) / (a.norm() * b.norm()).clamp(min=1e-12)
    omega = torch.arccos(cosine.clamp(-1.0, 1.0))
    if omega.abs() < 1e-6 or math.isclose(float(omega), math.pi, abs_tol=1e-6):
        return torch.lerp(a, b, weight)
    sin_omega = torch.sin(omega)
    return (torch.sin((1 - weight) * omega) * a + torch.sin(weight * omega) * b) / sin_omega


def _to_cpu(batch: Batch) -> Batch:
    """Generated tensors on the CPU, in float32 where autocast left them in bf16."""
    return {
        name: (tensor.float() if tensor.is_floating_point() else tensor).detach().cpu()
        for name, tensor in batch.items()
    }
