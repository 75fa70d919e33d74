"""The base of every zeroth-order optimizer: closure protocol, seed replay, guards, state.

Closure contract. ``step(closure)`` calls ``closure()`` a fixed number of times
(:attr:`ZOOptimizer.evals_per_step`); each call must return the scalar loss at the
*current* parameter values, evaluated on the same minibatch with the same randomness
(model in eval mode, dropout off), and must not call ``backward``. The optimizer runs the
closure under ``torch.no_grad()``; an LLM closure may add ``torch.inference_mode()``.

Seed replay. Step ``t`` draws its directions from ``mix_seed(seed, t)``; the state holds
only ``seed`` and ``t``, so ``state_dict()`` / ``load_state_dict()`` resume a run bit for
bit on the same machine, and no direction is ever stored (Malladi et al. 2023, Alg. 1).

Guards. A closure value that is NaN/inf, or a closure that raises, leaves every parameter
restored (bit-exactly with ``exact_restore=True``, else to within the rounding of the
arithmetic restore ``x + r z - r z``), then either raises (``on_nonfinite="raise"``) or
skips the step and counts it in ``state["zo"]["skipped"]`` (``on_nonfinite="skip"``). A
smoothing radius below a tensor's floating-point resolution is refused
(:func:`zotheory.estimators.check_radius_resolution`). The closure must return a real
scalar (a Python ``int``/``float`` or a one-element real floating or integer tensor); ``None``,
strings, booleans, complex or multi-element tensors are a ``TypeError`` naming the value.

The update is checked too: after ``_update`` one finiteness reduction per parameter group
(one device synchronisation per group, :func:`all_finite`). A non-finite parameter after the update raises
:class:`NonFiniteUpdateError`. With ``exact_restore=True`` the parameters are first put back
bit-exactly from the pre-step copy the estimate already holds, and the optimizer state from a
copy taken before the step (so ``exact_restore`` costs one copy of the parameters *and* of
the state while a step runs); the error is then raised or, with ``on_nonfinite="skip"``,
the step is skipped and counted like a non-finite loss. Without ``exact_restore`` an overflowed
update cannot be undone (``x + u`` with ``u = -inf`` loses ``x``): the error is raised in both
modes and names the parameter, and the caller reloads its last checkpoint.

Parameters must be real floating tensors, each given once (duplicates would be updated twice).
``state_dict()`` records the class and the parameter shapes; ``load_state_dict`` refuses a
state of another method or of other shapes, naming both.

Memory. No ``.grad`` buffer is ever allocated; methods with state declare it
(:meth:`ZOOptimizer.state_bytes`).
"""

from __future__ import annotations

import copy
import inspect
import math
from abc import abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Unpack

import torch

from zotheory.directions import get_directions, mix_seed
from zotheory.estimators import (
    NonFiniteLossError,
    ZOEstimate,
    check_radius_resolution,
    estimate_gradient,
    evaluations_needed,
)
from zotheory.optim.config import ESTIMATOR_OPTIONS, EstimatorConfig, EstimatorOptions, OnNonFinite
from zotheory.paired import PairedClosure, paired_estimate

__all__ = [
    "NO_DECAY_NAME_PARTS",
    "NonFiniteUpdateError",
    "OnNonFinite",
    "ZOOptimizer",
    "all_finite",
    "is_no_decay_name",
    "validate_nonnegative",
    "validate_unit_interval",
]
NO_DECAY_NAME_PARTS: tuple[str, ...] = ("bias", "layer_norm", "layernorm", "ln_", "norm.weight")


class NonFiniteUpdateError(NonFiniteLossError):
    """The update made a parameter NaN/inf; ``restored`` tells whether the pre-step parameters
    and state were put back (``exact_restore=True``) before it was raised."""

    def __init__(self, message: str, *, restored: bool) -> None:
        super().__init__(message)
        self.restored = restored


def is_no_decay_name(name: str) -> bool:
    """MeZO's rule: no weight decay for biases and LayerNorm weights (``docs/theory.md`` §6.1)."""
    lowered = name.lower()
    return any(part in lowered for part in NO_DECAY_NAME_PARTS)


