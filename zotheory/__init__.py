"""zotheory: zeroth-order optimization for LLM fine-tuning, with its theory made checkable."""

from zotheory.directions import DirectionFamily, get_directions, mix_seed, tensor_generator
from zotheory.estimators import NonFiniteLossError, ZOEstimate, estimate_gradient

__version__ = "0.1.0"

__all__ = [
    "DirectionFamily",
    "NonFiniteLossError",
    "ZOEstimate",
    "estimate_gradient",
    "get_directions",
    "mix_seed",
    "tensor_generator",
]
