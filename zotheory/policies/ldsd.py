r"""Learnable direction sampling (LDSD): a learned mean for the perturbation law.

Parfenov, Evseev, Veprikov, Bushkov, Moiseev, Beznosikov, "Zero-Order Optimization for LLM
Fine-Tuning via Learnable Direction Sampling" (arXiv 2602.13659); the algorithm as the
public code runs it (``zo_rl_sgd.py``), ``docs/theory.md`` §1.2:

1. ``z_i = mu + sigma u_i``, ``u_i ~ N(0, I)``, ``i = 1..k``; one-sided losses
   ``F_i = f(x + r z_i)`` (``k`` closure calls);
2. greedy choice ``i* = argmin_i F_i`` (ties: lowest index);
3. central two-point estimate along ``z* = z_{i*}`` (2 calls):
   ``g_hat = (f(x + r z*) - f(x - r z*)) / (2r) * z*`` (no rescaling, as the code);
4. REINFORCE with the leave-one-out baseline on the *same* ``z_i``:

   .. math::
       c_i = F_i - \frac{1}{k-1}\sum_{j\ne i} F_j,\qquad
       \hat g_\mu = \frac{1}{k\sigma^2}\sum_i (z_i - \mu)\,c_i
                  = \frac{1}{k\sigma}\sum_i c_i\,u_i,\qquad
       \mu \leftarrow \mu - \eta_\mu \hat g_\mu

   (``c_i = 0`` for ``k = 1``: no update). On a quadratic ``E hat g_mu = r grad f(x + r mu)``
   exactly (§5.16; in general ``r grad f_{r sigma}(x + r mu)``, the Gaussian smoothing).

The ``u_i`` are the :class:`~zotheory.directions.Gaussian` family's directions
``(step_seed, i)`` (drawn in ``mu``'s dtype), so the update regenerates exactly the
candidates whose losses were measured (the public ``zo_rl_sgd.py`` re-seeded once and drew
different ones, ``docs/theory.md`` §1.5). With ``mu = 0``, ``sigma = 1`` the candidates are
bit-identical to the Gaussian family's.

**Order of the mu update (lazy).** The returned estimate's family regenerates
``z* = mu + sigma u_{i*}`` from the *live* ``mu``, so ``mu`` must not change before the
optimizer has applied the estimate. The update of step ``t`` is therefore recorded (the
step seed and the ``k`` coefficients ``c_i``: ``k`` floats) and applied at the start of step
``t + 1`` (or by :meth:`LDSDPolicy.mean`). Since ``z_i - mu = sigma u_i``, the update
``-eta_mu/(k sigma) sum_i c_i u_i`` does not depend on ``mu``, so applying it late gives
the same ``mu``; no ``mu_old`` copy is needed (memory: one parameter-sized tensor, fp32 for
half-precision parameters, :meth:`LDSDPolicy.state_bytes`). A family outlives its step only
by mistake: regenerating from it after ``mu`` changed raises ``RuntimeError``. The
record travels in :meth:`LDSDPolicy.state_dict`, so a resumed run is bit-identical.

**Initialisation** (``init``): ``"zero"`` (``zo_rl_sgd``/``zo_rl_adamm``); ``"random_unit"``:
each ``mu_p`` a Gaussian tensor scaled to Frobenius norm ``init_scale`` (as ``zo_rl.py``
does per parameter tensor), drawn from ``seed``; ``"first_estimate"``: the public
``use_grad_first`` starts from a true gradient, which a zeroth-order method does not have;
instead ``mu`` starts at 0 and the first step adds
``-init_scale * g_hat_0 / ||g_hat_0|| = -init_scale * sign(d_0) u_{i*} / ||u_{i*}||`` (the
descent direction of the first two-point estimate, ``d_0`` its directional derivative) to
the usual REINFORCE update. Its cosine with the gradient is that of one random direction,
``~ sqrt(2/(pi d))``, with the descent sign: a sign prior, not a gradient.

Cost: ``k + 2`` closure calls per step (central scheme; ``k + evaluations_needed(scheme, 1)``
in general). The defaults ``k = 5``, ``sigma = 1``, ``lr_mu = 4e-2`` are the released run's
(``run_script.sh``; the code defaults are ``k = 10``, ``sigma = 1e-3``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from zotheory.directions import DirectionFamily, Gaussian, mix_seed, tensor_generator
from zotheory.estimators import Scheme, ZOEstimate, evaluations_needed
from zotheory.policies.base import DirectionPolicy
from zotheory.policies.guided import (
    PinnedCombinations,
    check_int_at_least,
    estimate_along,
    evaluate_candidates,
    require_single_direction,
)

INITS: tuple[str, ...] = ("zero", "random_unit", "first_estimate")
_INIT_STREAM = 0x4C445344  # "LDSD": the stream of the random_unit initialisation

_GAUSSIAN = Gaussian()


def rloo_coefficients(losses: torch.Tensor) -> torch.Tensor:
    """Leave-one-out advantages ``c_i = F_i - mean_{j != i} F_j = (k F_i - sum_j F_j) / (k - 1)``.

    ``docs/theory.md`` §1.2; all zeros for ``k = 1`` (no baseline, no update). Float64.
    """
    F = losses.detach().to(torch.float64).reshape(-1)
    k = F.numel()
    if k == 1:
        return torch.zeros_like(F)
    return (k * F - F.sum()) / (k - 1)


def _state_dtype(p: torch.Tensor) -> torch.dtype:
    return torch.float32 if p.dtype in (torch.float16, torch.bfloat16) else p.dtype


def _check_positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``float(value)`` if it is a finite number ``> 0`` (``>= 0`` with ``allow_zero``), else a ``ValueError``."""
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not (value >= 0 if allow_zero else value > 0)
    ):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {name}={value!r}")
    return float(value)


