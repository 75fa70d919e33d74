"""Closed-form predictions of zeroth-order estimator theory, as small pure functions.

Every function states its formula and its source: the section of ``docs/theory.md`` (``§5.N`` are its numbered
predictions; "section X.Y" below means ``docs/theory.md`` §X.Y) and, where the formula is quoted from
a paper, that paper. Tags follow that document: [Q] quoted, [D] derived (elementary, Monte-Carlo checked in
``tests/test_theory.py``), [C] read from public code.

Conventions: ``d`` is the dimension, ``q`` the number of directions averaged, ``g`` the true gradient;
estimators with *exact directional derivatives* are ``g_hat = (1/q) sum_i <g, z_i> z_i`` for the direction law
``z`` (scaled as stated per family) — this is what a central difference returns on a quadratic. Inputs are Python
numbers or numpy arrays; outputs are Python floats (numpy arrays where the quantity is a vector).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import integrate, special, stats

__all__ = [
    "CUBIC",
    "FAMILIES",
    "MUON_QUINTIC",
    "alignment_cos2_distribution",
    "ball_smoothing_bias_quadratic",
    "expected_cos2",
    "expected_cos2_from_gain",
    "expected_cos_gaussian_average",
    "expected_cos_single",
    "forward_coordinate_fd_error",
    "forward_gaussian_second_moment",
    "gaussian_expected_norm",
    "gaussian_moment",
    "gaussian_moment_bound",
    "gaussian_smoothing_bias_quadratic",
    "ghadimi_lan_rsgf_bound",
    "greedy_alignment_gain",
    "greedy_selected_second_moment",
    "guided_vector_alignment_gain",
    "guided_vector_second_moment",
    "jaguar_mean_error_factor",
    "jaguar_second_moment_error_factor",
    "ldsd_alignment_ratio",
    "ldsd_mean_matrix_apply",
    "ldsd_second_moment",
    "mse_ratio",
    "nesterov_spokoiny_second_moment_bound",
    "ns_critical_points",
    "ns_fixed_points",
    "ns_invariant_band",
    "ns_polynomial",
    "ns_scalar_map",
    "rsgf_output_probabilities",
    "second_moment_ratio",
]

#: Same constants as :mod:`zotheory.lmo` (duplicated so this module needs no torch).
MUON_QUINTIC: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
CUBIC: tuple[float, float] = (1.5, -0.5)

#: Direction families of :func:`second_moment_ratio` / :func:`mse_ratio`.
FAMILIES: tuple[str, ...] = ("gaussian", "sphere", "orthonormal", "rademacher", "coordinate")


# ----------------------------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------------------------


def _pos_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return int(value)


def _nonneg(value: object, name: str) -> float:
    v = float(value)  # type: ignore[arg-type]
    if not (math.isfinite(v) and v >= 0.0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return v


def _pos(value: object, name: str) -> float:
    v = float(value)  # type: ignore[arg-type]
    if not (math.isfinite(v) and v > 0.0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return v


def _family(family: str, allowed: Sequence[str]) -> str:
    if family not in allowed:
        raise ValueError(f"unknown family {family!r}; valid: {', '.join(allowed)}")
    return family


# ----------------------------------------------------------------------------------------------------------------
# Gaussian moments (§5.2, N1)
# ----------------------------------------------------------------------------------------------------------------


def gaussian_moment(d: int, p: int) -> float:
    """``E ||u||^p`` for ``u ~ N(0, I_d)`` and even ``p`` in {2, 4, 6} (§5.2, [D]).

    ``E||u||^2 = d``, ``E||u||^4 = d (d + 2)``, ``E||u||^6 = d (d + 2)(d + 4)`` (chi-square moments
    ``E (chi^2_d)^k = d (d+2) ... (d+2k-2)``; the general even ``p = 2k`` is the same product).
    """
    d = _pos_int(d, "d")
    p = _pos_int(p, "p")
    if p % 2:
        raise ValueError(f"p must be even, got p={p!r}")
    return float(math.prod(d + 2 * j for j in range(p // 2)))


def gaussian_moment_bound(d: int, p: float) -> float:
    """Upper bound on ``E ||u||^p``: ``d^(p/2)`` for ``p in [0, 2]``, ``(p + d)^(p/2)`` for ``p >= 2``
    ([Q] Nesterov–Spokoiny 2017, Lemma 1, Eqs. (16)–(17); N1, §5.2)."""
    d = _pos_int(d, "d")
    p = _nonneg(p, "p")
    return float(d ** (p / 2)) if p <= 2 else float((p + d) ** (p / 2))


def gaussian_expected_norm(d: int) -> float:
    """``E ||u|| = sqrt(2) Gamma((d+1)/2) / Gamma(d/2)`` for ``u ~ N(0, I_d)`` (§5.8; chi mean), via log-gamma.

    Equals ``f_mu(0) / (mu L0)`` for ``f = L0 ||x||``, which approaches the N3 bound ``mu L0 sqrt(d)``.
    """
    d = _pos_int(d, "d")
    return math.sqrt(2.0) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))


# ----------------------------------------------------------------------------------------------------------------
# q-direction estimators (section 3.7, §5.3, 5.10, 5.12)
# ----------------------------------------------------------------------------------------------------------------


def second_moment_ratio(family: str, d: int, q: int = 1) -> float:
    """``E ||g_hat||^2 / ||g||^2`` for ``q`` i.i.d. directions and exact directional derivatives (section 3.7).

    * ``"gaussian"``: ``g_hat = (1/q) sum <g,u_i> u_i``, ``u ~ N(0, I)``: ``(d + q + 1) / q`` ([D]; ``q = 1`` is
      §5.3, ``(d + 2)``).
    * ``"sphere"``: ``g_hat = (d/q) sum <g,s_i> s_i``, ``s ~ Unif(S^{d-1})``: ``(d + q - 1) / q`` ([D]; §5.10
      for ``q = 1``).
    * ``"orthonormal"``: ``g_hat = (d/q) V V^T g``, ``V`` Haar on the Stiefel manifold, ``q <= d``: ``d / q`` ([D]).
    * ``"rademacher"``: ``g_hat = (1/q) sum <g,z_i> z_i``, ``z`` uniform on ``{-1, 1}^d``: ``(d + q - 1) / q``.
      Derivation [D, ours]: ``X = <g,z> z`` has ``E X = E[z z^T] g = g`` and ``||X||^2 = <g,z>^2 ||z||^2 =
      d <g,z>^2`` (``||z||^2 = d`` exactly), so ``E||X||^2 = d ||g||^2``; averaging ``q`` i.i.d. copies,
      ``E||g_hat||^2 = ||g||^2 + (E||X||^2 - ||g||^2) / q``.
    * ``"coordinate"``: ``g_hat = (1/q) sum d g_{i_k} e_{i_k}``, ``i_k ~ Unif{1..d}`` i.i.d. *with* replacement:
      ``(d + q - 1) / q``. Derivation [D, ours]: ``E||d g_i e_i||^2 = d^2 (1/d) sum g_i^2 = d ||g||^2``
      (section 3.4 for ``q = 1``), then the same averaging identity.
    """
    _family(family, FAMILIES)
    d = _pos_int(d, "d")
    q = _pos_int(q, "q")
    if family == "gaussian":
        return (d + q + 1) / q
    if family == "orthonormal":
        if q > d:
            raise ValueError(f"orthonormal directions need q <= d, got q={q}, d={d}")
        return d / q
    return (d + q - 1) / q  # sphere, rademacher, coordinate: E||X||^2 = d ||g||^2 per direction


def mse_ratio(family: str, d: int, q: int = 1) -> float:
    """``E ||g_hat - g||^2 / ||g||^2`` (section 3.7, §5.12); every family is unbiased so this is
    ``second_moment_ratio - 1``: Gaussian ``(d + 1)/q``, sphere / Rademacher / coordinate ``(d - 1)/q``,
    orthonormal ``d/q - 1``. Log–log slope ``-1`` in ``q`` (§5.12)."""
    return second_moment_ratio(family, d, q) - 1.0


# ----------------------------------------------------------------------------------------------------------------
# finite differences and smoothing on quadratics (§5.5, 5.7, 5.11, 5.14)
# ----------------------------------------------------------------------------------------------------------------


def forward_gaussian_second_moment(grad_norm_sq: float, d: int, mu: float, trA: float, trA2: float) -> float:
    """``E ||g_mu||^2`` for the forward Gaussian oracle on a quadratic.

    The oracle is ``g_mu = (f(x + mu u) - f(x)) / mu * u`` on ``f = x^T A x / 2 + b^T x + c`` (§5.5, section 3.1,
    [D]):

    ``(d + 2) ||grad f||^2 + mu^2 / 4 * (d + 4) * [(tr A)^2 + 2 tr(A^2)]``.
    """
    d = _pos_int(d, "d")
    return (d + 2) * _nonneg(grad_norm_sq, "grad_norm_sq") + float(mu) ** 2 / 4 * (d + 4) * (
        float(trA) ** 2 + 2 * _nonneg(trA2, "trA2")
    )


def gaussian_smoothing_bias_quadratic(mu: float, trA: float) -> float:
    """``f_mu(x) - f(x) = mu^2 / 2 * tr A`` for a quadratic with Hessian ``A`` and ``f_mu = E f(x + mu u)``
    (§5.7, [D]; equals the N4 bound ``mu^2 L d / 2`` when ``A = L I``)."""
    return float(mu) ** 2 / 2 * float(trA)


def ball_smoothing_bias_quadratic(delta: float, trA: float, d: int) -> float:
    """``f_delta(x) - f(x) = delta^2 tr A / (2 (d + 2))`` for a quadratic and ``f_delta = E_{v ~ Unif(B^d)}
    f(x + delta v)`` (§5.11, section 3.3, [D]; from ``E v v^T = I / (d + 2)``)."""
    d = _pos_int(d, "d")
    return float(delta) ** 2 * float(trA) / (2 * (d + 2))


def forward_coordinate_fd_error(tau: float, diagA: np.ndarray) -> np.ndarray:
    """Error vector of forward coordinate differences ``(f(x + tau e_i) - f(x)) / tau - d_i f(x) = tau/2 A_ii``
    on a quadratic (§5.14, section 3.4, [D]); central differences are exact there."""
    return float(tau) / 2 * np.asarray(diagA, dtype=float)


# ----------------------------------------------------------------------------------------------------------------
# alignment laws (section 3.6, §5.13)
# ----------------------------------------------------------------------------------------------------------------

_ALIGN_FAMILIES = ("single", "gaussian", "orthonormal")


def alignment_cos2_distribution(family: str, d: int, q: int = 1) -> stats.rv_continuous:
    """Exact law of ``cos^2(g_hat, g)`` (§5.13, section 3.6, [D]) as a frozen ``scipy.stats.beta``.

    * ``"single"`` (one Gaussian or spherical direction; ``q`` must be 1): ``Beta(1/2, (d - 1)/2)``;
    * ``"gaussian"`` (``q`` i.i.d. Gaussian directions averaged): ``Beta(q/2, (d - 1)/2)``
      (``cos^2 = chi^2_q / (chi^2_q + chi^2_{d-1})``, independent chi-squares);
    * ``"orthonormal"`` (Haar ``V`` in ``R^{d x q}``, ``q < d``): ``Beta(q/2, (d - q)/2)``.

    Requires ``d >= 2``.
    """
    _family(family, _ALIGN_FAMILIES)
    d = _pos_int(d, "d")
    q = _pos_int(q, "q")
    if d < 2:
        raise ValueError(f"alignment laws need d >= 2, got d={d}")
    if family == "single":
        if q != 1:
            raise ValueError(f"family 'single' means q=1, got q={q}")
        return stats.beta(0.5, (d - 1) / 2)
    if family == "gaussian":
        return stats.beta(q / 2, (d - 1) / 2)
    if q >= d:
        raise ValueError(f"orthonormal alignment law needs q < d (cos^2 = 1 at q = d), got q={q}, d={d}")
    return stats.beta(q / 2, (d - q) / 2)


def expected_cos2(family: str, d: int, q: int = 1) -> float:
    """``E cos^2(g_hat, g)``: ``1/d`` (single), ``q / (d + q - 1)`` (Gaussian average), ``q / d`` (orthonormal)
    (§5.13, section 3.6, [D]) — the means of :func:`alignment_cos2_distribution`."""
    _family(family, _ALIGN_FAMILIES)
    d = _pos_int(d, "d")
    q = _pos_int(q, "q")
    if family == "single":
        if q != 1:
            raise ValueError(f"family 'single' means q=1, got q={q}")
        return 1.0 / d
    if family == "gaussian":
        return q / (d + q - 1)
    if q > d:
        raise ValueError(f"orthonormal directions need q <= d, got q={q}, d={d}")
    return q / d


def expected_cos_single(d: int) -> float:
    """``E |cos(u, g)| = Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2)) ~ sqrt(2 / (pi d))`` for one Gaussian/spherical
    direction (§5.13, section 3.6, [D]); log-gamma so that large ``d`` does not overflow."""
    d = _pos_int(d, "d")
    return math.exp(math.lgamma(d / 2) - math.lgamma((d + 1) / 2)) / math.sqrt(math.pi)


def expected_cos_gaussian_average(d: int, q: int) -> float:
    """``E cos(g_hat, g) = Gamma((q+1)/2) Gamma((d+q-1)/2) / (Gamma(q/2) Gamma((d+q)/2))`` for ``q`` averaged
    Gaussian directions (section 3.6, [D]: mean of the square root of ``Beta(q/2, (d-1)/2)``)."""
    d = _pos_int(d, "d")
    q = _pos_int(q, "q")
    lg = math.lgamma
    return math.exp(lg((q + 1) / 2) + lg((d + q - 1) / 2) - lg(q / 2) - lg((d + q) / 2))


# ----------------------------------------------------------------------------------------------------------------
# LDSD (section 1.3, §5.16–5.18)
# ----------------------------------------------------------------------------------------------------------------


def _vec(x: object, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
    return a


def ldsd_mean_matrix_apply(mu: np.ndarray, sigma: float, g: np.ndarray) -> np.ndarray:
    """``E[<g, z> z] = (sigma^2 I + mu mu^T) g`` for ``z ~ N(mu, sigma^2 I)`` (§5.17, section 1.3, [D]):
    the LDSD estimator with a fixed mean is biased toward the ``mu mu^T``-preconditioned gradient."""
    mu, g = _vec(mu, "mu"), _vec(g, "g")
    if mu.shape != g.shape:
        raise ValueError(f"mu and g must have the same shape, got {mu.shape} and {g.shape}")
    return float(sigma) ** 2 * g + mu * float(mu @ g)


def ldsd_second_moment(g: np.ndarray, mu: np.ndarray, sigma: float, d: int) -> float:
    """``E ||<g, z> z||^2`` for ``z ~ N(mu, sigma^2 I_d)`` (§5.17, section 1.3, [D]); with ``m = <g, mu>``.

    ``||mu||^2 m^2 + sigma^2 ||mu||^2 ||g||^2 + 4 sigma^2 m^2 + sigma^2 d m^2 + sigma^4 (d + 2) ||g||^2``.

    ``d`` must equal ``len(g)`` (kept explicit to match the formula).
    """
    g, mu = _vec(g, "g"), _vec(mu, "mu")
    d = _pos_int(d, "d")
    if g.shape != (d,) or mu.shape != (d,):
        raise ValueError(f"g and mu must have shape ({d},), got {g.shape} and {mu.shape}")
    s2 = float(sigma) ** 2
    m = float(g @ mu)
    mu2, g2 = float(mu @ mu), float(g @ g)
    return mu2 * m**2 + s2 * mu2 * g2 + 4 * s2 * m**2 + s2 * d * m**2 + s2**2 * (d + 2) * g2


def ldsd_alignment_ratio(c: float, sigma: float, d: int) -> float:
    """``rho = ||E g_hat||^2 / E||g_hat||^2`` for a perfectly aligned mean ``mu = c g / ||g||`` (§5.18, [D]).

    ``rho = (sigma^2 + c^2)^2 / (c^4 + sigma^2 c^2 (d + 5) + sigma^4 (d + 2))``; ``1 / (d + 2)`` at ``c = 0`` and
    ``-> 1`` as ``sigma^2 d / c^2 -> 0``.
    """
    d = _pos_int(d, "d")
    c2, s2 = float(c) ** 2, float(sigma) ** 2
    den = c2**2 + s2 * c2 * (d + 5) + s2**2 * (d + 2)
    if den <= 0:
        raise ValueError(f"c and sigma must not both be 0, got c={c!r}, sigma={sigma!r}")
    return (s2 + c2) ** 2 / den


# ----------------------------------------------------------------------------------------------------------------
# greedy / guided-vector selection (section 2.4, §5.19)
# ----------------------------------------------------------------------------------------------------------------


def _log_os_density(t: float, M: int, k: int) -> float:
    """Log density of the k-th smallest of M i.i.d. N(0, 1) at t."""
    log_comb = math.lgamma(M + 1) - math.lgamma(k) - math.lgamma(M - k + 1)
    return (
        log_comb
        + (k - 1) * float(special.log_ndtr(t))
        + (M - k) * float(special.log_ndtr(-t))
        + float(stats.norm.logpdf(t))
    )


def _truncated_moments(t: float) -> tuple[float, float, float, float]:
    """(E[Y|Y<t], E[Y^2|Y<t], E[Y|Y>t], E[Y^2|Y>t]) for Y ~ N(0, 1), computed with log-ratios."""
    logphi = float(stats.norm.logpdf(t))
    lam_lo = math.exp(logphi - float(special.log_ndtr(t)))  # phi / Phi
    lam_hi = math.exp(logphi - float(special.log_ndtr(-t)))  # phi / (1 - Phi)
    return -lam_lo, 1.0 - t * lam_lo, lam_hi, 1.0 + t * lam_hi


def _check_selection(M: int, top: int) -> tuple[int, int]:
    M = _pos_int(M, "M")
    top = _pos_int(top, "top")
    if top >= M:
        raise ValueError(f"top must be < M, got top={top}, M={M}")
    return M, top


def guided_vector_second_moment(M: int, top: int) -> float:
    """``E[a^2]`` for the guided vector's gradient component ``a = mean(top) - mean(bottom)`` (§5.19, §2.4).

    ``a`` is built from the order statistics of ``M`` i.i.d. ``N(0, 1)`` projections; ``top`` = the ``top`` smallest.
    Exact by one-dimensional integration [D, ours]: conditional on the ``top``-th order statistic ``X_(k) = t``,
    the other ``k - 1`` top values are i.i.d. ``N(0,1)`` truncated to ``(-inf, t)`` and the ``M - k`` bottom values
    are i.i.d. truncated to ``(t, inf)``, independently; so with ``T = t + sum Y_i``, ``B = sum Y'_j``,
    ``E[a^2 | t] = E[T^2]/k^2 - 2 E[T] E[B] / (k (M - k)) + E[B^2] / (M - k)^2`` in terms of the truncated-normal
    moments, integrated (``scipy.integrate.quad``) against the density
    ``M! / ((k-1)! (M-k)!) Phi^(k-1) (1 - Phi)^(M-k) phi`` of ``X_(k)``.
    """
    M, k = _check_selection(M, top)
    n = M - k

    def integrand(t: float) -> float:
        lo1, lo2, hi1, hi2 = _truncated_moments(t)
        ET = t + (k - 1) * lo1
        ET2 = ET**2 + (k - 1) * (lo2 - lo1**2)
        EB = n * hi1
        EB2 = EB**2 + n * (hi2 - hi1**2)
        val = ET2 / k**2 - 2 * ET * EB / (k * n) + EB2 / n**2
        return val * math.exp(_log_os_density(t, M, k))

    return _integrate_real_line(integrand)


def greedy_selected_second_moment(M: int) -> float:
    """``E[X_(1)^2]`` for the minimum of ``M`` i.i.d. ``N(0, 1)`` (greedy best-of-M, §5.19, §2.4), by
    ``scipy.integrate.quad`` of ``t^2 M phi(t) (1 - Phi(t))^(M-1)``. Equals 1 for ``M`` in {1, 2}."""
    M = _pos_int(M, "M")
    return _integrate_real_line(lambda t: t * t * math.exp(_log_os_density(t, M, 1)))


def _integrate_real_line(fn: Callable[[float], float]) -> float:
    # The order-statistic densities of <= a few hundred normals are negligible beyond |t| = 12.
    pieces = (-12.0, -4.0, -2.0, 0.0, 2.0, 4.0, 12.0)
    total = 0.0
    for a, b in zip(pieces[:-1], pieces[1:], strict=False):
        val, _err = integrate.quad(fn, a, b, epsabs=1e-12, epsrel=1e-10, limit=200)
        total += val
    return total


def greedy_alignment_gain(M: int) -> float:
    """Alignment gain ``G = E[X_(1)^2] / c`` with ``c = 1`` of greedy best-of-``M`` selection (§5.19, §2.4;
    table: 1.00 / 1.280 / 1.805 / 2.713 / 3.413 for ``M`` = 2 / 3 / 5 / 10 / 16). Linear regime (``eps -> 0``)."""
    return greedy_selected_second_moment(M)


def guided_vector_alignment_gain(M: int, top: int) -> float:
    """Alignment gain ``G = E[a^2] / c`` of the guided vector with ``c = 1/top + 1/(M - top)`` (the variance of each
    orthogonal coordinate of ``v``) (§5.19, §2.4; table: ``M = 8, top = 4``: 4.56; ``M = 8, top = 1``: 2.60;
    ``M = 2, top = 1``: 1.00). Linear regime."""
    M, top = _check_selection(M, top)
    return guided_vector_second_moment(M, top) / (1.0 / top + 1.0 / (M - top))


def expected_cos2_from_gain(G: float, d: int) -> float:
    """Large-``d`` approximation ``E cos^2(v, g) ~ G / (d - 1 + G)`` for a direction ``v = a g/||g|| + w``,
    ``w ~ N(0, c I_{d-1})`` with gain ``G = E[a^2] / c`` (section 2.4, [D]). Exact for a plain Gaussian
    (``G = 1``: ``1/d``) and for ``q`` averaged Gaussians (``G = q``: ``q / (d + q - 1)``, section 3.6)."""
    d = _pos_int(d, "d")
    G = _nonneg(G, "G")
    return G / (d - 1 + G)


# ----------------------------------------------------------------------------------------------------------------
# JAGUAR memory (§5.27)
# ----------------------------------------------------------------------------------------------------------------


def _beta01(beta: float) -> float:
    b = float(beta)
    if not (0.0 <= b <= 1.0):
        raise ValueError(f"beta must lie in [0, 1], got {beta!r}")
    return b


def jaguar_mean_error_factor(beta: float, d: int, k: int) -> float:
    """``E[h_i^k - g_i] / (h_i^0 - g_i) = (1 - (1 - beta) / d)^k`` for the JAGUAR EMA memory with static ``x`` and
    exact coordinate derivatives (§5.27, §3.9, [D]; the transient factor of Lemma 3.4 of arXiv 2506.04430)."""
    d = _pos_int(d, "d")
    k = int(k)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k!r}")
    return (1.0 - (1.0 - _beta01(beta)) / d) ** k


def jaguar_second_moment_error_factor(beta: float, d: int, k: int) -> float:
    """``E[(h_i^k - g_i)^2] / (h_i^0 - g_i)^2 = (1 - (1 - beta^2) / d)^k`` (§5.27, [D]); ``beta = 0`` is the
    replacement rule ``E||h^k - g||^2 = (1 - 1/d)^k ||h^0 - g||^2``."""
    d = _pos_int(d, "d")
    k = int(k)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k!r}")
    b = _beta01(beta)
    return (1.0 - (1.0 - b * b) / d) ** k


# ----------------------------------------------------------------------------------------------------------------
# Newton–Schulz scalar map (§5.32)
# ----------------------------------------------------------------------------------------------------------------


def ns_polynomial(coefficients: Sequence[float]) -> np.polynomial.Polynomial:
    """The odd polynomial ``p(x) = c_0 x + c_1 x^3 + ... + c_k x^(2k+1)`` applied to every singular value by one
    Newton–Schulz step (§5.32; Muon quintic ``(a, b, c)``: ``a x + b x^3 + c x^5``)."""
    coeffs = [float(c) for c in coefficients]
    if not coeffs or not all(math.isfinite(c) for c in coeffs):
        raise ValueError(f"coefficients must be a non-empty sequence of finite numbers, got {coefficients!r}")
    full = np.zeros(2 * len(coeffs))
    full[1::2] = coeffs
    return np.polynomial.Polynomial(full)


def ns_scalar_map(
    sigma: float | np.ndarray, coefficients: Sequence[float] = MUON_QUINTIC, steps: int = 5
) -> float | np.ndarray:
    """``p^(steps)(sigma)``: where a (Frobenius-normalised) singular value ``sigma`` goes after ``steps`` Newton–Schulz
    steps (§5.32). Vectorised over numpy arrays."""
    p = ns_polynomial(coefficients)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    x = np.asarray(sigma, dtype=float)
    for _ in range(int(steps)):
        x = p(x)
    return float(x) if x.ndim == 0 else x


def _real_positive_roots(poly: np.polynomial.Polynomial) -> np.ndarray:
    r = poly.roots()
    r = r[np.abs(r.imag) < 1e-9].real
    return np.sort(r[r > 1e-12])


def ns_fixed_points(coefficients: Sequence[float] = MUON_QUINTIC) -> np.ndarray:
    """Positive fixed points of the scalar map, roots of ``p(x) - x`` (numpy roots; §5.32: Muon quintic
    ``0.8680, 1.2637``, both repelling; the cubic: ``1``, attracting). ``0`` is always a fixed point (omitted)."""
    p = ns_polynomial(coefficients)
    return _real_positive_roots(p - np.polynomial.Polynomial([0.0, 1.0]))


def ns_critical_points(coefficients: Sequence[float] = MUON_QUINTIC) -> np.ndarray:
    """Positive roots of ``p'(x)`` (Muon quintic: local max at 0.5545 with ``p = 1.2024``, local min at 1.0501)."""
    return _real_positive_roots(ns_polynomial(coefficients).deriv())


