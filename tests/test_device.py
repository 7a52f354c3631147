"""Precision: bf16 training steps and decoding on a CPU that computes bf16 natively, float32
where asked and for likelihoods."""

from __future__ import annotations

import torch

from polyvae import device as precision

CPU = torch.device("cpu")


def autocast_dtype(context) -> torch.dtype | None:
    with context:
        return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None


def test_bulk_arithmetic_uses_bf16_under_auto_only_where_the_cpu_computes_it(monkeypatch):
    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: True)
    assert autocast_dtype(precision.fast_autocast(CPU, "auto")) == torch.bfloat16
    assert autocast_dtype(precision.fast_autocast(CPU, "fp32")) is None
    # Likelihoods and validation keep float32 on the CPU under auto.
    assert autocast_dtype(precision.autocast(CPU, "auto")) is None
    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: False)
    assert autocast_dtype(precision.fast_autocast(CPU, "auto")) is None
    assert autocast_dtype(precision.fast_autocast(CPU, "bf16")) == torch.bfloat16
