"""Claims about the zeroth-order gradient estimators (``docs/theory.md`` §5.1-5.15).

Every estimate below is produced by the library code path, :func:`zotheory.estimators.estimate_gradient`
with a :mod:`zotheory.directions` family, on a problem of :mod:`problems` whose constants are known
(float64, so that finite differences are exact to rounding where theory says they are exact). The
closed forms come from :mod:`zotheory.theory`; where a claim derives its own closed form, the
derivation is in its docstring.

Statistics: means are tested with z-tests (scalars) or Hotelling's T^2 (vectors) using the
empirical standard error; several tests inside one claim share the claim's false-alarm probability
through a Bonferroni correction; slopes are Theil–Sen fits with 99% intervals over independent
seed groups; distribution laws are tested with one-sample Kolmogorov–Smirnov tests.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import norm

from problems import MatrixQuadratic, NormProblem, Problem, Quadratic, SeparableLInf
from validation.core import (
    ClaimResult,
    Context,
    Plot,
    bonferroni,
    claim,
    fmt,
    hotelling_mean_test,
    ks_matches,
    mean_matches,
    robust_slope,
    slope_contains,
)
from zotheory import theory
from zotheory.directions import Coordinate, DirectionFamily, get_directions, mix_seed
from zotheory.estimators import Scheme, estimate_gradient

FALSE_ALARM = 1e-3  # per claim; split over the claim's tests by Bonferroni


# ---------------------------------------------------------------------- helpers shared by the claims
def salt(name: str) -> int:
    """A 32-bit seed salt from a claim-local ``name`` (CRC-32), so that each experiment has its own streams."""
    """A stable integer per claim (CRC32 of its name) to separate the random streams of claims."""
    return zlib.crc32(name.encode())


def flat(tensors: Sequence[torch.Tensor]) -> np.ndarray:
    """The tensors flattened and concatenated into one float64 numpy vector."""
    return torch.cat([t.detach().reshape(-1).double() for t in tensors]).numpy()


def draw_estimates(
    problem: torch.nn.Module,
    family: DirectionFamily,
    n: int,
    seed: int,
    *,
    q: int = 1,
    radius: float = 1e-3,
    scheme: Scheme = "central",
    closure: Callable[[], torch.Tensor] | None = None,
) -> np.ndarray:
    """``n`` independent estimates at the problem's current point, as an ``(n, d)`` float64 array.

    Estimate ``s`` uses the step seed ``mix_seed(seed, s)``; parameters are restored exactly
    after each estimate (``exact_restore``), so all estimates are taken at the same point.
    """
    params = list(problem.parameters())
    fn = closure if closure is not None else problem
    d = sum(p.numel() for p in params)
    out = np.empty((n, d))
    with torch.no_grad():
        for s in range(n):
            est = estimate_gradient(
                params, fn, family, step_seed=mix_seed(seed, s), q=q, radius=radius, scheme=scheme, exact_restore=True
            )
            out[s] = flat(est.materialize(params, dtype=torch.float64))
    return out


def quadratic(d: int, seed: int, *, rotated: bool = True) -> Quadratic:
    """The test quadratic: Haar eigenbasis, spectrum log-spaced in [0.05, 1], ||x0 - x*|| = 1, float64."""
    return Quadratic(d, L=1.0, mu=0.05, rotated=rotated, init_radius=1.0, seed=seed, dtype=torch.float64)


def ratio_plot(title: str, labels: list[str], ratios: list[float], half_widths: list[float], ylabel: str) -> Plot:
    """A categorical plot of measured/predicted ratios with their interval half-widths against the line y = 1."""
    return Plot(
        title=title,
        xlabel="",
        ylabel=ylabel,
        series=[
            {
                "x": list(range(len(labels))),
                "y": ratios,
                "yerr": half_widths,
                "style": "points",
                "label": "measured / predicted (Bonferroni interval)",
            }
        ],
        hlines=[{"y": 1.0, "label": "theory", "color": "k", "style": "--"}],
        xticklabels=labels,
    )


# ---------------------------------------------------------------------- §5.1, 5.3, 5.10, 5.12 (+ derived rows)
def _family_second_moment_ratio(name: str, d: int, q: int, shape: tuple[int, int] | None = None) -> tuple[float, str]:
    """``E||g_hat||^2 / ||g||^2`` for exact directional derivatives, with where the formula comes from."""
    if name in theory.FAMILIES:
        return theory.second_moment_ratio(name, d, q), f"zotheory.theory.second_moment_ratio({name!r}, d={d}, q={q})"
    if name == "block":
        # ||z||^2 = (number of block entries) / p = d exactly, so E||<g,z>z||^2 = d E<g,z>^2 = d ||g||^2.
        return (d + q - 1) / q, "[D] block: ||z||^2 = d exactly, so E||<g,z>z||^2 = d||g||^2; (d+q-1)/q for q averaged"
    if name == "lowrank":
        if shape is None:
            raise ValueError("the lowrank ratio needs the matrix shape (m, k), got shape=None")
        m, k = shape
        # rank 1: <G,Z> = u^T G v, ||Z||^2 = ||u||^2 ||v||^2; E_u (u^T w)^2 ||u||^2 = (m+2)||w||^2 (§5.3 in R^m),
        # then E_v ||Gv||^2 ||v||^2 = (k+2)||G||_F^2, so E||<G,Z>Z||^2 = (m+2)(k+2)||G||_F^2.
        r1 = (m + 2) * (k + 2)
        return (
            r1 + q - 1
        ) / q, f"[D] rank-1 Z = u v^T: E||<G,Z>Z||^2 = (m+2)(n+2)||G||_F^2 = {r1}||G||_F^2; averaged over q"
    raise ValueError(f"no closed form for family {name!r}")


def _lowrank_reference_sd(G: np.ndarray, q: int, n: int, rng: np.random.Generator) -> tuple[float, float]:
    """Standard deviations of ||g_hat||^2 and ||g_hat - G||^2 for the rank-1 estimator averaged over q directions,
    from an independent numpy Monte Carlo of n draws (chunked). Their distribution is heavy-tailed (products of
    Gaussian quadratic forms), so the standard deviation of a few thousand samples underestimates the true one and
    would make the z-test anti-conservative; this reference replaces it."""
    m, k = G.shape
    sq, ms = [], []
    gn2 = float((G**2).sum())
    chunk = 100_000
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        u, v = rng.standard_normal((size, q, m)), rng.standard_normal((size, q, k))
        s = np.einsum("njm,mk,njk->nj", u, G, v)
        norm2 = (
            np.einsum("nj,nl,njl,njl->n", s, s, np.einsum("njm,nlm->njl", u, u), np.einsum("njk,nlk->njl", v, v)) / q**2
        )
        sq.append(norm2)
        ms.append(norm2 - 2 * (s**2).sum(axis=1) / q + gn2)
    return float(np.concatenate(sq).std()), float(np.concatenate(ms).std())


def _z_with_sd(samples: np.ndarray, predicted: float, sd: float, alpha: float) -> dict[str, Any]:
    """z-test of the mean with a given population standard deviation (same keys as ``mean_matches``)."""
    out = mean_matches(samples, predicted, alpha)
    se = sd / math.sqrt(samples.size)
    z = (out["mean"] - predicted) / se
    out.update(
        test="two-sided z-test on the mean, reference standard deviation",
        sample_standard_error=out["standard_error"],
        standard_error=se,
        z=z,
        interval=[out["mean"] - out["critical_z"] * se, out["mean"] + out["critical_z"] * se],
        passed=bool(abs(z) <= out["critical_z"]),
    )
    return out


FAMILY_SETUPS: dict[str, dict[str, Any]] = {
    "gaussian": {"family": lambda q: get_directions("gaussian"), "oracles": "§5.1, 5.3, 5.12"},
    "rademacher": {"family": lambda q: get_directions("rademacher"), "oracles": "theory.py derivation, §3.7"},
    "sphere": {"family": lambda q: get_directions("sphere"), "oracles": "§5.10, 5.12"},
    "coordinate": {"family": lambda q: get_directions("coordinate"), "oracles": "§3.4, theory.py derivation"},
    "orthonormal": {"family": lambda q: get_directions("orthonormal", q=q), "oracles": "§5.12"},
    "block": {"family": lambda q: get_directions("block", fraction=0.25), "oracles": "derived here"},
    "lowrank": {"family": lambda q: get_directions("lowrank", rank=1), "oracles": "derived here"},
}


def family_moments(ctx: Context, name: str) -> ClaimResult:
    """The ``estimator_moments_<name>`` claims: Hotelling test of E g = grad f and z-tests of E||g||^2 and the
    MSE against the closed forms, for q = 1 and 4, on a float64 quadratic (a matrix quadratic for lowrank)."""
    setup = FAMILY_SETUPS[name]
    seed = mix_seed(ctx.seed, salt(f"moments_{name}"))
    problem: Problem
    if name == "lowrank":
        m, k = 5, 4
        problem = MatrixQuadratic(m, k, regime="flat", bias=False, seed=ctx.seed, dtype=torch.float64)
        d, shape = m * k, (m, k)
    else:
        d, shape = 20, None
        problem = quadratic(d, ctx.seed)
    g = flat(problem.exact_gradient())
    gn2 = float(g @ g)
    qs = (1, 4)
    n_of = {1: ctx.pick(1000, 4000), 4: ctx.pick(400, 1500)}
    tests = 4 * len(qs)
    alpha = bonferroni(FALSE_ALARM, tests)
    stats: dict[str, Any] = {
        "dimension": d,
        "grad_norm_sq": gn2,
        "false_alarm_total": FALSE_ALARM,
        "false_alarm_per_test": alpha,
        "problem": problem.constants(),
    }
    labels, ratios, widths, passed, measured_txt, predicted_txt = [], [], [], True, [], []
    for q in qs:
        fam = setup["family"](q)
        samples = draw_estimates(problem, fam, n_of[q], mix_seed(seed, q), q=q)
        mean_test = hotelling_mean_test(samples, g, alpha)
        along = mean_matches(samples @ g / gn2, 1.0, alpha)  # E<g_hat, grad>/||grad||^2 = 1: power against scale errors
        r_pred, r_src = _family_second_moment_ratio(name, d, q, shape)
        sq = (samples**2).sum(axis=1)
        err = ((samples - g) ** 2).sum(axis=1)
        if name == "lowrank":
            G = problem.exact_gradient()[0].double().numpy()
            sd_sq, sd_mse = _lowrank_reference_sd(G, q, ctx.pick(100_000, 400_000), ctx.rng(salt(f"lowrank_ref_{q}")))
            m2 = _z_with_sd(sq, r_pred * gn2, sd_sq, alpha)
            mse = _z_with_sd(err, (r_pred - 1.0) * gn2, sd_mse, alpha)
        else:
            m2 = mean_matches(sq, r_pred * gn2, alpha)
            mse = mean_matches(err, (r_pred - 1.0) * gn2, alpha)
        stats[f"q={q}"] = {
            "n": n_of[q],
            "unbiasedness": mean_test,
            "mean_along_gradient": along,
            "second_moment": m2,
            "mse": mse,
            "predicted_ratio_source": r_src,
            "predicted_second_moment_ratio": r_pred,
            "measured_second_moment_ratio": m2["mean"] / gn2,
            "predicted_mse_ratio": r_pred - 1.0,
            "measured_mse_ratio": mse["mean"] / gn2,
        }
        passed &= mean_test["passed"] and along["passed"] and m2["passed"] and mse["passed"]
        for label, t, pred in (
            ("E<g,grad>/||grad||^2", along, 1.0),
            ("E||g||^2", m2, r_pred * gn2),
            ("E||g-grad||^2", mse, (r_pred - 1) * gn2),
        ):
            labels.append(f"{label}, q={q}")
            ratios.append(t["mean"] / pred)
            widths.append(t["critical_z"] * t["standard_error"] / pred)
        measured_txt.append(
            f"q={q}: E||g||^2/||grad||^2 = {fmt(m2['mean'] / gn2)}, MSE ratio {fmt(mse['mean'] / gn2)}, "
            f"Hotelling p = {fmt(mean_test['p_value'], 2)}"
        )
        predicted_txt.append(f"q={q}: {fmt(r_pred)}, {fmt(r_pred - 1)}")
    return ClaimResult(
        predicted="E g = grad f; second-moment / MSE ratios " + "; ".join(predicted_txt),
        measured="; ".join(measured_txt),
        passed=bool(passed),
        statistics=stats,
        verdict_rule=(
            f"pass iff, for q in {list(qs)}, Hotelling's test of E g = grad f, the z-test of "
            f"E<g, grad f>/||grad f||^2 = 1 and the two z-tests of "
            f"E||g||^2 and E||g - grad f||^2 against the closed forms all keep p >= {alpha:.2g} "
            f"(Bonferroni over {tests} tests, total false alarm {FALSE_ALARM})"
        ),
        plots=[
            ratio_plot(f"{name} directions, d={d}: moments / theory", labels, ratios, widths, "measured / predicted")
        ],
        notes=f"Central differences on a {'matrix ' if name == 'lowrank' else ''}quadratic in float64 are exact "
        f"directional derivatives, so the closed forms of docs/theory.md §3.7 apply exactly ({setup['oracles']}).",
    )


def _register_family(name: str, source: str) -> None:
    def run(ctx: Context) -> ClaimResult:
        return family_moments(ctx, name)

    run.__doc__ = (
        f"Moments of the central two-point estimator with {name} directions on a float64 quadratic: "
        f"unbiasedness (E g = grad f) and the exact second moment and mean-squared error for q = 1 and 4."
    )
    claim(f"estimator_moments_{name}", source=source, tags=("estimators", "moments", name), cost=2.0)(run)


_register_family("gaussian", "docs/theory.md §5.1, 5.3, 5.12 [D]; Nesterov-Spokoiny 2017 Eq. (25)")
_register_family("rademacher", "docs/theory.md §3.7 / theory.second_moment_ratio [D]")
_register_family("sphere", "docs/theory.md §5.10, 5.12 [D]; Flaxman et al. 2005")
_register_family("coordinate", "docs/theory.md §3.4, §5.14 [D]")
_register_family("orthonormal", "docs/theory.md §5.12 [D] (Haar frame, d/q scaling)")
_register_family("block", "derived: ||z||^2 = d for block directions")
_register_family("lowrank", "derived: rank-1 U V^T directions, (m+2)(n+2)")


# ---------------------------------------------------------------------- §5.2
@claim(
    "gaussian_norm_moments",
    source="docs/theory.md §5.2 [D]; N1 (Nesterov-Spokoiny 2017, Lemma 1)",
    tags=("estimators", "moments", "gaussian"),
)
def gaussian_norm_moments(ctx: Context) -> ClaimResult:
    """Moments of the library's Gaussian directions: E||u||^p = d, d(d+2), d(d+2)(d+4) for p = 2, 4, 6,
    and the Nesterov–Spokoiny bound E||u||^p <= (p + d)^(p/2)."""
    d = 20
    n = ctx.pick(20000, 100000)
    fam = get_directions("gaussian")
    like = [torch.zeros(d, dtype=torch.float64)]
    seed = mix_seed(ctx.seed, salt("gaussian_norm_moments"))
    norms2 = np.array([float((fam.materialize(like, mix_seed(seed, s))[0] ** 2).sum()) for s in range(n)])
    alpha = bonferroni(FALSE_ALARM, 3)
    stats: dict[str, Any] = {"d": d, "n": n}
    passed = True
    labels, ratios, widths = [], [], []
    for p in (2, 4, 6):
        pred = theory.gaussian_moment(d, p)
        t = mean_matches(norms2 ** (p // 2), pred, alpha)
        bound = theory.gaussian_moment_bound(d, p)
        t["bound_(p+d)^(p/2)"] = bound
        t["bound_holds"] = bool(t["interval"][0] <= bound)
        stats[f"p={p}"] = t
        passed &= t["passed"] and t["bound_holds"]
        labels.append(f"E||u||^{p}")
        ratios.append(t["mean"] / pred)
        widths.append(t["critical_z"] * t["standard_error"] / pred)
    return ClaimResult(
        predicted=f"E||u||^2,4,6 = {theory.gaussian_moment(d, 2):g}, {theory.gaussian_moment(d, 4):g}, "
        f"{theory.gaussian_moment(d, 6):g} (d={d})",
        measured=", ".join(fmt(stats[f"p={p}"]["mean"]) for p in (2, 4, 6)),
        passed=bool(passed),
        statistics=stats,
        verdict_rule="pass iff each z-test keeps |z| below its Bonferroni critical value (total false alarm "
        f"{FALSE_ALARM}) and the lower end of each interval is below the (p+d)^(p/2) bound",
        plots=[ratio_plot(f"Gaussian direction moments, d={d}", labels, ratios, widths, "measured / predicted")],
    )


# ---------------------------------------------------------------------- §5.12 slopes
def _scaling_groups(
    ctx: Context,
    name: str,
    grid: list[int],
    vary: str,
    d_fixed: int,
    q_fixed: int,
    groups: int,
    per_group: int,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    xs, ys, preds = [], [], []
    seed = mix_seed(ctx.seed, salt(f"scaling_{vary}_{name}"))
    for v in grid:
        d, q = (d_fixed, v) if vary == "q" else (v, q_fixed)
        problem = quadratic(d, ctx.seed + v)
        g = flat(problem.exact_gradient())
        gn2 = float(g @ g)
        preds.append(theory.mse_ratio(name, d, q))
        for k in range(groups):
            samples = draw_estimates(problem, get_directions(name), per_group, mix_seed(seed, v, k), q=q)
            xs.append(math.log(v))
            ys.append(math.log(float(((samples - g) ** 2).sum(axis=1).mean()) / gn2))
    return np.array(xs), np.array(ys), preds


def _slope_claim(ctx: Context, vary: str) -> ClaimResult:
    if vary == "q":
        grid, families, d_fixed, q_fixed = [1, 2, 4, 8, 16], ["gaussian", "sphere"], 32, 1
    else:
        grid, families, d_fixed, q_fixed = [8, 16, 32, 64, 128], ["gaussian", "sphere"], 0, 2
    groups, per_group = ctx.pick(4, 5), ctx.pick(60, 120)
    stats: dict[str, Any] = {"grid": grid, "groups_per_point": groups, "samples_per_group": per_group}
    series, passed, measured, predicted = [], True, [], []
    for name in families:
        x, y, preds = _scaling_groups(ctx, name, grid, vary, d_fixed, q_fixed, groups, per_group)
        fit = robust_slope(x, y, confidence=0.99)
        pred_fit = robust_slope(np.log(grid), np.log(preds))
        ok = slope_contains(fit, pred_fit["slope"])
        passed &= ok
        stats[name] = {
            "fit": fit,
            "predicted_slope": pred_fit["slope"],
            "closed_form_mse_ratios": preds,
            "contains_prediction": ok,
        }
        measured.append(f"{name}: {fmt(fit['slope'], 3)} [{fmt(fit['interval'][0], 3)}, {fmt(fit['interval'][1], 3)}]")
        predicted.append(f"{name}: {fmt(pred_fit['slope'], 3)}")
        series.append(
            {
                "x": [float(math.exp(v)) for v in x],
                "y": [float(math.exp(v)) for v in y],
                "style": "points",
                "label": f"{name}: measured (seed groups)",
            }
        )
        series.append({"x": grid, "y": preds, "style": "dashed", "label": f"{name}: closed form"})
    what = "q" if vary == "q" else "d"
    fixed = f"d = {d_fixed}" if vary == "q" else f"q = {q_fixed}"
    return ClaimResult(
        predicted=f"log-log slope of E||g - grad f||^2 in {what} ({fixed}): "
        + "; ".join(predicted)
        + (" (exactly -1)" if vary == "q" else " (~+1: (d+1)/q and (d-1)/q over the grid)"),
        measured="Theil-Sen 99% CI: " + "; ".join(measured),
        passed=bool(passed),
        statistics=stats,
        verdict_rule=f"pass iff, for each family, the 99% Theil-Sen interval of the slope of log MSE on log {what} "
        "(one point per seed group) contains the slope of the closed form over the same grid",
        plots=[
            Plot(
                title=f"MSE scaling in {what} ({fixed})",
                xlabel=what,
                ylabel="E||g - grad f||^2 / ||grad f||^2",
                series=series,
                xscale="log",
                yscale="log",
            )
        ],
    )


@claim("mse_scaling_in_q", source="docs/theory.md §5.12 [D] (§3.7)", tags=("estimators", "scaling"), cost=4.0)
def mse_scaling_in_q(ctx: Context) -> ClaimResult:
    """Averaging q directions divides the mean-squared error by q: log-log slope -1 in q (Gaussian and sphere)."""
    return _slope_claim(ctx, "q")


@claim("mse_scaling_in_d", source="docs/theory.md §5.12 [D] (§3.7)", tags=("estimators", "scaling"), cost=2.0)
def mse_scaling_in_d(ctx: Context) -> ClaimResult:
    """The mean-squared error of a random-direction estimator grows linearly with the dimension: slope ~ +1 in d."""
    return _slope_claim(ctx, "d")


# ---------------------------------------------------------------------- §5.13
@claim("alignment_laws", source="docs/theory.md §5.13 [D] (§3.6)", tags=("estimators", "alignment"), cost=2.0)
def alignment_laws(ctx: Context) -> ClaimResult:
    """cos^2 between the estimate and the gradient follows Beta(1/2,(d-1)/2) for one Gaussian or spherical
    direction, Beta(q/2,(d-1)/2) for q averaged Gaussian directions and Beta(q/2,(d-q)/2) for a Haar orthonormal
    frame; E|cos| = Gamma(d/2)/(sqrt(pi) Gamma((d+1)/2)) for one direction."""
    d, q = 20, 4
    n = ctx.pick(1000, 3000)
    problem = quadratic(d, ctx.seed)
    g = flat(problem.exact_gradient())
    seed = mix_seed(ctx.seed, salt("alignment_laws"))
    cases = [
        ("gaussian q=1", get_directions("gaussian"), 1, theory.alignment_cos2_distribution("single", d)),
        ("sphere q=1", get_directions("sphere"), 1, theory.alignment_cos2_distribution("single", d)),
        (f"gaussian q={q}", get_directions("gaussian"), q, theory.alignment_cos2_distribution("gaussian", d, q)),
        (
            f"orthonormal q={q}",
            get_directions("orthonormal", q=q),
            q,
            theory.alignment_cos2_distribution("orthonormal", d, q),
        ),
    ]
    alpha = bonferroni(FALSE_ALARM, len(cases) + 1)
    stats: dict[str, Any] = {"d": d, "n": n, "false_alarm_per_test": alpha}
    series, passed, measured = [], True, []
    cos_by_case: list[np.ndarray] = []
    for k, (label, fam, qq, law) in enumerate(cases):
        est = draw_estimates(problem, fam, n, mix_seed(seed, k), q=qq)
        cos = est @ g / (np.linalg.norm(est, axis=1) * np.linalg.norm(g))
        cos2 = cos**2
        t = ks_matches(cos2, law.cdf, alpha)
        t["mean_cos2"] = float(cos2.mean())
        t["predicted_mean_cos2"] = float(law.mean())
        stats[label] = t
        passed &= t["passed"]
        measured.append(f"{label}: KS D={fmt(t['D'], 3)} (p={fmt(t['p_value'], 2)})")
        cos_by_case.append(cos)
        xs = np.sort(cos2)
        grid = np.quantile(xs, np.linspace(0, 1, 60))
        series.append(
            {
                "x": grid.tolist(),
                "y": (np.searchsorted(xs, grid, side="right") / n).tolist(),
                "style": "step",
                "label": f"{label} empirical",
            }
        )
        series.append(
            {"x": grid.tolist(), "y": law.cdf(grid).tolist(), "style": "dashed", "label": f"{label} Beta law"}
        )
    single_cos = np.abs(cos_by_case[0])  # the first case: one Gaussian direction
    tc = mean_matches(single_cos, theory.expected_cos_single(d), alpha)
    stats["E|cos| single gaussian"] = tc
    passed &= tc["passed"]
    return ClaimResult(
        predicted=f"cos^2 ~ Beta laws of docs/theory.md §3.6 (d={d}, q={q}); E|cos| = "
        f"{fmt(theory.expected_cos_single(d))} for one direction",
        measured="; ".join(measured) + f"; E|cos| = {fmt(tc['mean'])}",
        passed=bool(passed),
        statistics=stats,
        verdict_rule=f"pass iff every KS test and the z-test of E|cos| keep p >= {alpha:.2g} "
        f"(Bonferroni over {len(cases) + 1} tests, total false alarm {FALSE_ALARM})",
        plots=[
            Plot(
                title=f"alignment cos^2(g_hat, grad f), d={d}: empirical vs Beta CDFs",
                xlabel="cos^2",
                ylabel="CDF",
                series=series,
                xscale="log",
            )
        ],
    )


# ---------------------------------------------------------------------- §5.7, 5.11 (smoothing bias, quadratic)
def _smoothed_values(
    problem: Quadratic, family: DirectionFamily, radius: float, n: int, seed: int, ball: bool
) -> np.ndarray:
    """Samples of f(x + radius z) - f(x) with z from ``family`` (times U^(1/d) for the uniform ball)."""
    x = problem.blocks[0].detach()
    f0 = problem.value()
    d = x.numel()
    rng = np.random.default_rng(seed)
    out = np.empty(n)
    for s in range(n):
        z = family.materialize([x], mix_seed(seed, s))[0]
        if ball:
            z = z * float(rng.random() ** (1.0 / d))
        out[s] = float(problem.objective([x + radius * z])) - f0
    return out


@claim(
    "smoothing_bias_quadratic",
    source="docs/theory.md §5.7, 5.11 [D]; N4 (Nesterov-Spokoiny 2017, Eq. 19)",
    tags=("estimators", "smoothing"),
)
def smoothing_bias_quadratic(ctx: Context) -> ClaimResult:
    """On a quadratic, Gaussian smoothing adds exactly mu^2 tr(A)/2 (below the N4 bound mu^2 L d/2) and
    uniform-ball smoothing adds delta^2 tr(A)/(2(d+2))."""
    d = 20
    problem = quadratic(d, ctx.seed)
    tr = problem.trace_A
    radii = [0.1, 0.3, 1.0]
    n = ctx.pick(2000, 12000)
    alpha = bonferroni(FALSE_ALARM, 2 * len(radii))
    seed = mix_seed(ctx.seed, salt("smoothing_bias_quadratic"))
    stats: dict[str, Any] = {"d": d, "trace_A": tr, "L": problem.L, "n": n}
    passed, gauss_pts, ball_pts = True, [], []
    for k, r in enumerate(radii):
        tg = mean_matches(
            _smoothed_values(problem, get_directions("gaussian"), r, n, mix_seed(seed, 0, k), False),
            theory.gaussian_smoothing_bias_quadratic(r, tr),
            alpha,
        )
        tg["N4_bound"] = r**2 * problem.L * d / 2
        tg["below_N4"] = bool(tg["interval"][0] <= tg["N4_bound"])
        tb = mean_matches(
            _smoothed_values(problem, get_directions("sphere"), r, n, mix_seed(seed, 1, k), True),
            theory.ball_smoothing_bias_quadratic(r, tr, d),
            alpha,
        )
        stats[f"radius={r}"] = {"gaussian": tg, "ball": tb}
        passed &= tg["passed"] and tb["passed"] and tg["below_N4"]
        gauss_pts.append(tg["mean"])
        ball_pts.append(tb["mean"])
    rr = np.geomspace(radii[0], radii[-1], 20)
    return ClaimResult(
        predicted=f"f_mu - f = mu^2 trA/2 (Gaussian), delta^2 trA/(2(d+2)) (ball); trA = {fmt(tr)}",
        measured="Gaussian: "
        + ", ".join(fmt(v) for v in gauss_pts)
        + "; ball: "
        + ", ".join(fmt(v) for v in ball_pts)
        + f" at radii {radii}",
        passed=bool(passed),
        statistics=stats,
        verdict_rule=f"pass iff all {2 * len(radii)} z-tests pass (Bonferroni, total false alarm {FALSE_ALARM}) and "
        "the Gaussian bias interval does not lie above the N4 bound",
        plots=[
            Plot(
                title=f"smoothing bias on a quadratic, d={d}",
                xlabel="radius",
                ylabel="f_r(x) - f(x)",
                series=[
                    {"x": radii, "y": gauss_pts, "style": "points", "label": "Gaussian, measured"},
                    {"x": rr.tolist(), "y": (rr**2 * tr / 2).tolist(), "style": "dashed", "label": "mu^2 trA / 2"},
                    {"x": radii, "y": ball_pts, "style": "points", "label": "ball, measured"},
                    {
                        "x": rr.tolist(),
                        "y": (rr**2 * tr / (2 * (d + 2))).tolist(),
                        "style": "dashed",
                        "label": "delta^2 trA / (2(d+2))",
                    },
                    {
                        "x": rr.tolist(),
                        "y": (rr**2 * problem.L * d / 2).tolist(),
                        "style": "line",
                        "label": "N4 bound mu^2 L d / 2",
                    },
                ],
                xscale="log",
                yscale="log",
            )
        ],
    )


# ---------------------------------------------------------------------- §5.8 (Lipschitz, nonsmooth)
@claim(
    "smoothing_bias_lipschitz",
    source="docs/theory.md §5.8; N2, N3 (Nesterov-Spokoiny 2017, Eqs. 11, 18)",
    tags=("estimators", "smoothing"),
)
def smoothing_bias_lipschitz(ctx: Context) -> ClaimResult:
    """For f = L0 ||x - x*|| (convex, L0-Lipschitz, nonsmooth): 0 <= f_mu - f <= mu L0 sqrt(d), with
    f_mu(x*) - f(x*) = mu L0 E||u|| exactly (which approaches the bound)."""
    d, L0, mu = 20, 2.0, 0.5
    problem = NormProblem(d, L0=L0, seed=ctx.seed, dtype=torch.float64)
    n = ctx.pick(3000, 12000)
    seed = mix_seed(ctx.seed, salt("smoothing_bias_lipschitz"))
    fam = get_directions("gaussian")
    x_star = problem.xstar_x.clone()
    x0 = problem.blocks[0].detach().clone()
    alpha = bonferroni(FALSE_ALARM, 2)
    bound = mu * L0 * math.sqrt(d)

    def gaps(x: torch.Tensor, s0: int) -> np.ndarray:
        f = float(problem.objective([x]))
        return np.array(
            [float(problem.objective([x + mu * fam.materialize([x], mix_seed(s0, s))[0]])) - f for s in range(n)]
        )

    at_opt = mean_matches(gaps(x_star, mix_seed(seed, 0)), mu * L0 * theory.gaussian_expected_norm(d), alpha)
    away = gaps(x0, mix_seed(seed, 1))
    t_away = mean_matches(away, 0.0, alpha)  # for the interval only
    ok_away = bool(t_away["interval"][1] >= 0 and t_away["interval"][0] <= bound)
    passed = at_opt["passed"] and at_opt["interval"][0] <= bound and ok_away
    return ClaimResult(
        predicted=f"f_mu(x*) - f* = mu L0 E||u|| = {fmt(mu * L0 * theory.gaussian_expected_norm(d))} <= mu L0 sqrt(d) "
        f"= {fmt(bound)}; 0 <= f_mu(x0) - f(x0) <= {fmt(bound)}",
        measured=f"at x*: {fmt(at_opt['mean'])} +- {fmt(at_opt['critical_z'] * at_opt['standard_error'], 2)}; at x0: "
        f"{fmt(t_away['mean'])} +- {fmt(t_away['critical_z'] * t_away['standard_error'], 2)}",
        passed=bool(passed),
        statistics={"d": d, "L0": L0, "mu": mu, "n": n, "at_x_star": at_opt, "at_x0": t_away, "N3_bound": bound},
        verdict_rule=f"pass iff the z-test at x* passes (false alarm {alpha:.2g}) and its interval reaches below the "
        "bound, and the interval at x0 intersects [0, mu L0 sqrt(d)]",
        plots=[
            Plot(
                title="Lipschitz smoothing bias (f = L0||x - x*||)",
                xlabel="",
                ylabel="f_mu - f",
                series=[
                    {
                        "x": [0, 1],
                        "y": [at_opt["mean"], t_away["mean"]],
                        "style": "points",
                        "yerr": [
                            at_opt["critical_z"] * at_opt["standard_error"],
                            t_away["critical_z"] * t_away["standard_error"],
                        ],
                        "label": "measured",
                    }
                ],
                hlines=[
                    {"y": bound, "label": "N3 bound mu L0 sqrt(d)", "color": "r"},
                    {
                        "y": mu * L0 * theory.gaussian_expected_norm(d),
                        "label": "exact at x*",
                        "color": "k",
                        "style": "--",
                    },
                ],
                xticklabels=["at x*", "at x0"],
            )
        ],
    )


# ---------------------------------------------------------------------- §5.9 (gradient of the smoothed function)
@claim(
    "smoothed_gradient_bias",
    source="docs/theory.md §5.9 [D]; N10 (Ghadimi-Lan 2013, Eq. 3.6)",
    tags=("estimators", "smoothing"),
)
def smoothed_gradient_bias(ctx: Context) -> ClaimResult:
    """For an L-smooth non-quadratic f (separable log-cosh), ||grad f_mu - grad f|| <= L mu sqrt(d) <= mu L (d+3)^(3/2)
    / 2, and the central Gaussian estimator is unbiased for grad f_mu (not for grad f)."""
    d = 20
    problem = SeparableLInf(d, regime="gd", phi="logcosh", init_radius=2.0, seed=ctx.seed, dtype=torch.float64)
    L = problem.L_l2
    x = problem.blocks[0].detach().clone()
    grad = flat(problem.exact_gradient())
    radii = [0.3, 1.0]
    n = ctx.pick(1000, 6000)
    seed = mix_seed(ctx.seed, salt("smoothed_gradient_bias"))
    fam = get_directions("gaussian")
    alpha = bonferroni(FALSE_ALARM, 2 * len(radii))
    stats: dict[str, Any] = {"d": d, "L_l2": L, "n": n}
    passed, meas, bounds = True, [], []
    for k, mu in enumerate(radii):
        # grad f_mu(x) = E grad f(x + mu u) (exact identity for L-smooth f): Monte Carlo over the same Gaussian
        # directions
        grads = np.stack(
            [flat(problem.exact_gradient([x + mu * fam.materialize([x], mix_seed(seed, k, s))[0]])) for s in range(n)]
        )
        gmu = grads.mean(axis=0)
        se = grads.std(axis=0, ddof=1) / math.sqrt(n)
        bias = float(np.linalg.norm(gmu - grad))
        # an upper confidence bound on ||E grad f(x+mu u) - grad f(x)||: add the norm of the CI half-widths
        crit = float(norm.isf(alpha / (2 * d)))
        upper = bias + crit * float(np.linalg.norm(se))
        bound = L * mu * math.sqrt(d)
        n10 = mu / 2 * L * (d + 3) ** 1.5
        # the estimator at this radius is unbiased for grad f_mu: Hotelling against the Monte-Carlo grad f_mu
        est = draw_estimates(problem, fam, n, mix_seed(seed, 100 + k), radius=mu)
        diff = est - grads  # paired on nothing: independent draws; test E[est] - E[grad f(x+mu u)] = 0
        ht = hotelling_mean_test(diff, np.zeros(d), alpha)
        ht_naive = hotelling_mean_test(est, grad, alpha)
        stats[f"mu={mu}"] = {
            "bias_norm": bias,
            "upper_confidence_bound": upper,
            "bound_L_mu_sqrt_d": bound,
            "N10_bound": n10,
            "estimator_unbiased_for_grad_f_mu": ht,
            "estimator_vs_grad_f_(expected_to_differ)": ht_naive,
        }
        passed &= upper <= bound and bound <= n10 and ht["passed"]
        meas.append(bias)
        bounds.append(bound)
    return ClaimResult(
        predicted="||grad f_mu - grad f|| <= L mu sqrt(d) at mu = "
        + ", ".join(f"{r}: {fmt(b)}" for r, b in zip(radii, bounds, strict=False))
        + "; central estimator unbiased for grad f_mu",
        measured="||grad f_mu - grad f|| = " + ", ".join(fmt(m) for m in meas),
        passed=bool(passed),
        statistics=stats,
        verdict_rule="pass iff the upper confidence bound of the bias norm (Bonferroni over coordinates) is below "
        "L mu sqrt(d) (itself below the N10 bound) and Hotelling's test of E g_hat = E grad f(x + mu u) passes",
        plots=[
            Plot(
                title=f"gradient smoothing bias, log-cosh, d={d}",
                xlabel="mu",
                ylabel="||grad f_mu - grad f||",
                series=[
                    {"x": radii, "y": meas, "style": "points", "label": "measured"},
                    {"x": radii, "y": bounds, "style": "dashed", "label": "L mu sqrt(d)"},
                ],
                xscale="log",
                yscale="log",
            )
        ],
        notes="The Hotelling test compares independent estimator draws with independent draws of grad f(x + mu u), "
        "so it tests E g_hat = grad f_mu without needing grad f_mu in closed form.",
    )


# ---------------------------------------------------------------------- §5.4, 5.5, 5.6 (forward / central Gaussian)
@claim(
    "forward_gaussian_oracle",
    source="docs/theory.md §5.4, 5.5, 5.6 [D]; N9 (Nesterov-Spokoiny 2017, Thm 4)",
    tags=("estimators", "moments", "gaussian"),
)
def forward_gaussian_oracle(ctx: Context) -> ClaimResult:
    """On a quadratic: the forward Gaussian oracle is unbiased for every mu with E||g_mu||^2 =
    (d+2)||grad||^2 + mu^2 (d+4)[(trA)^2 + 2 tr A^2]/4 (below the N9 bound); the central oracle equals
    <grad f, u> u exactly, whatever mu."""
    d = 20
    problem = quadratic(d, ctx.seed)
    g = flat(problem.exact_gradient())
    gn2 = float(g @ g)
    tr, tr2, L = problem.trace_A, problem.trace_A2, problem.L
    n = ctx.pick(1500, 8000)
    seed = mix_seed(ctx.seed, salt("forward_gaussian_oracle"))
    fam = get_directions("gaussian")
    radii = [0.1, 0.5]
    alpha = bonferroni(FALSE_ALARM, 2 * len(radii))
    stats: dict[str, Any] = {"d": d, "trace_A": tr, "trace_A2": tr2, "grad_norm_sq": gn2, "n": n}
    passed, labels, ratios, widths = True, [], [], []
    for k, mu in enumerate(radii):
        est = draw_estimates(problem, fam, n, mix_seed(seed, k), radius=mu, scheme="forward")
        ht = hotelling_mean_test(est, g, alpha)
        pred = theory.forward_gaussian_second_moment(gn2, d, mu, tr, tr2)
        m2 = mean_matches((est**2).sum(axis=1), pred, alpha)
        n9 = mu**2 / 2 * L**2 * (d + 6) ** 3 + 2 * (d + 4) * gn2
        stats[f"mu={mu}"] = {"unbiasedness": ht, "second_moment": m2, "N9_bound": n9}
        passed &= ht["passed"] and m2["passed"] and pred <= n9
        labels.append(f"forward mu={mu}")
        ratios.append(m2["mean"] / pred)
        widths.append(m2["critical_z"] * m2["standard_error"] / pred)
    # central oracle: identical estimates at two radii (same seeds), equal to <grad, u> u
    small = draw_estimates(problem, fam, 200, mix_seed(seed, 9), radius=1e-3)
    large = draw_estimates(problem, fam, 200, mix_seed(seed, 9), radius=1.0)
    x = problem.blocks[0]
    dirs = np.stack([flat(fam.materialize([x], mix_seed(mix_seed(seed, 9), s))) for s in range(200)])
    exact = (dirs @ g)[:, None] * dirs
    rel_radius = float(np.abs(small - large).max() / np.abs(exact).max())
    rel_exact = float(np.abs(large - exact).max() / np.abs(exact).max())
    stats["central"] = {
        "max_rel_diff_between_radii_1e-3_and_1": rel_radius,
        "max_rel_diff_to_<g,u>u": rel_exact,
        "tolerance": 1e-8,
    }
    passed &= rel_radius <= 1e-8 and rel_exact <= 1e-8
    return ClaimResult(
        predicted="forward: unbiased; E||g_mu||^2 = "
        + ", ".join(f"{fmt(theory.forward_gaussian_second_moment(gn2, d, r, tr, tr2))} (mu={r})" for r in radii)
        + "; central: <grad, u> u exactly",
        measured="forward: "
        + ", ".join(
            f"{fmt(stats[f'mu={r}']['second_moment']['mean'])} (Hotelling p="
            f"{fmt(stats[f'mu={r}']['unbiasedness']['p_value'], 2)})"
            for r in radii
        )
        + f"; central max rel. deviation {rel_exact:.1e}",
        passed=bool(passed),
        statistics=stats,
        verdict_rule=f"pass iff the Hotelling and z-tests pass (Bonferroni, total false alarm {FALSE_ALARM}), the "
        "closed form is below the N9 bound, and central estimates at radii 1e-3 and 1 agree with <grad,u>u to 1e-8",
        plots=[ratio_plot(f"forward Gaussian second moment, d={d}", labels, ratios, widths, "measured / predicted")],
    )


# ---------------------------------------------------------------------- §5.14
@claim(
    "coordinate_finite_differences",
    source="docs/theory.md §5.14 [D] (§3.4)",
    tags=("estimators", "smoothing", "coordinate"),
)
def coordinate_finite_differences(ctx: Context) -> ClaimResult:
    """Coordinate finite differences: exact (central) and off by exactly tau A_ii / 2 (forward) on a quadratic;
    within L tau / 2 of the partial derivative on an L-smooth non-quadratic function."""
    d, tau = 20, 0.1
    quad = quadratic(d, ctx.seed)
    fam = get_directions("coordinate")
    assert isinstance(fam, Coordinate)  # for fam.location, the coordinate a step seed picks
    x = quad.blocks[0]
    shapes = (x.shape,)
    g = flat(quad.exact_gradient())
    diag = torch.diagonal(quad.A).double().numpy()
    seed = mix_seed(ctx.seed, salt("coordinate_finite_differences"))
    n = ctx.pick(200, 600)
    central_err, forward_err = [], []
    with torch.no_grad():
        for s in range(n):
            ss = mix_seed(seed, s)
            _, i = fam.location(shapes, ss, 0)
            c = estimate_gradient([x], quad, fam, step_seed=ss, radius=tau, exact_restore=True)
            f = estimate_gradient([x], quad, fam, step_seed=ss, radius=tau, scheme="forward", exact_restore=True)
            central_err.append(abs(float(c.directional_derivatives[0]) - g[i]))
            forward_err.append(abs(float(f.directional_derivatives[0]) - g[i] - tau / 2 * diag[i]))
    tol = 1e-9
    smooth = SeparableLInf(d, regime="gd", phi="logcosh", init_radius=1.0, seed=ctx.seed, dtype=torch.float64)
    xs = smooth.blocks[0]
    gs = flat(smooth.exact_gradient())
    L = smooth.L_l2
    worst = 0.0
    with torch.no_grad():
        for s in range(n):
            ss = mix_seed(seed, 10**6 + s)
            _, i = fam.location(shapes, ss, 0)
            for scheme in ("central", "forward"):
                e = estimate_gradient([xs], smooth, fam, step_seed=ss, radius=tau, scheme=scheme, exact_restore=True)
                worst = max(worst, abs(float(e.directional_derivatives[0]) - gs[i]) / (L * tau / 2))
    passed = max(central_err) <= tol and max(forward_err) <= tol and worst <= 1.0
    return ClaimResult(
        predicted="central error 0, forward error tau A_ii/2 (quadratic); |error| <= L tau/2 (log-cosh)",
        measured=f"max |central err| = {max(central_err):.1e}, max |forward err - tau A_ii/2| = "
        f"{max(forward_err):.1e}; log-cosh worst |err| / (L tau/2) = {fmt(worst, 3)}",
        passed=bool(passed),
        statistics={
            "d": d,
            "tau": tau,
            "n": n,
            "max_central_error": max(central_err),
            "max_forward_error_minus_prediction": max(forward_err),
            "tolerance": tol,
            "logcosh_L_l2": L,
            "logcosh_worst_error_over_bound": worst,
        },
        verdict_rule=f"deterministic: pass iff both quadratic deviations are <= {tol} (float64 rounding) and every "
        "log-cosh error is within L tau/2",
        plots=[
            Plot(
                title="coordinate FD errors on the quadratic",
                xlabel="sample",
                ylabel="|deviation from theory|",
                series=[
                    {
                        "x": list(range(n)),
                        "y": [max(v, 1e-18) for v in central_err],
                        "style": "points",
                        "label": "central",
                    },
                    {
                        "x": list(range(n)),
                        "y": [max(v, 1e-18) for v in forward_err],
                        "style": "points",
                        "label": "forward minus tau A_ii/2",
                    },
                ],
                hlines=[{"y": tol, "label": "tolerance", "color": "r"}],
                yscale="log",
            )
        ],
    )


# ---------------------------------------------------------------------- §5.15
def _one_point_second_moment(problem: Quadratic, delta: float, const: float) -> float:
    """Exact E||d/delta (f(x + delta s) + c) s||^2 on a quadratic, s uniform on the sphere.

    With a = f(x) + c, b = <grad, s>, e = s^T A s / 2: E b = E b e = 0, E b^2 = ||grad||^2/d,
    E e = trA/(2d), E e^2 = ((trA)^2 + 2 tr A^2) / (4 d (d+2)), so
    E (a + delta b + delta^2 e)^2 = a^2 + delta^2 (||grad||^2/d + a trA/d) + delta^4 ((trA)^2 + 2trA^2)/(4d(d+2)),
    and the second moment is d^2/delta^2 times that ([D], section 3.5)."""
    d = problem.dim
    a = problem.value() + const
    g = flat(problem.exact_gradient())
    tr, tr2 = problem.trace_A, problem.trace_A2
    ef2 = a**2 + delta**2 * (float(g @ g) / d + a * tr / d) + delta**4 * (tr**2 + 2 * tr2) / (4 * d * (d + 2))
    return d**2 / delta**2 * ef2


@claim(
    "one_point_vs_two_point",
    source="docs/theory.md §5.15 [D] (§3.5); Flaxman et al. 2005",
    tags=("estimators", "one_point"),
    cost=1.5,
)
def one_point_vs_two_point(ctx: Context) -> ClaimResult:
    """One-point (d/delta) f(x + delta s) s and two-point sphere estimators have the same mean, but the one-point second
    moment grows like delta^-2 and changes when a constant is added to f; the two-point one does neither."""
    d = 10
    problem = quadratic(d, ctx.seed)
    g = flat(problem.exact_gradient())
    fam = get_directions("sphere")
    n = ctx.pick(1000, 3000)
    seed = mix_seed(ctx.seed, salt("one_point_vs_two_point"))
    deltas = [0.03, 0.1, 0.3, 1.0]
    const = 5.0
    tests = 2 * len(deltas) + 3
    alpha = bonferroni(FALSE_ALARM, tests)
    stats: dict[str, Any] = {"d": d, "n": n, "constant_added": const, "false_alarm_per_test": alpha}
    passed = True
    one_m2, one_pred = [], []
    for k, delta in enumerate(deltas):
        est = draw_estimates(problem, fam, n, mix_seed(seed, k), radius=delta, scheme="one_point")
        t = mean_matches((est**2).sum(axis=1), _one_point_second_moment(problem, delta, 0.0), alpha)
        stats[f"one_point delta={delta}"] = t
        passed &= t["passed"]
        one_m2.append(t["mean"])
        one_pred.append(t["predicted"])
        if k == len(deltas) - 1:
            ht = hotelling_mean_test(est, g, alpha)  # same mean as the two-point estimator: grad f (quadratic)
            stats["one_point_unbiased_delta=1"] = ht
            passed &= ht["passed"]
    fit = robust_slope(np.log(deltas), np.log(one_m2))
    pred_fit = robust_slope(np.log(deltas), np.log(one_pred))
    stats["one_point_slope_in_delta"] = {"measured": fit, "closed_form_slope": pred_fit["slope"]}

    # adding a constant to f: the one-point second moment moves to the new closed form, the two-point estimates do
    # not move
    def shifted() -> torch.Tensor:
        return problem() + const

    delta = deltas[1]
    est_c = draw_estimates(problem, fam, n, mix_seed(seed, 50), radius=delta, scheme="one_point", closure=shifted)
    t_c = mean_matches((est_c**2).sum(axis=1), _one_point_second_moment(problem, delta, const), alpha)
    stats["one_point_with_constant"] = t_c
    passed &= t_c["passed"]
    two = draw_estimates(problem, fam, n, mix_seed(seed, 60), radius=delta)
    two_c = draw_estimates(problem, fam, n, mix_seed(seed, 60), radius=delta, closure=shifted)
    t2 = mean_matches((two**2).sum(axis=1), d * float(g @ g), alpha)
    shift = float(np.abs(two - two_c).max() / np.abs(two).max())
    stats["two_point"] = {"second_moment": t2, "max_rel_change_with_constant": shift, "tolerance": 1e-10}
    passed &= t2["passed"] and shift <= 1e-10
    dd = np.geomspace(deltas[0], deltas[-1], 20)
    curve = [_one_point_second_moment(problem, float(x), 0.0) for x in dd]
    return ClaimResult(
        predicted=f"one-point E||g||^2 ~ delta^-2 (closed-form slope {fmt(pred_fit['slope'], 3)}), shifts with f + c; "
        f"two-point E||g||^2 = d||grad||^2 = {fmt(d * float(g @ g))}, unchanged by f + c",
        measured=f"one-point slope {fmt(fit['slope'], 3)}; with c={const}: {fmt(t_c['mean'])} vs "
        f"{fmt(t_c['predicted'])}; two-point {fmt(t2['mean'])}, max rel. change with c: {shift:.1e}",
        passed=bool(passed),
        statistics=stats,
        verdict_rule=f"pass iff all {tests} mean tests pass (Bonferroni, total false alarm {FALSE_ALARM}) and adding c "
        "changes the two-point estimates by at most 1e-10 relatively (rounding)",
        plots=[
            Plot(
                title=f"one-point vs two-point second moments, d={d}",
                xlabel="delta",
                ylabel="E||g||^2",
                series=[
                    {"x": deltas, "y": one_m2, "style": "points", "label": "one-point, measured"},
                    {"x": dd.tolist(), "y": curve, "style": "dashed", "label": "one-point, closed form"},
                    {"x": [delta], "y": [t_c["mean"]], "style": "points", "label": f"one-point, f + {const:g}"},
                ],
                hlines=[{"y": d * float(g @ g), "label": "two-point d||grad||^2", "color": "g"}],
                xscale="log",
                yscale="log",
            )
        ],
    )
