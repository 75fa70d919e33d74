"""Every constant a problem states is checked numerically.

Statistical tests use fixed seeds (so they are reproducible bit for bit); each docstring
states the false-alarm probability the tolerance was derived for, from the standard error.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from problems import (
    PROBLEMS,
    AdditiveNoise,
    LogisticRegression,
    MatrixQuadratic,
    NonconvexSine,
    NormProblem,
    Problem,
    Quadratic,
    Rosenbrock,
    SeparableLInf,
    StochasticProblem,
    make_problem,
)
from problems.nonconvex import SINE_UNIQUE_STATIONARY_MAX_A, rosenbrock_gershgorin
from problems.nonsmooth import gaussian_norm_mean

F64 = torch.float64

SMALL = {
    "quadratic": dict(d=6),
    "separable_linf": dict(d=8),
    "matrix_quadratic": dict(m=4, n=3),
    "logistic_regression": dict(n=40, d=4, batch_size=5),
    "nonconvex_sine": dict(d=5),
    "rosenbrock": dict(d=4),
    "norm": dict(d=5),
}
SMOOTH = [n for n in SMALL if n != "norm"]


def small(name: str, **kw) -> Problem:
    return make_problem(name, **{**SMALL[name], **kw})


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def sym_eig(p: Problem, xs=None) -> torch.Tensor:
    h = p.hessian(xs)
    return torch.linalg.eigvalsh(0.5 * (h + h.T))


def random_point(p: Problem, gen: torch.Generator, scale: float = 1.0) -> list[torch.Tensor]:
    return [x + scale * torch.randn(x.shape, generator=gen, dtype=x.dtype) for x in p.x0]


def z_threshold(false_alarm: float, k: int = 1) -> float:
    """Two-sided normal quantile with a Bonferroni split of ``false_alarm`` over ``k`` tests."""
    return float(scipy.stats.norm.isf(false_alarm / (2 * k)))


# --------------------------------------------------------------------------- registry conformance


def test_registry_lists_every_problem():
    assert set(PROBLEMS) == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_conformance(name):
    """Shape/dtype of f, parameters, reset, no .grad buffers, x* attains f*, dtype float64."""
    p = small(name)
    assert isinstance(p, Problem)
    f = p()
    assert f.shape == () and f.dtype == torch.float32
    assert p.dim == sum(x.numel() for x in p.parameters()) == sum(x.numel() for x in p.blocks)
    assert len(list(p.parameters())) == len(p.block_names) >= 1
    # reset restores x0 bit for bit after an arbitrary change
    x0 = p.x0
    with torch.no_grad():
        for x in p.parameters():
            x.add_(1.2345)
    p.reset()
    assert all(torch.equal(a, b) for a, b in zip(p.blocks, x0, strict=False))
    # exact_gradient does not touch .grad and matches autograd on the parameters
    g = p.exact_gradient()
    assert all(x.grad is None for x in p.parameters())
    f2 = p()
    f2.backward()
    for gi, x in zip(g, p.parameters(), strict=False):
        torch.testing.assert_close(gi, x.grad)
    # f(x*) = f*, with a vanishing gradient (float64)
    q = small(name, dtype=F64)
    assert q.dtype == F64 and q().dtype == F64
    xs = q.x_star
    assert abs(q.value(xs) - q.f_star) <= 1e-12 * max(1.0, abs(q.f_star))
    assert q.suboptimality(xs) == pytest.approx(0.0, abs=1e-12)
    if q.globally_smooth or name == "rosenbrock":
        assert q.grad_norm("l2", xs) <= 1e-9
    assert q.suboptimality() > 0
    assert q.constants()["dim"] == q.dim


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_same_problem(name):
    a, b, c = small(name, seed=3), small(name, seed=3), small(name, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.constants() == b.constants()
    if name != "rosenbrock":  # the classic Rosenbrock start and optimum do not depend on the seed
        assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_construction_and_sampling_leave_global_rng_alone():
    state = torch.random.get_rng_state()
    for name in SMALL:
        p = small(name)
        if isinstance(p, StochasticProblem):
            p.set_sample(5)
            p()
    noisy = AdditiveNoise(small("quadratic"), 1.0)
    noisy.set_sample(1)
    noisy()
    assert torch.equal(state, torch.random.get_rng_state())


def test_float64_problem_matches_float32_draws():
    a, b = Quadratic(7, seed=2), Quadratic(7, seed=2, dtype=F64)
    torch.testing.assert_close(a.x0[0].double(), b.x0[0], rtol=0, atol=1e-6)
    assert a.L == b.L and a.mu == b.mu


@pytest.mark.parametrize(
    ("name", "norm", "radius"),
    [
        ("quadratic", "l2", 1.7),
        ("separable_linf", "linf", 0.3),
        ("matrix_quadratic", None, 2.5),
        ("nonconvex_sine", "linf", 3.0),
        ("norm", "l2", 0.9),
    ],
)
def test_initial_distance_is_init_radius(name, norm, radius):
    p = small(name, init_radius=radius, dtype=F64)
    assert p.initial_distance(norm) == pytest.approx(radius, rel=1e-12)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("factory", "exc", "match"),
    [
        (lambda: Quadratic(0), ValueError, "d=0"),
        (lambda: Quadratic(5, L=0.0), ValueError, "L=0.0"),
        (lambda: Quadratic(5, L=-1.0), ValueError, "L=-1.0"),
        (lambda: Quadratic(5, L=1.0, mu=2.0), ValueError, "mu=2.0"),
        (lambda: Quadratic(5, mu=-0.1), ValueError, "mu=-0.1"),
        (lambda: Quadratic(1, L=1.0, mu=0.5), ValueError, "mu=0.5"),
        (lambda: Quadratic(3, spectrum=[1.0, 2.0]), ValueError, "3 entries"),
        (lambda: Quadratic(2, spectrum=[1.0, -2.0]), ValueError, "-2.0"),
        (lambda: Quadratic(5000), ValueError, "d=5000"),
        (lambda: Quadratic(True), TypeError, "True"),
        (lambda: Quadratic(2.5), TypeError, "2.5"),
        (lambda: Quadratic(5, seed=-1), ValueError, "seed=-1"),
        (lambda: Quadratic(5, dtype=torch.float16), ValueError, "float16"),
        (lambda: Quadratic(5, L=float("nan")), ValueError, "L=nan"),
        (lambda: SeparableLInf(0), ValueError, "d=0"),
        (lambda: SeparableLInf(4, regime="adam"), ValueError, "adam"),
        (lambda: SeparableLInf(4, max_curvature=0.0), ValueError, "max_curvature=0.0"),
        (lambda: SeparableLInf(4, phi="huber"), ValueError, "huber"),
        (lambda: MatrixQuadratic(0, 3), ValueError, "m=0"),
        (lambda: MatrixQuadratic(3, 3, right_spectrum=[1.0]), ValueError, "right_spectrum"),
        (lambda: LogisticRegression(10, 3, l2_reg=0.0), ValueError, "l2_reg=0.0"),
        (lambda: LogisticRegression(10, 3, batch_size=11), ValueError, "batch_size=11"),
        (lambda: LogisticRegression(0, 3), ValueError, "n=0"),
        (lambda: NonconvexSine(0), ValueError, "d=0"),
        (lambda: NonconvexSine(3, a=-1.0), ValueError, "a=-1.0"),
        (lambda: Rosenbrock(1), ValueError, "d=1"),
        (lambda: Rosenbrock(3, box_radius=1.0), ValueError, "box_radius=1.0"),
        (lambda: NormProblem(3, L0=0.0), ValueError, "L0=0.0"),
        (lambda: AdditiveNoise(Quadratic(3), -1.0), ValueError, "sigma=-1.0"),
        (lambda: AdditiveNoise(LogisticRegression(10, 2), 1.0), TypeError, "logistic_regression"),
        (lambda: make_problem("quadratik"), ValueError, "quadratik"),
    ],
)
def test_bad_input_names_the_value(factory, exc, match):
    with pytest.raises(exc, match=match):
        factory()


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="rosenbrock"):
        make_problem("nope")


def test_bad_sample_seed_and_gradient_norm():
    p = LogisticRegression(10, 2)
    with pytest.raises(ValueError, match="-3"):
        p.set_sample(-3)
    with pytest.raises(ValueError, match="l7"):
        p.grad_norm("l7")


# --------------------------------------------------------------------------- L and mu: l2 problems


@pytest.mark.parametrize("rotated", [True, False])
def test_quadratic_hessian_spectrum_is_exact(rotated):
    """Hessian = A: eigenvalues equal the spectrum, so L = lambda_max and mu = lambda_min are tight."""
    p = Quadratic(12, L=3.0, mu=0.02, rotated=rotated, seed=1, dtype=F64)
    ev = sym_eig(p, random_point(p, torch.Generator().manual_seed(0)))
    expected = torch.sort(p.spectrum).values
    torch.testing.assert_close(ev, expected, rtol=1e-10, atol=1e-12)
    assert ev.max().item() == pytest.approx(p.L, rel=1e-12) and p.L == 3.0
    assert ev.min().item() == pytest.approx(p.mu, rel=1e-10) and p.mu == 0.02
    assert p.trace_A == pytest.approx(float(torch.trace(p.A)), rel=1e-12)
    assert p.trace_A2 == pytest.approx(float(torch.trace(p.A @ p.A)), rel=1e-12)
    # log-spaced: constant ratio between consecutive eigenvalues
    s = torch.sort(p.spectrum, descending=True).values
    ratios = s[:-1] / s[1:]
    torch.testing.assert_close(ratios, ratios.mean().expand_as(ratios), rtol=1e-10, atol=0)
    v = p.tight_direction()
    x = p.x0
    y = [a + b for a, b in zip(x, v, strict=False)]
    assert p.smoothness_ratio(y, x) == pytest.approx(p.L, rel=1e-10)


def test_quadratic_rotation_is_haar_orthogonal_and_custom_spectrum():
    p = Quadratic(5, spectrum=[4.0, 0.0, 1.0, 2.0, 3.0], seed=3, dtype=F64)
    q = p.eigenvectors
    torch.testing.assert_close(q.T @ q, torch.eye(5, dtype=F64), rtol=0, atol=1e-12)
    assert (p.L, p.mu) == (4.0, 0.0)
    torch.testing.assert_close(sym_eig(p), torch.tensor([0.0, 1, 2, 3, 4], dtype=F64), rtol=0, atol=1e-12)
    # mu = 0: linear spectrum down to 0 (convex, not strongly convex)
    z = Quadratic(4, L=1.0, mu=0.0, rotated=False)
    assert z.mu == 0.0 and z.spectrum.tolist() == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])


def test_quadratic_large_diagonal_is_cheap_and_exact():
    p = Quadratic(100_000, L=10.0, mu=1e-3, rotated=False, seed=0)
    assert p.dim == 100_000 and p.L == 10.0 and p.mu == 1e-3
    assert p.initial_distance() == pytest.approx(1.0, rel=1e-6)
    r = p.x0[0].double() - p.x_star[0].double()
    assert p.suboptimality() == pytest.approx(0.5 * float((p.spectrum * r * r).sum()), rel=1e-5)
    assert p.trace_A == pytest.approx(float(p.spectrum.sum()))


def test_quadratic_suboptimality_has_no_cancellation():
    p = Quadratic(6, f_star=1e6, seed=0)
    assert p.f_star == 1e6
    small_gap = p.suboptimality()
    assert 0 < small_gap < 1 and p.value() == pytest.approx(1e6 + small_gap, rel=1e-6)


def test_logistic_L_attained_at_zero_and_hessian_bounds():
    """L = lambda_max(A^T A)/(4n) + reg is attained at w = 0; elsewhere mu <= eig(H) <= L."""
    p = LogisticRegression(60, 5, l2_reg=0.05, seed=2, dtype=F64)
    ev0 = sym_eig(p, p.tight_point())
    assert ev0.max().item() == pytest.approx(p.L, rel=1e-10)
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        ev = sym_eig(p, random_point(p, gen, scale=3.0))
        assert ev.max().item() <= p.L * (1 + 1e-12)
        assert ev.min().item() >= p.mu * (1 - 1e-12)
    assert p.mu == 0.05


def test_nonconvex_sine_curvature_range_is_exact():
    p = NonconvexSine(6, a=2.0, seed=1, dtype=F64)
    assert p.L == 3.0 and p.lower_curvature == -1.0 and p.mu is None and not p.is_convex
    ev_star = sym_eig(p, p.x_star)
    torch.testing.assert_close(ev_star, torch.full((6,), 3.0, dtype=F64), rtol=1e-12, atol=0)
    at_half_pi = [p.x_star[0] + math.pi / 2]
    torch.testing.assert_close(sym_eig(p, at_half_pi), torch.full((6,), -1.0, dtype=F64), rtol=0, atol=1e-12)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        ev = sym_eig(p, random_point(p, gen, scale=4.0))
        assert ev.max().item() <= p.L + 1e-12 and ev.min().item() >= p.lower_curvature - 1e-12
    assert NonconvexSine(3, a=0.5).is_convex and NonconvexSine(3, a=0.5).mu == 0.5


def test_nonconvex_sine_unique_stationary_point_threshold():
    """phi'(t) = t + (a/2) sin 2t > 0 for t > 0 up to a = 4.6033, and has a zero beyond it."""
    t = np.linspace(1e-3, 30.0, 300_001)
    for a in (2.0, 4.0, SINE_UNIQUE_STATIONARY_MAX_A - 1e-3):
        assert (t + 0.5 * a * np.sin(2 * t)).min() > 0
    assert (t + 0.5 * (SINE_UNIQUE_STATIONARY_MAX_A + 1e-2) * np.sin(2 * t)).min() < 0
    assert NonconvexSine(2, a=4.0).unique_stationary_point
    assert not NonconvexSine(2, a=5.0).unique_stationary_point


