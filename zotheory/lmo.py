"""Norms, dual norms, linear minimisation oracles (LMOs) and sharp operators for torch tensors.

Conventions (``docs/theory.md`` §4):

* ``lmo(g, r) = argmin_{||s|| <= r} <g, s>``, so ``<g, lmo(g, r)> = -r ||g||_*`` and ``||lmo(g, r)|| = r``
  for ``g != 0`` (§5.28). ``lmo(g, r) = r * lmo(g, 1)``.
* ``||g||_* = sup_{||s|| <= 1} <g, s>`` is always the *dual* norm of the norm in question.
* Sharp operator ``g# = ||g||_* * argmax_{||t|| <= 1} <g, t> = -||g||_* * lmo(g, 1)``; it satisfies
  ``<g, g#> = ||g||_*^2`` and ``||g#|| = ||g||_*``, and ``-g# / lam`` minimises
  ``<g, D> + lam/2 ||D||^2`` with value ``-||g||_*^2 / (2 lam)`` (§5.31).
* A **zero gradient** gives a zero LMO (and a zero sharp). The LMO is then the whole ball, and zero is the choice
  that keeps every map continuous at 0 on the rays and costs no special casing downstream.
* Inner products of tensors are entrywise (``sum(g * s)``); matrix norms view a tensor with more than 2 dims as the
  matrix ``x.reshape(x.shape[0], -1)`` (rows = first dim, as Muon does for conv kernels) and return results in
  the original shape.

Every function accepts any floating dtype (float16, bfloat16, float32, float64). The arithmetic is done in float64
for float64 input and in float32 otherwise; results (including the 0-dim norm values) are returned in the input
dtype. Nothing here draws random numbers.

The :class:`Norm` classes are thin wrappers around the module-level pure functions; :class:`BlockNorm` subclasses
(:class:`ProductNorm`, :class:`SumNorm`) take and return *lists* of tensors. :data:`NORMS` / :func:`get_norm` give
string names for configuration files.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "CUBIC",
    "MUON_QUINTIC",
    "NORMS",
    "NS_EPS",
    "BlockNorm",
    "Frobenius",
    "L1",
    "L2",
    "LInf",
    "Lp",
    "NewtonSchulzSpectral",
    "Norm",
    "Nuclear",
    "ProductNorm",
    "Scaled",
    "block_lmos",
    "Spectral",
    "SumNorm",
    "check_radius",
    "get_norm",
    "l1_lmo",
    "l1_norm",
    "l2_lmo",
    "l2_norm",
    "linf_lmo",
    "linf_norm",
    "lp_lmo",
    "lp_norm",
    "muon_shape_scale",
    "newton_schulz",
    "newton_schulz_batched",
    "nuclear_lmo",
    "nuclear_norm",
    "rms_radius",
    "spectral_lmo",
    "spectral_norm",
    "unscaled",
]

#: Muon's quintic Newton–Schulz coefficients ``(a, b, c)``: ``p(x) = a x + b x^3 + c x^5`` (§5.32;
#: KellerJordan/Muon ``zeropower_via_newtonschulz5``). ``p(1) = 0.701``: it does *not* converge to ``U V^T``.
MUON_QUINTIC: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
#: Classical cubic Newton–Schulz coefficients: ``p(x) = 1.5 x - 0.5 x^3``; converges to 1 on ``(0, sqrt 3)``
#: (§5.32, modula docs ``algorithms/newton-schulz.rst``).
CUBIC: tuple[float, float] = (1.5, -0.5)
#: Additive epsilon of the Frobenius normalisation ``X0 = G / (||G||_F + eps)`` (as in Muon).
NS_EPS: float = 1e-7


# ----------------------------------------------------------------------------------------------------------------
# validation and dtype helpers
# ----------------------------------------------------------------------------------------------------------------


def check_radius(radius: float) -> float:
    """Return ``float(radius)`` after checking it is a finite real number ``> 0``.

    Raises ``ValueError`` naming the value for ``radius <= 0``, NaN or infinity, and ``TypeError`` for
    non-numbers (booleans included).
    """
    if isinstance(radius, bool):
        raise TypeError(f"radius must be a real number, got bool {radius!r}")
    try:
        r = float(radius)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"radius must be a real number, got {radius!r}") from exc
    if not math.isfinite(r) or r <= 0.0:
        raise ValueError(f"radius must be finite and > 0, got {radius!r}")
    return r


def _check_tensor(x: object, what: str = "g") -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must have a floating-point dtype, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{what} must be non-empty, got shape {tuple(x.shape)}")
    return x


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other floating dtype is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _up(x: Tensor) -> Tensor:
    return x.to(_work_dtype(x.dtype))


def _as_matrix(x: Tensor, what: str) -> Tensor:
    """View ``x`` as ``(shape[0], prod(shape[1:]))``; fewer than 2 dims is a ``ValueError`` naming the shape."""
    if x.dim() < 2:
        raise ValueError(f"{what} needs a tensor with at least 2 dims (a matrix), got shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1)


def _svd_rank_mask(s: Tensor, shape: tuple[int, int]) -> Tensor:
    """Indicator of the singular values above ``max(m, n) * eps * sigma_1`` (numerical rank; LAPACK convention)."""
    tol = s[..., :1] * (max(shape) * torch.finfo(s.dtype).eps)
    return (s > tol).to(s.dtype)


# ----------------------------------------------------------------------------------------------------------------
# vector (entrywise) norms
# ----------------------------------------------------------------------------------------------------------------


def l2_norm(x: Tensor) -> Tensor:
    """Euclidean norm of the flattened tensor (= Frobenius norm of a matrix). Self-dual."""
    x = _check_tensor(x, "x")
    return torch.linalg.vector_norm(_up(x)).to(x.dtype)


def l2_lmo(g: Tensor, radius: float = 1.0) -> Tensor:
    """``argmin_{||s||_2 <= r} <g, s> = -r g / ||g||_2`` (section 4 table, [D]); zeros for ``g = 0``. Unique."""
    r = check_radius(radius)
    g = _check_tensor(g)
    w = _up(g)
    n = torch.linalg.vector_norm(w)
    scale = torch.where(n > 0, -r / n, torch.zeros_like(n))
    return (w * scale).to(g.dtype)


def linf_norm(x: Tensor) -> Tensor:
    """``max_i |x_i|``; its dual is :func:`l1_norm`."""
    x = _check_tensor(x, "x")
    return _up(x).abs().amax().to(x.dtype)


def linf_lmo(g: Tensor, radius: float = 1.0) -> Tensor:
    """``argmin_{||s||_inf <= r} <g, s> = -r sign(g)`` (section 4 table, [D]; signSGD is this LMO).

    Where ``g_i = 0`` every value in ``[-r, r]`` is optimal, so the LMO is not unique there; we return 0 there
    (``torch.sign(0) = 0``). Consequently ``||lmo(g)||_inf = r`` whenever ``g != 0``.
    """
    r = check_radius(radius)
    g = _check_tensor(g)
    return (-r * torch.sign(_up(g))).to(g.dtype)


def l1_norm(x: Tensor) -> Tensor:
    """``sum_i |x_i|``; its dual is :func:`linf_norm`."""
    x = _check_tensor(x, "x")
    return _up(x).abs().sum().to(x.dtype)


def l1_lmo(g: Tensor, radius: float = 1.0) -> Tensor:
    """``argmin_{||s||_1 <= r} <g, s> = -r sign(g_i*) e_i*`` with ``i* = argmax_i |g_i|`` (section 4 table, [D]).

    All mass goes on one entry of the flattened tensor; on ties the first maximiser (``torch.argmax``) is used, and
    any convex combination of tied vertices would also be optimal. Zeros for ``g = 0``.
    """
    r = check_radius(radius)
    g = _check_tensor(g)
    w = _up(g).reshape(-1)
    i = torch.argmax(w.abs())
    out = torch.zeros_like(w)
    out[i] = -r * torch.sign(w[i])
    return out.reshape(g.shape).to(g.dtype)


def _check_p(p: float) -> float:
    if isinstance(p, bool):
        raise TypeError(f"p must be a real number, got bool {p!r}")
    p = float(p)
    if not (math.isfinite(p) and p > 1.0):
        raise ValueError(f"Lp needs 1 < p < inf (use L1 / LInf for the end points), got p={p!r}")
    return p


def _lp_norm_work(w: Tensor, p: float) -> Tensor:
    """``||w||_p`` computed as ``m ||w / m||_p`` with ``m = max |w|`` (no overflow for large p)."""
    m = w.abs().amax()
    m_safe = torch.where(m > 0, m, torch.ones_like(m))
    return m * torch.linalg.vector_norm(w / m_safe, ord=p)


def lp_norm(x: Tensor, p: float) -> Tensor:
    """``(sum_i |x_i|^p)^(1/p)`` for ``1 < p < inf``; its dual is the ``q``-norm, ``1/p + 1/q = 1``."""
    p = _check_p(p)
    x = _check_tensor(x, "x")
    return _lp_norm_work(_up(x), p).to(x.dtype)


def lp_lmo(g: Tensor, p: float, radius: float = 1.0) -> Tensor:
    """``argmin_{||s||_p <= r} <g, s> = -r sign(g) |g|^(q-1) / ||g||_q^(q-1)``, ``1/p + 1/q = 1`` (section 4, [D]).

    Unique (the ball is strictly convex). Computed on ``|g| / max|g|`` so that ``|g|^(q-1)`` cannot overflow.
    Zeros for ``g = 0``.
    """
    p = _check_p(p)
    r = check_radius(radius)
    g = _check_tensor(g)
    q = p / (p - 1.0)
    w = _up(g)
    m = w.abs().amax()
    a = w.abs() / torch.where(m > 0, m, torch.ones_like(m))
    t = a.pow(q - 1.0)
    n = torch.linalg.vector_norm(t, ord=p)  # = ||a||_q^(q-1)
    scale = torch.where(n > 0, -r / n, torch.zeros_like(n))
    return (torch.sign(w) * t * scale).to(g.dtype)


# ----------------------------------------------------------------------------------------------------------------
# matrix (Schatten) norms
# ----------------------------------------------------------------------------------------------------------------


def spectral_norm(x: Tensor) -> Tensor:
    """Operator 2->2 norm ``sigma_1`` of the matrix view of ``x``; its dual is :func:`nuclear_norm`."""
    x = _check_tensor(x, "x")
    m = _as_matrix(_up(x), "spectral norm")
    return torch.linalg.matrix_norm(m, ord=2).to(x.dtype)


def nuclear_norm(x: Tensor) -> Tensor:
    """Nuclear (trace) norm ``sum_i sigma_i`` of the matrix view of ``x``; its dual is :func:`spectral_norm`."""
    x = _check_tensor(x, "x")
    m = _as_matrix(_up(x), "nuclear norm")
    return torch.linalg.svdvals(m).sum().to(x.dtype)


def spectral_lmo(g: Tensor, radius: float = 1.0) -> Tensor:
    """``argmin_{||S||_op <= r} <G, S> = -r U V^T`` from the reduced SVD ``G = U diag(sigma) V^T`` (§5.29).

    Exact (LAPACK SVD). ``<G, lmo> = -r ||G||_nuc`` and ``||lmo||_op = r`` for ``G != 0``. When ``G`` is rank
    deficient the LMO is not unique (anything of operator norm <= r may be added on the null spaces); we return the
    minimum-Frobenius-norm minimiser ``-r U_+ V_+^T`` built from the singular pairs with
    ``sigma_i > max(m, n) * eps * sigma_1``. Zeros for ``G = 0``. More than 2 dims: matrix view
    ``(shape[0], -1)``, result reshaped back.
    """
    r = check_radius(radius)
    g = _check_tensor(g)
    m = _as_matrix(_up(g), "spectral LMO")
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    keep = _svd_rank_mask(s, (m.shape[0], m.shape[1]))
    out = -r * (u * keep) @ vh
    return out.reshape(g.shape).to(g.dtype)


def nuclear_lmo(g: Tensor, radius: float = 1.0) -> Tensor:
    """``argmin_{||S||_nuc <= r} <G, S> = -r u_1 v_1^T`` (top singular pair; §5.29).

    ``<G, lmo> = -r sigma_1``. Unique iff ``sigma_1 > sigma_2``; on ties LAPACK's first pair is used.
    Zeros for ``G = 0``. More than 2 dims: matrix view ``(shape[0], -1)``.
    """
    r = check_radius(radius)
    g = _check_tensor(g)
    m = _as_matrix(_up(g), "nuclear LMO")
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    nonzero = (s[0] > 0).to(s.dtype)
    out = (-r * nonzero) * torch.outer(u[:, 0], vh[0, :])
    return out.reshape(g.shape).to(g.dtype)


# ----------------------------------------------------------------------------------------------------------------
# Newton–Schulz (approximate spectral LMO) and Muon's shape factor
# ----------------------------------------------------------------------------------------------------------------


def _check_coefficients(coefficients: Sequence[float]) -> tuple[float, ...]:
    try:
        coeffs = tuple(float(c) for c in coefficients)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"coefficients must be a sequence of real numbers, got {coefficients!r}") from exc
    if not coeffs or not all(math.isfinite(c) for c in coeffs):
        raise ValueError(f"coefficients must be a non-empty sequence of finite numbers, got {coefficients!r}")
    return coeffs


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps must be an int, got {steps!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps!r}")
    return steps


def _check_ns_settings(coefficients: Sequence[float], steps: int, eps: float) -> tuple[tuple[float, ...], int, float]:
    eps = float(eps)
    if not (math.isfinite(eps) and eps >= 0.0):
        raise ValueError(f"eps must be finite and >= 0, got {eps!r}")
    return _check_coefficients(coefficients), _check_steps(steps), eps


def newton_schulz(
    G: Tensor,
    coefficients: Sequence[float] = MUON_QUINTIC,
    steps: int = 5,
    *,
    eps: float = NS_EPS,
    compute_dtype: torch.dtype | None = None,
) -> Tensor:
    """Odd-polynomial Newton–Schulz orthogonalisation: approximately ``U V^T`` for ``G = U diag(sigma) V^T``.

    ``X0 = G / (||G||_F + eps)``; with ``coefficients = (c_0, c_1, ..., c_k)`` each step is
    ``A = X X^T``, ``X <- c_0 X + (c_1 A + c_2 A^2 + ... + c_k A^k) X``, i.e. every singular value follows the
    scalar map ``p(x) = c_0 x + c_1 x^3 + ... + c_k x^(2k+1)`` and the singular vectors are unchanged (odd
    polynomials commute with the SVD; §5.32). For :data:`MUON_QUINTIC` this is Muon's
    ``A = X X^T, B = b A + c A^2, X <- a X + B X``; for :data:`CUBIC`, ``X <- 1.5 X - 0.5 X X^T X``.

    Honest accuracy statement (§5.32, ``zotheory.theory.ns_invariant_band``):

    * the Muon quintic does **not** converge to ``U V^T`` (``p(1) = 0.701``). Its singular values land in the
      invariant band ``[0.6818, 1.1344]``: after 5 steps for every ``sigma / ||G||_F >= 0.01``; smaller ratios need
      more steps (``1e-3`` gives ``>= 0.47`` after 5 steps, the band after 10);
    * the cubic converges to 1 for every ``sigma`` in ``(0, sqrt 3)``; after the Frobenius normalisation all
      ``sigma <= 1``, so it converges, slowly (factor ~1.5 per step) for tiny ``sigma / ||G||_F``.

    Zero singular values stay 0 (so ``G = 0`` gives 0). Tall matrices are transposed internally so the Gram matrix
    ``X X^T`` is the small one; a tensor with more than 2 dims is treated as ``G.reshape(shape[0], -1)`` and the
    result has ``G``'s shape and dtype. ``compute_dtype`` defaults to float64 for float64 input and float32 otherwise;
    pass ``torch.bfloat16`` to reproduce Muon's bf16 arithmetic.
    """
    G = _check_tensor(G, "G")
    coeffs, steps, eps = _check_ns_settings(coefficients, steps, eps)
    X = _as_matrix(G, "newton_schulz").to(compute_dtype or _work_dtype(G.dtype))
    return _newton_schulz_core(X, coeffs, steps, eps).reshape(G.shape).to(G.dtype)


def newton_schulz_batched(
    G: Tensor,
    coefficients: Sequence[float] = MUON_QUINTIC,
    steps: int = 5,
    *,
    eps: float = NS_EPS,
    compute_dtype: torch.dtype | None = None,
) -> Tensor:
    """:func:`newton_schulz` of every matrix ``G[b]`` of a ``(B, m, n)`` stack, as one chain of batched
    matrix products (``bmm``): the same polynomial, each matrix normalised by its own Frobenius norm, so
    ``newton_schulz_batched(G)[b]`` equals ``newton_schulz(G[b])`` up to the rounding of the batched kernels.
    One launch per product for all ``B`` matrices instead of ``B`` (Muon stacks its matrices the same way).
    Pass ``compute_dtype=torch.bfloat16`` for Muon's bf16 arithmetic on a GPU.
    """
    G = _check_tensor(G, "G")
    if G.dim() != 3:
        raise ValueError(f"newton_schulz_batched needs a (B, m, n) stack of matrices, got shape {tuple(G.shape)}")
    coeffs, steps, eps = _check_ns_settings(coefficients, steps, eps)
    X = G.to(compute_dtype or _work_dtype(G.dtype))
    return _newton_schulz_core(X, coeffs, steps, eps).to(G.dtype)


def _newton_schulz_core(X: Tensor, coeffs: tuple[float, ...], steps: int, eps: float) -> Tensor:
    """The iteration of :func:`newton_schulz` on ``(..., m, n)``: normalise each matrix, transpose tall
    matrices so the Gram matrix is the small one, then ``steps`` odd-polynomial steps (Horner form)."""
    transposed = X.shape[-2] > X.shape[-1]
    if transposed:
        X = X.mT
    X = X / (torch.linalg.matrix_norm(X, keepdim=True) + eps)
    c0, rest = coeffs[0], coeffs[1:]
    for _ in range(steps):
        if not rest:
            X = c0 * X
            continue
        A = X @ X.mT
        B = rest[-1] * A
        for c in reversed(rest[:-1]):  # Horner: B = c_1 A + c_2 A^2 + ... + c_k A^k
            B = c * A + B @ A
        X = c0 * X + B @ X
    return X.mT if transposed else X


def muon_shape_scale(shape: Sequence[int]) -> float:
    """Muon's post-scaling of the orthogonalised update: ``max(1, rows / cols) ** 0.5`` (§5.33, [C] Muon).

    ``rows = shape[0]``, ``cols = prod(shape[1:])`` (the same matrix view as the LMOs here).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or any(s <= 0 for s in shape):
        raise ValueError(f"muon_shape_scale needs a matrix shape with >= 2 positive dims, got {shape!r}")
    rows, cols = shape[0], math.prod(shape[1:])
    return max(1.0, rows / cols) ** 0.5


