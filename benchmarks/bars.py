"""The issues' quality bars, checked the same way by every benchmark script."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# metric: (">=" or "<=", threshold), or ("between", (low, high)) for a closed range
Bars = Mapping[str, tuple[str, Any]]


def judge(results: Mapping[str, float], bars: Bars) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "value": results[name],
            "bar": f"{comparison} {threshold}",
            "met": _meets(results[name], comparison, threshold),
        }
        for name, (comparison, threshold) in bars.items()
    }


def _meets(value: float, comparison: str, threshold: Any) -> bool:
    if comparison == "between":
        low, high = threshold
        return low <= value <= high
    return value >= threshold if comparison == ">=" else value <= threshold


def print_report(report: Mapping[str, Any]) -> None:
    print(json.dumps(report, indent=2))
