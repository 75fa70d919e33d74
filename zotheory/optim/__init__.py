"""Zeroth-order optimizers as ``torch.optim.Optimizer`` subclasses (``step(closure)``)."""

from zotheory.optim.adam import ZOAdam
from zotheory.optim.adanaged import AdaNAGED
from zotheory.optim.base import ZOOptimizer
from zotheory.optim.jaguar import JaguarBlock, JaguarMuon, JaguarSignSGD
from zotheory.optim.muon import MatrixEfficientZOMuon, SemiOrthogonal, ZOMuon, muon_param_groups
from zotheory.optim.parameter_free import ZOPOEM, ZOALIASSign, ZODoG
from zotheory.optim.registry import OPTIMIZERS, OptimizerSpec, make_optimizer, register_optimizer
from zotheory.optim.sign import ZOSGDSign, ZOSignSGD
from zotheory.optim.zolmo import ZOLMO
from zotheory.optim.zosgd import ZOSGD

__all__ = [
    "OPTIMIZERS",
    "AdaNAGED",
    "JaguarBlock",
    "JaguarMuon",
    "JaguarSignSGD",
    "MatrixEfficientZOMuon",
    "OptimizerSpec",
    "SemiOrthogonal",
    "ZOALIASSign",
    "ZOAdam",
    "ZODoG",
    "ZOLMO",
    "ZOMuon",
    "ZOOptimizer",
    "ZOPOEM",
    "ZOSGD",
    "ZOSGDSign",
    "ZOSignSGD",
    "make_optimizer",
    "muon_param_groups",
    "register_optimizer",
]
