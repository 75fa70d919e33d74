"""Convergence-rate claims for ZO-SGD, RSGF, ZO-SignSGD and zeroth-order Frank–Wolfe (§5.22-5.26).

Every run uses the library optimizers (:mod:`zotheory.optim`) on problems of :mod:`problems` with known
``L`` and ``f*``, in float64. Rates are read off log–log plots with Theil–Sen slopes (99% intervals)
over several seeds (one point per seed and horizon); bounds are compared with the upper end of a
t-interval over seeds. What each rate statement actually bounds (an average over the trajectory, the
output of a randomly stopped run, a minimum) is said in each claim, because it decides which slope can
be expected to be tight.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import torch
from scipy.stats import t as t_dist

from problems import AdditiveNoise, NonconvexSine, Problem, Quadratic, StochasticProblem
from validation.claims.estimators import salt
from validation.core import ClaimResult, Context, Plot, claim, fmt, robust_slope, slope_contains
from zotheory import theory
from zotheory.directions import get_directions, mix_seed
from zotheory.estimators import estimate_gradient
from zotheory.lmo import L1
from zotheory.optim import ZOSGD, ZOSignSGD

GradFn = Callable[[], torch.Tensor]


def gradient_fn(problem: Problem) -> GradFn:
    """The exact gradient at the current parameters as a flat tensor, in closed form for the quadratic and the
    sine problem (cheap) and by autograd otherwise (verification only; the optimizers never see it)."""
    base = problem.problem if isinstance(problem, AdditiveNoise) else problem
    x = base.blocks[0]
    if isinstance(base, Quadratic):
        xs = base.xstar_x
        if base.rotated:
            A = base.A_matrix
            return lambda: A @ (x.detach() - xs)
        a = base.A_diag
        return lambda: a * (x.detach() - xs)
    if isinstance(base, NonconvexSine):
        xs, amp = base.xstar_x, base.a
        return lambda: (lambda t: t + amp / 2 * torch.sin(2 * t))(x.detach() - xs)
    return lambda: torch.cat([g.reshape(-1) for g in base.exact_gradient()])


def run_optimizer(
    problem: Problem,
    opt: torch.optim.Optimizer,
    steps: int,
    grad: GradFn,
    *,
    sample_seed: int | None = None,
    norm: str = "l2sq",
    lr_of: Callable[[int], float] | None = None,
) -> np.ndarray:
    """Run ``steps`` steps; returns the gradient measure at x_1 .. x_steps (before each step).

    ``norm``: ``"l2sq"`` (||grad||_2^2), ``"l2"`` or ``"l1"``. For a stochastic problem the sample of
    step ``k`` is ``mix_seed(sample_seed, k)`` (both evaluations of a difference share it)."""
    if sample_seed is not None and not isinstance(problem, StochasticProblem):
        raise TypeError(f"sample_seed={sample_seed} needs a StochasticProblem, got {type(problem).__name__}")
    out = np.empty(steps)
    for k in range(steps):
        g = grad()
        out[k] = float(g @ g) if norm == "l2sq" else float(g.norm()) if norm == "l2" else float(g.abs().sum())
        if lr_of is not None:
            for group in opt.param_groups:
                group["lr"] = lr_of(k)
        if sample_seed is not None:
            cast(StochasticProblem, problem).set_sample(mix_seed(sample_seed, k))
        opt.step(problem)
    if sample_seed is not None:
        cast(StochasticProblem, problem).set_sample(None)
    return out


def t_upper(samples: np.ndarray, confidence: float = 0.99) -> float:
    """One-sided upper confidence bound of the mean (Student t over independent seeds)."""
    x = np.asarray(samples, dtype=float)
    if x.size < 2:
        return float(x.mean())
    return float(x.mean() + t_dist.ppf(confidence, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))


def fit_text(fit: dict[str, Any]) -> str:
    """A slope fit as text: ``slope [low, high]`` (3 significant digits)."""
    return f"{fmt(fit['slope'], 3)} [{fmt(fit['interval'][0], 3)}, {fmt(fit['interval'][1], 3)}]"


# ---------------------------------------------------------------------- §5.23
@claim(
    "zo_sgd_deterministic_rate",
    source="docs/theory.md §5.23 [Q]/[D]; Nesterov-Spokoiny 2017; Ghadimi-Lan 2013",
    tags=("rates", "zo_sgd"),
    cost=5.0,
)
def zo_sgd_deterministic_rate(ctx: Context) -> ClaimResult:
    """Deterministic ZO-SGD with gamma = 1/(4(d+4)L): min_k E||grad f(x_k)||^2 = O((d+4) L (f(x_1) - f*)/N) -- log-log
    slope -1 in N for the trajectory average (the quantity the proof bounds) and at least -1 for the minimum -- and the
    number of iterations to reach a fixed accuracy grows linearly in d + 4."""
    seeds = ctx.pick(3, 5)
    d = 10
    n_max = ctx.pick(2048, 4096)
    horizons = [n_max // 8, n_max // 4, n_max // 2, n_max]
    xs_avg, ys_avg, ys_min, curves = [], [], [], []
    base_seed = mix_seed(ctx.seed, salt("zo_sgd_deterministic_rate"))
    for s in range(seeds):
        problem: Problem = NonconvexSine(d, a=2.0, init_radius=3.0, seed=ctx.seed + s, dtype=torch.float64)
        gamma = 1.0 / (4 * (d + 4) * problem.L)
        opt = ZOSGD(problem.parameters(), lr=gamma, eps=1e-4, seed=mix_seed(base_seed, s))
        with torch.no_grad():
            g2 = run_optimizer(problem, opt, n_max, gradient_fn(problem))
        avg = np.cumsum(g2) / np.arange(1, n_max + 1)
        mins = np.minimum.accumulate(g2)
        curves.append(avg)
        for n in horizons:
            xs_avg.append(math.log(n))
            ys_avg.append(math.log(avg[n - 1]))
            ys_min.append(math.log(max(mins[n - 1], 1e-300)))
    fit_avg = robust_slope(np.array(xs_avg), np.array(ys_avg))
    fit_min = robust_slope(np.array(xs_avg), np.array(ys_min))
    ok_avg = slope_contains(fit_avg, -1.0)
    ok_min = fit_min["interval"][1] <= -1.0

    # iterations to reach ||grad f||^2 <= 1e-3 ||grad f(x_1)||^2, as a function of d
    dims = ctx.pick([4, 8, 16, 32], [4, 8, 16, 32, 64])
    hit_x, hit_y = [], []
    for dd in dims:
        for s in range(seeds):
            problem = Quadratic(dd, L=1.0, mu=0.25, init_radius=1.0, seed=1000 * dd + ctx.seed + s, dtype=torch.float64)
            opt = ZOSGD(
                problem.parameters(), lr=1.0 / (4 * (dd + 4) * problem.L), eps=1e-4, seed=mix_seed(base_seed, dd, s)
            )
            grad = gradient_fn(problem)
            with torch.no_grad():
                g0 = float(grad() @ grad())
                k = 0
                while float((g := grad()) @ g) > 1e-3 * g0:
                    opt.step(problem)
                    k += 1
                    if k > 10**6:
                        raise RuntimeError("ZO-SGD did not reach the accuracy in 10^6 steps")
            hit_x.append(math.log(dd + 4))
            hit_y.append(math.log(k))
    fit_d = robust_slope(np.array(hit_x), np.array(hit_y))
    ok_d = slope_contains(fit_d, 1.0)
    passed = ok_avg and ok_min and ok_d
    mean_curve = np.mean(curves, axis=0)
    idx = np.unique(np.geomspace(1, n_max, 60).astype(int)) - 1
    c = mean_curve[horizons[-1] - 1] * horizons[-1]
    return ClaimResult(
        predicted="slope -1 in N (trajectory average of ||grad f||^2), <= -1 (running minimum); iterations-to-eps ~ "
        "(d+4)^1",
        measured=f"average: {fit_text(fit_avg)}; minimum: {fit_text(fit_min)}; iterations vs d+4: {fit_text(fit_d)}",
        passed=bool(passed),
        statistics={
            "d": d,
            "seeds": seeds,
            "horizons": horizons,
            "average_fit": fit_avg,
            "minimum_fit": fit_min,
            "dims": dims,
            "log_iterations_to_eps": hit_y,
            "iterations_fit": fit_d,
            "problem_rate": "NonconvexSine a=2, L=3",
            "problem_d_scaling": "Quadratic L=1, mu=0.25, ||x0 - x*|| = 1",
            "step": "1/(4(d+4)L)",
            "eps_relative": 1e-3,
        },
        verdict_rule="pass iff the 99% Theil-Sen interval of the average's slope contains -1, the minimum's interval "
        "lies at or below -1, and the interval of log(iterations to eps) on log(d+4) contains 1",
        plots=[
            Plot(
                title=f"deterministic ZO-SGD, nonconvex sine d={d}",
                xlabel="N",
                ylabel="||grad f||^2",
                series=[
                    {"x": (idx + 1).tolist(), "y": mean_curve[idx].tolist(), "label": "(1/N) sum_k ||grad f(x_k)||^2"},
                    {"x": (idx + 1).tolist(), "y": (c / (idx + 1)).tolist(), "style": "dashed", "label": "C / N"},
                ],
                xscale="log",
                yscale="log",
            ),
            Plot(
                title="iterations to ||grad f||^2 <= 1e-3 ||grad f(x_1)||^2",
                xlabel="d + 4",
                ylabel="iterations",
                series=[
                    {
                        "x": [math.exp(v) for v in hit_x],
                        "y": [math.exp(v) for v in hit_y],
                        "style": "points",
                        "label": "seeds",
                    },
                    {
                        "x": [d_ + 4 for d_ in dims],
                        "y": [math.exp(fit_d["intercept"]) * (d_ + 4) ** fit_d["slope"] for d_ in dims],
                        "style": "dashed",
                        "label": f"fit: slope {fmt(fit_d['slope'], 3)}",
                    },
                ],
                xscale="log",
                yscale="log",
            ),
        ],
        notes="The proof bounds (1/N) sum_k E||grad f(x_k)||^2 (= E||grad f(x_R)||^2 for uniform R); once sum_k ||grad "
        "f||^2 has converged that average decays exactly like 1/N, which is what is measured. The running minimum "
        "falls much faster here (the sine problem is strongly convex near x*, so ZO-SGD ends up converging linearly): "
        "the O(1/N) statement is an upper bound on it, not its rate.",
    )


# ---------------------------------------------------------------------- §5.24
def _g3_step(L: float, d: int, Df: float, sigma: float, n: int) -> float:
    """Ghadimi-Lan Cor. 3.3 step gamma = min{1/(4L sqrt(d+4)), Df/(sigma sqrt N)} / sqrt(d+4) (D~ = D_f)."""
    return min(1.0 / (4 * L * math.sqrt(d + 4)), Df / (sigma * math.sqrt(n))) / math.sqrt(d + 4)


@claim(
    "zo_sgd_stochastic_rate",
    source="docs/theory.md §5.24 [Q, secondary] (Ghadimi-Lan 2013, Cor. 3.3)",
    tags=("rates", "zo_sgd", "stochastic"),
    cost=6.0,
)
def zo_sgd_stochastic_rate(ctx: Context) -> ClaimResult:
    """Stochastic ZO-SGD with the Cor. 3.3 step: E||grad f(x_R)||^2 decays like N^(-1/2) and grows like sqrt(d+4)
    (sigma > 0, large N), below the G3 bound 12(d+4)L^2 D_f^2/N + 8 L sqrt(d+4) D_f sigma/sqrt(N)."""
    sigma = 1.0
    seeds = ctx.pick(2, 3)
    d0 = 10
    ns = ctx.pick([256, 512, 1024, 2048], [256, 512, 1024, 2048, 4096])
    dims = ctx.pick([4, 8, 16, 32], [4, 8, 16, 32, 64])
    n_for_d = ctx.pick(1024, 2048)
    base_seed = mix_seed(ctx.seed, salt("zo_sgd_stochastic_rate"))
    bound_ok, bound_rows = True, []

    def one(d: int, n: int, s: int) -> float:
        nonlocal bound_ok
        base = Quadratic(d, L=1.0, mu=0.25, init_radius=1.0, seed=1000 * d + ctx.seed + s, dtype=torch.float64)
        problem = AdditiveNoise(base, sigma)
        L = base.L
        Df = math.sqrt(2 * base.suboptimality() / L)
        gamma = _g3_step(L, d, Df, sigma, n)
        opt = ZOSGD(problem.parameters(), lr=gamma, eps=1e-4, seed=mix_seed(base_seed, d, n, s))
        with torch.no_grad():
            g2 = run_optimizer(problem, opt, n, gradient_fn(problem), sample_seed=mix_seed(base_seed, 7, d, n, s))
        value = float(g2.mean())  # = E_R ||grad f(x_R)||^2 for this run (constant steps: R uniform)
        g3 = 12 * (d + 4) * L**2 * Df**2 / n + 8 * L * math.sqrt(d + 4) * Df * sigma / math.sqrt(n)
        bound_rows.append({"d": d, "N": n, "seed": s, "measured": value, "G3_bound_on_||grad||^2": g3})
        bound_ok &= value <= g3
        return value

    xn, yn, xd, yd = [], [], [], []
    for n in ns:
        for s in range(seeds):
            xn.append(math.log(n))
            yn.append(math.log(one(d0, n, s)))
    for d in dims:
        for s in range(seeds):
            xd.append(math.log(d + 4))
            yd.append(math.log(one(d, n_for_d, s)))
    fit_n, fit_d = robust_slope(np.array(xn), np.array(yn)), robust_slope(np.array(xd), np.array(yd))
    ok = slope_contains(fit_n, -0.5) and slope_contains(fit_d, 0.5) and bound_ok
    return ClaimResult(
        predicted="slope -1/2 in N (d=10); slope +1/2 in d+4 (N fixed); below the G3 bound",
        measured=f"N: {fit_text(fit_n)}; d+4: {fit_text(fit_d)}; max measured/G3 = "
        f"{fmt(max(r['measured'] / r['G3_bound_on_||grad||^2'] for r in bound_rows), 3)}",
        passed=bool(ok),
        statistics={
            "sigma": sigma,
            "seeds": seeds,
            "N_grid": ns,
            "d_grid": dims,
            "N_for_d_grid": n_for_d,
            "fit_N": fit_n,
            "fit_d": fit_d,
            "runs": bound_rows,
            "bound_holds": bound_ok,
            "problem": "AdditiveNoise(Quadratic L=1, mu=0.25, ||x0-x*||=1), E||grad F - grad f||^2 = sigma^2",
        },
        verdict_rule="pass iff the 99% Theil-Sen intervals contain -1/2 (in N) and +1/2 (in d+4) and every run is "
        "below G3",
        plots=[
            Plot(
                title="stochastic ZO-SGD, Cor. 3.3 step",
                xlabel="N",
                ylabel="E||grad f(x_R)||^2",
                series=[
                    {
                        "x": [math.exp(v) for v in xn],
                        "y": [math.exp(v) for v in yn],
                        "style": "points",
                        "label": "seeds (d=10)",
                    },
                    {
                        "x": ns,
                        "y": [math.exp(fit_n["intercept"]) * n**-0.5 for n in ns],
                        "style": "dashed",
                        "label": "N^(-1/2)",
                    },
                ],
                xscale="log",
                yscale="log",
            ),
            Plot(
                title=f"stochastic ZO-SGD, N={n_for_d}",
                xlabel="d + 4",
                ylabel="E||grad f(x_R)||^2",
                series=[
                    {
                        "x": [math.exp(v) for v in xd],
                        "y": [math.exp(v) for v in yd],
                        "style": "points",
                        "label": "seeds",
                    },
                    {
                        "x": [d + 4 for d in dims],
                        "y": [math.exp(fit_d["intercept"]) * (d + 4) ** 0.5 for d in dims],
                        "style": "dashed",
                        "label": "sqrt(d+4)",
                    },
                ],
                xscale="log",
                yscale="log",
            ),
        ],
        notes="G3 was read from secondary notes (docs/theory.md §3.2); it is used here as a sanity bound only. With "
        "the N-dependent step both the optimisation term Delta/(gamma N) and the noise floor gamma L (d+2) sigma^2 "
        "scale like sqrt((d+4)/N), which is why the exponents are tight at these sizes.",
    )


# ---------------------------------------------------------------------- §5.22
@claim(
    "rsgf_bound",
    source="docs/theory.md §5.22 [Q] (Ghadimi-Lan 2013, Thm 3.2, Eqs. 3.15-3.16)",
    tags=("rates", "zo_sgd", "bounds"),
    cost=4.0,
)
def rsgf_bound(ctx: Context) -> ClaimResult:
    """RSGF (forward Gaussian oracle, gamma_k < 1/(2(d+4)L), output index R drawn with P_R(k) ~ gamma_k -
    2L(d+4)gamma_k^2) on a nonconvex L-smooth problem: (1/L) E||grad f(x_R)||^2 never exceeds the G2 right-hand side."""
    d = 10
    n = ctx.pick(800, 2000)
    seeds = ctx.pick(3, 4)
    mu = 1e-3
    base_seed = mix_seed(ctx.seed, salt("rsgf_bound"))
    rows: list[dict[str, Any]] = []
    passed = True
    for sigma in (0.0, 1.0):
        for schedule in ("constant", "decreasing"):
            vals, rhs_list = [], []
            for s in range(seeds):
                base = NonconvexSine(d, a=2.0, init_radius=3.0, seed=ctx.seed + s, dtype=torch.float64)
                problem: Problem = AdditiveNoise(base, sigma) if sigma > 0 else base
                L = base.L
                g0 = 1.0 / (4 * (d + 4) * L)
                gammas = np.full(n, g0) if schedule == "constant" else g0 * 1.5 / np.sqrt(np.arange(1, n + 1) + 1.0)
                lrs: list[float] = gammas.tolist()
                probs = theory.rsgf_output_probabilities(lrs, L, d)
                opt = ZOSGD(
                    problem.parameters(), lr=float(gammas[0]), eps=mu, scheme="forward", seed=mix_seed(base_seed, s)
                )
                with torch.no_grad():
                    f_gap = base.suboptimality()
                    g2 = run_optimizer(
                        problem,
                        opt,
                        n,
                        gradient_fn(problem),
                        sample_seed=mix_seed(base_seed, 9, s) if sigma > 0 else None,
                        lr_of=lrs.__getitem__,
                    )
                vals.append(float(probs @ g2) / L)  # E_R (1/L)||grad f(x_R)||^2 for this run, exactly
                rhs_list.append(theory.ghadimi_lan_rsgf_bound(f_gap, L, d, mu, sigma, lrs))
            upper = t_upper(np.array(vals))
            rhs = float(np.min(rhs_list))
            ok = upper <= rhs
            passed &= ok
            rows.append(
                {
                    "sigma": sigma,
                    "schedule": schedule,
                    "mean": float(np.mean(vals)),
                    "upper_99": upper,
                    "G2_rhs_min_over_seeds": rhs,
                    "ratio": float(np.mean(vals)) / rhs,
                    "passed": ok,
                }
            )
    labels = [f"sigma={r['sigma']:g}, {r['schedule']}" for r in rows]
    return ClaimResult(
        predicted="(1/L) E||grad f(x_R)||^2 <= G2 right-hand side in every configuration",
        measured="; ".join(
            f"{lab}: {fmt(r['mean'], 3)} vs {fmt(r['G2_rhs_min_over_seeds'], 3)}"
            for lab, r in zip(labels, rows, strict=False)
        ),
        passed=bool(passed),
        statistics={
            "d": d,
            "N": n,
            "seeds": seeds,
            "radius_mu": mu,
            "problem": "NonconvexSine a=2 (L=3, nonconvex), optionally + AdditiveNoise",
            "configurations": rows,
        },
        verdict_rule="pass iff, in every configuration, the one-sided 99% t upper bound over seeds of (1/L) E_R||grad "
        "f(x_R)||^2 (E_R computed exactly from the trajectory and P_R) is below the smallest G2 right-hand side of the "
        "seeds",
        plots=[
            Plot(
                title="RSGF: measured / G2 bound",
                xlabel="",
                ylabel="(1/L) E||grad f(x_R)||^2",
                series=[
                    {
                        "x": list(range(len(rows))),
                        "y": [r["mean"] for r in rows],
                        "style": "points",
                        "label": "measured",
                    },
                    {
                        "x": list(range(len(rows))),
                        "y": [r["G2_rhs_min_over_seeds"] for r in rows],
                        "style": "points",
                        "label": "G2 bound",
                    },
                ],
                yscale="log",
                xticklabels=labels,
            )
        ],
        notes="The bound is valid but loose here (ratios in the statistics); it is checked as a bound (<=), PEPit "
        "style.",
    )


# ---------------------------------------------------------------------- §5.25
@claim(
    "zo_signsgd_rate",
    source="docs/theory.md §5.25 [Q] (Liu, Chen, Chen, Hong, ICLR 2019)",
    tags=("rates", "sign"),
    cost=5.0,
)
def zo_signsgd_rate(ctx: Context) -> ClaimResult:
    """ZO-SignSGD with step 1/sqrt(dT): E||grad f(x_R)||_2 = O(sqrt(d/T)) -- slope -1/2 in T and at most +1/2 in d."""
    seeds = ctx.pick(2, 3)
    d0 = 16
    ts = ctx.pick([256, 512, 1024, 2048], [256, 512, 1024, 2048, 4096])
    dims = ctx.pick([8, 16, 32], [8, 16, 32, 64])
    t_for_d = 1024
    base_seed = mix_seed(ctx.seed, salt("zo_signsgd_rate"))

    def one(d: int, T: int, s: int) -> float:
        problem = Quadratic(d, L=1.0, mu=0.25, init_radius=1.0, seed=1000 * d + ctx.seed + s, dtype=torch.float64)
        opt = ZOSignSGD(
            problem.parameters(), lr=1.0 / math.sqrt(d * T), q=1, eps=1e-4, seed=mix_seed(base_seed, d, T, s)
        )
        with torch.no_grad():
            return float(run_optimizer(problem, opt, T, gradient_fn(problem), norm="l2").mean())

    xt = [math.log(T) for T in ts for _ in range(seeds)]
    yt = [math.log(one(d0, T, s)) for T in ts for s in range(seeds)]
    xd = [math.log(d) for d in dims for _ in range(seeds)]
    yd = [math.log(one(d, t_for_d, s)) for d in dims for s in range(seeds)]
    fit_t, fit_d = robust_slope(np.array(xt), np.array(yt)), robust_slope(np.array(xd), np.array(yd))
    ok = slope_contains(fit_t, -0.5) and fit_d["interval"][0] <= 0.5
    return ClaimResult(
        predicted="slope -1/2 in T (d=16), at most +1/2 in d (T fixed)",
        measured=f"T: {fit_text(fit_t)}; d: {fit_text(fit_d)}",
        passed=bool(ok),
        statistics={
            "seeds": seeds,
            "T_grid": ts,
            "d_grid": dims,
            "T_for_d_grid": t_for_d,
            "fit_T": fit_t,
            "fit_d": fit_d,
            "q": 1,
            "step": "1/sqrt(d T)",
            "measure": "E_R ||grad f(x_R)||_2 with R uniform (trajectory average)",
            "problem": "Quadratic L=1, mu=0.25, ||x0 - x*||_2 = 1 (constants independent of d)",
        },
        verdict_rule="pass iff the 99% Theil-Sen interval in T contains -1/2 and the interval in d does not lie above "
        "+1/2",
        plots=[
            Plot(
                title="ZO-SignSGD, step 1/sqrt(dT)",
                xlabel="T",
                ylabel="E||grad f(x_R)||_2",
                series=[
                    {
                        "x": [math.exp(v) for v in xt],
                        "y": [math.exp(v) for v in yt],
                        "style": "points",
                        "label": f"d={d0}",
                    },
                    {
                        "x": ts,
                        "y": [math.exp(fit_t["intercept"]) * T**-0.5 for T in ts],
                        "style": "dashed",
                        "label": "T^(-1/2)",
                    },
                ],
                xscale="log",
                yscale="log",
            ),
            Plot(
                title=f"ZO-SignSGD, T={t_for_d}",
                xlabel="d",
                ylabel="E||grad f(x_R)||_2",
                series=[
                    {
                        "x": [math.exp(v) for v in xd],
                        "y": [math.exp(v) for v in yd],
                        "style": "points",
                        "label": "seeds",
                    },
                    {
                        "x": dims,
                        "y": [math.exp(fit_d["intercept"]) * d**0.5 for d in dims],
                        "style": "dashed",
                        "label": "sqrt(d)",
                    },
                ],
                xscale="log",
                yscale="log",
            ),
        ],
        notes="One Gaussian direction per step and exact (deterministic) function values. The d-scaling is stated as "
        "an upper bound: the problem's L, mu, f(x_1) - f* and ||x_1 - x*||_2 do not depend on d, so sqrt(d) can only "
        "come from the estimator's noise.",
    )


# ---------------------------------------------------------------------- §5.26
@claim(
    "zo_frank_wolfe_rate",
    source="docs/theory.md §5.26 [Q] (Sahu, Zaheer, Kar, AISTATS 2019); exact FW bound [U-standard] (Jaggi 2013)",
    tags=("rates", "frank_wolfe", "lmo"),
    cost=4.0,
)
def zo_frank_wolfe_rate(ctx: Context) -> ClaimResult:
    """Zeroth-order Frank–Wolfe over an l1 ball (one Gaussian directional derivative per step, gradient averaging
    rho_k = 4/(d^(1/3)(k+8)^(2/3)), step 2/(k+8)): primal gap O(d^(1/3) T^(-1/3)); exact-gradient FW with step 2/(k+2)
    stays below 2 L diam^2/(k+2)."""
    d = 20
    t_max = ctx.pick(2048, 4096)
    seeds = ctx.pick(2, 3)
    checks = [t_max // 16, t_max // 8, t_max // 4, t_max // 2, t_max]
    fam, lmo = get_directions("gaussian"), L1()
    base_seed = mix_seed(ctx.seed, salt("zo_frank_wolfe_rate"))
    xs_, ys_, curves = [], [], []
    record = np.unique(np.geomspace(1, t_max, 50).astype(int))
    for s in range(seeds):
        problem = Quadratic(d, L=1.0, mu=0.1, init_radius=1.0, seed=ctx.seed + s, dtype=torch.float64)
        x = problem.blocks[0]
        radius = float(problem.xstar_x.abs().sum())  # x* (f* = 0) lies on the boundary of the l1 ball
        gaps = {}
        with torch.no_grad():
            x.zero_()
            avg = torch.zeros(d, dtype=torch.float64)
            for k in range(t_max):
                rho = 4.0 / (d ** (1 / 3) * (k + 8) ** (2 / 3))
                step = 2.0 / (k + 8)
                c = 2.0 / (d**1.5 * (k + 8) ** (1 / 3))
                g = estimate_gradient([x], problem, fam, step_seed=mix_seed(base_seed, s, k), radius=c).materialize(
                    [x]
                )[0]
                avg.mul_(1 - rho).add_(g, alpha=rho)
                x.mul_(1 - step).add_(lmo.lmo(avg, radius), alpha=step)
                if (k + 1) in checks or (k + 1) in record:
                    gaps[k + 1] = problem.suboptimality()
        curves.append([gaps[t] for t in record])
        for t in checks:
            xs_.append(math.log(t))
            ys_.append(math.log(gaps[t]))
    fit = robust_slope(np.array(xs_), np.array(ys_))
    ok_rate = fit["interval"][1] <= -1.0 / 3.0

    # exact FW sanity row: f(x_k) - f* <= 2 L diam^2 / (k + 2) for every k (diam: l2 diameter 2R of the l1 ball)
    problem = Quadratic(d, L=1.0, mu=0.1, init_radius=1.0, seed=ctx.seed, dtype=torch.float64)
    x = problem.blocks[0]
    radius = float(problem.xstar_x.abs().sum())
    grad = gradient_fn(problem)
    worst, fw_gaps = 0.0, []
    with torch.no_grad():
        x.zero_()
        for k in range(1, t_max + 1):
            step = 2.0 / (k + 1)  # x_k = (1 - 2/(k+1)) x_{k-1} + ...: the iterate after k steps is x_k
            x.mul_(1 - step).add_(lmo.lmo(grad(), radius), alpha=step)
            gap = problem.suboptimality()
            bound = 2 * problem.L * (2 * radius) ** 2 / (k + 2)
            worst = max(worst, gap / bound)
            if k in record:
                fw_gaps.append(gap)
    ok_fw = worst <= 1.0
    mean_curve = np.exp(np.mean(np.log(np.array(curves)), axis=0))
    return ClaimResult(
        predicted="ZO-FW primal gap slope <= -1/3 in T; exact FW gap <= 2 L diam^2/(k+2) for all k",
        measured=f"ZO-FW slope {fit_text(fit)}; exact FW worst gap/bound = {fmt(worst, 3)}",
        passed=bool(ok_rate and ok_fw),
        statistics={
            "d": d,
            "T_max": t_max,
            "seeds": seeds,
            "checks": checks,
            "fit": fit,
            "exact_fw_worst_ratio": worst,
            "problem": "Quadratic L=1, mu=0.1 over the l1 ball of radius ||x*||_1 (x* on its boundary, f* = 0)",
            "schedules": "rho_k = 4/(d^(1/3)(k+8)^(2/3)), step 2/(k+8), radius c_k = 2/(d^(3/2)(k+8)^(1/3))",
        },
        verdict_rule="pass iff the upper end of the 99% Theil-Sen interval of the ZO-FW gap slope is <= -1/3 (decays "
        "at least as fast as the bound) and the exact-FW bound holds at every iteration",
        plots=[
            Plot(
                title=f"Frank-Wolfe on the l1 ball, d={d}",
                xlabel="iteration",
                ylabel="f(x_k) - f*",
                series=[
                    {"x": record.tolist(), "y": mean_curve.tolist(), "label": "ZO-FW (geometric mean over seeds)"},
                    {"x": record.tolist(), "y": fw_gaps, "label": "exact FW"},
                    {
                        "x": record.tolist(),
                        "y": [2 * (2 * radius) ** 2 / (k + 2) for k in record],
                        "style": "dashed",
                        "label": "2 L diam^2/(k+2)",
                    },
                    {
                        "x": record.tolist(),
                        "y": [mean_curve[0] * (k / record[0]) ** (-1 / 3) for k in record],
                        "style": "dashed",
                        "label": "T^(-1/3)",
                    },
                ],
                xscale="log",
                yscale="log",
            )
        ],
        notes="The T^(-1/3) rate is a worst-case upper bound; on this strongly convex quadratic ZO-FW decays faster, "
        "which the bound allows.",
    )
