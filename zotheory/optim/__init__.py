"""Zeroth-order optimizers as ``torch.optim.Optimizer`` subclasses (``step(closure)``)."""

from zotheory.optim.base import ZOOptimizer
from zotheory.optim.zosgd import ZOSGD

__all__ = ["ZOOptimizer", "ZOSGD"]
