"""KL-weight (beta) and learning-rate schedules, as pure functions of the optimizer step."""

from __future__ import annotations

import math

from polyvae.config import EngineConfig


def beta_at(step: int, total_steps: int, config: EngineConfig) -> float:
    """The KL weight at ``step`` (0-based) of ``total_steps``.

    - constant: ``beta_max`` throughout.
    - linear: from ``beta_min`` to ``beta_max`` over ``beta_warmup_steps``, then flat.
    - logistic: a sigmoid centred at half the warm-up (Bowman et al. 2016), 0.7% to 99.3% of the
      way from ``beta_min`` to ``beta_max`` over ``beta_warmup_steps``.
    - cyclical (Fu et al. 2019): ``beta_cycles`` equal cycles over the run; in each, a linear rise
      for the first ``beta_ratio`` share of the cycle, then ``beta_max`` for the rest.
    """
    low, high = config.beta_min, config.beta_max
    schedule = config.beta_schedule
    warmup = config.beta_warmup_steps
    if schedule == "constant":
        return high
    if schedule == "linear":
        fraction = 1.0 if warmup == 0 else min(1.0, step / warmup)
    elif schedule == "logistic":
        fraction = 1.0 if warmup == 0 else 1.0 / (1.0 + math.exp(-10.0 * (step / warmup - 0.5)))
    elif schedule == "cyclical":
        period = max(1.0, total_steps / config.beta_cycles)
        position = (step % period) / period
        ratio = config.beta_ratio
        fraction = 1.0 if ratio == 0 else min(1.0, position / ratio)
    else:
        raise ValueError(f"unknown beta schedule {schedule!r}")
    return low + (high - low) * fraction


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate: linear warm-up, then cosine decay to ``min_ratio``."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


# The KL-target controller: a PI controller on log beta (in the spirit of ControlVAE, Shao et al.
# 2020), driven by the relative error of the step's KL. The proportional term answers a deviation
# at once, the integral term removes the lasting one; the error is clipped so that one wild step
# cannot swing beta by more than a factor e.
KL_GAIN_PROPORTIONAL = 1.0
KL_GAIN_INTEGRAL = 0.05
KL_BETA_RANGE = (1e-4, 100.0)
KL_BETA_START = 1e-3


def initial_kl_integral(config: EngineConfig) -> float:
    """The controller's integral term (log beta) before the first step: small, as a warm-up
    would start, so the latent comes into use before beta holds it at the target."""
    return math.log(max(config.beta_min, KL_BETA_START))


def controlled_beta(integral: float, kl: float, target: float) -> tuple[float, float]:
    """The next step's beta and the updated integral term, after a step whose KL (nats per
    item) was ``kl``, for a ``target`` in nats per item."""
    low, high = (math.log(bound) for bound in KL_BETA_RANGE)
    error = max(-1.0, min(1.0, (kl - target) / max(target, 1.0)))
    integral = max(low, min(high, integral + KL_GAIN_INTEGRAL * error))
    log_beta = max(low, min(high, integral + KL_GAIN_PROPORTIONAL * error))
    return math.exp(log_beta), integral
