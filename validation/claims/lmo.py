"""Claims about norms, dual norms, linear minimisation oracles and Newton–Schulz (§5.28-5.33).

These are deterministic identities: they are checked on many random instances in float64 and must
hold to a rounding tolerance (``TOL``), with an independent ground truth where one is cheap: the
dual norm as a supremum over points of the unit ball (sampled), and cvxpy's solution of the
defining convex program for the spectral and nuclear balls when cvxpy is installed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from validation.claims.estimators import salt
from validation.core import ClaimResult, Context, Plot, claim
from zotheory import lmo as L
from zotheory import theory
from zotheory.directions import mix_seed, tensor_generator

TOL = 1e-10  # relative, float64

VECTOR_NORMS = {"l2": L.L2(), "linf": L.LInf(), "l1": L.L1(), "lp (p=3)": L.Lp(3.0)}
MATRIX_NORMS = {"frobenius": L.Frobenius(), "spectral": L.Spectral(), "nuclear": L.Nuclear()}


def _instances(ctx: Context, name: str, matrix: bool, n: int) -> list[torch.Tensor]:
    seed = mix_seed(ctx.seed, salt(name))
    out = []
    for k in range(n):
        gen = tensor_generator(seed, k)
        shape = (
            (int(torch.randint(2, 9, (1,), generator=gen)), int(torch.randint(2, 9, (1,), generator=gen)))
            if matrix
            else (int(torch.randint(2, 40, (1,), generator=gen)),)
        )
        out.append(torch.randn(shape, generator=gen, dtype=torch.float64))
    return out


def _inner(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() * b.double()).sum())


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def _sharp_model(norm: L.Norm, g: torch.Tensor, lam: float, D: torch.Tensor) -> float:
    """``<g, D> + lam/2 ||D||^2``, minimised by ``D = -g#/lam`` with value ``-||g||_*^2 / (2 lam)``."""
    return _inner(g, D) + lam / 2 * float(norm.norm(D)) ** 2


def _sampled_sup(norm: L.Norm, g: torch.Tensor, k: int, gen: torch.Generator) -> float:
    """Max over k random points s of the unit sphere of ``norm`` of <g, s> (a lower bound on ||g||_*)."""
    best = -math.inf
    for _ in range(k):
        s = torch.randn(g.shape, generator=gen, dtype=torch.float64)
        if torch.rand((), generator=gen) < 0.5:  # sparse/spiky points reach the corners of l1/nuclear balls
            s = s * (torch.rand(g.shape, generator=gen, dtype=torch.float64) < 0.2)
        nrm = float(norm.norm(s))
        if nrm > 0:
            best = max(best, _inner(g, s) / nrm)
    return best


@claim("lmo_identities", source="docs/theory.md §5.28 [D] (§4 table)", tags=("lmo",))
def lmo_identities(ctx: Context) -> ClaimResult:
    """For every norm: <g, lmo_r(g)> = -r ||g||_*, ||lmo_r(g)|| = r, lmo_r(c g) = lmo_r(g) for c > 0,
    lmo_r(-g) = -lmo_r(g); and no sampled point of the unit ball beats the dual norm (sup definition)."""
    n = ctx.pick(40, 150)
    r, c = 0.7, 3.3
    stats: dict[str, Any] = {"instances_per_norm": n, "radius": r, "scale_c": c, "tolerance": TOL}
    passed = True
    labels, worst = [], []
    for name, norm in {**VECTOR_NORMS, **MATRIX_NORMS}.items():
        gs = _instances(ctx, f"lmo_{name}", name in MATRIX_NORMS, n)
        gen = tensor_generator(mix_seed(ctx.seed, salt(f"sup_{name}")), 0)
        v = {"value": 0.0, "norm": 0.0, "homogeneity": 0.0, "oddness": 0.0}
        sup_excess = -math.inf
        for g in gs:
            s = norm.lmo(g, r)
            dual = float(norm.dual_norm(g))
            v["value"] = max(v["value"], _rel(_inner(g, s), -r * dual))
            v["norm"] = max(v["norm"], _rel(float(norm.norm(s)), r))
            v["homogeneity"] = max(v["homogeneity"], float((norm.lmo(c * g, r) - s).abs().max()) / r)
            v["oddness"] = max(v["oddness"], float((norm.lmo(-g, r) + s).abs().max()) / r)
            sup_excess = max(sup_excess, (_sampled_sup(norm, g, 20, gen) - dual) / dual)
        ok = max(v.values()) <= TOL and sup_excess <= TOL
        passed &= ok
        stats[name] = {
            **{f"max_rel_violation_{k}": x for k, x in v.items()},
            "max_sampled_sup_excess_over_dual": sup_excess,
            "passed": ok,
        }
        for k, x in v.items():
            labels.append(f"{name}: {k}")
            worst.append(max(x, 1e-17))
    return ClaimResult(
        predicted="identities exact (to float64 rounding) for l2, linf, l1, lp, Frobenius, spectral, nuclear",
        measured=f"largest relative violation {max(worst):.1e} over {len(worst)} identity x norm pairs",
        passed=bool(passed),
        statistics=stats,
        verdict_rule=f"deterministic: pass iff every identity holds to {TOL:g} (relative) on every instance and no "
        "sampled unit-ball point exceeds the dual norm",
        plots=[
            Plot(
                title="LMO identities: worst relative violation",
                xlabel="",
                ylabel="max violation",
                series=[{"x": list(range(len(worst))), "y": worst, "style": "points", "label": "measured"}],
                hlines=[{"y": TOL, "label": "tolerance", "color": "r"}],
                yscale="log",
                xticklabels=labels,
            )
        ],
    )