def test_rosenbrock_hessian_and_box_constant():
    """Autograd Hessian = closed form; |eig| <= L in the box; L is the exact vertex maximum for d <= 12."""
    p = Rosenbrock(5, box_radius=2.0, dtype=F64)
    gen = torch.Generator().manual_seed(0)
    assert p.L_is_tight and not p.globally_smooth
    for _ in range(30):
        x = [2.0 * (2 * torch.rand(5, generator=gen, dtype=F64) - 1)]
        h = p.hessian(x)
        torch.testing.assert_close(h, p.hessian_exact(x), rtol=1e-12, atol=1e-9)
        ev = torch.linalg.eigvalsh(h)
        assert ev.abs().max().item() <= p.L * (1 + 1e-12)
    top = torch.linalg.eigvalsh(p.hessian(p.tight_point())).max().item()
    assert top == pytest.approx(p.L, rel=1e-12)
    assert p.L <= rosenbrock_gershgorin(5, 2.0)
    # large d: the Gershgorin bound is used and x = -R 1 nearly attains it
    big = Rosenbrock(60, box_radius=2.0, dtype=F64)
    assert big.L == rosenbrock_gershgorin(60, 2.0) and not big.L_is_tight
    lam = torch.linalg.eigvalsh(big.hessian_exact(big.tight_point())).max().item()
    assert 0.99 * big.L <= lam <= big.L
    # outside the box the constant fails: the function is not globally smooth
    far = [torch.full((5,), -10.0, dtype=F64)]
    assert torch.linalg.eigvalsh(p.hessian(far)).max().item() > p.L


