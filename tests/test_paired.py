"""Paired evaluation (zotheory.paired): both perturbed forwards as one batched forward, no parameter written.

Checked on tiny float64 models (an OPT causal LM with a tied LM head, and a BERT classifier whose position
embedding is shared by the batch): the directional derivatives equal the in-place path's up to rounding,
the parameters are bit-identical before and after, seed replay repeats the estimate bit for bit, and an
optimizer step through a paired closure follows the in-place step.
"""

from __future__ import annotations

import pytest
import torch

from llm import models
from llm.data import SequenceClassificationBatch
from llm.distributed import parameters_digest
from llm.objective import (
    CausalLMClassificationObjective,
    SequenceClassificationObjective,
    make_closure,
    make_paired_closure,
)
from llm.profile import synthetic_batch
from llm.step import zo_step
from zotheory.directions import get_directions
from zotheory.estimators import estimate_gradient
from zotheory.optim.zosgd import ZOSGD
from zotheory.paired import PairedClosure, PairedPerturbation, paired_estimate

# float64 rounding of x +- r z moves f by ~1e-16 relative; divided by 2r = 2e-3 that is ~1e-13 of the loss
# scale, far inside this tolerance, while a wrong direction or sign changes d by O(1)
RTOL, ATOL = 1e-7, 1e-9


def _opt():
    model = models.build_opt_from_preset("tiny", seed=0).double()
    batch = synthetic_batch(model.config.vocab_size, 3, 10, seed=1)
    mask = batch.attention_mask.clone()
    mask[0, :4] = 0  # one left-padded row
    from dataclasses import replace

    return CausalLMClassificationObjective(model), replace(batch, attention_mask=mask)


def _bert():
    model = models.build_tiny_bert_classifier(2, seed=0).double()
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(4, 384, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    batch = SequenceClassificationBatch(ids, mask, torch.zeros(3, 9, dtype=torch.long), torch.tensor([0, 1, 1]))
    return SequenceClassificationObjective(model), batch


@pytest.mark.parametrize("build", [_opt, _bert], ids=["opt-tiny", "bert-tiny"])
@pytest.mark.parametrize("family", ["gaussian", "rademacher"])
def test_paired_matches_in_place_and_writes_nothing(build, family):
    objective, batch = build()
    params = [p for p in objective.parameters() if p.requires_grad]
    fam = get_directions(family)
    paired = make_paired_closure(objective, batch)
    before = parameters_digest(params)
    est = paired_estimate(params, paired, fam, step_seed=11, q=2, radius=1e-3)
    assert parameters_digest(params) == before  # never written
    assert paired.pair_calls == 2 and paired.calls == 0
    ref = estimate_gradient(
        params, make_closure(objective, batch), fam, step_seed=11, q=2, radius=1e-3, exact_restore=True
    )
    assert parameters_digest(params) == before
    torch.testing.assert_close(est.directional_derivatives, ref.directional_derivatives, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(est.losses, ref.losses, rtol=1e-12, atol=1e-12)
    assert est.n_evals == ref.n_evals == 4
    # seed replay: the same seed gives bit-identical losses; another seed does not
    again = paired_estimate(params, paired, fam, step_seed=11, q=2, radius=1e-3)
    assert torch.equal(again.losses, est.losses)
    other = paired_estimate(params, paired, fam, step_seed=12, q=2, radius=1e-3)
    assert not torch.equal(other.directional_derivatives, est.directional_derivatives)
    # every hooked forward is back to the class's own
    assert all("forward" not in m.__dict__ for m in objective.modules())


def test_zosgd_step_through_paired_closure_follows_in_place_step():
    objective, batch = _opt()
    params = [p for p in objective.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    opt = ZOSGD(params, lr=1e-2, eps=1e-3, seed=5)
    for _ in range(2):
        loss_p, count = zo_step(opt, [make_paired_closure(objective, batch)], [len(batch)])
    assert count.forward_passes == 2 and count.forward_calls == 1
    after_paired = [p.detach().clone() for p in params]
    moved = max(float((a - s).abs().max()) for a, s in zip(after_paired, start, strict=False))
    assert moved > 1e-6  # the steps did move the parameters
    with torch.no_grad():
        for p, s in zip(params, start, strict=False):
            p.copy_(s)
    opt = ZOSGD(params, lr=1e-2, eps=1e-3, seed=5)
    for _ in range(2):
        loss_i, _ = zo_step(opt, [make_closure(objective, batch)], [len(batch)])
    for a, p in zip(after_paired, params, strict=False):
        torch.testing.assert_close(a, p.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(loss_p, loss_i, rtol=1e-12, atol=1e-12)


def test_micro_batches_pair_as_their_weighted_mean():
    objective, batch = _opt()
    params = [p for p in objective.parameters() if p.requires_grad]
    from llm.step import paired_step_closure

    halves = [batch.to("cpu"), batch.to("cpu")]
    combined = paired_step_closure([make_paired_closure(objective, b) for b in halves], [3, 3])
    one = paired_estimate(
        params, make_paired_closure(objective, batch), get_directions("gaussian"), step_seed=2, radius=1e-3
    )
    two = paired_estimate(params, combined, get_directions("gaussian"), step_seed=2, radius=1e-3)
    torch.testing.assert_close(one.losses, two.losses, rtol=1e-12, atol=1e-12)


def test_parameter_outside_the_model_is_refused_and_forward_restored_after_error():
    objective, batch = _opt()
    stray = torch.zeros(3, dtype=torch.float64)
    params = [p for p in objective.parameters()] + [stray]
    with pytest.raises(ValueError, match=r"parameter \d+ \(shape \(3,\)\) is not a parameter"):
        PairedPerturbation(objective, params, get_directions("gaussian"), step_seed=0, j=0, radius=1e-3)

    def broken():
        raise RuntimeError("boom")

    closure = PairedClosure(objective, broken, broken)
    with pytest.raises(RuntimeError, match="boom"):
        paired_estimate(list(objective.parameters()), closure, get_directions("gaussian"), step_seed=0)
    assert all("forward" not in m.__dict__ for m in objective.modules())


def test_odd_batch_is_refused():
    objective, batch = _opt()
    params = list(objective.parameters())
    closure = PairedClosure(
        objective, lambda: objective(batch), lambda: objective.pair_losses(batch)
    )  # not doubled: 3 rows
    with pytest.raises(ValueError, match="even"):
        paired_estimate(params, closure, get_directions("gaussian"), step_seed=0)
