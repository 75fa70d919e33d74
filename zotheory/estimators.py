"""Zeroth-order gradient estimators over lists of tensors, applied in place.

Given parameter blocks ``x = (x_1, ..., x_B)``, a closure returning ``f(x)`` and ``q``
directions ``z_0 .. z_{q-1}`` of a :class:`~zotheory.directions.DirectionFamily` with
scale ``c`` (so that ``E[c z z^T] = I``), radius ``r``:

* central (two-point, symmetric): ``g = (c/q) sum_j (f(x + r z_j) - f(x - r z_j)) / (2r) z_j``
  (Nesterov & Spokoiny 2017, the symmetric oracle ``hat g_mu``; MeZO's SPSA), ``2q`` evaluations;
* forward: ``g = (c/q) sum_j (f(x + r z_j) - f(x)) / r z_j`` (Ghadimi & Lan 2013, Eq. 3.14),
  ``q + 1`` evaluations (``q`` if ``f(x)`` is supplied);
* one-point: ``g = (c/q) sum_j f(x + r z_j) / r z_j`` (Flaxman et al. 2005), ``q`` evaluations.

On a quadratic the central difference is exact, ``(f(x+rz) - f(x-rz))/(2r) = <grad f, z>``
(``docs/theory.md`` §3.1), which is what makes the closed forms of section 3.7 testable.

An estimate is the compact record :class:`ZOEstimate` (step seed, one scalar coefficient
per direction, the number of evaluations used). It can be materialised into dense
tensors, or applied in place (``x += alpha * g``) by regenerating the directions.

Perturbations are applied in place. Every evaluation's loss is kept on its device and
checked for finiteness once, after the last evaluation (one host synchronisation per
estimate); a closure that raises or returns NaN/inf leaves the parameters restored
(bit-exactly when a ``backup`` copy is given) and raises :class:`NonFiniteLossError` or
re-raises the closure's exception.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from zotheory.directions import Alphas, DirectionFamily, Orthonormal, _as_alphas, _is_zero, _shapes

Closure = Callable[[], torch.Tensor | float]
Scheme = Literal["central", "forward", "one_point"]
SCHEMES: tuple[str, ...] = ("central", "forward", "one_point")


class NonFiniteLossError(FloatingPointError):
    """The closure returned NaN or inf; the parameters were restored before raising."""


def evaluations_needed(scheme: str, q: int, f0_given: bool = False) -> int:
    """Closure calls of one estimate: ``2q`` (central), ``q + 1`` (forward), ``q`` (one-point)."""
    validate_scheme(scheme)
    if scheme == "central":
        return 2 * q
    if scheme == "forward":
        return q + (0 if f0_given else 1)
    return q


def validate_scheme(scheme: str) -> None:
    """Refuse a finite-difference scheme not in :data:`SCHEMES` (``ValueError`` naming it)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown finite-difference scheme {scheme!r}; choose one of {list(SCHEMES)}")


def validate_q(q: int) -> None:
    """Refuse a number of directions that is not an int ``>= 1`` (``ValueError`` naming it)."""
    if not isinstance(q, int) or isinstance(q, bool) or q < 1:
        raise ValueError(f"number of directions q must be an integer >= 1, got {q!r}")


def validate_radius(radius: float) -> None:
    """Refuse a smoothing radius that is not a finite number ``> 0`` (``ValueError`` naming it)."""
    if not isinstance(radius, (int, float)) or not math.isfinite(radius) or radius <= 0:
        raise ValueError(f"smoothing radius must be finite and > 0, got {radius!r}")


def dtype_resolution(dtype: torch.dtype) -> float:
    """Machine epsilon of a floating dtype (spacing of numbers near 1)."""
    return torch.finfo(dtype).eps