def ns_invariant_band(coefficients: Sequence[float] = MUON_QUINTIC) -> tuple[float, float]:
    """Attracting invariant interval ``[lo, hi]`` of an oscillating odd Newton–Schulz map (§5.32, [D]).

    Construction (for maps shaped like the Muon quintic: ``p`` rises to a local max at ``x_M``, falls to a local min
    at ``x_m > x_M``, then rises): ``lo = p(x_m)`` and ``hi = p(lo)``. On ``[lo, hi]`` ``p`` is decreasing up to
    ``x_m`` and increasing after, so ``p([lo, hi]) = [p(x_m), max(p(lo), p(hi))] = [lo, hi]`` when ``p(hi) <= hi``;
    this is checked numerically on a fine grid and a ``ValueError`` is raised otherwise (e.g. for the cubic,
    which converges to 1 and has no such band). Muon quintic: ``[0.6818, 1.1344]``.
    """
    p = ns_polynomial(coefficients)
    crit = ns_critical_points(coefficients)
    d2 = p.deriv(2)
    maxima = [x for x in crit if d2(x) < 0]
    minima = [x for x in crit if d2(x) > 0]
    if not maxima or not minima or not minima[0] > maxima[0]:
        raise ValueError(
            f"coefficients {tuple(coefficients)!r} have no local max followed by a local min; no oscillation band"
        )
    x_m = minima[0]
    lo = float(p(x_m))
    hi = float(p(lo))
    if not (0 < lo < hi):
        raise ValueError(f"coefficients {tuple(coefficients)!r} give a degenerate band [{lo}, {hi}]")
    grid = np.linspace(lo, hi, 20001)
    img = p(grid)
    tol = 1e-12 * max(1.0, hi)
    if img.min() < lo - tol or img.max() > hi + tol:
        raise ValueError(f"[{lo:.6g}, {hi:.6g}] is not invariant for coefficients {tuple(coefficients)!r}")
    return lo, hi