# --------------------------------------------------------------------------- L in l-infinity and spectral norms


@pytest.mark.parametrize("phi", ["quadratic", "logcosh"])
@pytest.mark.parametrize("regime", ["sign", "gd"])
def test_separable_linf_constants(phi, regime):
    """||g(x)-g(y)||_1 <= L ||x-y||_inf on random pairs; tight along sign vectors; L_l2 = max l_i."""
    p = SeparableLInf(30, regime=regime, phi=phi, seed=1, dtype=F64)
    lv = p.curvatures
    assert p.smoothness_norm == "linf"
    assert p.L == pytest.approx(float(lv.sum()), rel=1e-14)
    assert p.L_l2 == float(lv.max())
    gen = torch.Generator().manual_seed(2)
    worst = 0.0
    for _ in range(50):
        x, y = random_point(p, gen, 2.0), random_point(p, gen, 2.0)
        worst = max(worst, p.smoothness_ratio(x, y))
    assert worst <= p.L * (1 + 1e-12)
    t = 1e-5 if phi == "logcosh" else 0.7
    s = torch.sign(torch.randn(30, generator=gen, dtype=F64))
    x = p.x_star
    y = [x[0] + t * s]
    assert p.smoothness_ratio(y, x) == pytest.approx(p.L, rel=1e-9)
    ev = sym_eig(p, p.x_star)
    assert ev.max().item() == pytest.approx(p.L_l2, rel=1e-12)
    if phi == "quadratic":
        assert p.mu == float(lv.min()) and ev.min().item() == pytest.approx(p.mu, rel=1e-10)
        # mu is also the l-infinity strong-convexity modulus: v^T D v >= mu ||v||_inf^2
        v = torch.randn(200, 30, generator=gen, dtype=F64)
        assert bool(((v * v * lv).sum(1) >= p.mu * v.abs().max(1).values ** 2 * (1 - 1e-12)).all())
    else:
        assert p.mu == 0.0
    if regime == "sign":
        assert p.L / p.L_l2 < math.pi**2 / 6 + 1e-12  # zeta(2): far below d = 30
    else:
        assert p.L / p.L_l2 > 0.7 * 30