def check_radius_resolution(
    tensors: Sequence[torch.Tensor], radius: float, family: DirectionFamily, *, names: Sequence[str] | None = None
) -> None:
    """Refuse a radius whose perturbation would round away in a tensor's dtype.

    A perturbation ``r * z_i`` of an entry of magnitude ``|x_i|`` survives rounding only if
    it exceeds half the spacing of floating-point numbers there, ``~ eps(dtype) |x_i| / 2``.
    We require ``r * typical|z_i| >= eps(dtype) * mean|x|`` for every tensor (fp16 has
    ``eps = 9.8e-4``, bf16 ``7.8e-3``: MeZO's ``eps = 1e-3`` in fp16 on weights of size 0.05
    passes; JAGUAR's ``tau = 1e-6`` in fp16 does not, ``docs/theory.md`` §6.6).
    Raises ``ValueError`` naming the tensor, its dtype, its scale and the smallest radius.
    """
    dim = sum(t.numel() for t in tensors)
    typical = family.typical_entry(dim)
    for i, t in enumerate(tensors):
        if not t.is_floating_point() or t.numel() == 0:
            continue
        scale = mean_abs(t)
        floor = dtype_resolution(t.dtype) * scale
        if radius * typical < floor:
            name = names[i] if names is not None else f"tensor {i}"
            raise ValueError(
                f"smoothing radius {radius:g} is below the floating-point resolution of {name} "
                f"(shape {tuple(t.shape)}, dtype {t.dtype}, mean |x| = {scale:.3g}): perturbations of "
                f"size {radius * typical:.3g} round away; use a radius >= {floor / typical:.3g} "
                f"or a wider dtype"
            )


def mean_abs(t: torch.Tensor, chunk: int = 1 << 20) -> float:
    """``mean |t|`` accumulated in fp32 over chunks of ``chunk`` entries.

    The temporary is one fp32 chunk (4 MiB), not an fp32 copy of the tensor: for the
    OPT-1.3B embedding in fp16 such a copy is 0.41 GB, which showed as a first-step memory
    spike on the GPU (``results/llm/opt13b/README.md``).
    """
    flat = t.detach().reshape(-1)
    total = torch.zeros((), dtype=torch.float32, device=t.device)
    for part in flat.split(chunk):
        # abs() out of place: for float32 input .float() is the tensor itself, and an in-place abs_()
        # would flip the sign of every negative parameter entry
        total += part.abs().float().sum()
    return float(total) / flat.numel()


def as_loss(value: torch.Tensor | float) -> torch.Tensor:
    """A closure's value as a detached one-element tensor (``ValueError`` for more than one element)."""
    loss = value.detach() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
    if loss.numel() != 1:
        raise ValueError(f"the closure must return a scalar loss, got a tensor of shape {tuple(loss.shape)}")
    return loss.reshape(()).to(torch.float64)