# ----------------------------------------------------------------------------------------------------------------
# classes
# ----------------------------------------------------------------------------------------------------------------


class Norm(ABC):
    """A norm on tensors together with its dual norm, LMO and sharp operator (section 4, §5.28–5.31).

    ``norm``/``dual_norm`` return 0-dim tensors in the input dtype; ``lmo``/``sharp`` return tensors of the input
    shape and dtype. ``exact`` is False for approximate LMOs (e.g. Newton–Schulz).
    """

    name: str = "norm"
    exact: bool = True

    @abstractmethod
    def norm(self, x: Tensor) -> Tensor:
        """``||x||``."""

    @abstractmethod
    def dual_norm(self, g: Tensor) -> Tensor:
        """``||g||_* = sup_{||s|| <= 1} <g, s>``."""

    @abstractmethod
    def lmo(self, g: Tensor, radius: float = 1.0) -> Tensor:
        """``argmin_{||s|| <= radius} <g, s>``."""

    def sharp(self, g: Tensor) -> Tensor:
        """``g# = -||g||_* lmo(g, 1)``: ``<g, g#> = ||g||_*^2``, ``||g#|| = ||g||_*`` (§5.31)."""
        g = _check_tensor(g)
        d = _up(self.dual_norm(g))
        return (-d * _up(self.lmo(g, 1.0))).to(g.dtype)