def validate_nonnegative(name: str, value: float) -> None:
    """Refuse ``value`` unless it is a finite number ``>= 0`` (``ValueError`` naming ``name`` and the value)."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


def validate_unit_interval(name: str, value: float, *, closed_right: bool = False) -> None:
    """Refuse ``value`` outside ``[0, 1)`` (``[0, 1]`` with ``closed_right``), naming ``name`` and the value."""
    ok = 0.0 <= value <= 1.0 if closed_right else 0.0 <= value < 1.0
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not ok:
        bound = "[0, 1]" if closed_right else "[0, 1)"
        raise ValueError(f"{name} must lie in {bound}, got {value!r}")


_HALF = (torch.float16, torch.bfloat16)


def all_finite(tensors: Sequence[torch.Tensor]) -> bool:
    """Whether every entry of every tensor is finite, at the cost of one sum per tensor.

    A sum is finite only if every summand is (a NaN or an infinity makes it NaN or infinite), so a finite
    sum proves the tensor finite. A sum that overflows although every entry is finite is the one
    inconclusive case (also a float64 sum beyond the fp32 range, as the sums are compared in fp32); it falls
    back to the exact ``isfinite`` test. Half-precision tensors are summed in fp32. One pass that only
    reads, against ``isfinite``'s pass that also writes a boolean tensor.
    """
    if not tensors:
        return True
    sums = torch.stack([t.sum(dtype=torch.float32 if t.dtype in _HALF else None).float() for t in tensors])
    if bool(torch.isfinite(sums).all()):
        return True
    return all(bool(torch.isfinite(t).all()) for t in tensors)


class ZOOptimizer(torch.optim.Optimizer):
    """Base class: a method declares its own hyper-parameters and implements :meth:`_update`.

    A subclass constructor takes its own hyper-parameters (``lr`` and the like, stored per parameter group)
    and passes the shared estimator options on as ``**options``: ``eps``, ``q``, ``directions``, ``scheme``,
    ``seed``, ``on_nonfinite``, ``exact_restore``, ``check_resolution`` and ``policy``, declared and checked
    once by :class:`~zotheory.optim.config.EstimatorConfig`. Options a method sets itself are listed in
    :attr:`fixed_options` and refused from callers. ``inspect.signature`` of a subclass shows its own
    parameters followed by the shared options it takes (:func:`_full_signature`).

    The pending restore of the in-place estimate (parameters left at ``x - r z``) is handled here: before
    :meth:`_update` the parameters are put back at ``x_t``, unless :attr:`folds_restore` says that the method
    consumes the estimate only through :meth:`dense_estimates`, :meth:`apply_estimate` or
    :meth:`regenerated_directions`, which fold the restore into the update (one regeneration of each direction
    instead of two).

    Args:
        params: tensors, ``(name, tensor)`` pairs (names enable MeZO's weight-decay rule
            and name-based routing) or parameter groups.
        defaults: per-group hyper-parameters (must contain ``lr``).
        **options: the shared options one by one, or all of them as ``config=``
            :class:`~zotheory.optim.config.EstimatorConfig` (:class:`~zotheory.optim.config.EstimatorOptions`).
    """

    #: Shared options the method sets itself (refused from callers, left out of the signature).
    fixed_options: frozenset[str] = frozenset()
    #: Per-parameter state (tensor keys, as torch's) and the optimizer's own entries (string keys: ``"zo"``, ...).
    state: defaultdict[Any, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__signature__ = _full_signature(cls)  # type: ignore[attr-defined]  # read by inspect.signature

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any], **options: Unpack[EstimatorOptions]) -> None:
        config = options.get("config")
        if not (isinstance(config, EstimatorConfig) and len(options) == 1):  # else checked by EstimatorConfig.of
            config = EstimatorConfig.of(type(self).__name__, options, self.fixed_options)
        if "lr" not in defaults:
            raise ValueError("defaults must contain a learning rate 'lr'")
        validate_nonnegative("lr", defaults["lr"])
        super().__init__(params, defaults)
        self.config = config
        self.eps = float(config.eps)
        self.q = config.q
        self.directions = get_directions(config.directions)
        self.scheme = config.scheme
        self.on_nonfinite = config.on_nonfinite
        self.exact_restore = config.exact_restore
        self.check_resolution = config.check_resolution
        self._checked_radius: float | None = None
        self.policy = config.policy
        if self.policy is not None:
            self.policy.bind(self.zo_params())
        self.state["zo"] = {"seed": int(config.seed), "step": 0, "skipped": 0, "evals": 0}

    def estimator_config(self, options: Mapping[str, Any], **values: Any) -> EstimatorConfig:
        """The :class:`EstimatorConfig` from a caller's ``options`` and the values this method fixes
        (:attr:`fixed_options`; giving one of them is a ``TypeError`` naming it)."""
        return EstimatorConfig.of(type(self).__name__, options, self.fixed_options, **values)

    # ------------------------------------------------------------------ parameters
    def zo_params(self) -> list[torch.Tensor]:
        """All parameters of all groups, in the fixed order that defines their seeds."""
        return [p for group in self.param_groups for p in group["params"]]

    def zo_param_groups(self) -> list[dict[str, Any]]:
        """The group of each parameter of :meth:`zo_params`, in the same order."""
        return [group for group in self.param_groups for _ in group["params"]]

    def zo_param_names(self) -> list[str]:
        """Names of the parameters (``param_i`` where none were given)."""
        names: list[str] = []
        i = 0
        for group in self.param_groups:
            given = group.get("param_names")
            for k in range(len(group["params"])):
                names.append(given[k] if given is not None else f"param_{i}")
                i += 1
        return names

    def weight_decay_factors(self) -> list[float]:
        """Per-parameter weight decay: the group's value, 0 for biases/LayerNorm when named."""
        names = self.zo_param_names()
        factors = []
        for group, name in zip(self.zo_param_groups(), names, strict=False):
            wd = float(group.get("weight_decay", 0.0))
            factors.append(0.0 if (wd and is_no_decay_name(name)) else wd)
        return factors

    # ------------------------------------------------------------------ protocol
    @property
    def step_count(self) -> int:
        return int(self.state["zo"]["step"])

    @property
    def evals_per_step(self) -> int:
        """Closure calls of one :meth:`step`."""
        if self.policy is not None:
            return self.policy.evals_per_step(self.scheme, self.q)
        return evaluations_needed(self.scheme, self.q)

    def step_seed(self) -> int:
        zo = self.state["zo"]
        return mix_seed(zo["seed"], zo["step"])

    def radius(self) -> float:
        """The smoothing radius of the coming step (parameter-free methods override it)."""
        return self.eps

    def check_radius(self) -> None:
        """Refuse now the radius of the coming step if it is below a tensor's resolution (what
        :meth:`step` would refuse), so that a caller can validate before writing anything."""
        self._check_radius(self.zo_params(), self.radius())

    def _check_radius(self, params: Sequence[torch.Tensor], radius: float) -> None:
        if self.check_resolution and radius != self._checked_radius:
            check_radius_resolution(params, radius, self.directions, names=self.zo_param_names())
            self._checked_radius = radius

    def estimate(self, closure: Callable[[], Any], *, leave_pending: bool = True) -> ZOEstimate:
        """One estimate at the current parameters with this optimizer's settings.

        A :class:`~zotheory.paired.PairedClosure` with the central scheme and no policy is evaluated by
        :func:`~zotheory.paired.paired_estimate` (both perturbed forwards as one batched call, no parameter
        written, nothing pending); any other closure, scheme or a policy takes the in-place path."""
        params = self.zo_params()
        radius = self.radius()
        self._check_radius(params, radius)
        paired = closure.fn if isinstance(closure, _RealScalarClosure) else closure
        if isinstance(paired, PairedClosure) and self.policy is None and self.scheme == "central":
            est = paired_estimate(params, paired, self.directions, step_seed=self.step_seed(), q=self.q, radius=radius)
            if self.exact_restore:  # the copy _check_update restores from after a non-finite update
                est.backup = [p.detach().clone() for p in params]
            return est
        if self.policy is not None:
            return self.policy.estimate(
                params,
                closure,
                step_seed=self.step_seed(),
                radius=radius,
                scheme=self.scheme,
                q=self.q,
                leave_pending=leave_pending and self.scheme == "central",
                exact_restore=self.exact_restore,
            )
        return estimate_gradient(
            params,
            closure,
            self.directions,
            step_seed=self.step_seed(),
            q=self.q,
            radius=radius,
            scheme=self.scheme,
            leave_pending=leave_pending and self.scheme == "central",
            exact_restore=self.exact_restore,
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> torch.Tensor:  # type: ignore[override]
        """One zeroth-order step; returns the loss estimate at the pre-step parameters."""
        if closure is None:
            raise ValueError(f"{type(self).__name__}.step needs a closure that returns the loss")
        try:
            loss, n_evals = self._zo_step(_RealScalarClosure(closure))
        except NonFiniteLossError as e:
            if self.on_nonfinite == "raise" or not getattr(e, "restored", True):
                raise
            zo = self.state["zo"]
            zo["skipped"] += 1
            zo["step"] += 1
            return torch.tensor(float("nan"), dtype=torch.float64)
        zo = self.state["zo"]
        zo["step"] += 1
        zo["evals"] += n_evals
        return loss

    def _zo_step(self, closure: Callable[[], Any]) -> tuple[torch.Tensor, int]:
        """Estimate, settle the pending restore, run :meth:`_before_update`, update; returns ``(loss, closure
        calls)``. The parameters are back at ``x_t`` for :meth:`_update` unless :attr:`folds_restore`."""
        saved = _StateCopy(self) if self.exact_restore else None  # before estimate: some methods move state there
        est = self.estimate(closure)
        params = self.zo_params()
        try:
            if est.backup is not None or not self.folds_restore:
                est.restore_(params)  # from the exact copy when there is one: no direction regenerated
            extra = self._before_update(closure)
            self._update(est)
        finally:
            est.restore_(params)
        self._check_update(est, saved)
        return est.loss, est.n_evals + extra

    @property
    def folds_restore(self) -> bool:
        """Whether the coming :meth:`_update` takes the estimate only through :meth:`dense_estimates` or
        :meth:`apply_estimate` (which fold the pending restore in); otherwise the parameters are restored first."""
        return True

    def _before_update(self, closure: Callable[[], Any]) -> int:
        """Work between the estimate and the update, with the parameters at ``x_t`` whenever
        :attr:`folds_restore` is false (AdaNAGED's probe); returns the extra closure calls."""
        return 0

    def _check_update(self, est: ZOEstimate, saved: _StateCopy | None) -> None:
        """Raise :class:`NonFiniteUpdateError` if a parameter is NaN/inf after the update (module
        docstring); with the pre-step copies (``exact_restore``) put parameters and state back first."""
        params = self.zo_params()
        i = 0
        bad: int | None = None
        for group in self.param_groups:
            n = len(group["params"])
            if n and not all_finite(group["params"]):
                bad = i + next(k for k, p in enumerate(group["params"]) if not bool(torch.isfinite(p).all()))
                break
            i += n
        if bad is None:
            return
        name = self.zo_param_names()[bad]
        count = int((~torch.isfinite(params[bad])).sum())
        entries = "entry" if count == 1 else "entries"
        where = f"the update of step {self.step_count} made {count} {entries} of {name!r} non-finite"
        if saved is None or est.backup is None:
            raise NonFiniteUpdateError(
                f"{where}; the parameters cannot be restored without exact_restore=True: reload the last checkpoint "
                "(and lower the learning rate, or use a wider dtype)",
                restored=False,
            )
        with torch.no_grad():
            for p, b in zip(params, est.backup, strict=False):
                p.copy_(b)
        saved.restore(self)
        raise NonFiniteUpdateError(f"{where}; parameters and state restored", restored=True)

    @abstractmethod
    def _update(self, est: ZOEstimate) -> None:
        """Apply the method's update from the estimate (the pending restore is the base class's: see
        :attr:`folds_restore`)."""

    # ------------------------------------------------------------------ helpers for subclasses
    def dense_estimates(self, est: ZOEstimate) -> Iterable[tuple[int, torch.Tensor, dict[str, Any], torch.Tensor]]:
        """Yield ``(i, p, group, g_i)`` with the dense estimate of each tensor, undoing the
        pending restore on ``p`` while its direction is regenerated anyway."""
        params = self.zo_params()
        shapes = tuple(p.shape for p in params)
        for i, (p, group) in enumerate(zip(params, self.zo_param_groups(), strict=False)):
            g = est.tensor_estimate(shapes, i, p.device, _state_dtype(p), restore_into=p)
            yield i, p, group, g
        est.pending = None

    def regenerated_directions(
        self, est: ZOEstimate
    ) -> Iterator[tuple[int, torch.Tensor, dict[str, Any], torch.Tensor]]:
        """Yield ``(i, p, group, z_i)`` for a one-direction estimate: the direction of each tensor regenerated
        once in ``p``'s dtype, the pending restore of ``p`` applied with it (for methods whose update is a
        function of ``z`` rather than of the dense estimate ``c z``)."""
        if est.q != 1:
            raise ValueError(f"regenerated_directions needs a one-direction estimate, got q={est.q}")
        params = self.zo_params()
        shapes = tuple(p.shape for p in params)
        for i, (p, group) in enumerate(zip(params, self.zo_param_groups(), strict=True)):
            z = self.directions.tensor_direction(shapes, i, est.step_seed, 0, p.dtype, p.device)
            if est.pending is not None:
                p.add_(z, alpha=est.pending[1])
            yield i, p, group, z
        est.pending = None

    def apply_estimate(self, est: ZOEstimate, alphas: Sequence[float]) -> None:
        """``x_i <- x_i + alpha_i sum_j c_j z_j`` per tensor, the pending restore folded into the last
        direction's pass (:meth:`~zotheory.estimators.ZOEstimate.apply_`)."""
        est.apply_(self.zo_params(), list(alphas))

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        if self.policy is not None:
            sd["policy"] = self.policy.state_dict()
        sd["zo_method"] = type(self).__name__
        sd["zo_shapes"] = [list(p.shape) for p in self.zo_params()]
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        method = state_dict.pop("zo_method", None)
        shapes = state_dict.pop("zo_shapes", None)
        if method is not None and method != type(self).__name__:
            raise ValueError(f"cannot load the state of a {method} optimizer into a {type(self).__name__}")
        if shapes is not None:
            self._check_loaded_shapes(shapes)
        policy_state = state_dict.pop("policy", None)
        if (policy_state is None) != (self.policy is None):
            raise ValueError("checkpoint and optimizer disagree on whether a direction policy is used")
        super().load_state_dict(state_dict)
        self._restore_state_dtypes(state_dict)
        # torch stores non-parameter state entries (the ``zo`` counters, a method's own scalars) by reference:
        # give this optimizer its own copies (two optimizers loaded from one in-memory state_dict must not
        # share them, or one's step moves the other)
        for key in [k for k in self.state if not isinstance(k, torch.Tensor)]:
            self.state[key] = copy.deepcopy(self.state[key])
        if self.policy is not None:
            self.policy.load_state_dict(policy_state)

    def _check_loaded_shapes(self, shapes: Sequence[Sequence[int]]) -> None:
        names, params = self.zo_param_names(), self.zo_params()
        if len(shapes) != len(params):
            raise ValueError(
                f"the state_dict is for {len(shapes)} parameters, this {type(self).__name__} has {len(params)}"
            )
        for name, p, shape in zip(names, params, shapes, strict=False):
            if tuple(shape) != tuple(p.shape):
                raise ValueError(
                    f"the state_dict's parameter {name!r} has shape {tuple(shape)}, "
                    f"this optimizer's has {tuple(p.shape)}"
                )

    def _restore_state_dtypes(self, state_dict: dict[str, Any]) -> None:
        """Undo torch's cast of loaded floating state to the parameter dtype, and its aliasing of the given tensors.

        ``torch.optim.Optimizer.load_state_dict`` casts every floating state tensor to its parameter's
        dtype, which turns the float32 moments kept for float16/bfloat16 parameters (:func:`_state_dtype`)
        into half precision and breaks bit-exact resumption; the saved tensors are copied back.
        """
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        by_id = dict(zip(saved_ids, self.zo_params(), strict=False))
        for pid, saved in state_dict["state"].items():
            p = by_id.get(pid)
            if p is None or not isinstance(saved, dict):
                continue
            for key, value in saved.items():
                loaded = self.state[p].get(key)
                if isinstance(value, torch.Tensor) and isinstance(loaded, torch.Tensor) and loaded.dtype != value.dtype:
                    self.state[p][key] = value.to(device=p.device, copy=True)
                elif (
                    isinstance(value, torch.Tensor)
                    and isinstance(loaded, torch.Tensor)
                    and loaded.data_ptr() == value.data_ptr()
                ):
                    # torch keeps the given tensor when dtype and device already match: an in-memory state_dict
                    # would then be shared with (and updated in place by) the optimizer it came from
                    self.state[p][key] = loaded.clone()

    # ------------------------------------------------------------------ parameter groups
    #: Group keys accepted besides ``defaults``: ``params``, torch's ``param_names`` (named parameters),
    #: ``initial_lr`` (set by ``torch.optim.lr_scheduler``) and a free-form ``name`` label.
    extra_group_keys: frozenset[str] = frozenset({"params", "param_names", "initial_lr", "name"})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """``torch.optim.Optimizer.add_param_group`` that refuses unknown keys (a misspelt
        hyper-parameter would otherwise be ignored silently) and validates the group (:meth:`_validate_group`)."""
        if isinstance(param_group, dict):
            unknown = sorted(set(param_group) - set(self.defaults) - self.extra_group_keys, key=str)
            if unknown:
                raise ValueError(
                    f"unknown parameter-group key(s) {unknown} for {type(self).__name__}; "
                    f"valid keys: {sorted(set(self.defaults) | self.extra_group_keys)}"
                )
        if isinstance(param_group, dict):
            param_group = dict(param_group)
            given = param_group["params"]
            param_group["params"] = [given] if isinstance(given, torch.Tensor) else list(given)
            self._check_new_params(param_group["params"])
        super().add_param_group(param_group)
        self._validate_group(self.param_groups[-1])

    def _check_new_params(self, items: Sequence[Any]) -> None:
        """Refuse non-real-floating parameters and a tensor given twice (torch only warns; it would move twice)."""
        offset = sum(len(g["params"]) for g in self.param_groups)
        seen: dict[int, str] = {id(p): n for p, n in zip(self.zo_params(), self.zo_param_names(), strict=False)}
        for k, item in enumerate(items):
            name, p = item if isinstance(item, tuple) else (f"param_{offset + k}", item)
            if not isinstance(p, torch.Tensor):
                continue  # torch names the bad type
            if not p.is_floating_point():
                raise ValueError(
                    f"parameter {name!r} has dtype {str(p.dtype).removeprefix('torch.')}: zeroth-order optimizers "
                    "need real floating parameters"
                )
            if id(p) in seen:
                raise ValueError(
                    f"parameter {name!r} is given more than once (also as {seen[id(p)]!r}); each tensor may appear once"
                )
            seen[id(p)] = name

    def _validate_group(self, group: dict[str, Any]) -> None:
        """Check one parameter group's hyper-parameters (subclasses extend; raise ``ValueError``)."""
        validate_nonnegative("lr", group["lr"])

    def state_bytes(self) -> int:
        """Bytes of per-parameter state tensors this optimizer keeps (its declared memory)."""
        total = 0
        for key, st in self.state.items():
            if key == "zo" or not isinstance(st, dict):
                continue
            for value in st.values():
                if isinstance(value, torch.Tensor):
                    total += value.numel() * value.element_size()
        if self.policy is not None:
            total += self.policy.state_bytes()
        return total


class _RealScalarClosure:
    """Wrap a closure; refuse a return value that is not a real scalar (module docstring)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn

    def __call__(self) -> Any:
        value = self.fn()
        if isinstance(value, torch.Tensor):
            if value.dtype == torch.bool or value.is_complex():
                raise TypeError(f"the closure returned a tensor of dtype {value.dtype}; the loss must be a real scalar")
            if value.numel() != 1:
                raise TypeError(
                    f"the closure returned a tensor of shape {tuple(value.shape)}; the loss must be a scalar"
                )
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            shown = "None" if value is None else f"a {type(value).__name__} ({value!r:.40})"
            raise TypeError(
                f"the closure returned {shown}; the loss must be a real scalar (a float or a one-element tensor)"
            )
        return value


class _StateCopy:
    """A copy of an optimizer's state (per-parameter state, the ``zo`` counters, group values), to undo an update."""

    def __init__(self, opt: ZOOptimizer) -> None:
        self.state = {k: _copy_value(v) for k, v in opt.state.items()}
        self.groups = [{k: _copy_value(v) for k, v in g.items() if k != "params"} for g in opt.param_groups]

    def restore(self, opt: ZOOptimizer) -> None:
        opt.state.clear()
        opt.state.update(self.state)
        for g, saved in zip(opt.param_groups, self.groups, strict=False):
            g.update(saved)


def _copy_value(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.clone()
    if isinstance(v, dict):
        return {k: _copy_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy_value(x) for x in v]
    return copy.copy(v)


def _state_dtype(p: torch.Tensor) -> torch.dtype:
    """Estimates and states are kept in fp32 for half-precision parameters."""
    return torch.float32 if p.dtype in (torch.float16, torch.bfloat16) else p.dtype


def _full_signature(cls: type[ZOOptimizer]) -> inspect.Signature:
    """``cls.__init__``'s parameters without ``self`` and ``**options``, then the shared options ``cls`` takes
    (those of :data:`~zotheory.optim.config.ESTIMATOR_OPTIONS` it neither fixes nor declares itself) and
    ``config`` (all of them at once)."""
    own = [
        p
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and p.kind is not p.VAR_KEYWORD
    ]
    declared = {p.name for p in own}
    shared = [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=EstimatorConfig.__annotations__[name]
        )
        for name, default in ESTIMATOR_OPTIONS.items()
        if name not in declared and name not in cls.fixed_options
    ]
    whole = inspect.Parameter(
        "config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="EstimatorConfig | None"
    )
    return inspect.Signature([*own, *shared, whole])