# ----------------------------------------------------------------------------------------------------------------
# rates and bounds (§5.5, 5.6, 5.22)
# ----------------------------------------------------------------------------------------------------------------


def nesterov_spokoiny_second_moment_bound(
    mu: float, L: float, d: int, grad_norm_sq: float, central: bool = False
) -> float:
    """Nesterov–Spokoiny bound on the Gaussian oracle's second moment ([Q] N9: FoCM 2017, Thm 4, Eq. (35), p. 538).

    forward ``E||g_mu||^2 <= mu^2 / 2 * L^2 (d + 6)^3 + 2 (d + 4) ||grad f||^2``;
    central ``E||g_hat_mu||^2 <= mu^2 / 8 * L^2 (d + 6)^3 + 2 (d + 4) ||grad f||^2`` (§5.5, 5.6).
    Ghadimi–Lan (G1, Eq. (3.7)) restate the forward line without convexity.
    """
    d = _pos_int(d, "d")
    mu = _nonneg(mu, "mu")
    L = _nonneg(L, "L")
    gn = _nonneg(grad_norm_sq, "grad_norm_sq")
    return mu**2 / (8.0 if central else 2.0) * L**2 * (d + 6) ** 3 + 2 * (d + 4) * gn


def _gammas(gammas: object, L: float, d: int) -> np.ndarray:
    g = np.atleast_1d(np.asarray(gammas, dtype=float))
    if g.ndim != 1 or g.size == 0:
        raise ValueError(f"gammas must be a non-empty 1-D sequence, got shape {g.shape}")
    limit = 1.0 / (2 * (d + 4) * L)
    bad = g[~((g > 0) & (g < limit))]
    if bad.size:
        raise ValueError(f"RSGF needs 0 < gamma_k < 1/(2(d+4)L) = {limit:.6g}; got gamma = {bad[0]!r}")
    return g


