"""Small statistics helpers: median with (min–max), formatting, the spread between rounds."""
from __future__ import annotations

import statistics
from typing import Iterable, Optional


def summarize(values: Iterable[Optional[float]]) -> Optional[dict]:
    """{'median','min','max','n'} over the non-None values, or None when there are none."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


SPREAD_LIMIT = 1.2  # max/min over the rounds above this: a wide spread (⚠ in the report, a warning)
WIDE = "⚠"


def spread(s: Optional[dict]) -> Optional[float]:
    """max/min of a summary over the rounds; None with one sample or a figure that is not positive (a
    difference, a count of 0: no ratio)."""
    if not s or s["n"] < 2 or s["min"] is None or s["min"] <= 0:
        return None
    return s["max"] / s["min"]


def wide(s: Optional[dict], limit: float = SPREAD_LIMIT) -> bool:
    """The rounds disagree by more than `limit` (max/min)."""
    r = spread(s)
    return r is not None and r > limit


def is_summary(x) -> bool:
    return isinstance(x, dict) and {"median", "min", "max", "n"} <= set(x)


def wide_spreads(tree, path: tuple = (), limit: float = SPREAD_LIMIT) -> list[tuple[tuple, dict]]:
    """(path of keys, summary) of every summary in a nested dict whose rounds spread wide, in order."""
    if is_summary(tree):
        return [(path, tree)] if wide(tree, limit) else []
    out: list = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += wide_spreads(v, path + (str(k),), limit)
    return out


def fmt_num(v: Optional[float], digits: int = 0, thousands: bool = True) -> str:
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}" if thousands else f"{v:.0f}"
    return f"{v:,.{digits}f}" if thousands else f"{v:.{digits}f}"


def fmt_summary(s: Optional[dict], digits: int = 0, signed: bool = False, flag_wide: bool = False) -> str:
    """'median (min–max)'; just the value when there is a single sample. flag_wide: ' ⚠' after it when
    the rounds spread wide (wide())."""
    if s is None:
        return "–"

    def f(v):
        txt = fmt_num(v, digits)
        if signed and v is not None and v > 0:
            txt = "+" + txt
        return txt.replace("-", "−")

    mark = f" {WIDE}" if flag_wide and wide(s) else ""
    if s["n"] == 1 or s["min"] == s["max"]:
        return f(s["median"])
    return f"{f(s['median'])} ({f(s['min'])}–{f(s['max'])}){mark}"


def auto_digits(v: Optional[float]) -> int:
    """Digits that suit a figure's size: 0 from 100 on, 1 from 10, else 3 (ms of loopback latency)."""
    a = abs(v or 0)
    return 0 if a >= 100 else 1 if a >= 10 else 3


def paired_differences(a: list[Optional[float]], b: list[Optional[float]]) -> list[Optional[float]]:
    """a[i] - b[i] per round (None when either is missing)."""
    return [x - y if x is not None and y is not None else None for x, y in zip(a, b)]


def paired_relative(a: list[Optional[float]], b: list[Optional[float]]) -> list[Optional[float]]:
    """(a[i] - b[i]) / b[i] per round, in % (None when either is missing or b[i] is 0)."""
    return [(x - y) / y * 100 if x is not None and y else None for x, y in zip(a, b)]
