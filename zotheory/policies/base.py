"""The interface of direction policies: who chooses where a zeroth-order method looks.

A policy replaces the "draw q fresh directions" part of an estimate. It may evaluate
candidate directions (extra closure calls), keep state (a learned mean, the previous best
seed), and must return a :class:`~zotheory.estimators.ZOEstimate` whose ``family`` can
regenerate the chosen direction from seeds, so that every optimizer applies it exactly as
it applies a plain estimate (``apply_``, ``tensor_estimate``, the folded restore).

Contract for :meth:`DirectionPolicy.estimate`: on return, the parameters are at ``x``
(or at ``x - r z`` with ``pending`` set when ``leave_pending``); on any exception they are
restored (bit-exactly when ``exact_restore``) before it propagates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch

from zotheory.estimators import Scheme, ZOEstimate


class DirectionPolicy(ABC):
    """Chooses the direction(s) of each zeroth-order estimate; pluggable into any optimizer."""

    name: str = "abstract"

    def bind(self, params: Sequence[torch.Tensor]) -> None:  # noqa: B027  # optional hook, empty by default
        """Called once by the optimizer with its parameters (allocate per-tensor state here)."""

    @abstractmethod
    def evals_per_step(self, scheme: Scheme, q: int) -> int:
        """Closure calls of one :meth:`estimate` (candidates included)."""

    @abstractmethod
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
        """Evaluate candidates, choose, and return the estimate along the chosen direction(s)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state but got keys {sorted(state)}")

    def state_bytes(self) -> int:
        """Bytes of tensors the policy keeps (declared memory)."""
        return 0
