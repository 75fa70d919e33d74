"""The problem contract: an ``nn.Module`` whose ``forward()`` returns f(x) and that knows its constants.

One idea runs through the project (``ARCHITECTURE.md``): every optimizer is a
``torch.optim.Optimizer`` whose ``step(closure)`` only needs a closure returning the loss.
A synthetic problem is therefore an ``nn.Module`` whose parameters are the optimisation
variable and whose ``forward()`` (no arguments) returns the scalar ``f(x)``; the same
optimizer object runs on it and on an LLM::

    problem = Quadratic(50, L=1.0, mu=1e-2, seed=0)
    opt = SomeZOOptimizer(problem.parameters(), lr=...)
    for t in range(T):
        opt.step(lambda: problem())          # the closure: no backward, just f(x)
    print(problem.suboptimality())

Constants (attributes of every problem; see each class for the derivation):

``L``
    smoothness constant in ``smoothness_norm``:
    ``||grad f(x) - grad f(y)||_* <= L ||x - y||`` for all x, y (``||.||_*`` the dual norm,
    table in :mod:`problems.norms`). ``math.inf`` when f is not smooth (the norm problem) and,
    for problems that are not globally smooth (Rosenbrock), the constant over a stated box.
``smoothness_norm``
    ``"l2"``: ``||grad f(x)-grad f(y)||_2 <= L ||x-y||_2`` on all entries concatenated;
    ``"linf"``: ``||grad f(x)-grad f(y)||_1 <= L ||x-y||_inf``;
    ``"spectral"``: ``sum_l ||grad_l f(X)-grad_l f(Y)||_nuc <= L max_l ||X_l-Y_l||_op``;
    ``"product"``: ``sum_l ||grad_l f(x)-grad_l f(y)||_(l),* <= L max_l ||x_l-y_l||_(l)``
    with the per-block norms ``block_norms``.
``L_l2``
    the Euclidean constant (``== L`` when ``smoothness_norm == "l2"``); the ZO theorems of
    ``docs/theory.md`` §3 are stated with it.
``block_L``
    per-block constants ``||grad_l f(x)-grad_l f(y)||_(l),* <= L_l ||x_l-y_l||_(l)`` when the
    problem is block-separable (``None`` otherwise); for a separable problem
    ``L = sum_l L_l`` in the product norm.
``mu``
    strong-convexity modulus in the Euclidean norm (``f(y) >= f(x) + <grad f(x), y-x> +
    mu/2 ||y-x||_2^2``); ``0.0`` for convex but not strongly convex problems, ``None`` for
    nonconvex ones.
``f_star``, ``x_star``
    optimal value and a minimiser (list of tensors, one per block; ``None`` if unknown).
``noise_variance``
    ``sigma^2`` with ``E||grad F(x, xi) - grad f(x)||_2^2 <= sigma^2`` for every x; ``0.0``
    for deterministic problems (the oracle is exact).
``lipschitz``
    ``L0`` with ``|f(x) - f(y)| <= L0 ||x - y||_2`` (only where finite and relevant).
``dim``
    total number of entries of all blocks.

Everything random is drawn from private generators built from ``seed``
(:mod:`problems._util`); the global RNG is never touched.
"""

from __future__ import annotations

import contextlib
import math
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from problems import norms as _norms
from problems._util import check_dtype, check_float, check_int, generator

Blocks = list[Tensor]