def spectral_ratio_check(p: MatrixQuadratic, gen: torch.Generator, draws: int = 40) -> float:
    """Largest ratio over random pairs and random partial isometries (extreme points of the op ball)."""
    worst = 0.0
    shapes = [x.shape for x in p.blocks]
    for k in range(draws):
        x = random_point(p, gen, 1.5)
        if k % 2 == 0:
            y = random_point(p, gen, 1.5)
        else:  # a step whose blocks all have unit norm in their block norm
            m, n = shapes[0]
            a = torch.randn(max(m, n), max(m, n), generator=gen, dtype=F64)
            q, _ = torch.linalg.qr(a)
            steps = [q[:m, :n] / torch.linalg.matrix_norm(q[:m, :n], ord=2)]
            if p.has_bias:
                steps.append(torch.sign(torch.randn(shapes[1], generator=gen, dtype=F64)))
            y = [a_ + b_ for a_, b_ in zip(x, steps, strict=False)]
        worst = max(worst, p.smoothness_ratio(x, y))
    return worst


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(m=6, n=6, regime="spectral", bias=True),
        dict(m=6, n=6, regime="flat", bias=False),
        dict(m=5, n=3, regime="spectral", bias=True, right_spectrum=[2.0, 0.5, 1.0]),
        dict(m=3, n=5, regime="flat", bias=False, right_spectrum=[1.0, 3.0, 0.2, 0.7, 1.5], rotated=False),
    ],
)
def test_matrix_quadratic_spectral_constants(kwargs):
    """sum_l ||grad_l f(x)-grad_l f(y)||_dual <= L max_l ||x_l-y_l||, equality on tight_direction."""
    p = MatrixQuadratic(**kwargs, seed=4, dtype=F64)
    gen = torch.Generator().manual_seed(3)
    assert spectral_ratio_check(p, gen) <= p.L * (1 + 1e-10)
    x = p.x0
    y = [a + b for a, b in zip(x, p.tight_direction(), strict=False)]
    assert p.norm([b - a for a, b in zip(x, y, strict=False)]) == pytest.approx(1.0, rel=1e-12)
    assert p.smoothness_ratio(y, x) == pytest.approx(p.L, rel=1e-10)
    # Euclidean constants from the Kronecker Hessian
    ev = sym_eig(p)
    assert ev.max().item() == pytest.approx(p.L_l2, rel=1e-10)
    assert ev.min().item() == pytest.approx(p.mu, rel=1e-8)
    # per-block constants: each block separately is tight too
    m, n = p.blocks[0].shape
    r = min(m, n)
    lam = torch.sort(p.left_spectrum, descending=True).values[:r]
    rho = torch.sort(p.right_spectrum, descending=True).values[:r]
    assert p.block_L[0] == pytest.approx(float((lam * rho).sum()), rel=1e-14)
    if p.has_bias:
        assert p.smoothness_norm == "product" and p.block_norms == ("spectral", "linf")
        assert p.L == pytest.approx(sum(p.block_L), rel=1e-14)
        assert p.block_L[1] == pytest.approx(float(p.bias_curvatures.sum()), rel=1e-14)
        y_w = [y[0], x[1]]
        assert p.smoothness_ratio(y_w, x) == pytest.approx(p.block_L[0], rel=1e-10)
    else:
        assert p.smoothness_norm == "spectral" and p.L == p.block_L[0]