class ShiftedGaussian(DirectionFamily):
    """``z_j = mu + sigma * u_j`` with ``u_j`` the Gaussian family's direction ``(seed, j)``.

    ``mu`` is a list of tensors held by reference (LDSD's live mean); ``u`` is drawn in
    ``mu``'s dtype and ``z`` cast to the requested dtype. ``E[<g, z> z] = (sigma^2 I + mu mu^T) g``
    (§5.17), so ``scale`` is 1 and the estimator is biased unless ``mu`` is parallel to
    ``g`` (the public code's estimator). When built by a policy (``owner``, ``version``),
    regenerating after the owner's ``mu`` changed raises ``RuntimeError``.
    """

    name = "shifted_gaussian"

    def __init__(self, mu: Sequence[torch.Tensor], sigma: float, *, owner: Any = None, version: int = 0) -> None:
        self.mu = list(mu)
        self.sigma = _check_positive("sigma", sigma)
        self._owner = owner
        self._version = version

    def scale(self, dim: int) -> float:
        return 1.0

    def typical_entry(self, dim: int) -> float:
        return self.sigma

    def noise(self, shapes, index, step_seed, j) -> torch.Tensor:
        """``u_j`` restricted to tensor ``index``, in ``mu``'s dtype and device."""
        m = self.mu[index]
        return _GAUSSIAN.tensor_direction(shapes, index, step_seed, j, m.dtype, m.device)

    def tensor_direction(self, shapes, index, step_seed, j, dtype, device):
        if self._owner is not None and self._owner._version != self._version:
            raise RuntimeError(
                "the LDSD mean changed since this direction family was built: an estimate was used "
                "after the policy's next step (apply each estimate before the next estimate)"
            )
        m = self.mu[index]
        if tuple(m.shape) != tuple(shapes[index]):
            raise ValueError(f"mu of tensor {index} has shape {tuple(m.shape)}, the tensor {tuple(shapes[index])}")
        z = self.noise(shapes, index, step_seed, j).mul_(self.sigma).add_(m)
        return z.to(device=device, dtype=dtype)

    def __repr__(self) -> str:
        return f"ShiftedGaussian(sigma={self.sigma})"