class Problem(nn.Module):
    """Base class of the synthetic problems (see the module docstring for the constants).

    Subclasses register their blocks with :meth:`_add_block` and implement
    :meth:`objective`, the deterministic ``f`` as a pure function of a list of block
    tensors. ``forward()`` evaluates it at the current parameters.

    Args:
        seed: non-negative int; every random draw of the problem derives from it.
        dtype: ``torch.float32`` (default) or ``torch.float64``.
    """

    name: str = "problem"

    def __init__(self, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.seed = check_int(seed, "seed", minimum=0)
        self._dtype = check_dtype(dtype)
        self._block_names: list[str] = []
        self._x_star_known = True
        self.L: float = math.inf
        self.L_l2: float = math.inf
        self.smoothness_norm: str = "l2"
        self.block_norms: tuple[str, ...] | None = None
        self.block_L: tuple[float, ...] | None = None
        self.mu: float | None = None
        self.f_star: float | None = None
        self.noise_variance: float | None = 0.0
        self.lipschitz: float | None = None
        self.is_convex: bool = False
        self.globally_smooth: bool = True

    # ------------------------------------------------------------------ construction
    def _gen(self, stream: str, *extra: int) -> torch.Generator:
        """Private generator of the named stream of this problem's seed."""
        return generator(self.seed, stream, *extra)

    def _add_block(self, name: str, x0: Tensor, x_star: Tensor | None) -> None:
        """Register the parameter ``name`` at ``x0`` (cast to the problem dtype) and its optimum."""
        x0 = x0.detach().to(self._dtype).clone()
        self.register_parameter(name, nn.Parameter(x0.clone()))
        self.register_buffer(f"x0_{name}", x0)
        if x_star is None:
            self._x_star_known = False
        else:
            self.register_buffer(f"xstar_{name}", x_star.detach().to(self._dtype).clone())
        self._block_names.append(name)

    # ------------------------------------------------------------------ the oracle
    @abstractmethod
    def objective(self, xs: Sequence[Tensor]) -> Tensor:
        """Deterministic ``f`` at the blocks ``xs`` (same shapes as :attr:`blocks`), a scalar."""
        raise NotImplementedError

    def forward(self) -> Tensor:
        """``f`` at the current parameters: the deterministic zeroth-order oracle."""
        return self.objective(self.blocks)

    def _gap(self, xs: Sequence[Tensor]) -> Tensor:
        """``f(xs) - f_star``; subclasses override it when a cancellation-free form exists."""
        if self.f_star is None:
            raise ValueError(f"{self.name}: f_star is unknown, so the suboptimality is undefined")
        return self.objective(xs) - self.f_star

    # ------------------------------------------------------------------ state
    @property
    def blocks(self) -> Blocks:
        """The parameter blocks, in registration order (the optimisation variable)."""
        return [getattr(self, n) for n in self._block_names]

    @property
    def block_names(self) -> list[str]:
        return list(self._block_names)

    @property
    def dim(self) -> int:
        """Total number of entries of all blocks."""
        return sum(p.numel() for p in self.blocks)

    @property
    def dtype(self) -> torch.dtype:
        return self.blocks[0].dtype

    @property
    def x0(self) -> Blocks:
        """Copies of the initial point (one tensor per block)."""
        return [getattr(self, f"x0_{n}").clone() for n in self._block_names]

    @property
    def x_star(self) -> Blocks | None:
        """Copies of a minimiser (one tensor per block), or ``None`` if unknown."""
        if not self._x_star_known:
            return None
        return [getattr(self, f"xstar_{n}").clone() for n in self._block_names]

    @torch.no_grad()
    def reset(self) -> None:
        """Put the parameters back at ``x0`` exactly."""
        for p, x in zip(self.blocks, self.x0, strict=False):
            p.copy_(x)

    @torch.no_grad()
    def load_point(self, xs: Sequence[Tensor]) -> None:
        """Copy the blocks ``xs`` into the parameters (shapes must match)."""
        blocks = self.blocks
        if len(xs) != len(blocks):
            raise ValueError(f"expected {len(blocks)} blocks, got {len(xs)}")
        for p, x in zip(blocks, xs, strict=False):
            if tuple(x.shape) != tuple(p.shape):
                raise ValueError(f"block shape mismatch: expected {tuple(p.shape)}, got {tuple(x.shape)}")
            p.copy_(x)

    # ------------------------------------------------------------------ verification helpers
    def _point(self, xs: Sequence[Tensor] | None) -> Blocks:
        return [p.detach() for p in (self.blocks if xs is None else xs)]

    @torch.no_grad()
    def value(self, xs: Sequence[Tensor] | None = None) -> float:
        """Deterministic ``f`` at ``xs`` (default: the current parameters) as a float."""
        return float(self.objective(self._point(xs)))

    def suboptimality(self, xs: Sequence[Tensor] | None = None) -> float:
        """``f(x) - f_star`` at ``xs`` (default: the current parameters)."""
        with torch.no_grad():
            return float(self._gap(self._point(xs)))

    def exact_gradient(self, xs: Sequence[Tensor] | None = None) -> Blocks:
        """``grad f`` by autograd, at ``xs`` (default: the current parameters).

        For verification only: the zeroth-order optimizers never call it. It works on
        detached copies, so no ``.grad`` buffer is created on the parameters.
        """
        leaves = [x.detach().clone().requires_grad_(True) for x in self._point(xs)]
        with torch.enable_grad():
            val = self.objective(leaves)
            grads = torch.autograd.grad(val, leaves, allow_unused=True)
        return [torch.zeros_like(x) if g is None else g.detach() for x, g in zip(leaves, grads, strict=False)]

    def norm(self, xs: Sequence[Tensor]) -> float:
        """``||xs||`` in the problem's smoothness norm."""
        return _norms.norm(xs, self.smoothness_norm, self.block_norms)

    def dual_norm(self, gs: Sequence[Tensor]) -> float:
        """``||gs||_*``, the dual of the smoothness norm (the norm that measures gradients)."""
        return _norms.dual_norm(gs, self.smoothness_norm, self.block_norms)

    def grad_norm(self, norm: str = "l2", xs: Sequence[Tensor] | None = None) -> float:
        """Norm of ``grad f`` at ``xs``: ``"l2"``, ``"l1"``, ``"linf"``, or ``"dual"``.

        ``"dual"`` is the dual of the smoothness norm, the stationarity measure of
        non-Euclidean (LMO / steepest-descent) rates.
        """
        g = self.exact_gradient(xs)
        if norm == "dual":
            return self.dual_norm(g)
        if norm in ("l2", "l1", "linf"):
            return _norms.norm(g, norm)
        raise ValueError(f"unknown gradient norm {norm!r}; valid: ['l2', 'l1', 'linf', 'dual']")

    def smoothness_ratio(self, xs: Sequence[Tensor], ys: Sequence[Tensor]) -> float:
        """``||grad f(x) - grad f(y)||_* / ||x - y||`` in the smoothness norm (``<= L``)."""
        gx, gy = self.exact_gradient(xs), self.exact_gradient(ys)
        num = self.dual_norm([a.double() - b.double() for a, b in zip(gx, gy, strict=False)])
        den = self.norm([a.detach().double() - b.detach().double() for a, b in zip(xs, ys, strict=False)])
        if den == 0:
            raise ValueError("smoothness_ratio needs x != y")
        return num / den

    def initial_distance(self, norm: str | None = None) -> float:
        """``||x0 - x_star||`` in ``norm`` (default: the smoothness norm)."""
        xs = self.x_star
        if xs is None:
            raise ValueError(f"{self.name}: x_star is unknown")
        diff = [(a.double() - b.double()) for a, b in zip(self.x0, xs, strict=False)]
        if norm is None:
            return self.norm(diff)
        return _norms.norm(diff, norm, self.block_norms)

    def flatten(self, xs: Sequence[Tensor]) -> Tensor:
        """Concatenate the blocks into one vector."""
        return torch.cat([x.reshape(-1) for x in xs])

    def unflatten(self, v: Tensor) -> Blocks:
        """Inverse of :meth:`flatten` with the shapes of :attr:`blocks`."""
        out, i = [], 0
        for p in self.blocks:
            out.append(v[i : i + p.numel()].reshape(p.shape))
            i += p.numel()
        if i != v.numel():
            raise ValueError(f"vector has {v.numel()} entries, the problem has {i}")
        return out

    def flat_objective(self, v: Tensor) -> Tensor:
        """``f`` as a function of one flat vector (for Hessians and ``torch.func`` transforms)."""
        return self.objective(self.unflatten(v))

    def hessian(self, xs: Sequence[Tensor] | None = None) -> Tensor:
        """Dense ``dim x dim`` Hessian of ``f`` at ``xs`` by double backward (verification, small dims)."""
        v = self.flatten(self._point(xs)).detach().clone()
        with torch.enable_grad():
            return torch.autograd.functional.hessian(self.flat_objective, v).detach()

    def constants(self) -> dict[str, Any]:
        """The stated constants as a JSON-friendly dict (for reports)."""
        return {
            "name": self.name,
            "dim": self.dim,
            "L": self.L,
            "smoothness_norm": self.smoothness_norm,
            "block_norms": list(self.block_norms) if self.block_norms else None,
            "block_L": list(self.block_L) if self.block_L else None,
            "L_l2": self.L_l2,
            "mu": self.mu,
            "f_star": self.f_star,
            "noise_variance": self.noise_variance,
            "lipschitz": self.lipschitz,
            "is_convex": self.is_convex,
            "globally_smooth": self.globally_smooth,
            "seed": self.seed,
        }

    def extra_repr(self) -> str:
        return (
            f"name={self.name}, dim={self.dim}, L={self.L:.6g} ({self.smoothness_norm}), "
            f"L_l2={self.L_l2:.6g}, mu={self.mu}, f_star={self.f_star}, sigma2={self.noise_variance}"
        )


class StochasticProblem(Problem):
    """A problem with a stochastic oracle ``F(x, xi)``, ``E_xi F(x, xi) = f(x)``.

    The sample ``xi`` is *fixed* by :meth:`set_sample` and stays fixed until the next call,
    so both evaluations of a two-point difference
    ``F(x + r z, xi) - F(x - r z, xi)`` see the same sample (the closure contract of
    ``ARCHITECTURE.md``: "two-point differences use the same minibatch"). A training loop
    calls ``problem.set_sample(seed_t)`` once per step, before ``opt.step(closure)``.

    With no sample set (``set_sample(None)``, the initial state) ``forward()`` returns the
    deterministic ``f``. ``objective``, ``exact_gradient``, ``suboptimality`` and
    ``hessian`` always refer to the deterministic ``f``.

    Subclasses implement :meth:`draw_sample` (seed -> sample, from a private generator) and
    :meth:`sample_objective` (``F(xs, sample)``), and set ``noise_variance``.
    """

    def __init__(self, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(seed=seed, dtype=dtype)
        self._sample: Any = None
        self._sample_seed: int | None = None

    @abstractmethod
    def draw_sample(self, seed: int) -> Any:
        """The sample ``xi`` identified by ``seed`` (deterministic in ``(self.seed, seed)``)."""
        raise NotImplementedError

    @abstractmethod
    def sample_objective(self, xs: Sequence[Tensor], sample: Any) -> Tensor:
        """``F(xs, sample)``."""
        raise NotImplementedError

    @abstractmethod
    def noise_variance_at(self, xs: Sequence[Tensor] | None = None) -> float:
        """Exact ``E_xi ||grad F(x, xi) - grad f(x)||_2^2`` at ``xs`` (default: current point)."""
        raise NotImplementedError

    def set_sample(self, seed: int | None) -> None:
        """Fix the sample used by ``forward()`` (``None``: back to the deterministic ``f``)."""
        if seed is None:
            self._sample, self._sample_seed = None, None
            return
        seed = check_int(seed, "sample seed", minimum=0)
        self._sample, self._sample_seed = self.draw_sample(seed), seed

    @property
    def sample_seed(self) -> int | None:
        """The seed of the sample currently used by ``forward()`` (``None``: deterministic)."""
        return self._sample_seed

    @contextlib.contextmanager
    def use_sample(self, seed: int | None) -> Iterator[None]:
        """Context manager: set the sample, restore the previous one on exit."""
        prev = self._sample_seed
        self.set_sample(seed)
        try:
            yield
        finally:
            self.set_sample(prev)

    def forward(self) -> Tensor:
        if self._sample is None:
            return self.objective(self.blocks)
        return self.sample_objective(self.blocks, self._sample)

    @staticmethod
    def _seed_from(seed: int | torch.Generator) -> int:
        if isinstance(seed, torch.Generator):
            return int(torch.randint(0, 2**62, (1,), generator=seed).item())
        return check_int(seed, "sample seed", minimum=0)

    def stochastic_loss(self, seed: int | torch.Generator, xs: Sequence[Tensor] | None = None) -> Tensor:
        """``F(x, xi_seed)`` at ``xs`` (default: current parameters) without changing the set sample.

        ``seed`` may be a ``torch.Generator``, from which one sample seed is drawn.
        """
        sample = self.draw_sample(self._seed_from(seed))
        return self.sample_objective(self.blocks if xs is None else list(xs), sample)

    def stochastic_gradient(self, seed: int | torch.Generator, xs: Sequence[Tensor] | None = None) -> Blocks:
        """``grad F(x, xi_seed)`` by autograd (verification only)."""
        sample = self.draw_sample(self._seed_from(seed))
        leaves = [x.detach().clone().requires_grad_(True) for x in self._point(xs)]
        with torch.enable_grad():
            grads = torch.autograd.grad(self.sample_objective(leaves, sample), leaves, allow_unused=True)
        return [torch.zeros_like(x) if g is None else g.detach() for x, g in zip(leaves, grads, strict=False)]


class AdditiveNoise(StochasticProblem):
    r"""Wrap a deterministic problem with the linear noise ``F(x, xi) = f(x) + <xi, x>``.

    .. math::  F(x,\xi) = f(x) + \langle \xi, x\rangle,\qquad
               \xi \sim \mathcal N\big(0, \tfrac{\sigma^2}{d} I_d\big)

    (``d = problem.dim``, one independent entry per parameter entry, all blocks together).
    Then ``E F(x, xi) = f(x)``, ``grad F(x, xi) = grad f(x) + xi`` and
    ``E||grad F - grad f||^2 = E||xi||^2 = sigma^2`` *exactly*, at every x; each ``F(., xi)`` has
    the same Hessian as f, so ``L``, ``mu``, ``f_star``, ``x_star`` are those of the wrapped
    problem. This is the ``sigma`` of Ghadimi & Lan (2013) (``docs/theory.md`` §3.2), met
    with equality. With one fixed sample, a central difference of ``F`` is the directional
    derivative of ``f`` plus ``<xi, z>``, exactly the gradient noise along ``z``; with two
    different samples it would also carry ``<xi - xi', x> / (2r)``, which grows as the
    radius ``r`` shrinks (hence :meth:`set_sample`).

    Args:
        problem: a deterministic :class:`Problem` (not already stochastic).
        sigma: noise level ``sigma >= 0`` (``sigma = 0`` gives back f).
        seed: seed of the noise stream (default: the problem's seed).
    """

    def __init__(self, problem: Problem, sigma: float, *, seed: int | None = None) -> None:
        if not isinstance(problem, Problem):
            raise TypeError(f"problem must be a Problem, got {type(problem).__name__}")
        if isinstance(problem, StochasticProblem):
            raise TypeError(
                f"problem {problem.name!r} is already stochastic; set its sample directly instead of wrapping it"
            )
        sigma = check_float(sigma, "sigma", nonnegative=True)
        super().__init__(seed=problem.seed if seed is None else seed, dtype=problem.dtype)
        self.problem = problem
        self.name = f"{problem.name}+noise"
        for attr in (
            "L",
            "L_l2",
            "smoothness_norm",
            "block_norms",
            "block_L",
            "mu",
            "f_star",
            "lipschitz",
            "is_convex",
            "globally_smooth",
        ):
            setattr(self, attr, getattr(problem, attr))
        self.sigma = sigma
        self.noise_variance = sigma**2

    @property
    def blocks(self) -> Blocks:
        return self.problem.blocks

    @property
    def block_names(self) -> list[str]:
        return self.problem.block_names

    @property
    def x0(self) -> Blocks:
        return self.problem.x0

    @property
    def x_star(self) -> Blocks | None:
        return self.problem.x_star

    def reset(self) -> None:
        self.problem.reset()

    def objective(self, xs: Sequence[Tensor]) -> Tensor:
        return self.problem.objective(xs)

    def _gap(self, xs: Sequence[Tensor]) -> Tensor:
        return self.problem._gap(xs)

    def draw_sample(self, seed: int) -> list[Tensor]:
        gen = self._gen("additive_noise", seed)
        std = self.sigma / math.sqrt(self.dim)
        blocks = self.blocks
        return [
            (std * torch.randn(p.shape, generator=gen, dtype=torch.float64)).to(dtype=p.dtype, device=p.device)
            for p in blocks
        ]

    def sample_objective(self, xs: Sequence[Tensor], sample: list[Tensor]) -> Tensor:
        f = self.problem.objective(xs)
        for x, xi in zip(xs, sample, strict=False):
            f = f + (xi.to(x) * x).sum()
        return f

    def noise_variance_at(self, xs: Sequence[Tensor] | None = None) -> float:
        """``sigma^2`` at every point (the noise does not depend on x)."""
        return self.sigma**2