@dataclass(frozen=True)
class L2(Norm):
    """Euclidean norm of the flattened tensor; dual = itself; ``lmo = -r g / ||g||``; ``g# = g``."""

    name: str = field(default="l2", init=False)
    exact: bool = field(default=True, init=False)

    def norm(self, x: Tensor) -> Tensor:
        return l2_norm(x)

    def dual_norm(self, g: Tensor) -> Tensor:
        return l2_norm(g)

    def lmo(self, g: Tensor, radius: float = 1.0) -> Tensor:
        return l2_lmo(g, radius)


@dataclass(frozen=True)
class Frobenius(L2):
    """Frobenius norm of a matrix = :class:`L2` of the flattened tensor (any shape accepted)."""

    name: str = field(default="frobenius", init=False)


@dataclass(frozen=True)
class LInf(Norm):
    """Max-norm; dual = l1; ``lmo = -r sign(g)`` (0 where ``g_i = 0``: the LMO is not unique there);
    ``g# = ||g||_1 sign(g)`` (sign descent)."""

    name: str = field(default="linf", init=False)
    exact: bool = field(default=True, init=False)

    def norm(self, x: Tensor) -> Tensor:
        return linf_norm(x)

    def dual_norm(self, g: Tensor) -> Tensor:
        return l1_norm(g)

    def lmo(self, g: Tensor, radius: float = 1.0) -> Tensor:
        return linf_lmo(g, radius)