@claim("sharp_operator", source="docs/theory.md §5.31 [Q]/[D] (Bernstein-Newhouse 2024; Kelner et al.)", tags=("lmo",))
def sharp_operator(ctx: Context) -> ClaimResult:
    """Steepest descent: Delta* = -g#/lambda attains min_D <g,D> + lambda/2 ||D||^2 = -||g||_*^2/(2 lambda), with
    ||g#|| = ||g||_*, <g, g#> = ||g||_*^2; special cases l2 (g# = g), linf (||g||_1 sign g), spectral
    (||G||_nuc U V^T)."""
    n = ctx.pick(30, 100)
    lam = 2.5
    stats: dict[str, Any] = {"instances_per_norm": n, "lambda": lam, "tolerance": TOL}
    passed = True
    labels, worst = [], []
    for name, norm in {**VECTOR_NORMS, **MATRIX_NORMS}.items():
        gs = _instances(ctx, f"sharp_{name}", name in MATRIX_NORMS, n)
        gen = tensor_generator(mix_seed(ctx.seed, salt(f"sharp_perturb_{name}")), 0)
        v = {"||g#|| = ||g||_*": 0.0, "<g,g#> = ||g||_*^2": 0.0, "min value": 0.0}
        beaten = 0.0
        special = 0.0
        for g in gs:
            gs_ = norm.sharp(g)
            dual = float(norm.dual_norm(g))
            v["||g#|| = ||g||_*"] = max(v["||g#|| = ||g||_*"], _rel(float(norm.norm(gs_)), dual))
            v["<g,g#> = ||g||_*^2"] = max(v["<g,g#> = ||g||_*^2"], _rel(_inner(g, gs_), dual**2))
            delta = -gs_ / lam
            best = -(dual**2) / (2 * lam)
            v["min value"] = max(v["min value"], _rel(_sharp_model(norm, g, lam, delta), best))
            for _ in range(10):  # no perturbed point goes below the claimed minimum
                eps = 0.1 * torch.randn(g.shape, generator=gen, dtype=torch.float64) * float(delta.abs().max())
                beaten = max(beaten, (best - _sharp_model(norm, g, lam, delta + eps)) / abs(best))
            if name == "l2":
                special = max(special, float((gs_ - g).abs().max()))
            elif name == "linf":
                special = max(special, float((gs_ - g.abs().sum() * torch.sign(g)).abs().max()) / dual)
            elif name == "spectral":
                U, S, Vh = torch.linalg.svd(g, full_matrices=False)
                special = max(special, float((gs_ - S.sum() * U @ Vh).abs().max()) / dual)
        ok = max(v.values()) <= TOL and beaten <= TOL and special <= TOL
        passed &= ok
        stats[name] = {
            **{f"max_rel_violation {k}": x for k, x in v.items()},
            "largest_relative_improvement_by_perturbation": beaten,
            "special_case_deviation": special,
            "passed": ok,
        }
        for k, x in v.items():
            labels.append(f"{name}: {k}")
            worst.append(max(x, 1e-17))
    return ClaimResult(
        predicted="g# identities and min value -||g||_*^2/(2 lambda) exact; special cases exact",
        measured=f"largest relative violation {max(worst):.1e}; no perturbation improved on the minimum",
        passed=bool(passed),
        statistics=stats,
        verdict_rule=f"deterministic: pass iff every identity holds to {TOL:g} and no random perturbation of Delta* "
        "lowers the objective by more than the tolerance",
        plots=[
            Plot(
                title="sharp operator identities: worst relative violation",
                xlabel="",
                ylabel="max violation",
                series=[{"x": list(range(len(worst))), "y": worst, "style": "points", "label": "measured"}],
                hlines=[{"y": TOL, "label": "tolerance", "color": "r"}],
                yscale="log",
                xticklabels=labels,
            )
        ],
    )