@dataclass
class ZOEstimate:
    """A zeroth-order gradient estimate ``g = sum_j coefficients[j] * z_j`` as a compact record.

    Attributes:
        step_seed: the seed from which every ``z_j`` is regenerated.
        family: the direction family.
        coefficients: ``(q,)`` float64 tensor; already includes ``scale/q``.
        directional_derivatives: ``(q,)`` raw finite differences (``(f+ - f-)/(2r)`` etc.).
        losses: every closure value, in call order (float64, on the loss device).
        loss: ``f(x)`` estimate reported to the caller (mean of the evaluations for central
            differences, ``f(x)`` for forward, mean for one-point).
        n_evals: closure calls used.
        radius: the smoothing radius ``r``.
        pending: offset ``(j, a)`` meaning the parameters currently sit at ``x - a z_j``
            instead of ``x`` (a restore left for the update to fold in), or ``None``.
        backup: exact copies of the parameters before perturbation (exact-restore mode).
    """

    step_seed: int
    family: DirectionFamily
    coefficients: torch.Tensor
    directional_derivatives: torch.Tensor
    losses: torch.Tensor
    loss: torch.Tensor
    n_evals: int
    radius: float
    pending: tuple[int, float] | None = None
    backup: list[torch.Tensor] | None = field(default=None, repr=False)

    @property
    def q(self) -> int:
        return int(self.coefficients.numel())

    def materialize(self, like: Sequence[torch.Tensor], dtype: torch.dtype | None = None) -> list[torch.Tensor]:
        """Dense ``g`` shaped like ``like`` (for tests, theory checks and non-linear updates); the
        directions are those drawn for ``like``'s dtypes, accumulated in ``dtype`` if given."""
        shapes = _shapes(like)
        return [
            self.tensor_estimate(shapes, i, like[i].device, dtype or like[i].dtype, direction_dtype=like[i].dtype)
            for i in range(len(like))
        ]

    def tensor_estimate(
        self,
        shapes: tuple[torch.Size, ...],
        index: int,
        device: torch.device,
        dtype: torch.dtype,
        restore_into: torch.Tensor | None = None,
        direction_dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Dense ``g`` for tensor ``index`` in ``dtype``; if ``restore_into`` is given, also undo the
        pending offset on that tensor while its direction is at hand (one regeneration, not two).

        A family's draws depend on the dtype they are made in (``torch.randn`` in float16 is not the
        rounding of ``torch.randn`` in float32 for sizes that are not a multiple of 16), so ``z`` is
        regenerated in the dtype of the tensor that was perturbed (``direction_dtype``, by default
        ``restore_into.dtype`` or else ``dtype``) and only then widened to ``dtype``.
        """
        if direction_dtype is None:
            direction_dtype = restore_into.dtype if restore_into is not None else dtype
        g = torch.zeros(shapes[index], dtype=dtype, device=device)
        for j in range(self.q):
            z = self.family.tensor_direction(shapes, index, self.step_seed, j, direction_dtype, device)
            if restore_into is not None and self.pending is not None and self.pending[0] == j:
                self._restore_tensor(restore_into, index, z)
            g.add_(z.to(dtype).mul_(self.coefficients[j].to(dtype)))
        if restore_into is not None and self.pending is not None and self.pending[0] >= self.q:
            raise AssertionError("pending offset refers to a direction outside the estimate")
        return g

    def _restore_tensor(self, p: torch.Tensor, index: int, z: torch.Tensor) -> None:
        if self.backup is not None:
            p.copy_(self.backup[index])
        elif self.pending is not None:
            p.add_(z, alpha=self.pending[1])

    def apply_(self, tensors: Sequence[torch.Tensor], alpha: Alphas) -> None:
        """``tensors += alpha * g`` in place (per-tensor factors allowed), folding in the
        pending restore so that a central-difference step costs one regeneration pass per
        direction: ``x <- x - r z + (r + alpha c) z``."""
        alphas = _as_alphas(alpha, len(tensors))
        if self.backup is not None and self.pending is not None:
            self.restore_(tensors)
        for j in range(self.q):
            coef = self.coefficients[j]
            factors: list[float | torch.Tensor] = [0 if _is_zero(a) else coef * a for a in alphas]
            if self.pending is not None and self.pending[0] == j:
                factors = [self.pending[1] if _is_zero(f) else f + self.pending[1] for f in factors]
                self.pending = None
            if any(not _is_zero(f) for f in factors):
                self.family.add_(tensors, self.step_seed, j, factors)
        if self.pending is not None:
            self.restore_(tensors)

    def restore_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Undo the pending offset (exactly from the backup when there is one)."""
        if self.pending is None:
            return
        if self.backup is not None:
            for p, b in zip(tensors, self.backup, strict=False):
                p.copy_(b)
        else:
            j, a = self.pending
            self.family.add_(tensors, self.step_seed, j, a)
        self.pending = None