def rsgf_output_probabilities(gammas: Sequence[float], L: float, d: int) -> np.ndarray:
    """Output-index law of RSGF, ``P_R(k) = (gamma_k - 2 L (d+4) gamma_k^2) / sum_j (...)`` ([Q] Ghadimi–Lan 2013,
    Thm 3.2, Eq. (3.15); G2, §5.22)."""
    d = _pos_int(d, "d")
    L = _pos(L, "L")
    g = _gammas(gammas, L, d)
    w = g - 2 * L * (d + 4) * g**2
    return w / w.sum()


def ghadimi_lan_rsgf_bound(f_gap: float, L: float, d: int, mu: float, sigma: float, gammas: Sequence[float]) -> float:
    """Right-hand side of the RSGF bound on ``(1/L) E||grad f(x_R)||^2``.

    From [Q] Ghadimi–Lan 2013, arXiv:1309.5549, Thm 3.2(a), Eq. (3.16); G2, §5.22; nonconvex, ``L``-smooth,
    gradient-noise variance ``sigma^2``, ``0 < gamma_k < 1/(2(d+4)L)``,
    ``R`` drawn by :func:`rsgf_output_probabilities`:

    ``[D_f^2 + 2 mu^2 (d+4) (1 + L (d+4)^2 sum_k (gamma_k/4 + L gamma_k^2)) + 2 (d+4) sigma^2 sum_k gamma_k^2]
    / sum_k (gamma_k - 2 L (d+4) gamma_k^2)`` with ``D_f^2 = 2 (f(x_1) - f^*) / L``.
    """
    d = _pos_int(d, "d")
    L = _pos(L, "L")
    f_gap = _nonneg(f_gap, "f_gap")
    mu = _nonneg(mu, "mu")
    sigma = _nonneg(sigma, "sigma")
    g = _gammas(gammas, L, d)
    Df2 = 2 * f_gap / L
    num = (
        Df2
        + 2 * mu**2 * (d + 4) * (1 + L * (d + 4) ** 2 * float(np.sum(g / 4 + L * g**2)))
        + 2 * (d + 4) * sigma**2 * float(np.sum(g**2))
    )
    den = float(np.sum(g - 2 * L * (d + 4) * g**2))
    return num / den