@dataclass(frozen=True)
class L1(Norm):
    """l1 norm; dual = max-norm; LMO puts all mass ``-r sign(g_i)`` on ``i = argmax |g_i|``."""

    name: str = field(default="l1", init=False)
    exact: bool = field(default=True, init=False)

    def norm(self, x: Tensor) -> Tensor:
        return l1_norm(x)

    def dual_norm(self, g: Tensor) -> Tensor:
        return linf_norm(g)

    def lmo(self, g: Tensor, radius: float = 1.0) -> Tensor:
        return l1_lmo(g, radius)


@dataclass(frozen=True)
class Lp(Norm):
    """lp norm, ``1 < p < inf``; dual = lq with ``1/p + 1/q = 1``; see :func:`lp_lmo`."""

    p: float = 2.0
    name: str = field(default="lp", init=False)
    exact: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", _check_p(self.p))
        object.__setattr__(self, "name", f"l{self.p:g}")

    @property
    def q(self) -> float:
        """Dual exponent ``p / (p - 1)``."""
        return self.p / (self.p - 1.0)

    def norm(self, x: Tensor) -> Tensor:
        return lp_norm(x, self.p)

    def dual_norm(self, g: Tensor) -> Tensor:
        return lp_norm(g, self.q)

    def lmo(self, g: Tensor, radius: float = 1.0) -> Tensor:
        return lp_lmo(g, self.p, radius)


