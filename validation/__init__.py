"""The validation suite: every implemented theory claim, checked on problems with known constants."""

import importlib
import pkgutil

import validation.claims as _claims
from validation.core import REGISTRY, Claim, ClaimResult, Context, Plot, claim

__all__ = ["REGISTRY", "Claim", "ClaimResult", "Context", "Plot", "claim", "load_claims"]


def load_claims() -> dict[str, Claim]:
    """Import every module of :mod:`validation.claims` (each registers its claims) and return the registry."""
    for info in sorted(pkgutil.iter_modules(_claims.__path__), key=lambda m: m.name):
        importlib.import_module(f"validation.claims.{info.name}")
    return REGISTRY