def test_matrix_quadratic_isotropic_spectral_constant_is_L_times_rank():
    """F = L/2 ||X - X*||_F^2 has L_spec = L min(m, n) (nuclear <= rank * op)."""
    p = MatrixQuadratic(4, 7, left_spectrum=[2.0] * 4, right_spectrum=[1.0] * 7, bias=False, rotated=False, dtype=F64)
    assert p.L == 8.0 and p.L_l2 == 2.0 and p.mu == 2.0


# --------------------------------------------------------------------------- Lipschitz / smoothing (nonsmooth)


def test_norm_problem_lipschitz_and_smoothing_gap():
    """MC estimate of f_mu(x*) - f* vs the exact mu L0 E||u|| (z-test, false alarm 1e-6)."""
    p = NormProblem(10, L0=2.0, seed=1, dtype=F64)
    assert p.L == math.inf and p.lipschitz == 2.0 and p.mu == 0.0
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        x, y = random_point(p, gen), random_point(p, gen)
        assert abs(p.value(x) - p.value(y)) <= 2.0 * float(torch.linalg.vector_norm(x[0] - y[0])) * (1 + 1e-12)
    ray = [p.x_star[0] + 3.0 * torch.ones(10, dtype=F64) / math.sqrt(10)]
    assert p.value(ray) == pytest.approx(6.0, rel=1e-12)
    radius, n = 0.1, 40_000
    u = torch.randn(n, 10, generator=gen, dtype=F64)
    vals = 2.0 * torch.linalg.vector_norm(radius * u, dim=1)  # f(x* + r u) - f*
    mean, se = float(vals.mean()), float(vals.std() / math.sqrt(n))
    exact = p.smoothing_gap_at_optimum(radius)
    assert abs(mean - exact) <= z_threshold(1e-6) * se
    assert exact <= radius * 2.0 * math.sqrt(10)  # N3 bound
    assert gaussian_norm_mean(1) == pytest.approx(math.sqrt(2 / math.pi), rel=1e-14)
    v = torch.randn(n, 10, generator=gen, dtype=F64)
    v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True) * torch.rand(n, 1, generator=gen, dtype=F64) ** 0.1
    vals = 2.0 * torch.linalg.vector_norm(radius * v, dim=1)
    mean, se = float(vals.mean()), float(vals.std() / math.sqrt(n))
    assert abs(mean - p.smoothing_gap_at_optimum(radius, "ball")) <= z_threshold(1e-6) * se


