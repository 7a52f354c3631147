"""The issues' quality bars, checked the same way by every benchmark script."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

Bars = Mapping[str, tuple[str, float]]  # metric: (">=" or "<=", threshold)


def judge(results: Mapping[str, float], bars: Bars) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "value": results[name],
            "bar": f"{comparison} {threshold}",
            "met": results[name] >= threshold if comparison == ">=" else results[name] <= threshold,
        }
        for name, (comparison, threshold) in bars.items()
    }


def print_report(report: Mapping[str, Any]) -> None:
    print(json.dumps(report, indent=2))