def _cvxpy_lmo_values(G: np.ndarray) -> dict[str, float] | None:
    """Min <G, S> over the spectral and nuclear unit balls, solved by cvxpy (None when cvxpy is missing)."""
    try:
        import cvxpy as cp
    except ImportError:
        return None
    out = {}
    for name, cons in (("spectral", lambda S: cp.sigma_max(S) <= 1), ("nuclear", lambda S: cp.normNuc(S) <= 1)):
        S = cp.Variable(G.shape)
        prob = cp.Problem(cp.Minimize(cp.sum(cp.multiply(G, S))), [cons(S)])
        prob.solve()
        out[name] = float(prob.value)
    return out


@claim("spectral_nuclear_lmo", source="docs/theory.md §5.29 [D]; ground truth: cvxpy SDP", tags=("lmo", "spectral"))
def spectral_nuclear_lmo(ctx: Context) -> ClaimResult:
    """Spectral-ball LMO -U V^T: <G, -U V^T> = -||G||_nuc and ||U V^T||_op = 1; nuclear-ball LMO -u1 v1^T:
    <G, -u1 v1^T> = -sigma_1; both optimal values agree with cvxpy's solution of the defining program."""
    n = ctx.pick(30, 100)
    gs = _instances(ctx, "spectral_nuclear", True, n)
    spec, nuc = L.Spectral(), L.Nuclear()
    v = {"spectral value": 0.0, "spectral ||UV^T||_op": 0.0, "nuclear value": 0.0, "nuclear ||.||_nuc": 0.0}
    for g in gs:
        s = torch.linalg.svdvals(g)
        a, b = spec.lmo(g), nuc.lmo(g)
        v["spectral value"] = max(v["spectral value"], _rel(_inner(g, a), -float(s.sum())))
        v["spectral ||UV^T||_op"] = max(v["spectral ||UV^T||_op"], _rel(float(torch.linalg.matrix_norm(a, 2)), 1.0))
        v["nuclear value"] = max(v["nuclear value"], _rel(_inner(g, b), -float(s[0])))
        v["nuclear ||.||_nuc"] = max(v["nuclear ||.||_nuc"], _rel(float(torch.linalg.matrix_norm(b, "nuc")), 1.0))
    cvx_n = ctx.pick(3, 8)
    cvx_dev, cvx_rows = 0.0, []
    cvx_tol = 1e-5
    for g in gs[:cvx_n]:
        ref = _cvxpy_lmo_values(g.numpy())
        if ref is None:
            break
        ours = {"spectral": _inner(g, spec.lmo(g)), "nuclear": _inner(g, nuc.lmo(g))}
        for k in ref:
            dev = _rel(ours[k], ref[k])
            cvx_dev = max(cvx_dev, dev)
            cvx_rows.append({"shape": list(g.shape), "norm": k, "ours": ours[k], "cvxpy": ref[k], "rel_dev": dev})
    passed = max(v.values()) <= TOL and cvx_dev <= cvx_tol
    return ClaimResult(
        predicted="<G,lmo> = -||G||_nuc (spectral ball), -sigma_1 (nuclear ball); LMO on the unit sphere; = cvxpy "
        "optimum",
        measured=f"largest relative violation {max(v.values()):.1e} over {n} matrices; cvxpy agreement {cvx_dev:.1e} "
        f"({len(cvx_rows)} programs)"
        if cvx_rows
        else f"largest relative violation {max(v.values()):.1e}; cvxpy not installed",
        passed=bool(passed),
        statistics={
            "instances": n,
            "max_relative_violations": v,
            "tolerance": TOL,
            "cvxpy": cvx_rows,
            "cvxpy_tolerance": cvx_tol,
        },
        verdict_rule=f"deterministic: pass iff the identities hold to {TOL:g} and our optimal values match cvxpy's "
        f"(SCS/Clarabel accuracy) to {cvx_tol:g} relative",
        plots=[
            Plot(
                title="spectral / nuclear LMOs: worst relative violation",
                xlabel="",
                ylabel="max violation",
                series=[
                    {
                        "x": list(range(len(v))),
                        "y": [max(x, 1e-17) for x in v.values()],
                        "style": "points",
                        "label": "identities",
                    }
                ]
                + (
                    [{"x": [len(v)], "y": [max(cvx_dev, 1e-17)], "style": "points", "label": "vs cvxpy"}]
                    if cvx_rows
                    else []
                ),
                hlines=[{"y": TOL, "label": "tolerance", "color": "r"}],
                yscale="log",
                xticklabels=list(v) + (["cvxpy"] if cvx_rows else []),
            )
        ],
    )


@claim("product_norm_duality", source="docs/theory.md §5.30 [D] (Scion/Gluon layer-wise LMO)", tags=("lmo",))
def product_norm_duality(ctx: Context) -> ClaimResult:
    """Block norms: the dual of max_l ||x_l||/rho_l is sum_l rho_l ||g_l||_* and its LMO is the concatenation of the
    block LMOs of radius rho_l; the dual of the sum norm is max_l ||g_l||_* and its LMO puts all mass on the arg-max
    block."""
    n = ctx.pick(30, 100)
    blocks = (L.Spectral(), L.LInf(), L.L2())
    radii = (0.5, 2.0, 1.0)
    prod, summ = L.ProductNorm(blocks, radii), L.SumNorm(blocks)
    seed = mix_seed(ctx.seed, salt("product_norm_duality"))
    worst = {
        "product dual formula": 0.0,
        "product LMO = block LMOs": 0.0,
        "product <g,lmo> = -dual": 0.0,
        "sum dual formula": 0.0,
        "sum <g,lmo> = -dual": 0.0,
        "sum LMO single block": 0.0,
    }
    sup_excess = -math.inf
    for k in range(n):
        gen = tensor_generator(seed, k)
        gs = [
            torch.randn(4, 3, generator=gen, dtype=torch.float64),
            torch.randn(7, generator=gen, dtype=torch.float64),
            torch.randn(5, generator=gen, dtype=torch.float64),
        ]
        duals = [float(b.dual_norm(g)) for b, g in zip(blocks, gs, strict=False)]
        pd = float(prod.dual_norm(gs))
        worst["product dual formula"] = max(
            worst["product dual formula"], _rel(pd, sum(r * x for r, x in zip(radii, duals, strict=False)))
        )
        lm = prod.lmo(gs)
        worst["product LMO = block LMOs"] = max(
            worst["product LMO = block LMOs"],
            max(float((a - b.lmo(g, r)).abs().max()) for a, b, g, r in zip(lm, blocks, gs, radii, strict=False)),
        )
        worst["product <g,lmo> = -dual"] = max(
            worst["product <g,lmo> = -dual"], _rel(sum(_inner(g, s) for g, s in zip(gs, lm, strict=False)), -pd)
        )
        sd = float(summ.dual_norm(gs))
        worst["sum dual formula"] = max(worst["sum dual formula"], _rel(sd, max(duals)))
        ls = summ.lmo(gs)
        worst["sum <g,lmo> = -dual"] = max(
            worst["sum <g,lmo> = -dual"], _rel(sum(_inner(g, s) for g, s in zip(gs, ls, strict=False)), -sd)
        )
        nonzero = sum(1 for s in ls if float(s.abs().max()) > 0)
        worst["sum LMO single block"] = max(worst["sum LMO single block"], float(nonzero != 1))
        # sup definition of the product dual: random points of the product unit ball never beat it
        for _ in range(10):
            pts = [torch.randn(x.shape, generator=gen, dtype=torch.float64) for x in gs]
            pn = float(prod.norm(pts))
            sup_excess = max(sup_excess, (sum(_inner(g, p) for g, p in zip(gs, pts, strict=False)) / pn - pd) / pd)
    passed = max(worst.values()) <= TOL and sup_excess <= TOL
    return ClaimResult(
        predicted="||g||_* = sum_l rho_l ||g_l||_* (product), max_l ||g_l||_* (sum); LMOs blockwise / arg-max block",
        measured=f"largest violation {max(worst.values()):.1e} over {n} block vectors (spectral 4x3, linf 7, l2 5)",
        passed=bool(passed),
        statistics={
            "instances": n,
            "radii": list(radii),
            "max_violations": worst,
            "sampled_sup_excess": sup_excess,
            "tolerance": TOL,
        },
        verdict_rule=f"deterministic: pass iff every identity holds to {TOL:g} and no sampled point of the product "
        "ball exceeds the dual norm",
        plots=[
            Plot(
                title="block norms: worst violation",
                xlabel="",
                ylabel="max violation",
                series=[
                    {
                        "x": list(range(len(worst))),
                        "y": [max(x, 1e-17) for x in worst.values()],
                        "style": "points",
                        "label": "measured",
                    }
                ],
                hlines=[{"y": TOL, "label": "tolerance", "color": "r"}],
                yscale="log",
                xticklabels=list(worst),
            )
        ],
    )


def _matrix_with_singular_values(s: np.ndarray, m: int, n: int, gen: torch.Generator) -> torch.Tensor:
    qa, _ = torch.linalg.qr(torch.randn(m, m, generator=gen, dtype=torch.float64))
    qb, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    k = len(s)
    return (qa[:, :k] * torch.from_numpy(s)) @ qb[:, :k].T


@claim(
    "newton_schulz_band",
    source="docs/theory.md §5.32, 5.33 [D]/[C] (Muon quintic; modula docs)",
    tags=("lmo", "spectral", "newton_schulz"),
)
def newton_schulz_band(ctx: Context) -> ClaimResult:
    """Muon's quintic Newton–Schulz does not produce U V^T: p(1) = 0.701, repelling fixed points 0.8680 and 1.2637, and
    after 5 steps every singular value with sigma/||G||_F >= 0.01 lies in the invariant band [0.6818, 1.1344]; singular
    vectors are preserved; the cubic converges to 1; Muon's post-scale is max(1, m/n)^(1/2)."""
    p = theory.ns_polynomial(theory.MUON_QUINTIC)
    fixed = theory.ns_fixed_points(theory.MUON_QUINTIC)
    lo, hi = theory.ns_invariant_band(theory.MUON_QUINTIC)
    quoted = {"p(1)": 0.701, "fixed_low": 0.8680, "fixed_high": 1.2637, "band_low": 0.6818, "band_high": 1.1344}
    computed = {
        "p(1)": float(p(1.0)),
        "fixed_low": float(fixed[0]),
        "fixed_high": float(fixed[-1]),
        "band_low": lo,
        "band_high": hi,
    }
    scalar_ok = all(abs(computed[k] - quoted[k]) <= 5e-4 for k in quoted)
    slopes = {"|p'(0.868)|": float(abs(p.deriv()(fixed[0]))), "|p'(1.2637)|": float(abs(p.deriv()(fixed[-1])))}
    repelling = all(v > 1 for v in slopes.values())
    # matrices: singular values sigma_i / ||G||_F >= 0.01 (float64), and in bf16 arithmetic
    n = ctx.pick(20, 80)
    seed = mix_seed(ctx.seed, salt("newton_schulz_band"))
    worst_out, worst_vec, bf16_range, cubic_err = 0.0, 0.0, [math.inf, -math.inf], 0.0
    all_sv: list[float] = []
    for k in range(n):
        gen = tensor_generator(seed, k)
        m, nn = 6 + k % 7, 4 + k % 5
        r = min(m, nn)
        raw = np.exp(np.sort(np.random.default_rng([ctx.seed, k]).uniform(np.log(0.05), 0, r))[::-1])
        raw[-1] = (
            0.0105 * math.sqrt(float((raw**2).sum()) - raw[-1] ** 2) / math.sqrt(1 - 0.0105**2)
        )  # smallest ratio ~0.0105
        G = _matrix_with_singular_values(raw, m, nn, gen)
        out = L.newton_schulz(G, L.MUON_QUINTIC, 5)
        U, S, Vh = torch.linalg.svd(G, full_matrices=False)
        sv = torch.linalg.svdvals(out).numpy()
        all_sv += sv.tolist()
        worst_out = max(worst_out, float(max(0.0, lo - sv.min(), sv.max() - hi)))
        core = U.T @ out @ Vh.T
        off = core - torch.diag(torch.diagonal(core))
        worst_vec = max(worst_vec, float(off.abs().max()) / float(core.abs().max()))
        sb = torch.linalg.svdvals(
            L.newton_schulz(G.float(), L.MUON_QUINTIC, 5, compute_dtype=torch.bfloat16).double()
        ).numpy()
        bf16_range = [min(bf16_range[0], float(sb.min())), max(bf16_range[1], float(sb.max()))]
        sc = torch.linalg.svdvals(L.newton_schulz(G, L.CUBIC, 30)).numpy()
        cubic_err = max(cubic_err, float(np.abs(sc - 1).max()))
    tiny = {
        "sigma=1e-3 after 5": float(theory.ns_scalar_map(1e-3, steps=5)),
        "sigma=1e-3 after 10": float(theory.ns_scalar_map(1e-3, steps=10)),
    }
    tiny_ok = tiny["sigma=1e-3 after 5"] >= 0.47 and lo <= tiny["sigma=1e-3 after 10"] <= hi
    shape_ok = all(
        abs(L.muon_shape_scale((a, b)) - max(1.0, a / b) ** 0.5) <= 1e-15 for a, b in ((8, 2), (2, 8), (5, 5), (9, 4))
    )
    bf16_ok = bf16_range[0] >= 0.6 and bf16_range[1] <= 1.25
    passed = (
        scalar_ok
        and repelling
        and worst_out <= 1e-12
        and worst_vec <= 1e-9
        and cubic_err <= 1e-6
        and tiny_ok
        and shape_ok
        and bf16_ok
    )
    grid = np.geomspace(1e-3, 1.0, 200)
    return ClaimResult(
        predicted="p(1)=0.701, fixed points 0.8680/1.2637 (repelling), band [0.6818, 1.1344] after 5 steps for "
        "sigma/||G||_F >= 0.01",
        measured=f"p(1)={computed['p(1)']:.4f}, fixed {computed['fixed_low']:.4f}/{computed['fixed_high']:.4f}, band "
        f"[{lo:.4f}, {hi:.4f}]; {n} matrices: singular values in [{min(all_sv):.4f}, {max(all_sv):.4f}] (float64), "
        f"[{bf16_range[0]:.3f}, {bf16_range[1]:.3f}] (bf16); cubic |sigma - 1| <= {cubic_err:.1e}",
        passed=bool(passed),
        statistics={
            "quoted": quoted,
            "computed": computed,
            "fixed_point_slopes": slopes,
            "matrices": n,
            "max_band_violation_float64": worst_out,
            "max_offdiagonal_U^T NS(G) V": worst_vec,
            "bf16_singular_value_range": bf16_range,
            "bf16_allowed": [0.6, 1.25],
            "cubic_30_steps_max_error": cubic_err,
            "small_sigma": tiny,
            "muon_shape_scale_ok": shape_ok,
        },
        verdict_rule="deterministic: pass iff the scalar constants match the quoted values to 5e-4, both fixed points "
        "repel, every float64 singular value after 5 steps is in the band, singular vectors are preserved to 1e-9, "
        "bf16 stays in [0.6, 1.25], the cubic reaches 1 to 1e-6 in 30 steps and Muon's shape scale is exact",
        plots=[
            Plot(
                title="Muon quintic: where a singular value goes in 5 steps",
                xlabel="sigma / ||G||_F",
                ylabel="singular value after 5 steps",
                series=[
                    {
                        "x": grid.tolist(),
                        "y": np.asarray(theory.ns_scalar_map(grid, steps=5)).tolist(),
                        "label": "p^5(sigma)",
                    },
                    {
                        "x": grid.tolist(),
                        "y": np.asarray(theory.ns_scalar_map(grid, theory.CUBIC, steps=5)).tolist(),
                        "style": "dashed",
                        "label": "cubic, 5 steps",
                    },
                ],
                hlines=[
                    {"y": lo, "label": "band [0.6818, 1.1344]", "color": "r"},
                    {"y": hi, "color": "r"},
                    {"y": 1.0, "color": "k", "style": "--", "label": "U V^T"},
                ],
                xscale="log",
            )
        ],
    )
