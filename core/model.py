"""A trained model loaded from a run directory: sample, encode, decode, interpolate, score."""

from __future__ import annotations

import functools
import math
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from polyvae import evaluation
from polyvae.config import schema_for
from polyvae.dataset import encode_encodable, read_run_data
from polyvae.device import autocast, fast_decoding, resolve_device
from polyvae.distributed import SINGLE, Context, derived_seeds
from polyvae.domain import Batch, Domain
from polyvae.errors import UserError
from polyvae.priors import (
    PRIOR_CHOICES,
    FittedPrior,
    Prior,
    StandardNormal,
    load_prior,
    save_prior,
)
from polyvae.run import LoadedRun, build_vae, load_weights, open_run, resolve_run_path
from polyvae.vae import ACTIVE_UNIT_THRESHOLD, standard_normal_log_density

if TYPE_CHECKING:
    from polyvae.evaluation import Progress

# Rounds of extra draws ``sample(unique=True / valid_only=True)`` makes before giving up.
MAX_SAMPLING_ROUNDS = 10
# Items ``sample_chunks`` decodes per chunk: memory stays flat however many are asked for.
SAMPLE_CHUNK = 4096
# Adam's step size on a code being refined (``refine``): codes spread about 1 a dimension under
# N(0, I), and on the MOSES-only molecules model 5 steps at this size took exact reconstruction
# of MOSES test molecules from 0.68 to 0.89, 25 steps to 0.91 (benchmarks/latent_refinement.py).
REFINE_STEP_SIZE = 0.05


def load(
    run: str | Path,
    device: str = "auto",
    domain: Domain | None = None,
    precision: str | None = None,
) -> Model:
    """Load a run directory, or a domain name for that domain's bundled pretrained run.
    ``precision`` (auto, fp32 or bf16) replaces the run's own setting: ``fp32`` keeps float32
    throughout, where ``auto`` takes the fastest arithmetic the machine computes (bf16, int8
    products). Now and then a rounding difference tips a sampled token and the rest of that
    item goes another way, so the same seed gives partly other items (from the same
    distribution) in another arithmetic: 13 of 20 differed between fp32 and int8 for the
    bundled molecules model."""
    return Model(open_run(resolve_run_path(run), domain), device, precision)


