"""llm.block_shares: the share of an LMO step's squared length per routing class, under both radii."""

from __future__ import annotations

import pytest
import torch

from llm.block_shares import step_shares


def test_unit_radii_skew_the_step_to_sign_blocks_and_rms_radii_follow_the_parameters() -> None:
    """A 10x4 embedding (sign: 40 squared units), a 6x4 hidden matrix (spectral: min(6, 4) = 4) and a 4-vector
    (sign: 4): unit radii give 40/48, 4/48, 4/48; rms radii give the entry shares 40/68, 24/68, 4/68."""
    gen = torch.Generator().manual_seed(0)
    named = [
        ("embeddings.word_embeddings.weight", torch.randn(10, 4, generator=gen, dtype=torch.float64)),
        ("encoder.layer.0.attention.query.weight", torch.randn(6, 4, generator=gen, dtype=torch.float64)),
        ("encoder.layer.0.output.LayerNorm.bias", torch.randn(4, generator=gen, dtype=torch.float64)),
    ]
    unit = step_shares(named, "unit")
    assert unit["linf/embedding"]["step"] == pytest.approx(40 / 48)
    assert unit["spectral_ns/other"]["step"] == pytest.approx(4 / 48)
    assert unit["linf/other"]["step"] == pytest.approx(4 / 48)
    rms = step_shares(named, "rms")
    for cls, share in (("linf/embedding", 40 / 68), ("spectral_ns/other", 24 / 68), ("linf/other", 4 / 68)):
        assert rms[cls]["step"] == pytest.approx(share) and rms[cls]["params"] == pytest.approx(share)
    assert sum(r["tensors"] for r in rms.values()) == 3
    with pytest.raises(ValueError, match="radii must be one of"):
        step_shares(named, "Unit")
    with pytest.raises(ValueError, match="at least one"):
        step_shares([], "unit")