@dataclass(frozen=True)
class Spectral(Norm):
    """Operator 2->2 norm; dual = nuclear; exact LMO ``-r U V^T`` by SVD; ``G# = ||G||_nuc U V^T``.

    Needs >= 2 dims (ValueError naming the shape otherwise); more dims use the ``(shape[0], -1)`` matrix view.
    """

    name: str = field(default="spectral", init=False)
    exact: bool = field(default=True, init=False)

    def norm(self, x: Tensor) -> Tensor:
        return spectral_norm(x)

    def dual_norm(self, g: Tensor) -> Tensor:
        return nuclear_norm(g)

    def lmo(self, g: Tensor, radius: float = 1.0) -> Tensor:
        return spectral_lmo(g, radius)


@dataclass(frozen=True)
class Nuclear(Norm):
    """Nuclear norm; dual = spectral ``sigma_1``; LMO ``-r u_1 v_1^T``; ``G# = sigma_1 u_1 v_1^T``."""

    name: str = field(default="nuclear", init=False)
    exact: bool = field(default=True, init=False)

    def norm(self, x: Tensor) -> Tensor:
        return nuclear_norm(x)

    def dual_norm(self, g: Tensor) -> Tensor:
        return spectral_norm(g)

    def lmo(self, g: Tensor, radius: float = 1.0) -> Tensor:
        return nuclear_lmo(g, radius)


@dataclass(frozen=True)
class NewtonSchulzSpectral(Norm):
    """Spectral norm with the *approximate* LMO ``-r newton_schulz(G, coefficients, steps)`` (Muon; ``exact=False``).

    ``norm``/``dual_norm`` are the exact spectral / nuclear norms; only ``lmo`` (and hence ``sharp``) is
    approximate. With :data:`MUON_QUINTIC` the singular values of ``-lmo / r`` lie in ``[0.6818, 1.1344]`` after
    5 steps when ``sigma_i / ||G||_F >= 0.01`` (§5.32) instead of being exactly 1, and are always
    ``<= 1.2024`` (the maximum of the quintic on ``[0, 1]``). See :func:`newton_schulz`. Presets:
    :meth:`muon_quintic` and :meth:`cubic`.
    """

    coefficients: tuple[float, ...] = MUON_QUINTIC
    steps: int = 5
    eps: float = NS_EPS
    compute_dtype: torch.dtype | None = None
    name: str = field(default="spectral_ns", init=False)
    exact: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        coeffs = _check_coefficients(self.coefficients)
        object.__setattr__(self, "coefficients", coeffs)
        object.__setattr__(self, "steps", _check_steps(self.steps))
        name = {MUON_QUINTIC: "spectral_ns", CUBIC: "spectral_ns_cubic"}.get(coeffs, "spectral_ns_custom")
        object.__setattr__(self, "name", name)

    @classmethod
    def muon_quintic(cls, steps: int = 5) -> NewtonSchulzSpectral:
        """Muon's quintic ``(3.4445, -4.7750, 2.0315)``, 5 steps by default."""
        return cls(coefficients=MUON_QUINTIC, steps=steps)

    @classmethod
    def cubic(cls, steps: int = 10) -> NewtonSchulzSpectral:
        """Cubic ``X <- 1.5 X - 0.5 X X^T X``, 10 steps by default (the JAGUAR Muon paper's choice)."""
        return cls(coefficients=CUBIC, steps=steps)

    def norm(self, x: Tensor) -> Tensor:
        return spectral_norm(x)

    def dual_norm(self, g: Tensor) -> Tensor:
        return nuclear_norm(g)

    def lmo(self, g: Tensor, radius: float = 1.0) -> Tensor:
        r = check_radius(radius)
        g = _check_tensor(g)
        x = newton_schulz(g, self.coefficients, self.steps, eps=self.eps, compute_dtype=self.compute_dtype)
        return (-r * _up(x)).to(g.dtype)


