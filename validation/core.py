"""Claims: a theory statement as a function returning (measured, predicted, verdict).

In the spirit of PEPit's (measured, theoretical) pairs, a claim runs an experiment on
problems with known constants and returns a :class:`ClaimResult`: what was measured, what
theory predicts, whether the prediction held, the statistics behind that verdict (test,
confidence interval, false-alarm probability) and the data for its plot. Claims register
themselves with :func:`claim`; the runner (``python -m validation``) executes a selection
and writes the report.

Sizes: every claim receives a :class:`Context` with ``size`` ``"quick"`` (CI) or
``"full"`` and a master ``seed``; it must derive all randomness from ``ctx.seed`` (same
seed, same report).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

Size = Literal["quick", "full"]
Verdict = Literal["pass", "fail"]


@dataclass(frozen=True)
class Context:
    """What a claim may depend on: the size preset and the master seed."""

    size: Size = "quick"
    seed: int = 0

    def pick(self, quick: Any, full: Any) -> Any:
        """``quick`` at the CI size, ``full`` at the full size."""
        return quick if self.size == "quick" else full

    def rng(self, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, salt])


@dataclass
class Plot:
    """Data for one matplotlib figure (lines or points), rendered by the report.

    ``series``: list of dicts with keys ``x``, ``y``, ``label`` and optional ``yerr``,
    ``style`` (``"line"``, ``"points"``, ``"band"`` with ``ylow``/``yhigh``), ``color``.
    """

    title: str
    xlabel: str
    ylabel: str
    series: list[dict[str, Any]] = field(default_factory=list)
    xscale: str = "linear"
    yscale: str = "linear"
    hlines: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ClaimResult:
    """The outcome of one claim.

    Attributes:
        predicted: what theory says, human-readable (e.g. ``"slope -1"``).
        measured: what was observed, human-readable (e.g. ``"slope -0.98 [-1.03, -0.94]"``).
        passed: the verdict.
        statistics: the numbers behind the verdict: test name, estimate, interval,
            ``false_alarm`` probability, sample sizes, and every number the text quotes.
        verdict_rule: one sentence: which interval/statistic was compared with what.
        plots: figures to render.
        notes: free text (caveats, a refuted claim's explanation).
    """

    predicted: str
    measured: str
    passed: bool
    statistics: dict[str, Any]
    verdict_rule: str
    plots: list[Plot] = field(default_factory=list)
    notes: str = ""

    def to_json(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class Claim:
    name: str
    source: str
    tags: tuple[str, ...]
    run: Callable[[Context], ClaimResult]
    description: str = ""


REGISTRY: dict[str, Claim] = {}


def claim(name: str, *, source: str, tags: tuple[str, ...] | list[str]) -> Callable[[Callable[[Context], ClaimResult]], Callable[[Context], ClaimResult]]:
    """Register ``fn(ctx) -> ClaimResult`` under a unique ``name`` with its ``source`` and ``tags``."""

    def register(fn: Callable[[Context], ClaimResult]) -> Callable[[Context], ClaimResult]:
        if name in REGISTRY:
            raise ValueError(f"claim {name!r} is registered twice")
        REGISTRY[name] = Claim(name=name, source=source, tags=tuple(tags), run=fn, description=(fn.__doc__ or "").strip())
        return fn

    return register


# ---------------------------------------------------------------------- statistics helpers
def z_threshold(false_alarm: float) -> float:
    """Two-sided normal critical value for a false-alarm probability."""
    from scipy.stats import norm

    return float(norm.isf(false_alarm / 2.0))


def mean_matches(samples: np.ndarray, predicted: float, false_alarm: float = 1e-3) -> dict[str, Any]:
    """Two-sided z-test of ``E[samples] == predicted`` with the empirical standard error."""
    samples = np.asarray(samples, dtype=np.float64)
    n = samples.size
    mean = float(samples.mean())
    se = float(samples.std(ddof=1) / math.sqrt(n))
    z = (mean - predicted) / se if se > 0 else (0.0 if mean == predicted else math.inf)
    crit = z_threshold(false_alarm)
    return {
        "test": "two-sided z-test on the mean",
        "n": n,
        "mean": mean,
        "standard_error": se,
        "predicted": float(predicted),
        "z": float(z),
        "critical_z": crit,
        "false_alarm": false_alarm,
        "interval": [mean - crit * se, mean + crit * se],
        "passed": bool(abs(z) <= crit),
    }


def robust_slope(x: np.ndarray, y: np.ndarray, confidence: float = 0.99) -> dict[str, Any]:
    """Theil–Sen slope of ``y`` on ``x`` with its confidence interval (``scipy.stats.theilslopes``)."""
    from scipy.stats import theilslopes

    res = theilslopes(np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64), alpha=confidence)
    return {
        "test": "Theil-Sen slope",
        "slope": float(res.slope),
        "intercept": float(res.intercept),
        "interval": [float(res.low_slope), float(res.high_slope)],
        "confidence": confidence,
    }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return value if math.isfinite(value) else str(value)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj
