"""Tests of zotheory.lmo: LMO / dual-norm / sharp identities (§5.28–5.31), cvxpy ground truth
(``docs/theory.md`` §4.5), Newton–Schulz facts (§5.32), Muon's shape factor (§5.33), input validation.

Tolerances (relative to the natural scale, e.g. ``r ||g||_*`` for inner products):

* float64: ``1e-10`` (entrywise norms) — the identities are exact up to a few ulps times the dimension;
* float32: ``2e-5`` — float32 eps is 6e-8 and the sums here have <= 144 terms;
* SVD-based argmin comparisons (homogeneity / odd symmetry of the spectral and nuclear LMOs) additionally scale with
  the conditioning of the returned factor: ``U V^T`` moves by ``~ ||dG|| / sigma_min`` and ``u_1 v_1^T`` by
  ``~ ||dG|| / (sigma_1 - sigma_2)``; the tolerance is ``50 * eps * sqrt(mn) * condition``.
* cvxpy (Clarabel): optimal values to ``1e-6`` relative, argmins to ``1e-3`` (interior-point accuracy;
  ``docs/theory.md`` §4.5: measured 1e-8 and 1.5e-5).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import cvxpy as cp
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from zotheory import theory
from zotheory.lmo import (
    CUBIC,
    L1,
    L2,
    MUON_QUINTIC,
    NORMS,
    NS_EPS,
    Frobenius,
    LInf,
    Lp,
    NewtonSchulzSpectral,
    Norm,
    Nuclear,
    ProductNorm,
    Spectral,
    SumNorm,
    get_norm,
    muon_shape_scale,
    newton_schulz,
    spectral_lmo,
)

RTOL = {torch.float32: 2e-5, torch.float64: 1e-10}
EPS = {torch.float32: float(torch.finfo(torch.float32).eps), torch.float64: float(torch.finfo(torch.float64).eps)}

VECTOR_NORMS = [L2(), LInf(), L1(), Lp(1.5), Lp(3.0), Lp(7.0)]
MATRIX_NORMS = [Frobenius(), Spectral(), Nuclear()]
EXACT_NORMS = VECTOR_NORMS + MATRIX_NORMS


def _seeded(shape: tuple[int, ...], seed: int, scale: float, dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


@st.composite
def tensors(draw: st.DrawFn, matrix: bool) -> torch.Tensor:
    """Random Gaussian tensors: vectors of 1..40 entries or matrices up to 12x12, float32/float64, scale 1e-3..1e3."""
    if matrix:
        shape: tuple[int, ...] = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    else:
        shape = (draw(st.integers(1, 40)),)
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    scale = 10.0 ** draw(st.floats(-3.0, 3.0))
    seed = draw(st.integers(0, 2**31 - 1))
    return _seeded(shape, seed, scale, dtype)


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() * b.double()).sum())


def _argmin_tol(norm: Norm, g: torch.Tensor) -> float:
    """Absolute tolerance (in units of the radius) for comparing two LMO outputs of nearby inputs."""
    eps = EPS[g.dtype]
    if isinstance(norm, (Spectral, Nuclear)):
        s = torch.linalg.svdvals(g.double().reshape(g.shape[0], -1))
        if isinstance(norm, Spectral):
            cond = float(s[0] / s[-1])
        else:
            cond = float(s[0] / (s[0] - s[1])) if s.numel() > 1 else 1.0
        return 50 * eps * math.sqrt(g.numel()) * cond + 10 * eps
    return 50 * eps


def _check_identities(norm: Norm, g: torch.Tensor, r: float, c: float) -> None:
    rtol = RTOL[g.dtype]
    s = norm.lmo(g, r)
    assert s.dtype == g.dtype and s.shape == g.shape
    dual = float(norm.dual_norm(g).double())
    assert dual > 0
    # §5.28: <g, lmo_r(g)> = -r ||g||_*  and  ||lmo_r(g)|| = r
    assert _dot(g, s) == pytest.approx(-r * dual, rel=rtol)
    assert float(norm.norm(s.double())) == pytest.approx(r, rel=rtol)
    # the value is the minimum: no feasible point does better (compare with a few random feasible points)
    for k in range(3):
        z = _seeded(tuple(g.shape), 1000 + k, 1.0, torch.float64)
        z = z * (r / float(norm.norm(z)))
        assert _dot(g, z) >= -r * dual * (1 + rtol)
    # §5.28: positive homogeneity and odd symmetry (ties excluded: Gaussian data has none almost surely)
    tol = _argmin_tol(norm, g) * r
    torch.testing.assert_close(norm.lmo(g * c, r).double(), s.double(), atol=tol, rtol=0)
    torch.testing.assert_close(norm.lmo(-g, r).double(), -s.double(), atol=tol, rtol=0)
    # §5.31: sharp, <g, g#> = ||g||_*^2, ||g#|| = ||g||_*
    sh = norm.sharp(g)
    assert sh.dtype == g.dtype
    assert _dot(g, sh) == pytest.approx(dual**2, rel=4 * rtol)
    assert float(norm.norm(sh.double())) == pytest.approx(dual, rel=4 * rtol)
    # §5.31: Delta = -g#/lam attains min <g, D> + lam/2 ||D||^2 = -||g||_*^2 / (2 lam)
    lam = 3.0
    delta = -sh.double() / lam
    val = _dot(g, delta) + lam / 2 * float(norm.norm(delta)) ** 2
    assert val == pytest.approx(-(dual**2) / (2 * lam), rel=8 * rtol)


@pytest.mark.parametrize("norm", VECTOR_NORMS, ids=lambda n: n.name)
@given(g=tensors(matrix=False), r=st.floats(0.01, 100.0), c=st.floats(1e-3, 1e3))
def test_vector_lmo_identities(norm: Norm, g: torch.Tensor, r: float, c: float) -> None:
    """§5.28 and 5.31 for the entrywise norms on vectors."""
    _check_identities(norm, g, r, c)


@pytest.mark.parametrize("norm", EXACT_NORMS, ids=lambda n: n.name)
@given(g=tensors(matrix=True), r=st.floats(0.01, 100.0), c=st.floats(1e-3, 1e3))
def test_matrix_lmo_identities(norm: Norm, g: torch.Tensor, r: float, c: float) -> None:
    """§5.28, 5.29 and 5.31 for every exact norm on matrices (entrywise norms see the flattened matrix)."""
    _check_identities(norm, g, r, c)


@pytest.mark.parametrize("norm", [*EXACT_NORMS, NewtonSchulzSpectral.muon_quintic()], ids=lambda n: n.name)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_zero_gradient_gives_zero_lmo(norm: Norm, dtype: torch.dtype) -> None:
    g = torch.zeros(4, 3, dtype=dtype)
    s = norm.lmo(g, 2.0)
    assert s.dtype == dtype and torch.count_nonzero(s) == 0
    assert torch.count_nonzero(norm.sharp(g)) == 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", sorted(NORMS))
def test_half_precision_round_trip(name: str, dtype: torch.dtype) -> None:
    """Half-precision input: computed in float32, returned in the input dtype, value identity to bf16/fp16 accuracy."""
    norm = get_norm(name, p=3.0) if name == "lp" else get_norm(name)
    g = _seeded((6, 4), 3, 1.0, dtype)
    s = norm.lmo(g, 1.0)
    assert s.dtype == dtype and s.shape == g.shape
    assert norm.norm(g).dtype == dtype and norm.dual_norm(g).dtype == dtype
    if norm.exact:
        rel = 1e-2 if dtype == torch.bfloat16 else 2e-3
        assert _dot(g, s) == pytest.approx(-float(norm.dual_norm(g.double())), rel=rel)


def test_closed_forms_special_cases() -> None:
    """docs/theory.md §4.1 table / §5.31 special cases: l2 sharp = g; linf sharp = ||g||_1 sign g; spectral sharp =
    ||G||_nuc U V^T; Lp(2) = L2; frobenius = l2 of the flattened matrix."""
    g = _seeded((5, 3), 0, 1.0, torch.float64)
    torch.testing.assert_close(L2().sharp(g), g)
    torch.testing.assert_close(LInf().sharp(g), g.abs().sum() * torch.sign(g))
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    torch.testing.assert_close(Spectral().sharp(g), s.sum() * u @ vh)
    torch.testing.assert_close(Nuclear().lmo(g, 2.0), -2.0 * torch.outer(u[:, 0], vh[0]))
    torch.testing.assert_close(Lp(2.0).lmo(g, 1.5), L2().lmo(g, 1.5))
    torch.testing.assert_close(Frobenius().lmo(g, 1.5), L2().lmo(g.reshape(-1), 1.5).reshape(5, 3))
    e = L1().lmo(torch.tensor([0.5, -3.0, 2.0], dtype=torch.float64), 2.0)
    torch.testing.assert_close(e, torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64))
    # linf convention at g_i = 0: zero there
    torch.testing.assert_close(LInf().lmo(torch.tensor([1.0, 0.0, -2.0]), 3.0), torch.tensor([-3.0, 0.0, 3.0]))


def test_lp_extreme_exponents_do_not_overflow() -> None:
    """Lp with p near 1 (q huge) and p large (q near 1): finite output and the value identity."""
    g = _seeded((30,), 5, 1e3, torch.float64)
    for p in (1.01, 1.2, 50.0):
        n = Lp(p)
        s = n.lmo(g, 1.0)
        assert torch.isfinite(s).all()
        assert _dot(g, s) == pytest.approx(-float(n.dual_norm(g)), rel=1e-9)


def test_spectral_rank_deficient_and_higher_dims() -> None:
    """Rank-deficient G: the minimum-Frobenius-norm minimiser -U_+ V_+^T (rank preserved, identities hold);
    >2 dims use the (shape[0], -1) matrix view."""
    a = _seeded((6, 2), 1, 1.0, torch.float64)
    b = _seeded((2, 5), 2, 1.0, torch.float64)
    g = a @ b  # rank 2
    s = spectral_lmo(g, 1.0)
    assert int(torch.linalg.matrix_rank(s)) == 2
    assert _dot(g, s) == pytest.approx(-float(torch.linalg.svdvals(g).sum()), rel=1e-12)
    assert float(torch.linalg.matrix_norm(s, ord=2)) == pytest.approx(1.0, rel=1e-12)
    t = _seeded((4, 3, 2), 3, 1.0, torch.float64)
    for norm in (Spectral(), Nuclear(), NewtonSchulzSpectral.muon_quintic()):
        out = norm.lmo(t, 2.0)
        assert out.shape == t.shape
        torch.testing.assert_close(out, norm.lmo(t.reshape(4, 6), 2.0).reshape(4, 3, 2))
        assert float(norm.norm(t)) == pytest.approx(float(norm.norm(t.reshape(4, 6))))


# ---------------------------------------------------------------------------------------------------------------
# cvxpy ground truth (docs/theory.md §4.5)
# ---------------------------------------------------------------------------------------------------------------

SOLVER = "CLARABEL" if "CLARABEL" in cp.installed_solvers() else None


def _solve(
    objective_of: Callable[[cp.Variable], cp.Expression],
    constraint_of: Callable[[cp.Variable], cp.Constraint],
    shape: tuple[int, ...],
) -> tuple[float, np.ndarray]:
    s = cp.Variable(shape)
    prob = cp.Problem(cp.Minimize(objective_of(s)), [constraint_of(s)])
    prob.solve(solver=SOLVER)
    assert prob.status == cp.OPTIMAL
    return float(prob.value), np.asarray(s.value)


CVX_CASES = {
    "l2": (L2(), lambda s: cp.norm(cp.vec(s, order="C"), 2)),
    "linf": (LInf(), lambda s: cp.norm(cp.vec(s, order="C"), "inf")),
    "l1": (L1(), lambda s: cp.norm(cp.vec(s, order="C"), 1)),
    "l3": (Lp(3.0), lambda s: cp.pnorm(cp.vec(s, order="C"), 3)),
    "l1.5": (Lp(1.5), lambda s: cp.pnorm(cp.vec(s, order="C"), 1.5)),
    "frobenius": (Frobenius(), lambda s: cp.norm(s, "fro")),
    "spectral": (Spectral(), lambda s: cp.sigma_max(s)),
    "nuclear": (Nuclear(), lambda s: cp.normNuc(s)),
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("key", sorted(CVX_CASES))
def test_exact_lmo_matches_cvxpy(key: str, seed: int) -> None:
    """Min <G, S> s.t. ||S|| <= r solved by cvxpy: optimal value = -r ||G||_* tightly, argmin = our LMO loosely
    (the argmin is unique for Gaussian G: no zero entries, no ties, full rank, sigma_1 > sigma_2)."""
    norm, cvx_norm = CVX_CASES[key]
    shape = (5, 4) if seed == 0 else (3, 6)
    g = _seeded(shape, 10 + seed, 2.0, torch.float64)
    r = 1.7
    gn = g.numpy()
    value, s_star = _solve(lambda s: cp.sum(cp.multiply(gn, s)), lambda s: cvx_norm(s) <= r, shape)
    assert value == pytest.approx(-r * float(norm.dual_norm(g)), rel=1e-6)
    np.testing.assert_allclose(s_star, norm.lmo(g, r).numpy(), atol=1e-3 * r)


def test_product_and_sum_norm_match_cvxpy() -> None:
    """§5.30 with two blocks (l2 vector block, spectral matrix block): the max-type product norm's LMO is
    blockwise, its dual is sum_l rho_l ||g_l||_*; the sum norm's dual is max_l ||g_l||_*/w_l."""
    g1 = _seeded((4,), 20, 1.0, torch.float64)
    g2 = _seeded((3, 5), 21, 1.0, torch.float64)
    rho, r = (2.0, 0.5), 1.3
    prod = ProductNorm([L2(), Spectral()], rho)
    s1, s2 = cp.Variable(4), cp.Variable((3, 5))
    obj = cp.Minimize(g1.numpy() @ s1 + cp.sum(cp.multiply(g2.numpy(), s2)))
    cons = [cp.norm(s1, 2) <= r * rho[0], cp.sigma_max(s2) <= r * rho[1]]
    prob = cp.Problem(obj, cons)
    prob.solve(solver=SOLVER)
    dual = float(prod.dual_norm([g1, g2]))
    assert dual == pytest.approx(rho[0] * float(g1.norm()) + rho[1] * float(torch.linalg.svdvals(g2).sum()))
    assert prob.value == pytest.approx(-r * dual, rel=1e-6)
    out = prod.lmo([g1, g2], r)
    np.testing.assert_allclose(s1.value, out[0].numpy(), atol=1e-3)
    np.testing.assert_allclose(s2.value, out[1].numpy(), atol=1e-3)
    assert float(prod.norm(out)) == pytest.approx(r)
    sh = prod.sharp([g1, g2])
    assert sum(_dot(a, b) for a, b in zip([g1, g2], sh, strict=False)) == pytest.approx(dual**2)
    assert float(prod.norm(sh)) == pytest.approx(dual)

    w = (2.0, 3.0)  # no unit weight, so the winning block's radius r / w_l is tested
    sn = SumNorm([L2(), Spectral()], w)
    prob = cp.Problem(obj, [w[0] * cp.norm(s1, 2) + w[1] * cp.sigma_max(s2) <= r])
    prob.solve(solver=SOLVER)
    dual = float(sn.dual_norm([g1, g2]))
    assert dual == pytest.approx(max(float(g1.norm()) / w[0], float(torch.linalg.svdvals(g2).sum()) / w[1]))
    assert prob.value == pytest.approx(-r * dual, rel=1e-6)
    out = sn.lmo([g1, g2], r)
    np.testing.assert_allclose(s1.value, out[0].numpy(), atol=1e-3)
    np.testing.assert_allclose(s2.value, out[1].numpy(), atol=1e-3)
    assert float(sn.norm(out)) == pytest.approx(r)
    assert (torch.count_nonzero(out[0]) == 0) != (torch.count_nonzero(out[1]) == 0)  # all mass on one block
    sh = sn.sharp([g1, g2])
    assert sum(_dot(a, b) for a, b in zip([g1, g2], sh, strict=False)) == pytest.approx(dual**2)