@dataclass(frozen=True)
class Scaled(Norm):
    """One block of a product norm with radius ``rho``: ``||x|| = ||x||_base / rho``, dual ``rho ||g||_base,*``,
    ``lmo(g, r) = base.lmo(g, r rho)`` (the blocks of :class:`ProductNorm` with their radii, §5.30; Scion's
    layer-wise radii, Pethick et al. 2025, arXiv 2502.07529). A step of the product norm's LMO then moves block
    ``l`` by ``rho_l`` in its own norm. A ``Scaled`` base is folded in (``rho`` multiplies), so ``base`` is never
    ``Scaled``; ``exact`` is the base's.
    """

    base: Norm
    rho: float
    name: str = field(default="scaled", init=False)
    exact: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.base, Norm):
            raise TypeError(f"Scaled needs a Norm as base, got {self.base!r}")
        rho = check_radius(self.rho)
        if isinstance(self.base, Scaled):
            rho *= self.base.rho
            object.__setattr__(self, "base", self.base.base)
        object.__setattr__(self, "rho", rho)
        object.__setattr__(self, "name", f"{self.base.name}*{rho:g}")
        object.__setattr__(self, "exact", self.base.exact)

    def norm(self, x: Tensor) -> Tensor:
        return (_up(self.base.norm(x)) / self.rho).to(x.dtype)

    def dual_norm(self, g: Tensor) -> Tensor:
        return (_up(self.base.dual_norm(g)) * self.rho).to(g.dtype)

    def lmo(self, g: Tensor, radius: float = 1.0) -> Tensor:
        return self.base.lmo(g, check_radius(radius) * self.rho)


def unscaled(norm: Norm) -> tuple[Norm, float]:
    """``(base, rho)`` of a :class:`Scaled` norm, ``(norm, 1.0)`` of any other."""
    return (norm.base, norm.rho) if isinstance(norm, Scaled) else (norm, 1.0)


