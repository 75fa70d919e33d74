"""The shared estimator options (``EstimatorConfig``), the declared signatures of the registry, and the
pending restore owned by the base class."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch

from zotheory.optim import ZOSGD, JaguarSignSGD, MatrixEfficientZOMuon, ZODoG, ZOOptimizer, ZOSignSGD
from zotheory.optim.config import ESTIMATOR_OPTIONS, EstimatorConfig
from zotheory.optim.registry import OPTIMIZERS, make_optimizer, preset
from zotheory.policies import GreedyPolicy

F64 = torch.float64


def named_params() -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        ("layer.weight", torch.randn(5, 4, generator=g, dtype=F64)),
        ("layer.bias", torch.randn(4, generator=g, dtype=F64)),
    ]


def loss_of(params: list[torch.Tensor]) -> Any:
    def closure() -> torch.Tensor:
        return sum(((p - 0.3) ** 2).sum() + p.sin().sum() for p in params)  # type: ignore[return-value]

    return closure


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"eps": 0.0}, "0.0"),
        ({"eps": float("nan")}, "nan"),
        ({"q": 0}, "got 0"),
        ({"scheme": "backward"}, "'backward'"),
        ({"on_nonfinite": "ignore"}, "'ignore'"),
    ],
)
def test_estimator_config_names_the_bad_value(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EstimatorConfig(**options)
    with pytest.raises(ValueError, match=message):
        ZOSGD([torch.zeros(3, dtype=F64)], **options)


def test_fixed_unknown_and_doubled_options_are_type_errors_naming_them() -> None:
    params = [p for _, p in named_params()]
    with pytest.raises(TypeError, match="'q'"):
        JaguarSignSGD(params, q=2)
    with pytest.raises(TypeError, match="'policy'"):
        ZODoG(params, policy=GreedyPolicy())
    with pytest.raises(TypeError, match="'directions'"):
        MatrixEfficientZOMuon(params, directions="rademacher")
    with pytest.raises(TypeError, match="'epsilon'"):
        ZOSignSGD(params, epsilon=1e-3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'eps'"):
        ZOSGD(params, config=EstimatorConfig(), eps=1e-3)
    with pytest.raises(TypeError, match="'q'"):
        JaguarSignSGD(params, config=EstimatorConfig(q=2))
    with pytest.raises(TypeError, match="'betas'"):
        make_optimizer("zo-sgd", params, betas=(0.9, 0.99))


def test_config_object_and_keywords_give_the_same_trajectory() -> None:
    a = [p.clone() for _, p in named_params()]
    b = [p.clone() for _, p in named_params()]
    opt_a = ZOSGD(a, lr=0.01, momentum=0.5, eps=1e-4, q=2, seed=7)
    opt_b = ZOSGD(b, lr=0.01, momentum=0.5, config=EstimatorConfig(eps=1e-4, q=2, seed=7))
    for _ in range(3):
        opt_a.step(loss_of(a))
        opt_b.step(loss_of(b))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert opt_a.config == opt_b.config


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_declared_defaults_are_the_defaults_used(name: str) -> None:
    """Passing every declared default explicitly builds the same optimizer as passing none: the signature
    read without building anything is the one the constructor applies."""
    declared = OPTIMIZERS[name].parameters()
    assert "lr" in declared and "seed" in declared and "exact_restore" in declared
    explicit = {k: p.default for k, p in declared.items() if p.default is not inspect.Parameter.empty}
    a = [p.clone() for _, p in named_params()]
    b = [p.clone() for _, p in named_params()]
    opt_a = make_optimizer(name, list(zip(["layer.weight", "layer.bias"], a, strict=True)))
    opt_b = make_optimizer(name, list(zip(["layer.weight", "layer.bias"], b, strict=True)), **explicit)
    for _ in range(3):
        opt_a.step(loss_of(a))
        opt_b.step(loss_of(b))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_signatures_are_read_without_building_an_optimizer(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an optimizer was built to read its options")

    monkeypatch.setattr(ZOOptimizer, "__init__", refuse)
    zo_lmo = OPTIMIZERS["zo-lmo"].parameters()
    assert zo_lmo["matrix_norm"].default == "spectral" and zo_lmo["beta"].default == 0.9
    assert OPTIMIZERS["zo-sgd-mmt"].parameters()["momentum"].default == 0.9
    assert OPTIMIZERS["adanaged-alias"].parameters()["step_rule"].default == "alias"
    jaguar = inspect.signature(JaguarSignSGD).parameters
    assert "q" not in jaguar and "scheme" not in jaguar and jaguar["eps"].default == ESTIMATOR_OPTIONS["eps"]


def test_preset_refuses_an_option_its_class_lacks() -> None:
    with pytest.raises(TypeError, match="'amsgrad'"):
        preset(ZOSGD, amsgrad=True)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("exact_restore", [False, True])
def test_update_sees_a_pending_restore_only_when_it_folds_it(name: str, exact_restore: bool) -> None:
    """The base class restores ``x_t`` before ``_update`` unless the method folds the restore in
    (``folds_restore``); after every step nothing is pending and the estimate came from ``x_t``."""
    spec = OPTIMIZERS[name]
    params = [p.clone() for _, p in named_params()]
    opt = spec.make(params, **{**spec.test_config, "exact_restore": exact_restore})
    seen: list[tuple[bool, bool]] = []
    original = opt._update

    def spy(est: Any) -> None:
        seen.append((opt.folds_restore, est.pending is not None))
        original(est)
        assert est.pending is None

    opt._update = spy  # type: ignore[method-assign]
    for _ in range(4):
        opt.step(loss_of(params))
    assert len(seen) == 4
    assert not any(pending and not folds for folds, pending in seen)
    if exact_restore:
        assert not any(pending for _, pending in seen)