# --------------------------------------------------------------------------- property test over the registry


@settings(max_examples=20)
@given(name=st.sampled_from(SMOOTH), seed=st.integers(0, 2**16), scale=st.floats(1e-3, 3.0))
def test_smoothness_inequality_random_pairs(name, seed, scale):
    """||grad f(x) - grad f(y)||_* <= L ||x - y|| for random pairs (Rosenbrock: inside its box)."""
    p = small(name, seed=seed % 7, dtype=F64)
    gen = torch.Generator().manual_seed(seed)
    if name == "rosenbrock":
        r = p.box_radius
        x = [r * (2 * torch.rand(p.dim, generator=gen, dtype=F64) - 1)]
        y = [(x[0] + scale * torch.randn(p.dim, generator=gen, dtype=F64)).clamp(-r, r)]
    else:
        x = random_point(p, gen, 2.0)
        y = [a + scale * torch.randn(a.shape, generator=gen, dtype=F64) for a in x]
    assert p.smoothness_ratio(x, y) <= p.L * (1 + 1e-9)
    if p.smoothness_norm != "l2":
        gx, gy = p.exact_gradient(x), p.exact_gradient(y)
        num = float(sum(torch.linalg.vector_norm(a - b) ** 2 for a, b in zip(gx, gy, strict=False)) ** 0.5)
        den = float(sum(torch.linalg.vector_norm(a - b) ** 2 for a, b in zip(x, y, strict=False)) ** 0.5)
        assert num <= p.L_l2 * den * (1 + 1e-9)


# --------------------------------------------------------------------------- f*, x* against independent solvers


def scipy_minimum(
    p: Problem, starts: list[np.ndarray], method: str = "L-BFGS-B"
) -> list[scipy.optimize.OptimizeResult]:
    def fun(v):
        t = torch.tensor(v, dtype=F64, requires_grad=True)
        val = p.flat_objective(t)
        (g,) = torch.autograd.grad(val, t)
        return float(val.detach()), g.numpy()

    opts = {"gtol": 1e-12, "maxiter": 5000} if method == "BFGS" else {"gtol": 1e-12, "ftol": 1e-15, "maxiter": 5000}
    return [scipy.optimize.minimize(fun, s, jac=True, method=method, options=opts) for s in starts]


@pytest.mark.parametrize("name", ["quadratic", "separable_linf", "matrix_quadratic", "logistic_regression"])
def test_convex_f_star_matches_scipy(name):
    p = small(name, dtype=F64)
    rng = np.random.default_rng(0)
    starts = [p.flatten(p.x0).numpy() + rng.normal(size=p.dim) for _ in range(3)]
    for res in scipy_minimum(p, starts):
        assert res.fun >= p.f_star - 1e-12
        assert res.fun == pytest.approx(p.f_star, abs=1e-9)
    xs = p.flatten(p.x_star).numpy()
    best = min(scipy_minimum(p, starts[:1]), key=lambda r: r.fun)
    np.testing.assert_allclose(best.x, xs, atol=1e-4)


def test_logistic_f_star_matches_cvxpy():
    cp = pytest.importorskip("cvxpy")
    p = LogisticRegression(80, 4, l2_reg=0.02, seed=5, dtype=F64)
    a, y = p.features64.numpy(), p.labels64.numpy()
    w = cp.Variable(4)
    obj = cp.sum(cp.logistic(-cp.multiply(y, a @ w))) / 80 + 0.01 * cp.sum_squares(w)
    val = cp.Problem(cp.Minimize(obj)).solve()
    assert val == pytest.approx(p.f_star, abs=1e-6)
    np.testing.assert_allclose(w.value, p.x_star[0].numpy(), atol=1e-3)
    assert p.grad_norm("l2", p.x_star) <= 1e-11


