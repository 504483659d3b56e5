"""Small statistics helpers: median with (min–max), formatting."""
from __future__ import annotations

import statistics
from typing import Iterable, Optional


def summarize(values: Iterable[Optional[float]]) -> Optional[dict]:
    """{'median','min','max','n'} over the non-None values, or None when there are none."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def fmt_num(v: Optional[float], digits: int = 0, thousands: bool = True) -> str:
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}" if thousands else f"{v:.0f}"
    return f"{v:,.{digits}f}" if thousands else f"{v:.{digits}f}"


def fmt_summary(s: Optional[dict], digits: int = 0, signed: bool = False) -> str:
    """'median (min–max)'; just the value when there is a single sample."""
    if s is None:
        return "–"

    def f(v):
        txt = fmt_num(v, digits)
        if signed and v is not None and v > 0:
            txt = "+" + txt
        return txt.replace("-", "−")

    if s["n"] == 1 or s["min"] == s["max"]:
        return f(s["median"])
    return f"{f(s['median'])} ({f(s['min'])}–{f(s['max'])})"


def paired_differences(a: list[Optional[float]], b: list[Optional[float]]) -> list[Optional[float]]:
    """a[i] - b[i] per round (None when either is missing)."""
    return [x - y if x is not None and y is not None else None for x, y in zip(a, b)]


def paired_relative(a: list[Optional[float]], b: list[Optional[float]]) -> list[Optional[float]]:
    """(a[i] - b[i]) / b[i] per round, in % (None when either is missing or b[i] is 0)."""
    return [(x - y) / y * 100 if x is not None and y else None for x, y in zip(a, b)]