class LDSDPolicy(DirectionPolicy):
    """Learnable direction sampling: greedy best of ``k`` candidates from ``N(mu, sigma^2 I)``,
    the two-point estimate along it, and a REINFORCE/leave-one-out update of ``mu``
    (module docstring; ``docs/theory.md`` §1.2, §5.16-5.18).

    Args:
        k: candidates per step (``>= 1``; ``k = 1``: no selection and no ``mu`` update).
        sigma: standard deviation of the candidates (``> 0``; the public ``variance`` argument).
        lr_mu: step size of the ``mu`` update (``>= 0``).
        init: ``"zero"``, ``"random_unit"`` or ``"first_estimate"`` (module docstring).
        init_scale: norm used by the two non-zero initialisations (``> 0``).
        seed: seed of the ``random_unit`` draw.
    """

    name = "ldsd"

    def __init__(
        self,
        k: int = 5,
        sigma: float = 1.0,
        lr_mu: float = 4e-2,
        *,
        init: str = "zero",
        init_scale: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.k = check_int_at_least("k", k, 1)
        self.sigma = _check_positive("sigma", sigma)
        self.lr_mu = _check_positive("lr_mu", lr_mu, allow_zero=True)
        if init not in INITS:
            raise ValueError(f"init must be one of {list(INITS)}, got init={init!r}")
        self.init = init
        self.init_scale = _check_positive("init_scale", init_scale)
        self.seed = int(seed)
        self._mu: list[torch.Tensor] | None = None
        self._pending: dict[str, Any] | None = None
        self._steps = 0
        self._version = 0
        self.last: dict[str, Any] = {}

    # ------------------------------------------------------------------ state
    def bind(self, params: Sequence[torch.Tensor]) -> None:
        """Allocate ``mu`` (one tensor per parameter, fp32 for half-precision ones) and initialise it."""
        mu = [torch.zeros(p.shape, dtype=_state_dtype(p), device=p.device) for p in params]
        if self.init == "random_unit":
            for i, m in enumerate(mu):
                gen = tensor_generator(mix_seed(self.seed, _INIT_STREAM), i, m.device)
                u = torch.randn(m.shape, generator=gen, dtype=m.dtype, device=m.device)
                norm = float(torch.linalg.vector_norm(u.double()))
                if norm > 0:
                    m.copy_(u.mul_(self.init_scale / norm))
        self._mu = mu
        self._pending = None
        self._steps = 0
        self._version += 1

    def _check_bound(self, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if self._mu is None:
            self.bind(params)
        assert self._mu is not None
        if len(self._mu) != len(params) or any(
            tuple(m.shape) != tuple(p.shape) for m, p in zip(self._mu, params, strict=False)
        ):
            raise ValueError(
                f"LDSD mean shapes {[tuple(m.shape) for m in self._mu]} do not match the parameters "
                f"{[tuple(p.shape) for p in params]}"
            )
        return self._mu

    def _flush(self) -> None:
        """Apply the recorded update of the previous step: ``mu += sum_j a_j u_j``."""
        pending, self._pending = self._pending, None
        if pending is None or self._mu is None:
            return
        seed = int(pending["seed"])
        k = len(pending["rloo"])
        factors = [-self.lr_mu / (k * self.sigma) * float(c) for c in pending["rloo"]]
        if pending.get("init") is not None:
            j, a = pending["init"]
            factors[int(j)] += float(a)
        if not any(a != 0.0 for a in factors):
            return
        shapes = tuple(m.shape for m in self._mu)
        for i, m in enumerate(self._mu):
            for j, a in enumerate(factors):
                if a != 0.0:
                    m.add_(_GAUSSIAN.tensor_direction(shapes, i, seed, j, m.dtype, m.device), alpha=a)
        self._version += 1

    def mean(self) -> list[torch.Tensor]:
        """Copies of ``mu`` with every recorded update applied (invalidates an unapplied estimate)."""
        if self._mu is None:
            raise RuntimeError("the LDSD policy is not bound to parameters yet")
        self._flush()
        return [m.detach().clone() for m in self._mu]

    def last_mean_gradient(self) -> list[torch.Tensor]:
        """The policy gradient ``hat g_mu = (1/(k sigma)) sum_i c_i u_i`` of the last step
        (before the step size; zeros for ``k = 1``), materialised (for tests and claims)."""
        if self._mu is None or not self.last:
            raise RuntimeError("no LDSD step has been taken yet")
        seed, c = self.last["step_seed"], self.last["rloo"]
        shapes = tuple(m.shape for m in self._mu)
        out = []
        for i, m in enumerate(self._mu):
            g = torch.zeros_like(m)
            for j, cj in enumerate(c.tolist()):
                if cj != 0.0:
                    g.add_(_GAUSSIAN.tensor_direction(shapes, i, seed, j, m.dtype, m.device), alpha=cj)
            out.append(g.mul_(1.0 / (self.k * self.sigma)))
        return out

    def state_dict(self) -> dict[str, Any]:
        pending = None
        if self._pending is not None:
            pending = {
                "seed": int(self._pending["seed"]),
                "rloo": [float(c) for c in self._pending["rloo"]],
                "init": None if self._pending.get("init") is None else list(self._pending["init"]),
            }
        return {
            "mu": None if self._mu is None else [m.detach().clone() for m in self._mu],
            "pending": pending,
            "steps": self._steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"mu", "pending", "steps"}:
            raise ValueError(f"LDSD state must have the keys ['mu', 'pending', 'steps'], got {sorted(state)}")
        if state["mu"] is None:
            self._mu = None
        else:
            if self._mu is not None:
                if len(self._mu) != len(state["mu"]) or any(
                    tuple(m.shape) != tuple(s.shape) for m, s in zip(self._mu, state["mu"], strict=False)
                ):
                    raise ValueError("the LDSD mean in the checkpoint does not match the bound parameters")
                self._mu = [
                    s.detach().to(device=m.device, dtype=m.dtype).clone()
                    for m, s in zip(self._mu, state["mu"], strict=False)
                ]
            else:
                self._mu = [s.detach().clone() for s in state["mu"]]
        p = state["pending"]
        self._pending = None if p is None else {"seed": int(p["seed"]), "rloo": list(p["rloo"]), "init": p["init"]}
        self._steps = int(state["steps"])
        self._version += 1

    def state_bytes(self) -> int:
        """``mu``: one tensor per parameter (fp32 for half-precision parameters); the pending
        record is ``k + 1`` numbers."""
        return 0 if self._mu is None else sum(m.numel() * m.element_size() for m in self._mu)

    # ------------------------------------------------------------------ the step
    def evals_per_step(self, scheme: Scheme, q: int) -> int:
        require_single_direction(q, type(self).__name__)
        return self.k + evaluations_needed(scheme, 1)

    def family(self) -> ShiftedGaussian:
        """The candidate law ``N(mu, sigma^2 I)`` with the current ``mu`` (valid until ``mu`` changes)."""
        if self._mu is None:
            raise RuntimeError("the LDSD policy is not bound to parameters yet")
        return ShiftedGaussian(self._mu, self.sigma, owner=self, version=self._version)

    def estimate(
        self,
        params: Sequence[torch.Tensor],
        closure: Callable[[], Any],
        *,
        step_seed: int,
        radius: float,
        scheme: Scheme,
        q: int,
        leave_pending: bool,
        exact_restore: bool,
    ) -> ZOEstimate:
        require_single_direction(q, type(self).__name__)
        mu = self._check_bound(params)
        self._flush()
        family = self.family()
        losses = evaluate_candidates(
            params, closure, family, step_seed=step_seed, n=self.k, radius=radius, exact_restore=exact_restore
        )
        best = int(torch.argmin(losses.detach().cpu()))  # first minimum on ties
        chosen = PinnedCombinations(family, [[(step_seed, best, 1.0)]], step_seed)
        est = estimate_along(
            params,
            closure,
            chosen,
            losses,
            step_seed=step_seed,
            radius=radius,
            scheme=scheme,
            leave_pending=leave_pending,
            exact_restore=exact_restore,
        )
        rloo = rloo_coefficients(losses).cpu()
        init_term = None
        if self.init == "first_estimate" and self._steps == 0:
            d0 = float(est.directional_derivatives[0])
            shapes = tuple(m.shape for m in mu)
            norm2 = sum(
                float(torch.sum(family.noise(shapes, i, step_seed, best).double() ** 2)) for i in range(len(mu))
            )
            if d0 != 0.0 and norm2 > 0.0:
                init_term = [best, -self.init_scale * math.copysign(1.0, d0) / math.sqrt(norm2)]
        self._pending = {"seed": int(step_seed), "rloo": rloo.tolist(), "init": init_term}
        self._steps += 1
        self.last = {"step_seed": int(step_seed), "candidate_losses": losses, "chosen": best, "rloo": rloo}
        return est

    def __repr__(self) -> str:
        return (
            f"LDSDPolicy(k={self.k}, sigma={self.sigma}, lr_mu={self.lr_mu}, init={self.init!r}, "
            f"init_scale={self.init_scale})"
        )
