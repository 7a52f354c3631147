"""Precision: bf16 training steps and decoding, and int8 decoding products, on a CPU that computes
them natively; float32 where asked and for likelihoods."""

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


def test_decoding_uses_int8_products_under_auto_only_where_the_cpu_computes_them(monkeypatch):
    def int8_in(context) -> bool:
        with context:
            return precision.int8_products_enabled()

    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: True)
    monkeypatch.setattr(precision, "cpu_computes_int8", lambda: True)
    assert int8_in(precision.fast_decoding(CPU, "auto"))
    assert autocast_dtype(precision.fast_decoding(CPU, "auto")) == torch.bfloat16
    assert not int8_in(precision.fast_decoding(CPU, "bf16"))
    assert not int8_in(precision.fast_decoding(CPU, "fp32"))
    assert not int8_in(precision.fast_decoding(torch.device("meta"), "auto"))
    assert not precision.int8_products_enabled()  # and only within the block
    monkeypatch.setattr(precision, "cpu_computes_int8", lambda: False)
    assert not int8_in(precision.fast_decoding(CPU, "auto"))
