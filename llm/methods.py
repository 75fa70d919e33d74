"""Methods of the fine-tuning loop: the ZO registry's optimizers and first-order baselines by name, direction
policies, their options (type-checked against the constructors) and optimizer construction."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from llm.config import FinetuneConfig, accepted_options, coerce_options
from zotheory import policies
from zotheory.optim.registry import OPTIMIZERS

#: First-order baselines (backpropagation) reachable as methods.
FIRST_ORDER_METHODS: dict[str, type[torch.optim.Optimizer]] = {
    "fo-sgd": torch.optim.SGD,
    "fo-adam": torch.optim.Adam,
}

#: Direction policies: CLI name -> class name in ``zotheory.policies``.
POLICIES: dict[str, str] = {
    "ldsd": "LDSDPolicy",
    "gv": "GuidedVectorPolicy",
    "greedy": "GreedyPolicy",
    "carried-best": "CarriedBestPolicy",
}

# Options the loop sets itself (from the config), refused inside --opt.
_LOOP_MANAGED = ("seed", "policy")


def _normalise(name: str) -> str:
    return re.sub(r"[-_\s]", "", name.lower())


def _zo_registry() -> dict[str, Any]:
    """``zotheory.optim.registry.OPTIMIZERS``: name -> ``OptimizerSpec`` (with ``.factory``)."""
    return dict(OPTIMIZERS)


def available_methods() -> list[str]:
    """Every method name the loop accepts (registry names, then first-order baselines)."""
    return sorted(_zo_registry()) + sorted(FIRST_ORDER_METHODS)


@dataclass(frozen=True)
class MethodSpec:
    """A resolved method: its canonical name, kind and constructor ``factory(params, **options)``."""

    name: str
    kind: Literal["zo", "fo"]
    factory: Callable[..., torch.optim.Optimizer]


def resolve_method(name: str) -> MethodSpec:
    """Find ``name`` among the first-order baselines and the ZO registry.

    Matching ignores case, ``-`` and ``_`` (``ZO_SGD`` = ``zo-sgd`` = ``zosgd``). Raises
    ``ValueError`` naming the unknown method and listing the known ones.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"method must be a non-empty string, got {name!r}")
    key = _normalise(name)
    for fo_name, cls in FIRST_ORDER_METHODS.items():
        if _normalise(fo_name) == key:
            return MethodSpec(fo_name, "fo", cls)
    registry = _zo_registry()
    for zo_name, entry in registry.items():
        if zo_name == name or _normalise(zo_name) == key:
            return MethodSpec(zo_name, "zo", getattr(entry, "factory", entry))
    raise ValueError(f"unknown method {name!r}; available: {available_methods()}")


def _probe_params() -> list[tuple[str, nn.Parameter]]:
    return [("probe.weight", nn.Parameter(torch.zeros(4, 4))), ("probe.bias", nn.Parameter(torch.zeros(4)))]


def method_options(spec: MethodSpec) -> dict[str, inspect.Parameter]:
    """The keyword options of a method, read from declared signatures (no optimizer is built): a ZO method's
    :meth:`~zotheory.optim.registry.OptimizerSpec.parameters` (its own hyper-parameters, then the shared
    estimator options it takes), a first-order baseline's constructor."""
    if spec.kind == "zo":
        return _zo_registry()[spec.name].parameters()
    return accepted_options(spec.factory)


def resolve_policy(name: str) -> type:
    """The direction-policy class for a CLI name (``ldsd``, ``gv``, ``greedy``, ``carried-best``)."""
    key = _normalise(name)
    for cli, cls_name in POLICIES.items():
        if key in (_normalise(cli), _normalise(cls_name), _normalise(cls_name.removesuffix("Policy"))):
            cls = getattr(policies, cls_name, None)
            if cls is None:
                raise ValueError(f"direction policy {name!r} ({cls_name}) is not available in zotheory.policies")
            return cls
    raise ValueError(f"unknown direction policy {name!r}; available: {sorted(POLICIES)}")


def check_method_options(cfg: FinetuneConfig) -> tuple[MethodSpec, dict[str, Any], type | None, dict[str, Any]]:
    """Resolve the method and policy and type-check every option (no model needed)."""
    spec = resolve_method(cfg.method)
    opts = coerce_options(
        cfg.optimizer_options(), method_options(spec), what=f"method {spec.name!r}", exclude=_LOOP_MANAGED
    )
    policy_cls: type | None = None
    policy_opts: dict[str, Any] = {}
    if cfg.policy is not None:
        if spec.kind != "zo":
            raise ValueError(f"a direction policy ({cfg.policy!r}) needs a zeroth-order method, not {spec.name!r}")
        policy_cls = resolve_policy(cfg.policy)
        policy_opts = coerce_options(cfg.policy_opt, policy_cls, what=f"policy {cfg.policy!r}")
    return spec, opts, policy_cls, policy_opts


def build_optimizer(
    spec: MethodSpec,
    named_params: Sequence[tuple[str, nn.Parameter]],
    options: dict[str, Any],
    *,
    seed: int,
    policy: Any = None,
) -> torch.optim.Optimizer:
    """Construct the optimizer over ``(name, tensor)`` pairs; constructor errors name the method."""
    params = list(named_params)
    if not params:
        raise ValueError("the model has no trainable parameters")
    try:
        if spec.kind == "fo":
            return spec.factory(params, **options)
        kwargs = dict(options, seed=seed)
        if policy is not None:
            kwargs["policy"] = policy
        return spec.factory(params, **kwargs)
    except TypeError as e:
        raise ValueError(f"method {spec.name!r} rejected its options {sorted(options)}: {e}") from None