def estimate_gradient(
    params: Sequence[torch.Tensor],
    closure: Closure,
    family: DirectionFamily,
    *,
    step_seed: int,
    q: int = 1,
    radius: float = 1e-3,
    scheme: Scheme = "central",
    f0: torch.Tensor | float | None = None,
    leave_pending: bool = False,
    exact_restore: bool = False,
) -> ZOEstimate:
    """Estimate ``grad f`` at the current ``params`` with ``q`` directions (module docstring).

    Args:
        params: the tensors to perturb, in a fixed order (the order defines the seeds).
        closure: returns ``f`` at the current values of ``params``. It must evaluate the
            same function at every call of one estimate (same minibatch, dropout off).
        family: how directions are drawn.
        step_seed: the seed of this estimate (directions are ``(step_seed, j)``).
        q: number of directions (``>= 1``).
        radius: smoothing radius ``r > 0``.
        scheme: ``"central"``, ``"forward"`` or ``"one_point"``.
        f0: ``f(x)`` if already known (forward scheme only; saves one evaluation).
        leave_pending: central scheme only: leave the last restore undone (parameters at
            ``x - r z_{q-1}``) for :meth:`ZOEstimate.apply_` to fold into the update.
        exact_restore: keep a copy of ``params`` (memory: one more copy of the parameters)
            and restore from it, so that perturb-and-restore is bit-exact in any dtype.

    Returns:
        The :class:`ZOEstimate`.

    Raises:
        ValueError: on ``q < 1``, a non-positive or non-finite radius, an unknown scheme,
            an orthonormal family whose frame size is not ``q``, or an empty ``params``.
        NonFiniteLossError: a closure value was NaN/inf (parameters restored first).
    """
    validate_q(q)
    validate_radius(radius)
    validate_scheme(scheme)
    if len(params) == 0:
        raise ValueError("estimate_gradient needs at least one tensor to perturb")
    if isinstance(family, Orthonormal) and family.q != q:
        raise ValueError(f"orthonormal frame has q={family.q} columns but the estimate asks for q={q}")
    if f0 is not None and scheme != "forward":
        raise ValueError(f"f0 is only used by the forward scheme, not by {scheme!r}")
    if leave_pending and scheme != "central":
        raise ValueError(f"leave_pending applies to the central scheme, not to {scheme!r}")

    dim = sum(p.numel() for p in params)
    scale = family.scale(dim)
    backup = [p.detach().clone() for p in params] if exact_restore else None
    losses: list[torch.Tensor] = []
    diffs: list[torch.Tensor] = []
    offset: tuple[int, float] | None = None  # params currently at x + a z_j

    def perturb(j: int, a: float) -> None:
        nonlocal offset
        family.add_(params, step_seed, j, a)
        prev = offset[1] if offset is not None and offset[0] == j else 0.0
        offset = (j, prev + a) if abs(prev + a) > 0 else None

    def restore_all() -> None:
        nonlocal offset
        if backup is not None:
            for p, b in zip(params, backup, strict=False):
                p.copy_(b)
        elif offset is not None:
            family.add_(params, step_seed, offset[0], -offset[1])
        offset = None

    try:
        with torch.no_grad():
            if scheme == "forward":
                base = as_loss(closure()) if f0 is None else as_loss(f0)
                if f0 is None:
                    losses.append(base)
            for j in range(q):
                perturb(j, radius)
                f_plus = as_loss(closure())
                losses.append(f_plus)
                if scheme == "central":
                    perturb(j, -2.0 * radius)
                    f_minus = as_loss(closure())
                    losses.append(f_minus)
                    diffs.append((f_plus - f_minus) / (2.0 * radius))
                    if not (leave_pending and j == q - 1):
                        perturb(j, radius)
                elif scheme == "forward":
                    perturb(j, -radius)
                    diffs.append((f_plus - base) / radius)
                else:
                    perturb(j, -radius)
                    diffs.append(f_plus / radius)
            stacked = torch.stack(losses)
            if not bool(torch.isfinite(stacked).all()):
                bad = int(torch.nonzero(~torch.isfinite(stacked))[0])
                value = float(stacked[bad])
                restore_all()
                raise NonFiniteLossError(
                    f"closure evaluation {bad + 1} of {len(losses)} returned {value}; parameters restored"
                )
    except NonFiniteLossError:
        raise
    except BaseException:
        with torch.no_grad():
            restore_all()
        raise

    if backup is not None and offset is None:
        # the arithmetic restores above are exact only up to rounding: finish from the copy
        with torch.no_grad():
            for p, b in zip(params, backup, strict=False):
                p.copy_(b)
    d = torch.stack(diffs)
    loss = losses[0] if scheme == "forward" and f0 is None else stacked.mean()
    if scheme == "forward" and f0 is not None:
        loss = as_loss(f0)
    pending = None
    if offset is not None:
        # only the central scheme with leave_pending leaves an offset: x - r z_{q-1}
        pending = (offset[0], -offset[1])
    return ZOEstimate(
        step_seed=step_seed,
        family=family,
        coefficients=d * (scale / q),
        directional_derivatives=d,
        losses=stacked,
        loss=loss,
        n_evals=len(losses),
        radius=radius,
        pending=pending,
        backup=backup,
    )