class Model:
    def __init__(
        self, loaded: LoadedRun, device: str = "auto", precision: str | None = None
    ) -> None:
        if precision is not None:  # checked as the config key it replaces
            schema_for(())["precision"].coerce(precision)
        self.loaded = loaded
        self.domain = loaded.domain
        self.config = loaded.config
        self.engine = loaded.engine
        self.precision = precision or self.engine.precision
        self.codec = loaded.codec
        self.meta = loaded.meta
        self.run_dir = loaded.run.path
        self.device = resolve_device(device)
        self.vae = build_vae(self.domain, self.config, self.codec, loaded.condition, loaded.predict)
        load_weights(self.vae, loaded.run.weights_path)
        self.vae.to(self.device).eval()
        self.batch_size = max(1, self.engine.batch_size)
        fitted = load_prior(loaded.run.prior_dir, self.latent_dim)
        self.fitted_prior: FittedPrior | None = fitted[0] if fitted else None
        self.fitted_prior_record: dict[str, Any] | None = fitted[1] if fitted else None

    def prior(self, name: str | None = None) -> Prior:
        """The prior called ``name``: ``standard`` (N(0, I)) or ``fitted`` (the run's fitted
        prior, ``polyvae fit-prior``); None picks the fitted one when the run has one."""
        if name not in (None, *PRIOR_CHOICES):
            raise UserError(f"prior {name!r} is not one of: {', '.join(PRIOR_CHOICES)}")
        if name == "fitted" and self.fitted_prior is None:
            raise UserError(
                f"{self.run_dir} has no fitted prior; fit one with: "
                f"polyvae fit-prior {self.run_dir}"
            )
        if name == "standard" or self.fitted_prior is None:
            return StandardNormal(self.latent_dim)
        return self.fitted_prior

    def set_prior(self, prior: FittedPrior, record: Mapping[str, Any]) -> None:
        """Save ``prior`` in the run (replacing any earlier one) and sample from it by default."""
        save_prior(self.loaded.run.prior_dir, prior, record)
        self.fitted_prior, self.fitted_prior_record = prior, dict(record)

    @property
    def latent_dim(self) -> int:
        return self.vae.latent_dim

    @property
    def active_dimensions(self) -> torch.Tensor:
        """Latent dimensions that carry information (validation Var_x E_q[z_d] above
        ACTIVE_UNIT_THRESHOLD); the
        others are ignored by the decoder, so latent search leaves them at zero."""
        variance = self.meta.get("latent_variance")
        if not variance:
            return torch.ones(self.latent_dim, dtype=torch.bool)
        return torch.tensor(variance) > ACTIVE_UNIT_THRESHOLD

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
        prior: str | None = None,
        progress: Progress | None = None,
        **generate_options: Any,
    ) -> list[Any]:
        """``n`` new items from z drawn from the ``prior`` (:meth:`prior`). ``temperature`` is
        the decoder's (0: most likely output for each z). For a conditional model, ``condition``
        gives target property values; those left out are set to the training mean. ``unique``
        and ``valid_only`` draw more until ``n`` distinct (by formatted text) or valid items are
        found; after ``MAX_SAMPLING_ROUNDS`` rounds the list may come back shorter, never padded.
        ``progress`` (:class:`polyvae.evaluation.Progress`) is told of each decoded batch."""
        chunks = self.sample_chunks(
            n,
            temperature=temperature,
            seed=seed,
            condition=condition,
            unique=unique,
            valid_only=valid_only,
            prior=prior,
            progress=progress,
            **generate_options,
        )
        return [item for chunk in chunks for item in chunk]

    def sample_chunks(
        self,
        n: int,
        temperature: float = 1.0,
        seed: int | None = None,
        condition: Mapping[str, float] | None = None,
        unique: bool = False,
        valid_only: bool = False,
        chunk_size: int = SAMPLE_CHUNK,
        place: Context = SINGLE,
        prior: str | None = None,
        tally: SamplingTally | None = None,
        progress: Progress | None = None,
        **generate_options: Any,
    ) -> Iterator[list[Any]]:
        """:meth:`sample` as a stream of lists of at most ``chunk_size`` items, decoded one chunk
        at a time: a million samples can go to a file (``Domain.write_stream``) without ever
        being held in memory together. With the default ``chunk_size`` and the same seed they
        are the items :meth:`sample` returns. ``unique`` remembers a hash of each item's text.

        Chunk i's latent points and decoding noise are seeded from (``seed``, i) alone. With a
        distributed ``place`` (a torchrun worker's), the ranks decode the chunks in turn (chunk
        i on rank i % world_size) and send them to rank 0, which filters them in chunk order
        and yields exactly what one process would; the other ranks yield nothing, but must
        iterate to do their share. ``valid_only`` is checked on the rank that decoded the
        chunk, ``unique`` on rank 0. A ``tally`` counts on rank 0 how many items were decoded
        and, under ``valid_only``, how many of them were valid. ``progress``
        (:class:`polyvae.evaluation.Progress`) is told on rank 0 how many items were decoded (of
        those planned so far) and kept: after each batch in one process, after each chunk under
        torchrun."""
        if n < 0:
            raise UserError("the number of samples must be zero or more")
        if chunk_size < 1:
            raise UserError("chunk_size must be at least 1")
        # Checked now, not when the first chunk is asked for.
        row = self._condition_from_targets(condition, 1)
        draw = self.prior(prior)
        return self._sample_chunks(
            n,
            temperature,
            seed,
            row,
            unique,
            valid_only,
            chunk_size,
            place,
            draw,
            tally or SamplingTally(),
            progress,
            generate_options,
        )

    def _sample_chunks(
        self,
        n,
        temperature,
        seed,
        row,
        unique,
        valid_only,
        chunk_size,
        place,
        prior,
        tally,
        progress,
        generate_options,
    ) -> Iterator[list[Any]]:
        if seed is None:  # a fresh stream, the same on every rank
            seed = place.broadcast(secrets.randbits(62))
        kept = planned = 0
        seen: set[int] = set()
        first_chunk = 0

        def decoding(count: int) -> None:  # in one process, after each batch of a chunk
            progress("sampling", tally.drawn + count, planned, kept=kept)

        batches = decoding if progress is not None and not place.enabled else None
        for round_number in range(MAX_SAMPLING_ROUNDS if unique or valid_only else 1):
            missing = n - kept
            if missing <= 0:
                break
            # Ask for extra draws once we have seen how many get filtered out.
            draws = missing if round_number == 0 else min(10 * missing + 64, 20 * n)
            sizes = [min(chunk_size, draws - start) for start in range(0, draws, chunk_size)]
            planned += draws
            # One step decodes world_size chunks at once; a step never spans two rounds, as
            # the next round's size depends on what this one kept.
            for step in range(0, len(sizes), place.world_size):
                if kept >= n:
                    break
                mine = step + place.rank
                decoded: tuple[list[Any], int] = ([], 0)
                if mine < len(sizes):
                    decoded = self._decode_chunk(
                        derived_seeds(seed, first_chunk + mine),
                        sizes[mine],
                        row,
                        temperature,
                        valid_only,
                        prior,
                        batches,
                        generate_options,
                    )
                chunks = []
                for items, drawn in place.gather_to_main(decoded) or []:
                    tally.drawn += drawn
                    tally.valid += len(items) if valid_only else 0
                    chunk: list[Any] = []
                    for item in items:
                        if kept + len(chunk) >= n:
                            break
                        if unique:
                            key = hash(self.domain.format_item(item))
                            if key in seen:
                                continue
                            seen.add(key)
                        chunk.append(item)
                    kept += len(chunk)
                    if chunk:
                        chunks.append(chunk)
                # Before yielding, so that the other ranks decode on while rank 0 writes.
                kept = place.broadcast(kept)
                if progress is not None and place.is_main:
                    progress("sampling", tally.drawn, planned, kept=kept)
                yield from chunks
            first_chunk += len(sizes)

    def _decode_chunk(
        self, seeds, size, row, temperature, valid_only, prior, batches, generate_options
    ) -> tuple[list[Any], int]:
        """The chunk's items (its valid ones under ``valid_only``) and how many were decoded."""
        latent_seed, decoding_seed = seeds
        z = prior.sample(size, torch.Generator().manual_seed(latent_seed))
        items = self._generate(
            z, row.expand(size, -1), temperature, decoding_seed, batches=batches, **generate_options
        )
        if valid_only:
            items = [item for item in items if self.domain.is_valid(item)]
        return items, size

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

    def encodable(
        self, items: Sequence[Any], skipped: dict[int, str] | None = None
    ) -> tuple[list[int], Batch]:
        """The positions of the ``items`` the codec can encode, and their batch. Without
        ``skipped`` an item it cannot encode raises :class:`UnencodableItem`; with it, each such
        item's position in ``items`` and the reason go into it and the rest are encoded."""
        return encode_encodable(self.codec, items, skipped)

    def posterior(
        self, items: Sequence[Any], skipped: dict[int, str] | None = None, refine: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x) for each item, each ``(n, latent_dim)`` on the CPU.
        An item the codec cannot encode raises :class:`UnencodableItem`, unless ``skipped`` is
        given: then its rows are NaN and its position and reason go into ``skipped``.

        ``refine`` > 0 replaces each mean by the code found by that many gradient steps from it
        towards the most probable code of the item, the one that maximises
        log p(x | z) + log N(z; 0, I) (semi-amortised inference, Kim et al. 2018). The encoder
        guesses a code in one pass, and the guess leaves part of the item out (the amortisation
        gap, Cremer et al. 2018); the decoder itself says how to close it. The log-variances
        stay the encoder's."""
        if refine < 0:
            raise UserError(f"refining takes a number of steps >= 0, got {refine}")
        kept, batch = self.encodable(items, skipped)
        condition = self.item_conditions([items[position] for position in kept])
        mus = torch.full((len(items), self.latent_dim), math.nan)
        logvars = mus.clone()
        for index in torch.arange(len(kept)).split(self.batch_size):
            part = {name: tensor[index].to(self.device) for name, tensor in batch.items()}
            cond = condition[index].to(self.device) if self.condition_names else None
            with torch.no_grad(), autocast(self.device, self.precision):
                mu, logvar = self.vae.posterior_params(part, cond)
            mu = self._refined(part, cond, mu.float(), refine) if refine > 0 else mu
            rows = torch.tensor(kept)[index]
            mus[rows], logvars[rows] = mu.float().cpu(), logvar.float().cpu()
        return mus, logvars

    def _refined(
        self, batch: Batch, condition: torch.Tensor | None, start: torch.Tensor, steps: int
    ) -> torch.Tensor:
        """``steps`` Adam steps on the codes ``start`` of ``batch`` up log p(x | z) + log p(z).
        In float32: the steps are small and half-precision gradients of a long sequence would
        round them away. Adam scales each coordinate on its own, so each item's code moves as
        if it were refined alone."""
        z = start.detach().clone().requires_grad_(True)
        optimiser = torch.optim.Adam([z], lr=REFINE_STEP_SIZE)
        # cuDNN computes a recurrent network's gradients only in training mode; the model stays
        # in evaluation mode (no dropout), so those layers run without cuDNN here.
        with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
            for _ in range(steps):
                decoder_input = self.vae.decoder_input(z, condition)
                log_px = self.vae.decoder.log_prob(batch, decoder_input).float()
                loss = -(log_px + standard_normal_log_density(z)).sum()
                (z.grad,) = torch.autograd.grad(loss, [z])
                optimiser.step()
        return z.detach()

    @torch.no_grad()
    def encode(
        self,
        items: Sequence[Any],
        sample: bool = False,
        seed: int | None = None,
        skipped: dict[int, str] | None = None,
        refine: int = 0,
    ) -> np.ndarray:
        """Posterior means (or one posterior sample each) of ``items``: ``(n, latent_dim)``,
        the means refined by ``refine`` steps (:meth:`posterior`). The rows of items the codec
        cannot encode are NaN; pass a dict as ``skipped`` to learn why (position -> reason)."""
        if sample and refine:
            raise UserError("a refined code is the most probable one, not a posterior sample")
        mus, logvars = self.posterior(items, {} if skipped is None else skipped, refine)
        if not sample:
            return mus.numpy()
        noise = torch.randn(mus.shape, generator=self.generator(seed))
        return (mus + noise * (0.5 * logvars).exp()).numpy()

    def reconstruct(
        self,
        items: Sequence[Any],
        temperature: float = 0.0,
        seed: int | None = None,
        skipped: dict[int, str] | None = None,
        progress: Progress | None = None,
        refine: int = 0,
    ) -> list[Any]:
        """Decode each item's posterior mean, refined by ``refine`` steps (:meth:`posterior`),
        under the item's own condition if any. Items the codec cannot encode come back as None;
        pass a dict as ``skipped`` to learn why (position -> reason). ``progress``
        (:class:`polyvae.evaluation.Progress`) is told of each batch."""
        reasons: dict[int, str] = {} if skipped is None else skipped
        mus, _ = self.posterior(items, reasons, refine)
        kept = [position for position in range(len(items)) if position not in reasons]

        def batches(count: int) -> None:
            assert progress is not None  # passed only with a progress hook
            progress("reconstruction", count, len(kept))

        conditions = self.item_conditions([items[position] for position in kept])
        rebuilt = self._generate(
            mus[kept], conditions, temperature, seed, batches=batches if progress else None
        )
        items_out: list[Any] = [None] * len(items)
        for position, item in zip(kept, rebuilt, strict=True):
            items_out[position] = item
        return items_out

    def interpolate(
        self,
        a: Any,
        b: Any,
        steps: int = 8,
        method: str = "slerp",
        temperature: float = 0.0,
        refine: int = 0,
    ) -> list[Any]:
        """Items decoded along the path between the posterior means of ``a`` and ``b``, refined
        by ``refine`` steps (:meth:`posterior`), both ends included. ``slerp`` keeps the path at
        a typical norm under the prior."""
        if steps < 2:
            raise UserError("interpolation needs at least 2 steps")
        if method not in ("slerp", "linear"):
            raise UserError(f"interpolation method {method!r} is not one of: slerp, linear")
        start, end = self.posterior([a, b], refine=refine)[0]
        weights = torch.linspace(0, 1, steps)
        between = _slerp if method == "slerp" else torch.lerp
        path = torch.stack([between(start, end, weight) for weight in weights])
        ends = self.item_conditions([a, b])
        rows = torch.stack([torch.lerp(ends[0], ends[1], weight) for weight in weights])
        return self._generate(path, rows, temperature, None)

    def neighbours(
        self,
        item: Any,
        n: int = 100,
        radius: float = 0.5,
        seed: int | None = None,
        temperature: float = 0.0,
        prior: str | None = None,
    ) -> list[Any]:
        """``n`` items decoded from points around ``item``'s posterior mean: z + radius * s * e
        with e ~ N(0, I) and s each dimension's spread under the ``prior`` (1 for the standard
        normal), so the radius is in units of how far the codes themselves spread. Small radii
        give close analogues, larger ones more varied items. The mean is not refined: around a
        refined code the analogues of MOSES test molecules were less alike (median Tanimoto
        0.24 against 0.37, benchmarks/latent_refinement.py); the encoder's mean sits where the
        decoder was trained to decode noisy codes."""
        if n < 1 or radius < 0:
            raise UserError("neighbours needs n >= 1 and radius >= 0")
        centre = self.posterior([item])[0]
        spread = self.prior(prior).spread()
        noise = spread * torch.randn(n, self.latent_dim, generator=self.generator(seed))
        rows = self.item_conditions([item]).repeat(n, 1)
        return self._generate(centre + radius * noise, rows, temperature, seed)

    def optimize(
        self,
        objective: str | Callable[[list[Any]], np.ndarray],
        n: int = 100,
        steps: int = 100,
        start: Any | None = None,
        radius: float = 1.0,
        seed: int | None = None,
        prior: str | None = None,
    ) -> list[tuple[Any, float]]:
        """Search the latent space for items that score high; the best ``n`` distinct items and
        their scores, best first.

        ``objective`` is either the name of a property the run's property head predicts
        (``predict``), climbed by gradient ascent on the head from ``n`` starting points; or a
        function from items to scores (NaN for unusable items), searched without gradients by
        the cross-entropy method (``steps`` // 10 rounds of sampling, decoding and refitting a
        Gaussian to the best fifth). Either way the decoded items are scored for real: by the
        domain's ``properties`` for a named property, by the function otherwise. The search
        starts around ``start``'s latent point when given, else around the ``prior``'s centre;
        ``radius`` is in units of each dimension's spread under the ``prior``, whose log density
        also keeps gradient ascent where the decoder has seen data.
        """
        if n < 1 or steps < 1:
            raise UserError("optimize needs n >= 1 and steps >= 1")
        generator = self.generator(seed)
        density = self.prior(prior)
        centre = self.posterior([start])[0][0] if start is not None else density.centre()
        search = LatentSearch(centre, radius * density.spread(), density, generator)
        score: Callable[[list[Any]], np.ndarray]
        if isinstance(objective, str):
            score = functools.partial(self._property_scores, objective)
            candidates = self._ascend(objective, search, n, steps)
        else:
            score = objective
            candidates = self._cross_entropy(objective, search, n, steps)
        return self._best(candidates, score, n)

    def _property_scores(self, name: str, items: list[Any]) -> np.ndarray:
        return np.asarray(self.domain.properties(items, [name]), dtype=np.float64)[:, 0]

    def _ascend(self, name: str, search: LatentSearch, n: int, steps: int) -> list[Any]:
        """Gradient ascent on the property head, with a log-prior term that keeps z where the
        decoder has seen data; candidates are decoded five times along the way."""
        predict = self.loaded.predict
        if predict is None or name not in predict.names:
            trained = ", ".join(predict.names) if predict else "none"
            raise UserError(
                f"this run's property head does not predict '{name}' (it predicts: {trained}); "
                f"train with --set predict={name}, or optimise a scoring function instead"
            )
        column = predict.names.index(name)
        # Moving along dimensions the decoder ignores would only fool the head.
        active = self.active_dimensions.float()
        noise = torch.randn(n, self.latent_dim, generator=search.generator)
        z = ((search.centre + search.spread * noise) * active).to(self.device)
        z.requires_grad_(True)
        active = active.to(self.device)
        optimizer = torch.optim.Adam([z], lr=0.05)
        condition = self._condition_from_targets(None, n)
        candidates: list[Any] = []
        head = self.vae.property_head
        assert head is not None  # the objective names a predicted property
        for step in range(1, steps + 1):
            prediction = head(z)[:, column]
            log_prior = search.prior.log_prob(z)
            loss = -(prediction + 0.1 * log_prior).sum()
            optimizer.zero_grad()
            loss.backward()
            assert z.grad is not None
            z.grad *= active
            optimizer.step()
            if step % max(1, steps // 5) == 0 or step == steps:
                candidates += self._generate(z.detach().cpu(), condition, 0.0, None)
        return candidates

    def _cross_entropy(self, score, search: LatentSearch, n: int, steps: int) -> list[Any]:
        population = max(2 * n, 64)
        elite = max(2, population // 5)
        generator = search.generator
        mean = search.centre.clone()
        spread = search.spread * self.active_dimensions
        candidates: list[Any] = []
        for _ in range(max(1, steps // 10)):
            z = mean + spread * torch.randn(population, self.latent_dim, generator=generator)
            items = self._generate(z, self._condition_from_targets(None, population), 0.0, None)
            values = np.nan_to_num(np.asarray(score(items), dtype=np.float64), nan=-np.inf)
            best = torch.as_tensor(np.argsort(-values)[:elite].copy())
            mean = z[best].mean(0)
            spread = z[best].std(0).clamp(min=0.05) * self.active_dimensions
            candidates += items
        return candidates

    def _best(self, candidates, score, n) -> list[tuple[Any, float]]:
        unique = list({self.domain.format_item(item): item for item in candidates}.values())
        values = np.asarray(score(unique), dtype=np.float64) if unique else np.zeros(0)
        ranked = sorted(
            (
                (item, float(value))
                for item, value in zip(unique, values, strict=True)
                if np.isfinite(value)
            ),
            key=lambda pair: -pair[1],
        )
        return ranked[:n]

    # --- likelihoods (polyvae.evaluation) -----------------------------------------------------

    def score(
        self,
        items: Sequence[Any],
        k: int = 1,
        seed: int = 0,
        place: Context = SINGLE,
        skipped: dict[int, str] | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """Per-item anomaly scores in nats (:func:`polyvae.evaluation.score`)."""
        return evaluation.score(self, items, k, seed, place, skipped, progress)

    def likelihood(
        self,
        items: Sequence[Any],
        k: int = 50,
        seed: int = 0,
        skipped: dict[int, str] | None = None,
        progress: Progress | None = None,
    ) -> dict[str, float]:
        """ELBO, IWAE NLL, KL, active units and MI (:func:`polyvae.evaluation.likelihood`)."""
        return evaluation.likelihood(self, items, k, seed, skipped, progress)

    def evaluate(
        self,
        items: Sequence[Any],
        k: int = 50,
        samples: int = evaluation.DEFAULT_SAMPLES,
        temperature: float = 1.0,
        seed: int = 0,
        training: Sequence[Any] = (),
        likelihood_items: int = 1000,
        prior: str | None = None,
        skipped: dict[int, str] | None = None,
        progress: Progress | None = None,
    ) -> dict[str, float]:
        """Likelihood, reconstruction and sample metrics (:func:`polyvae.evaluation.evaluate`)."""
        return evaluation.evaluate(
            self,
            items,
            k,
            samples,
            temperature,
            seed,
            training,
            likelihood_items,
            prior,
            skipped,
            progress,
        )

    def data_splits(self) -> tuple[list[Any], list[Any]]:
        """The training and validation items of this run, read again from its data source."""
        return read_run_data(self.loaded)

    # --- internals -----------------------------------------------------------------------------

    def item_conditions(self, items: Sequence[Any]) -> torch.Tensor:
        scaler = self.loaded.condition
        if scaler is None:
            return torch.zeros(len(items), 0)
        if not items:  # a rank with no share of the batches: plugins need not handle an empty list
            return torch.zeros(0, len(scaler.names))
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
        batches: Callable[[int], None] | None = None,
        **generate_options: Any,
    ) -> list[Any]:
        """Decode latent rows in batches; ``condition`` holds one normalised row per z (or has
        width 0 for an unconditional model). ``batches``, if given, is told after each batch how
        many items are decoded so far."""
        items: list[Any] = []
        with self.seeded(seed):
            for index in torch.arange(len(z)).split(self.batch_size):
                cond = condition[index].to(self.device) if self.condition_names else None
                decoder_input = self.vae.decoder_input(z[index].to(self.device), cond)
                with fast_decoding(self.device, self.precision):
                    batch = self.vae.decoder.generate(
                        decoder_input, temperature=temperature, **generate_options
                    )
                items.extend(self.codec.decode(_to_cpu(batch)))
                if batches is not None:
                    batches(len(items))
        return items

    def generator(self, seed: int | None) -> torch.Generator:
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        return generator

    def seeded(self, seed: int | None):
        """Seed the decoder's and posterior's sampling for repeatable output, without disturbing
        the caller's global random state."""
        return _SeededScope(seed, self.device)


@dataclass
class SamplingTally:
    """Items decoded while sampling, and how many were valid when only valid ones were kept:
    the raw validity that filtering hides."""

    drawn: int = 0
    valid: int = 0


@dataclass
class LatentSearch:
    """Where a latent search starts (``centre``, ``spread`` per dimension), the prior whose
    density keeps it on the data, and its random stream."""

    centre: torch.Tensor
    spread: torch.Tensor
    prior: Prior
    generator: torch.Generator


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
