"""Claims: a theory statement as a function returning (measured, predicted, verdict).

In the spirit of PEPit's (measured, theoretical) pairs, a claim runs an experiment on
problems with known constants and returns a :class:`ClaimResult`: what was measured, what
theory predicts, whether the prediction held, the statistics behind that verdict (test,
confidence interval, false-alarm probability) and the data for its plot. Claims register
themselves with :func:`claim`; the runner (``python -m validation``) executes a selection
and writes the report.

Expected verdicts: every claim records what we expect of it, ``expected="confirmed"`` (the
default: the statement holds for our code) or ``expected="refuted"`` with the reason (a paper's
statement that our experiments refute is a result, not a defect). The report shows each verdict as
measured; :func:`classify` compares it with the expectation, and the command fails only on an
unexpected outcome or a claim that raised.

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
Expectation = Literal["confirmed", "refuted"]
Outcome = Literal["confirmed", "refuted_as_expected", "unexpectedly_refuted", "unexpectedly_confirmed", "crashed"]

EXPECTATIONS: tuple[str, ...] = ("confirmed", "refuted")
#: Outcomes that leave the command's exit status at 0.
AS_EXPECTED: frozenset[str] = frozenset({"confirmed", "refuted_as_expected"})


def classify(passed: bool, expected: str, crashed: bool = False) -> Outcome:
    """The outcome of a claim: its verdict (``passed``) against its ``expected`` verdict.

    A claim that raised (or whose process died) is ``"crashed"`` whatever it expected: a crash
    is a defect of the code, never a result about the statement.
    """
    if expected not in EXPECTATIONS:
        raise ValueError(f"expected verdict must be one of {EXPECTATIONS}, got {expected!r}")
    if crashed:
        return "crashed"
    if expected == "confirmed":
        return "confirmed" if passed else "unexpectedly_refuted"
    return "unexpectedly_confirmed" if passed else "refuted_as_expected"


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
    xticklabels: list[str] = field(default_factory=list)  # labels for x = 0, 1, 2, ... (categorical axes)


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
    """A registered claim: its ``run(ctx) -> ClaimResult``, the ``source`` it tests, ``tags``, ``cost`` and the
    verdict we expect of it (``expected``, with ``expected_reason`` for an expected refutation)."""

    name: str
    source: str
    tags: tuple[str, ...]
    run: Callable[[Context], ClaimResult]
    description: str = ""
    cost: float = 1.0  # relative run time at the full size; the runner schedules costly claims first
    expected: Expectation = "confirmed"
    expected_reason: str = ""  # why a claim is expected to be refuted (required then)


REGISTRY: dict[str, Claim] = {}


def claim(
    name: str,
    *,
    source: str,
    tags: tuple[str, ...] | list[str],
    cost: float = 1.0,
    expected: Expectation = "confirmed",
    reason: str = "",
) -> Callable[[Callable[[Context], ClaimResult]], Callable[[Context], ClaimResult]]:
    """Register ``fn(ctx) -> ClaimResult`` under a unique ``name`` with its ``source`` and ``tags``.

    ``cost`` (optional) is a rough relative run time; the runner starts costly claims first so
    that the worker processes finish together. ``expected`` is the verdict we expect
    (``"confirmed"`` or ``"refuted"``); an expected refutation needs its ``reason``.
    """
    if expected not in EXPECTATIONS:
        raise ValueError(f"claim {name!r}: expected must be one of {EXPECTATIONS}, got {expected!r}")
    if expected == "refuted" and not reason.strip():
        raise ValueError(f"claim {name!r}: an expected refutation needs its reason (reason=...)")

    def register(fn: Callable[[Context], ClaimResult]) -> Callable[[Context], ClaimResult]:
        if name in REGISTRY:
            raise ValueError(f"claim {name!r} is registered twice")
        REGISTRY[name] = Claim(
            name=name,
            source=source,
            tags=tuple(tags),
            run=fn,
            description=(fn.__doc__ or "").strip(),
            cost=float(cost),
            expected=expected,
            expected_reason=reason.strip(),
        )
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


def bonferroni(false_alarm: float, tests: int) -> float:
    """Per-test false-alarm level so that ``tests`` tests together keep ``false_alarm`` (union bound)."""
    if tests < 1:
        raise ValueError(f"number of tests must be >= 1, got {tests!r}")
    return false_alarm / tests


def hotelling_mean_test(samples: np.ndarray, predicted: np.ndarray, false_alarm: float = 1e-3) -> dict[str, Any]:
    """Hotelling's T^2 test of ``E[samples] == predicted`` for ``(n, d)`` vector samples.

    ``F = (n - d) / (d (n - 1)) T^2`` follows ``F(d, n - d)`` under the null for Gaussian
    samples and approximately so (central limit theorem) for the sums of i.i.d. estimates
    used here; the test rejects when the p-value is below ``false_alarm``.
    """
    from scipy.stats import f as f_dist

    x = np.asarray(samples, dtype=np.float64)
    n, d = x.shape
    if n <= d + 1:
        raise ValueError(f"Hotelling test needs more samples than dimensions, got n={n}, d={d}")
    mean = x.mean(axis=0)
    diff = mean - np.asarray(predicted, dtype=np.float64)
    cov = np.cov(x, rowvar=False)
    t2 = float(n * diff @ np.linalg.lstsq(cov, diff, rcond=None)[0])
    fstat = (n - d) / (d * (n - 1)) * t2
    pvalue = float(f_dist.sf(fstat, d, n - d))
    rel = float(np.linalg.norm(diff)) / max(float(np.linalg.norm(predicted)), 1e-300)
    return {
        "test": "Hotelling T^2 (F approximation)",
        "n": n,
        "dim": d,
        "T2": t2,
        "F": float(fstat),
        "p_value": pvalue,
        "false_alarm": false_alarm,
        "relative_error_of_mean": rel,
        "passed": bool(pvalue >= false_alarm),
    }


def ks_matches(
    samples: np.ndarray, cdf: Callable[[np.ndarray], np.ndarray], false_alarm: float = 1e-3
) -> dict[str, Any]:
    """One-sample Kolmogorov–Smirnov test of ``samples`` against a continuous ``cdf``."""
    from scipy.stats import kstest

    res = kstest(np.asarray(samples, dtype=np.float64), cdf)
    return {
        "test": "one-sample Kolmogorov-Smirnov",
        "n": int(np.size(samples)),
        "D": float(res.statistic),
        "p_value": float(res.pvalue),
        "false_alarm": false_alarm,
        "passed": bool(res.pvalue >= false_alarm),
    }


def slope_contains(fit: dict[str, Any], value: float) -> bool:
    """Whether the confidence interval of a :func:`robust_slope` fit contains ``value``."""
    low, high = fit["interval"]
    return bool(low <= value <= high)


def fmt(value: float, digits: int = 4) -> str:
    """Short human-readable number (``4`` significant digits by default)."""
    if value is None or not math.isfinite(float(value)):
        return str(value)
    return f"{float(value):.{digits}g}"


def weighted_slope(x: np.ndarray, y: np.ndarray, y_se: np.ndarray, confidence: float = 0.99) -> dict[str, Any]:
    """Weighted least-squares slope of ``y`` on ``x`` when each ``y`` has a known standard error ``y_se``.

    For points that are means with their own standard errors (e.g. the log of a run average, with
    ``se(log m) = se(m)/m``); the interval is ``slope +- z * se(slope)`` with the normal quantile. The
    ``chi2_dof`` field (weighted residual sum of squares per degree of freedom) says whether a straight line
    describes the points within their errors (about 1 when it does).
    """
    from scipy.stats import norm

    x, y, se = (np.asarray(v, dtype=np.float64) for v in (x, y, y_se))
    w = 1.0 / se**2
    xm = float((w * x).sum() / w.sum())
    sxx = float((w * (x - xm) ** 2).sum())
    slope = float((w * (x - xm) * y).sum() / sxx)
    intercept = float((w * y).sum() / w.sum() - slope * xm)
    slope_se = math.sqrt(1.0 / sxx)
    crit = float(norm.isf((1 - confidence) / 2))
    resid = y - intercept - slope * x
    dof = max(x.size - 2, 1)
    return {
        "test": "weighted least-squares slope (known standard errors)",
        "slope": slope,
        "intercept": intercept,
        "slope_se": slope_se,
        "interval": [slope - crit * slope_se, slope + crit * slope_se],
        "confidence": confidence,
        "chi2_dof": float((w * resid**2).sum() / dof),
    }


def time_average(series: np.ndarray) -> dict[str, Any]:
    """Mean of a stationary, autocorrelated series with its standard error.

    The integrated autocorrelation time ``tau = 1 + 2 sum_t rho_t`` is estimated with Geyer's initial positive
    sequence (sums of adjacent autocorrelation pairs, stopped at the first non-positive pair), and
    ``se = sd * sqrt(tau / n)``: the standard error of a time average, without arbitrary batch lengths.
    """
    x = np.asarray(series, dtype=np.float64)
    n = x.size
    if n < 4:
        raise ValueError(f"time_average needs at least 4 values, got {n}")
    mean = float(x.mean())
    c = x - mean
    spec = np.fft.rfft(c, 2 * n)
    acov = np.fft.irfft(spec * np.conj(spec))[:n] / n
    if acov[0] <= 0:
        return {"mean": mean, "standard_error": 0.0, "tau": 1.0, "n": n}
    rho = acov / acov[0]
    tau = -1.0
    for k in range(n // 2):
        pair = rho[2 * k] + (rho[2 * k + 1] if 2 * k + 1 < n else 0.0)
        if pair <= 0:
            break
        tau += 2.0 * pair
    tau = max(tau, 1.0)
    return {"mean": mean, "standard_error": float(np.sqrt(acov[0] * tau / n)), "tau": float(tau), "n": n}