def test_nonconvex_sine_every_local_search_finds_x_star():
    """A = 2 < 4.6033: x* is the unique stationary point, so L-BFGS from any start converges to it."""
    p = NonconvexSine(4, a=2.0, seed=3, dtype=F64)
    rng = np.random.default_rng(1)
    starts = [p.x_star[0].numpy() + rng.uniform(-6, 6, size=4) for _ in range(8)]
    for res in scipy_minimum(p, starts):
        assert res.fun >= -1e-15 and res.fun <= 1e-12
        np.testing.assert_allclose(res.x, p.x_star[0].numpy(), atol=1e-6)


def test_rosenbrock_f_star_with_scipy():
    p = Rosenbrock(4, dtype=F64)
    rng = np.random.default_rng(2)
    starts = [p.x0[0].numpy()] + [rng.uniform(-2, 2, size=4) for _ in range(4)]
    results = scipy_minimum(p, starts, method="BFGS")
    assert all(r.fun >= -1e-15 for r in results)
    best = min(results, key=lambda r: r.fun)
    assert best.fun <= 1e-10
    np.testing.assert_allclose(best.x, np.ones(4), atol=1e-5)


# --------------------------------------------------------------------------- stochastic oracles


def test_additive_noise_same_sample_same_loss_and_two_point_difference():
    base = Quadratic(6, seed=2, dtype=F64)
    p = AdditiveNoise(base, sigma=0.5)
    assert p.L == base.L and p.mu == base.mu and p.noise_variance == 0.25
    assert list(p.parameters())[0] is base.blocks[0]
    assert float(p().detach()) == base.value()  # no sample set: deterministic f
    p.set_sample(11)
    f1, f2 = p(), p()
    assert torch.equal(f1, f2) and torch.equal(f1, p.stochastic_loss(11))
    p.set_sample(12)
    assert not torch.equal(p(), f1)
    # closure contract: both evaluations of a two-point difference see the same sample,
    # and for a quadratic the central difference is exactly <grad f + xi, z>
    p.set_sample(11)
    xi = p.draw_sample(11)
    z = torch.randn(6, generator=torch.Generator().manual_seed(0), dtype=F64)
    r = 1e-2
    x = base.blocks[0]
    with torch.no_grad():
        x.add_(r * z)
        fp = p()
        x.sub_(2 * r * z)
        fm = p()
        x.add_(r * z)
    g = base.exact_gradient()[0]
    assert float((fp - fm) / (2 * r)) == pytest.approx(float((g + xi[0]) @ z), rel=1e-9)
    torch.testing.assert_close(p.stochastic_gradient(11)[0], g + xi[0], rtol=1e-12, atol=1e-12)
    with p.use_sample(99):
        assert p.sample_seed == 99
    assert p.sample_seed == 11
    p.set_sample(None)
    assert float(p().detach()) == base.value()


def test_additive_noise_mean_and_variance():
    """Mean of xi: per-coordinate z-test, Bonferroni over d; E||xi||^2 = sigma^2: exact chi-square
    test (N d/sigma^2 * mean ||xi||^2 ~ chi2_{N d}). Family-wise false alarm 2e-6."""
    base = MatrixQuadratic(3, 2, seed=1, dtype=F64)  # two blocks: the noise spans both
    sigma, n = 1.5, 4000
    p = AdditiveNoise(base, sigma)
    xi = torch.stack([p.flatten(p.draw_sample(s)) for s in range(n)])
    d = p.dim
    z = xi.mean(0) / (sigma / math.sqrt(d) / math.sqrt(n))
    assert float(z.abs().max()) <= z_threshold(1e-6, d)
    stat = float((xi**2).sum()) * d / sigma**2
    lo, hi = scipy.stats.chi2.ppf(0.5e-6, n * d), scipy.stats.chi2.isf(0.5e-6, n * d)
    assert lo <= stat <= hi
    assert p.noise_variance_at() == sigma**2


def test_logistic_minibatch_exact_enumeration():
    """Averaging over all C(n, b) minibatches gives grad f exactly and the stated variance exactly."""
    p = LogisticRegression(7, 3, batch_size=3, seed=0, dtype=F64)
    x = random_point(p, torch.Generator().manual_seed(0))
    gi = p.per_example_gradients(x)
    full = p.exact_gradient(x)[0]
    reg = p.l2_reg * x[0]
    torch.testing.assert_close(gi.mean(0) + reg, full, rtol=1e-12, atol=1e-14)
    subsets = list(itertools.combinations(range(7), 3))
    mb = torch.stack([gi[list(s)].mean(0) + reg for s in subsets])
    torch.testing.assert_close(mb.mean(0), full, rtol=1e-12, atol=1e-14)
    var = float(((mb - full) ** 2).sum(1).mean())
    assert var == pytest.approx(p.noise_variance_at(x), rel=1e-12)
    assert var <= p.noise_variance
    # the autograd stochastic gradient is the minibatch average of the closed form
    for s in range(3):
        idx = p.draw_sample(s).tolist()
        assert len(set(idx)) == 3
        torch.testing.assert_close(p.stochastic_gradient(s, x)[0], gi[idx].mean(0) + reg, rtol=1e-12, atol=1e-14)
    assert LogisticRegression(7, 3, batch_size=7).noise_variance == 0.0


