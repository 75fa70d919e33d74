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


def test_gradient_shares_of_minilm_ft_sum_to_one_over_the_step_classes_and_leave_no_gradient() -> None:
    from llm.block_shares import gradient_shares
    from llm.prototype_head import load_minilm_prototype_classifier, prepare_prototype_model

    model, tok = load_minilm_prototype_classifier(["It was terrible.", "It was great."])
    model = prepare_prototype_model(model, "ft")
    texts = ["a wonderful film", "i hated it", "great fun", "a boring mess", "brilliant acting", "stupid plot"]
    shares = gradient_shares(model, tok, texts, [1, 0, 1, 0, 1, 0], batch_size=3)
    named = [(n, t) for n, t in model.named_parameters() if t.requires_grad]
    assert set(shares) == set(step_shares(named, "unit"))
    assert sum(shares.values()) == pytest.approx(1.0, rel=1e-12)
    assert all(v > 0 for v in shares.values())
    assert all(t.grad is None for _, t in named)
    with pytest.raises(ValueError, match="one label per text, got 6 texts and 5 labels"):
        gradient_shares(model, tok, texts, [1, 0, 1, 0, 1])
    with pytest.raises(ValueError, match="at least one batch of batch_size=16 from 6 texts"):
        gradient_shares(model, tok, texts, [1, 0, 1, 0, 1, 0])
    with pytest.raises(ValueError, match="batch_size=0"):
        gradient_shares(model, tok, texts, [1, 0, 1, 0, 1, 0], batch_size=0)