def rms_radius(norm: Norm, shape: Sequence[int]) -> float:
    """The radius ``rho`` at which a unit step ``rho lmo_1(g)`` of a generic ``g`` (full rank, no zero entries) of
    ``shape`` moves its entries by 1 in root mean square: ``rho = sqrt(n) / ||lmo_1(g)||_F`` with ``n`` entries.

    * l-inf / sign: ``||sign(g)||_F = sqrt(n)``, so ``rho = 1``;
    * spectral and Newton–Schulz: ``||U V^T||_F = sqrt(min(rows, cols))`` (matrix view ``(shape[0], -1)``), so
      ``rho = sqrt(max(rows, cols))`` (Newton–Schulz's singular values are near 1, not equal: §5.32);
    * l2, Frobenius, l1, nuclear: ``||lmo_1(g)||_F = 1``, so ``rho = sqrt(n)``.

    Blocks of different geometry then move their entries alike, as the isotropic step of ZO-SGD does; Moonlight
    scales Muon's update by ``0.2 sqrt(max(rows, cols))`` for the same reason, to match AdamW's update RMS (Liu et
    al. 2025, arXiv 2502.16982: its per-parameter update scale). Other norms (``lp``: the Frobenius norm of its LMO
    depends on ``g``) are refused by name; so is a ``Scaled`` norm, whose radius is already set.
    """
    dims = tuple(int(d) for d in shape)
    if not dims or any(d <= 0 for d in dims):
        raise ValueError(f"rms_radius needs a shape of positive dims, got {tuple(shape)!r}")
    n = math.prod(dims)
    if isinstance(norm, Scaled):
        raise ValueError(f"norm {norm.name!r} already has its radius {norm.rho:g}; pass its base")
    if isinstance(norm, LInf):
        return 1.0
    if isinstance(norm, (Spectral, NewtonSchulzSpectral)):
        if len(dims) < 2:
            raise ValueError(f"norm {norm.name!r} needs a matrix shape, got {dims!r}")
        return math.sqrt(max(dims[0], n // dims[0]))
    if isinstance(norm, (L2, L1, Nuclear)):
        return math.sqrt(n)
    raise ValueError(f"rms_radius has no closed form for norm {norm.name!r}; use linf, spectral(_ns), l2, l1, nuclear")


def block_lmos(
    norms: Sequence[Norm], tensors: Sequence[Tensor], radius: float = 1.0, *, budget: int = 1 << 24
) -> list[Tensor]:
    """``[norms[i].lmo(tensors[i], radius)]`` with the :class:`NewtonSchulzSpectral` blocks of equal matrix shape
    (and equal iteration settings, dtype and device) stacked, up to ``budget`` entries per stack, and orthogonalised
    by one :func:`newton_schulz_batched` chain per stack: equal to the per-block LMOs up to the rounding of the
    batched kernels (every matrix keeps its own Frobenius normalisation); a :class:`Scaled` Newton–Schulz block joins
    its base's stack and is multiplied by its radius. Other norms are called block by block."""
    if len(norms) != len(tensors):
        raise ValueError(f"block_lmos needs one norm per tensor, got {len(norms)} norms and {len(tensors)} tensors")
    r = check_radius(radius)
    out: list[Tensor | None] = [None] * len(tensors)
    stacks: dict[tuple[Any, ...], list[int]] = {}
    rhos: dict[int, float] = {}
    for i, (norm, g) in enumerate(zip(norms, tensors, strict=False)):
        base, rhos[i] = unscaled(norm)
        if not isinstance(base, NewtonSchulzSpectral):
            out[i] = norm.lmo(g, r)
            continue
        norm = base
        g = _check_tensor(g)
        matrix = _as_matrix(g, "the Newton-Schulz LMO's input")
        key = (tuple(matrix.shape), norm.coefficients, norm.steps, norm.eps, norm.compute_dtype, g.dtype, g.device)
        stacks.setdefault(key, []).append(i)
    for key, members in stacks.items():
        shape, coeffs, steps, eps, compute_dtype = key[:5]
        per = max(1, budget // math.prod(shape))
        for start in range(0, len(members), per):
            chunk = members[start : start + per]
            x = newton_schulz_batched(
                torch.stack([tensors[i].reshape(shape) for i in chunk]),
                coeffs,
                steps,
                eps=eps,
                compute_dtype=compute_dtype,
            )
            for i, x_i in zip(chunk, x, strict=False):
                out[i] = (-r * rhos[i] * _up(x_i)).to(tensors[i].dtype).reshape(tensors[i].shape)
    return out  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------------------
# block norms (lists of tensors)
# ----------------------------------------------------------------------------------------------------------------


def _check_blocks(xs: Sequence[Tensor], n: int, what: str) -> list[Tensor]:
    if isinstance(xs, Tensor) or not isinstance(xs, Sequence):
        raise TypeError(f"{what} must be a list/tuple of tensors, got {type(xs).__name__}")
    if len(xs) != n:
        raise ValueError(f"{what} has {len(xs)} blocks, the norm has {n}")
    return [_check_tensor(x, f"{what}[{i}]") for i, x in enumerate(xs)]


def _common_dtype(xs: Sequence[Tensor]) -> torch.dtype:
    dt = xs[0].dtype
    for x in xs[1:]:
        dt = torch.promote_types(dt, x.dtype)
    return dt


class BlockNorm(ABC):
    """A norm on lists of tensors (one block per parameter tensor); same methods as :class:`Norm`."""

    name: str
    exact: bool
    blocks: tuple[Norm, ...]

    @abstractmethod
    def norm(self, xs: Sequence[Tensor]) -> Tensor:
        """``||xs||`` as a 0-dim tensor in the promoted dtype of the blocks."""

    @abstractmethod
    def dual_norm(self, gs: Sequence[Tensor]) -> Tensor:
        """``||gs||_*`` as a 0-dim tensor in the promoted dtype of the blocks."""

    @abstractmethod
    def lmo(self, gs: Sequence[Tensor], radius: float = 1.0) -> list[Tensor]:
        """Blockwise ``argmin_{||s|| <= radius} sum_l <g_l, s_l>``."""

    def sharp(self, gs: Sequence[Tensor]) -> list[Tensor]:
        """``g# = -||g||_* lmo(g, 1)`` blockwise (§5.31)."""
        gs = _check_blocks(gs, len(self.blocks), "gs")
        d = self.dual_norm(gs)
        return [(-d.to(_work_dtype(s.dtype)) * _up(s)).to(s.dtype) for s in self.lmo(gs, 1.0)]


def _check_weights(values: Sequence[float], n: int, what: str) -> tuple[float, ...]:
    vals = tuple(values)
    if len(vals) != n:
        raise ValueError(f"{what} has {len(vals)} entries for {n} blocks: {vals!r}")
    out = []
    for v in vals:
        try:
            out.append(check_radius(v))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"every entry of {what} must be finite and > 0, got {vals!r}") from exc
    return tuple(out)


@dataclass(frozen=True)
class ProductNorm(BlockNorm):
    """Max-type product norm ``||x|| = max_l ||x_l||_(l) / rho_l`` (unit ball = product of ``rho_l``-balls).

    Dual ``||g||_* = sum_l rho_l ||g_l||_(l),*``; LMO blockwise ``lmo_r(g)_l = r rho_l lmo_1^(l)(g_l)`` — the
    layer-wise LMO of Scion/Gluon (§5.30). ``exact`` iff every block is exact.
    """

    blocks: tuple[Norm, ...]
    radii: tuple[float, ...]
    name: str = field(default="product", init=False)
    exact: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        blocks = tuple(self.blocks)
        if not blocks or not all(isinstance(b, Norm) for b in blocks):
            raise TypeError(f"blocks must be a non-empty sequence of Norm instances, got {self.blocks!r}")
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "radii", _check_weights(self.radii, len(blocks), "radii"))
        object.__setattr__(self, "exact", all(b.exact for b in blocks))

    def norm(self, xs: Sequence[Tensor]) -> Tensor:
        xs = _check_blocks(xs, len(self.blocks), "xs")
        dt = _common_dtype(xs)
        return torch.stack(
            [b.norm(x).to(dt) / rho for b, x, rho in zip(self.blocks, xs, self.radii, strict=False)]
        ).amax()

    def dual_norm(self, gs: Sequence[Tensor]) -> Tensor:
        gs = _check_blocks(gs, len(self.blocks), "gs")
        dt = _common_dtype(gs)
        return torch.stack(
            [rho * b.dual_norm(g).to(dt) for b, g, rho in zip(self.blocks, gs, self.radii, strict=False)]
        ).sum()

    def lmo(self, gs: Sequence[Tensor], radius: float = 1.0) -> list[Tensor]:
        r = check_radius(radius)
        gs = _check_blocks(gs, len(self.blocks), "gs")
        return [b.lmo(g, r * rho) for b, g, rho in zip(self.blocks, gs, self.radii, strict=False)]


@dataclass(frozen=True)
class SumNorm(BlockNorm):
    """Sum-type norm ``||x|| = sum_l w_l ||x_l||_(l)`` (weights default to 1).

    Dual ``||g||_* = max_l ||g_l||_(l),* / w_l``; the LMO puts all mass on ``l* = argmax_l ||g_l||_* / w_l``:
    ``lmo_r(g)_{l*} = lmo^(l*)_{r / w_l*}(g_l*)``, zeros elsewhere (§5.30, section 4 table). On ties the first
    block wins. ``exact`` iff every block is exact.
    """

    blocks: tuple[Norm, ...]
    weights: tuple[float, ...] | None = None
    name: str = field(default="sum", init=False)
    exact: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        blocks = tuple(self.blocks)
        if not blocks or not all(isinstance(b, Norm) for b in blocks):
            raise TypeError(f"blocks must be a non-empty sequence of Norm instances, got {self.blocks!r}")
        object.__setattr__(self, "blocks", blocks)
        w = (1.0,) * len(blocks) if self.weights is None else self.weights
        object.__setattr__(self, "weights", _check_weights(w, len(blocks), "weights"))

        object.__setattr__(self, "exact", all(b.exact for b in blocks))

    @property
    def _w(self) -> tuple[float, ...]:
        """The checked weights (``__post_init__`` replaces ``None`` by ones)."""
        assert self.weights is not None
        return self.weights

    def norm(self, xs: Sequence[Tensor]) -> Tensor:
        xs = _check_blocks(xs, len(self.blocks), "xs")
        dt = _common_dtype(xs)
        return torch.stack([w * b.norm(x).to(dt) for b, x, w in zip(self.blocks, xs, self._w, strict=False)]).sum()

    def _scaled_duals(self, gs: list[Tensor]) -> Tensor:
        dt = _common_dtype(gs)
        return torch.stack([b.dual_norm(g).to(dt) / w for b, g, w in zip(self.blocks, gs, self._w, strict=False)])

    def dual_norm(self, gs: Sequence[Tensor]) -> Tensor:
        gs = _check_blocks(gs, len(self.blocks), "gs")
        return self._scaled_duals(gs).amax()

    def lmo(self, gs: Sequence[Tensor], radius: float = 1.0) -> list[Tensor]:
        r = check_radius(radius)
        gs = _check_blocks(gs, len(self.blocks), "gs")
        star = int(torch.argmax(self._scaled_duals(gs)).item())
        return [self.blocks[k].lmo(g, r / self._w[k]) if k == star else torch.zeros_like(g) for k, g in enumerate(gs)]


# ----------------------------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------------------------

#: Name -> factory. ``get_norm(name, **kwargs)`` calls the factory with ``kwargs`` (e.g. ``steps=`` for the
#: Newton–Schulz entries, ``p=`` for ``"lp"``).
NORMS: dict[str, Callable[..., Norm]] = {
    "l2": L2,
    "linf": LInf,
    "sign": LInf,
    "l1": L1,
    "lp": Lp,
    "frobenius": Frobenius,
    "spectral": Spectral,
    "nuclear": Nuclear,
    "spectral_ns": NewtonSchulzSpectral.muon_quintic,
    "spectral_ns_cubic": NewtonSchulzSpectral.cubic,
}


def get_norm(name: str, **kwargs: object) -> Norm:
    """Instantiate the norm registered under ``name`` in :data:`NORMS` (``ValueError`` listing the valid names)."""
    try:
        factory = NORMS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown norm {name!r}; valid names: {', '.join(sorted(NORMS))}") from None
    return factory(**kwargs)