def test_logistic_minibatch_sampling_statistics():
    """Drawn minibatches: mean gradient z-test (Bonferroni over d) and variance z-test from the
    empirical SE of ||g_B - g||^2; family-wise false alarm about 2e-6 (CLT approximation)."""
    p = LogisticRegression(50, 4, batch_size=5, seed=3, dtype=F64)
    x = random_point(p, torch.Generator().manual_seed(1), 2.0)
    gi = p.per_example_gradients(x)
    g = gi.mean(0)
    n = 6000
    mb = torch.stack([gi[p.draw_sample(s)].mean(0) for s in range(n)])
    dev = mb - g
    z = dev.mean(0) / (dev.std(0) / math.sqrt(n))
    assert float(z.abs().max()) <= z_threshold(1e-6, 4)
    sq = (dev**2).sum(1)
    exact = p.noise_variance_at(x)
    assert abs(float(sq.mean()) - exact) <= z_threshold(1e-6) * float(sq.std()) / math.sqrt(n)
    for s in range(5):
        assert p.noise_variance_at(random_point(p, torch.Generator().manual_seed(s), 5.0)) <= p.noise_variance


def test_logistic_sample_is_fixed_until_changed():
    p = LogisticRegression(30, 3, batch_size=4, seed=1)
    p.set_sample(5)
    a = p()
    with torch.no_grad():
        p.blocks[0].add_(0.1)
        p.blocks[0].sub_(0.1)
    assert torch.equal(a, p()) and torch.equal(a, p.stochastic_loss(5))
    assert torch.equal(p.draw_sample(5), p.draw_sample(5))
    assert not torch.equal(p.draw_sample(5), p.draw_sample(6))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(p.stochastic_loss(g1), p.stochastic_loss(g2))
    p.set_sample(None)
    assert float(p().detach()) == pytest.approx(p.value(), rel=1e-7)


def test_make_problem_noise_sigma_wraps():
    p = make_problem("nonconvex_sine", d=3, noise_sigma=0.3)
    assert isinstance(p, AdditiveNoise) and p.noise_variance == pytest.approx(0.09)
    assert p.L == 3.0


# --------------------------------------------------------------------------- the regimes do what they claim


def steepest_descent(p: Problem, steps: int, geometry: str) -> float:
    """Exact-gradient steepest descent: GD with 1/L_l2, or the LMO step ||g||_*/L in the smoothness norm."""
    p.reset()
    names = p.block_norms or (p.smoothness_norm,) * len(p.blocks)
    for _ in range(steps):
        g = p.exact_gradient()
        with torch.no_grad():
            if geometry == "l2":
                for x, gi in zip(p.blocks, g, strict=False):
                    x.sub_(gi / p.L_l2)
                continue
            step = p.dual_norm(g) / p.L
            for x, gi, b in zip(p.blocks, g, names, strict=False):
                if b == "linf":
                    x.sub_(step * torch.sign(gi))
                else:
                    u, _, vh = torch.linalg.svd(gi, full_matrices=False)
                    x.sub_(step * (u @ vh))
    return p.suboptimality()


@pytest.mark.parametrize(
    ("factory", "friendly"),
    [
        (lambda: SeparableLInf(100, regime="sign", dtype=F64), "lmo"),
        (lambda: SeparableLInf(100, regime="gd", dtype=F64), "l2"),
        (lambda: SeparableLInf(100, regime="sign", phi="logcosh", dtype=F64), "lmo"),
        (lambda: MatrixQuadratic(12, 12, regime="spectral", dtype=F64), "lmo"),
        (lambda: MatrixQuadratic(12, 12, regime="flat", dtype=F64), "l2"),
    ],
)
def test_regime_decides_which_geometry_wins(factory, friendly):
    """After 20 exact steps the friendly geometry is ahead by at least a factor 10."""
    p = factory()
    f0 = p.suboptimality()
    gd = steepest_descent(p, 20, "l2") / f0
    lmo = steepest_descent(p, 20, "lmo") / f0
    if friendly == "lmo":
        assert lmo * 10 < gd
    else:
        assert gd * 10 < lmo
