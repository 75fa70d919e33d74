"""Direction policies: learned (LDSD) and prior-informed (guiding vector, greedy, carried best)
choices of where a zeroth-order estimate looks, pluggable into every optimizer (``policy=``)."""

from zotheory.policies.base import DirectionPolicy
from zotheory.policies.guided import (
    CarriedBestPolicy,
    GreedyPolicy,
    GuidedVectorPolicy,
    PinnedCombinations,
    guided_weights,
)
from zotheory.policies.ldsd import LDSDPolicy, ShiftedGaussian, rloo_coefficients

__all__ = [
    "CarriedBestPolicy",
    "DirectionPolicy",
    "GreedyPolicy",
    "GuidedVectorPolicy",
    "LDSDPolicy",
    "PinnedCombinations",
    "ShiftedGaussian",
    "guided_weights",
    "rloo_coefficients",
]