def test_block_norm_validation() -> None:
    with pytest.raises(ValueError, match="radii"):
        ProductNorm([L2(), L1()], [1.0])
    with pytest.raises(ValueError, match="-1.0"):
        ProductNorm([L2(), L1()], [1.0, -1.0])
    prod = ProductNorm([L2(), L1()], [1.0, 1.0])
    with pytest.raises(ValueError, match="3 blocks"):
        prod.lmo([torch.ones(2)] * 3)
    with pytest.raises(TypeError, match="Tensor"):
        prod.lmo(torch.ones(2))
    assert not ProductNorm([L2(), NewtonSchulzSpectral.cubic()], [1.0, 1.0]).exact


# ---------------------------------------------------------------------------------------------------------------
# Newton–Schulz (§5.32)
# ---------------------------------------------------------------------------------------------------------------


def _prescribed(
    m: int, n: int, seed: int, ratio: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """G = U diag(s) V^T with Haar U, V and the smallest singular value exactly ``ratio * ||G||_F``."""
    gen = torch.Generator().manual_seed(seed)
    k = min(m, n)
    u, _ = torch.linalg.qr(torch.randn(m, k, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64))
    s = torch.rand(k, generator=gen, dtype=torch.float64) + 0.05
    s, _ = torch.sort(s, descending=True)
    rest = float(torch.linalg.vector_norm(s[:-1]))
    s[-1] = ratio * rest / math.sqrt(1 - ratio**2) if k > 1 else s[-1]
    return u @ torch.diag(s) @ v.T, u, s, v


SHAPES = [(8, 5), (5, 8), (12, 12), (30, 10), (2, 7)]


@pytest.mark.parametrize("shape", SHAPES)
def test_quintic_band_and_singular_vectors(shape: tuple[int, int]) -> None:
    """§5.32: for sigma_min / ||G||_F >= 0.01, all singular values of NS_5(G) lie in [0.68, 1.14] (float64), the
    singular vectors are preserved (U^T NS(G) V diagonal) and the diagonal is the scalar map p^5(sigma / ||G||_F)."""
    G, u, s, v = _prescribed(*shape, seed=sum(shape))
    X = newton_schulz(G, MUON_QUINTIC, 5)
    sv = torch.linalg.svdvals(X)
    assert float(sv.min()) >= 0.68 and float(sv.max()) <= 1.14
    core = u.T @ X @ v
    off = core - torch.diag(torch.diagonal(core))
    assert float(off.abs().max()) < 1e-12
    x0 = s / (float(torch.linalg.vector_norm(s)) + NS_EPS)  # the same Frobenius normalisation as newton_schulz
    pred = theory.ns_scalar_map(x0.numpy(), MUON_QUINTIC, 5)
    np.testing.assert_allclose(torch.diagonal(core).numpy(), pred, rtol=1e-9, atol=1e-12)
    lo, hi = theory.ns_invariant_band(MUON_QUINTIC)
    assert float(sv.min()) >= lo - 1e-9 and float(sv.max()) <= hi + 1e-9


@pytest.mark.parametrize("shape", SHAPES)
def test_cubic_converges_to_polar_factor(shape: tuple[int, int]) -> None:
    """§5.32: the cubic 1.5x - 0.5x^3 converges to 1 on (0, sqrt 3); after Frobenius normalisation every sigma
    is <= 1, so the error ||NS_k(G) - U V^T||_op strictly decreases in k and is < 1e-6 after 30 steps."""
    G, u, s, v = _prescribed(*shape, seed=100 + sum(shape))
    target = u @ v.T
    errs = [float(torch.linalg.matrix_norm(newton_schulz(G, CUBIC, k) - target, ord=2)) for k in range(0, 31, 2)]
    assert all(b < a for a, b in zip(errs, errs[1:], strict=False) if a > 1e-13)
    assert errs[-1] < 1e-6
    torch.testing.assert_close(NewtonSchulzSpectral.cubic(steps=30).lmo(G, 2.0), -2.0 * target, atol=2e-6, rtol=0)


def test_newton_schulz_transpose_dtype_and_bounds() -> None:
    """NS(G^T) = NS(G)^T; bf16 in -> bf16 out (computed in float32 by default: band with bf16 rounding slack);
    Muon-style bf16 arithmetic stays within a loose band; ||NS_5(G)||_op <= max_[0,1] p = 1.2024 always."""
    G, *_ = _prescribed(7, 4, seed=7)
    torch.testing.assert_close(newton_schulz(G.T), newton_schulz(G).T)
    gb = G.to(torch.bfloat16)
    xb = newton_schulz(gb)
    assert xb.dtype == torch.bfloat16
    sv = torch.linalg.svdvals(xb.float())
    assert float(sv.min()) >= 0.68 - 0.02 and float(sv.max()) <= 1.14 + 0.02
    xm = newton_schulz(gb, compute_dtype=torch.bfloat16)
    assert xm.dtype == torch.bfloat16
    sv = torch.linalg.svdvals(xm.float())
    assert float(sv.min()) >= 0.5 and float(sv.max()) <= 1.3
    assert NewtonSchulzSpectral.muon_quintic().lmo(gb, 1.0).dtype == torch.bfloat16
    # arbitrary (badly conditioned) Gaussian matrices: operator norm never above the quintic's max on [0, 1]
    pmax = float(theory.ns_polynomial(MUON_QUINTIC)(theory.ns_critical_points(MUON_QUINTIC)[0]))
    for seed in range(5):
        g = _seeded((9, 6), 40 + seed, 1.0, torch.float64)
        assert float(torch.linalg.matrix_norm(newton_schulz(g), ord=2)) <= pmax + 1e-9


@given(g=tensors(matrix=True), r=st.floats(0.01, 100.0), c=st.floats(1e-3, 1e3))
def test_newton_schulz_lmo_properties(g: torch.Tensor, r: float, c: float) -> None:
    """Approximate LMO (exact=False): odd symmetry, positive homogeneity (up to the 1e-7 normalisation epsilon),
    descent direction <g, lmo> < 0, and ||lmo_r(g)||_op <= 1.2025 r."""
    ns = NewtonSchulzSpectral.muon_quintic()
    assert not ns.exact
    s = ns.lmo(g, r)
    tol = 1e-4 if g.dtype == torch.float32 else 1e-9
    torch.testing.assert_close(ns.lmo(-g, r), -s, atol=tol * r, rtol=0)
    torch.testing.assert_close(ns.lmo(g * c, r), s, atol=tol * r + 5e-6 * r / (float(g.norm()) * min(c, 1.0)), rtol=0)
    assert _dot(g, s) < 0
    assert float(ns.norm(s.double())) <= 1.2025 * r
    assert float(ns.dual_norm(g.double())) == pytest.approx(float(Spectral().dual_norm(g.double())))


def test_muon_shape_scale() -> None:
    """§5.33: max(1, rows/cols)^(1/2)."""
    assert muon_shape_scale((8, 2)) == pytest.approx(2.0)
    assert muon_shape_scale((2, 8)) == 1.0
    assert muon_shape_scale((16, 2, 2)) == pytest.approx(2.0)
    with pytest.raises(ValueError, match=re.escape("(5,)")):
        muon_shape_scale((5,))


# ---------------------------------------------------------------------------------------------------------------
# registry and validation
# ---------------------------------------------------------------------------------------------------------------


def test_registry() -> None:
    expected = {"l2", "linf", "sign", "l1", "frobenius", "spectral", "nuclear", "spectral_ns", "spectral_ns_cubic"}
    assert expected <= set(NORMS)
    assert isinstance(get_norm("sign"), LInf)
    ns = get_norm("spectral_ns")
    assert ns.coefficients == MUON_QUINTIC and ns.steps == 5 and not ns.exact and ns.name == "spectral_ns"
    cub = get_norm("spectral_ns_cubic", steps=12)
    assert cub.coefficients == CUBIC and cub.steps == 12 and cub.name == "spectral_ns_cubic"
    assert get_norm("lp", p=4.0).q == pytest.approx(4.0 / 3.0)
    for name in expected:
        assert get_norm(name).exact == (not name.startswith("spectral_ns"))


def test_unknown_norm_name() -> None:
    with pytest.raises(ValueError, match=r"'l7'.*valid names:.*spectral_ns_cubic"):
        get_norm("l7")


@pytest.mark.parametrize("radius", [0.0, -1.0, float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("name", ["l2", "linf", "l1", "spectral", "nuclear", "spectral_ns"])
def test_bad_radius(name: str, radius: float) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(radius))):
        get_norm(name).lmo(torch.ones(3, 2), radius)


def test_bad_radius_product() -> None:
    with pytest.raises(ValueError, match="nan"):
        ProductNorm([L2()], [1.0]).lmo([torch.ones(2)], float("nan"))


@pytest.mark.parametrize("name", ["spectral", "nuclear", "spectral_ns", "spectral_ns_cubic"])
def test_matrix_norm_on_vector(name: str) -> None:
    g = torch.ones(5)
    norm = get_norm(name)
    for fn in (norm.lmo, norm.norm, norm.dual_norm):
        with pytest.raises(ValueError, match=re.escape("(5,)")):
            fn(g)


def test_other_bad_inputs() -> None:
    with pytest.raises(ValueError, match="p=1.0"):
        Lp(1.0)
    with pytest.raises(ValueError, match="inf"):
        Lp(float("inf"))
    with pytest.raises(TypeError, match="int64"):
        L2().lmo(torch.ones(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="list"):
        L2().lmo([1.0, 2.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("(0,)")):
        L1().lmo(torch.ones(0))
    with pytest.raises(ValueError, match="-1"):
        newton_schulz(torch.ones(2, 2), MUON_QUINTIC, -1)
    with pytest.raises(ValueError, match="nan"):
        newton_schulz(torch.ones(2, 2), (1.0, float("nan")), 2)


# ---------------------------------------------------------------------------------------------- batched Newton–Schulz
@pytest.mark.parametrize("shape", [(5, 7, 3), (3, 4, 9), (2, 6, 6)])
def test_batched_newton_schulz_equals_the_per_matrix_iteration(shape: tuple[int, int, int]) -> None:
    """One bmm chain over a stack gives each matrix's own Newton–Schulz result (own Frobenius normalisation),
    up to float64 rounding; a stack whose matrices differ in scale by 10^6 checks the per-matrix norm."""
    from zotheory.lmo import newton_schulz_batched

    gen = torch.Generator().manual_seed(1)
    G = torch.randn(*shape, generator=gen, dtype=torch.float64)
    G[0] *= 1e6
    for coeffs, steps in ((MUON_QUINTIC, 5), (CUBIC, 10)):
        batched = newton_schulz_batched(G, coeffs, steps)
        for b in range(shape[0]):
            assert torch.allclose(batched[b], newton_schulz(G[b], coeffs, steps), rtol=0, atol=1e-12)


def test_batched_newton_schulz_in_bf16_lands_in_the_quintic_band() -> None:
    """Muon's GPU arithmetic, run on the CPU: in bf16 the quintic's singular values after 5 steps still lie in
    its invariant band [0.6818, 1.1344] widened by bf16's resolution (2^-8 relative, 8 products: 3%), for
    matrices whose sigma / ||G||_F >= 0.05 (the band's entry condition is 0.01)."""
    from zotheory.lmo import newton_schulz_batched

    gen = torch.Generator().manual_seed(2)
    u, _ = torch.linalg.qr(torch.randn(4, 16, 16, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(4, 8, 8, generator=gen, dtype=torch.float64))
    sigma = torch.linspace(1.0, 0.2, 8, dtype=torch.float64)
    G = (u[:, :, :8] * sigma) @ v.mT
    out = newton_schulz_batched(G.float(), MUON_QUINTIC, 5, compute_dtype=torch.bfloat16)
    assert out.dtype == torch.float32
    s = torch.linalg.svdvals(out.double())
    assert float(s.min()) >= 0.6818 * 0.97 and float(s.max()) <= 1.1344 * 1.03


def test_batched_newton_schulz_names_a_bad_shape() -> None:
    from zotheory.lmo import newton_schulz_batched

    with pytest.raises(ValueError, match=r"\(B, m, n\).*\(4, 4\)"):
        newton_schulz_batched(torch.ones(4, 4))


def test_block_lmos_batch_newton_schulz_blocks_as_the_per_block_lmos():
    from zotheory.lmo import L2, LInf, NewtonSchulzSpectral, block_lmos

    g = torch.Generator().manual_seed(0)
    shapes = [(6, 4), (6, 4), (4, 6), (6, 2, 2), (5,), (6, 4)]
    tensors = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    ns = NewtonSchulzSpectral()
    norms = [ns, ns, ns, ns, L2(), LInf()]
    got = block_lmos(norms, tensors, 0.5, budget=2 * 24)  # budget: stacks of at most 2 matrices of 24 entries
    for norm, t, s in zip(norms, tensors, got, strict=False):
        assert s.shape == t.shape and s.dtype == t.dtype
        torch.testing.assert_close(s, norm.lmo(t, 0.5), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="one norm per tensor"):
        block_lmos(norms[:2], tensors, 1.0)


def test_block_lmos_stack_scaled_newton_schulz_blocks_with_their_base() -> None:
    from zotheory.lmo import NewtonSchulzSpectral, Scaled, block_lmos

    g = torch.Generator().manual_seed(1)
    tensors = [torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(3)]
    ns = NewtonSchulzSpectral()
    norms = [ns, Scaled(ns, 3.0), Scaled(LInf(), 2.0)]
    got = block_lmos(norms, tensors, 0.5)
    for norm, t, s in zip(norms, tensors, got, strict=True):
        torch.testing.assert_close(s, norm.lmo(t, 0.5), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[1], 3.0 * ns.lmo(tensors[1], 0.5), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("base", [L2(), LInf(), L1(), Spectral(), Nuclear()], ids=lambda n: n.name)
def test_scaled_norm_is_a_block_of_radius_rho(base: Norm) -> None:
    """``||x|| / rho``, dual ``rho ||g||_*`` and ``lmo_r = base.lmo_{r rho}``: the LMO identities of §5.28 hold
    for the scaled norm (``<g, lmo(g, r)> = -r ||g||_*``, ``||lmo(g, r)|| = r``), in float64 to 1e-10."""
    from zotheory.lmo import Scaled, unscaled

    g = torch.randn(5, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    norm = Scaled(base, 2.5)
    s = norm.lmo(g, 0.3)
    assert float((g * s).sum()) == pytest.approx(-0.3 * float(norm.dual_norm(g)), rel=1e-10)
    assert float(norm.norm(s)) == pytest.approx(0.3, rel=1e-10)
    assert float(norm.dual_norm(g)) == pytest.approx(2.5 * float(base.dual_norm(g)), rel=1e-12)
    folded = Scaled(norm, 2.0)
    assert unscaled(folded) == (base, 5.0) and folded.name == f"{base.name}*5"
    assert unscaled(base) == (base, 1.0)
    with pytest.raises(ValueError, match="0"):
        Scaled(base, 0.0)
    with pytest.raises(TypeError, match="needs a Norm"):
        Scaled("l2", 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("base", "shape", "rho"),
    [
        (LInf(), (7, 3), 1.0),
        (Spectral(), (12, 5), math.sqrt(12)),
        (Spectral(), (4, 3, 3), 3.0),  # matrix view 4 x 9
        (L2(), (6, 5), math.sqrt(30)),
        (L1(), (6, 5), math.sqrt(30)),
        (Nuclear(), (6, 5), math.sqrt(30)),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_rms_radius_gives_unit_steps_an_entry_rms_of_one(base: Norm, shape: tuple[int, ...], rho: float) -> None:
    from zotheory.lmo import rms_radius

    assert rms_radius(base, shape) == pytest.approx(rho, rel=1e-15)
    g = torch.randn(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    step = rms_radius(base, shape) * base.lmo(g, 1.0)
    assert float(step.pow(2).mean().sqrt()) == pytest.approx(1.0, rel=1e-10)


def test_rms_radius_of_newton_schulz_lies_in_its_singular_value_band_and_bad_input_is_named() -> None:
    from zotheory.lmo import Scaled, rms_radius

    ns = NewtonSchulzSpectral()
    g = torch.randn(40, 10, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    rms = float((rms_radius(ns, g.shape) * ns.lmo(g, 1.0)).pow(2).mean().sqrt())
    assert 0.6818 <= rms <= 1.1344  # the quintic's band after 5 steps (§5.32)
    with pytest.raises(ValueError, match="no closed form for norm 'l3'"):
        rms_radius(Lp(3.0), (4, 4))
    with pytest.raises(ValueError, match="already has its radius 2"):
        rms_radius(Scaled(LInf(), 2.0), (4,))
    with pytest.raises(ValueError, match="needs a matrix shape, got \\(5,\\)"):
        rms_radius(Spectral(), (5,))
    with pytest.raises(ValueError, match="positive dims, got \\(0, 3\\)"):
        rms_radius(LInf(), (0, 3))
