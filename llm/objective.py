"""LLM objectives as `nn.Module`s, and the closures optimizers call.

An objective wraps a model; ``objective(batch)`` returns the minibatch loss as a
0-d tensor.  A ZO optimizer only ever sees `make_closure(objective, batch)`: a
zero-argument function that evaluates that loss on *that fixed batch* with the
model in eval mode (dropout off) under `torch.inference_mode` -- so the two
evaluations of a two-point difference f(x + eps z) - f(x - eps z) differ only by the
perturbation (``docs/theory.md`` §6.1; MeZO ``zo_forward``).

Loss convention (causal LMs, MeZO / ZO-Bench ``train_as_classification``)
--------------------------------------------------------------------------
For example ``b`` with prompt ``x_b`` and candidates ``k = 1..K`` whose label words
have tokens ``w_k = (w_k1, ..., w_kT_k)``, the candidate score is the
length-normalised log-likelihood of the label word given the prompt::

    s_bk = (1/T_k) * sum_t log p_theta(w_kt | x_b, w_k1..w_k(t-1))

(``length_normalize=False``: the plain sum).  The loss is the cross-entropy of the
gold class under a softmax over the candidates only::

    L(theta; B) = -(1/|B|) sum_b log( exp(s_b,y_b) / sum_k exp(s_bk) )

For single-token label words (SST-2 " terrible"/" great" with OPT's tokenizer)
``s_bk = log p(w_k | x_b)`` and the softmax is the model's next-token
distribution restricted to the label words.  `predict` is ``argmax_k s_bk``.
Log-probabilities are computed from the model's logits at the positions that are
needed only (``logits_to_keep``), in float32 for half-precision models (float64
models stay float64).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llm.data import CausalLMBatch, SequenceClassificationBatch
from zotheory.paired import PairedClosure

__all__ = [
    "CausalLMClassificationObjective",
    "SequenceClassificationObjective",
    "EvalResult",
    "eval_mode",
    "train_mode",
    "make_closure",
    "make_paired_closure",
    "doubled_batch",
    "eval_closure",
    "make_backward_closure",
]

Batch = CausalLMBatch | SequenceClassificationBatch  # what the objectives read (llm.data's collators)


@contextlib.contextmanager
def _mode(module: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Set ``module`` (and every submodule) to train/eval mode, restoring each one after."""
    saved = [(m, m.training) for m in module.modules()]
    module.train(training)
    try:
        yield module
    finally:
        for m, t in saved:
            m.training = t


def eval_mode(module: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
    """Context manager: ``module.eval()`` inside, previous modes restored on exit."""
    return _mode(module, False)


def train_mode(module: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
    """Context manager: ``module.train()`` inside, previous modes restored on exit."""
    return _mode(module, True)


@dataclass(frozen=True)
class EvalResult:
    """Mean loss and accuracy over ``num_examples`` examples."""

    loss: float
    accuracy: float
    num_examples: int


class _ClassificationObjective(nn.Module):
    """Shared part: ``forward`` = mean cross-entropy of `scores`, plus predict/evaluate."""

    model: nn.Module

    def scores(self, batch: Any) -> torch.Tensor:  # pragma: no cover - each subclass names its batch type
        raise NotImplementedError

    def forward(self, batch: Batch) -> torch.Tensor:
        """Mean cross-entropy over the batch, a 0-d float32 tensor."""
        s = self.scores(batch)
        return F.cross_entropy(s, batch.labels.to(s.device))

    def pair_losses(self, doubled: Batch) -> torch.Tensor:
        """``(2,)`` float64: the mean cross-entropy of the first and of the second half of a
        :func:`doubled_batch` (the ``+`` and ``-`` copies of a paired evaluation, :mod:`zotheory.paired`)."""
        s = self.scores(doubled)
        per_example = F.cross_entropy(s, doubled.labels.to(s.device), reduction="none").to(torch.float64)
        return per_example.view(2, -1).mean(dim=1)

    @torch.inference_mode()
    def predict(self, batch: Batch) -> torch.Tensor:
        """Predicted class per example, ``(B,)`` long (eval mode, no autograd)."""
        with eval_mode(self):
            return self.scores(batch).argmax(dim=-1)

    @torch.inference_mode()
    def evaluate(
        self,
        batches: Iterable[Batch],
        device: torch.device | str | None = None,
    ) -> EvalResult:
        """Example-weighted mean loss and accuracy over ``batches`` (eval mode, no autograd).

        ``device``: move each batch there first (batches are `llm.data` batch objects).
        """
        total_loss = 0.0
        correct = 0
        n = 0
        with eval_mode(self):
            for batch in batches:
                if device is not None:
                    batch = batch.to(device)
                s = self.scores(batch)
                y = batch.labels.to(s.device)
                total_loss += float(F.cross_entropy(s, y, reduction="sum"))
                correct += int((s.argmax(dim=-1) == y).sum())
                n += int(y.shape[0])
        if n == 0:
            raise ValueError("evaluate: no examples in batches")
        return EvalResult(loss=total_loss / n, accuracy=correct / n, num_examples=n)

    def accuracy(self, batches: Iterable[Batch], device: torch.device | str | None = None) -> float:
        """Fraction of examples whose `predict` equals the label."""
        return self.evaluate(batches, device=device).accuracy


class CausalLMClassificationObjective(_ClassificationObjective):
    """Classification by a causal LM through label-word likelihoods (see module doc).

    ``model``: any Hugging Face causal LM (or PEFT wrapper) whose forward takes
    ``input_ids``, ``attention_mask``, ``position_ids`` and returns ``.logits``;
    ``logits_to_keep`` is passed when the model accepts it (it avoids computing the
    LM head on every position).  Batches come from `llm.data.collate_causal_lm`.
    """

    def __init__(self, model: nn.Module, *, length_normalize: bool = True) -> None:
        super().__init__()
        self.model = model
        self.length_normalize = bool(length_normalize)
        self._pass_keep: bool | None = None  # learned on first call

    def _last_logits(self, batch: CausalLMBatch, keep: int) -> torch.Tensor:
        inputs = batch.model_inputs()
        if self._pass_keep is not False:
            try:
                out = self.model(**inputs, use_cache=False, logits_to_keep=keep)
                self._pass_keep = True
                return out.logits[:, -keep:, :]
            except TypeError as e:
                if "logits_to_keep" not in str(e):
                    raise
                self._pass_keep = False
        return self.model(**inputs, use_cache=False).logits[:, -keep:, :]

    def scores(self, batch: CausalLMBatch) -> torch.Tensor:
        """Candidate scores ``s`` of shape ``(B, K)`` (float32, or float64 for a float64 model)."""
        if not isinstance(batch, CausalLMBatch):
            raise TypeError(f"expected a CausalLMBatch, got {type(batch).__name__}")
        B, K = len(batch), batch.num_options
        T = batch.num_target_positions
        logits = self._last_logits(batch, T)
        if logits.dtype not in (torch.float32, torch.float64):
            logits = logits.float()  # half-precision models: log-probs in float32
        logp = torch.log_softmax(logits, dim=-1)  # (N, T, V)
        targets = batch.targets.to(logp.device)
        if batch.layout == "shared":
            return logp[:, -1, :].gather(1, targets)  # (B, K)
        mask = batch.target_mask.to(logp.device)
        tok = logp.gather(2, targets.unsqueeze(-1)).squeeze(-1) * mask  # (B*K, T)
        s = tok.sum(dim=-1)
        if self.length_normalize:
            s = s / mask.sum(dim=-1)
        return s.view(B, K)


class SequenceClassificationObjective(_ClassificationObjective):
    """Cross-entropy of an encoder's classification logits (BERT-family + head).

    Batches come from `llm.data.collate_sequence_classification`; scores are the
    model's logits (float32 for half-precision models).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def scores(self, batch: SequenceClassificationBatch) -> torch.Tensor:
        if not isinstance(batch, SequenceClassificationBatch):
            raise TypeError(f"expected a SequenceClassificationBatch, got {type(batch).__name__}")
        logits = self.model(**batch.model_inputs()).logits
        return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


# --------------------------------------------------------------------------------------
# Closures
# --------------------------------------------------------------------------------------


def _move(batch: Batch, device: torch.device | str | None) -> Batch:
    return batch if device is None else batch.to(device)


def make_closure(
    objective: nn.Module,
    batch: Batch,
    device: torch.device | str | None = None,
) -> Callable[[], torch.Tensor]:
    """Zero-argument closure: the loss of ``objective`` on the fixed ``batch``.

    Each call runs ``objective(batch)`` with the objective (and model) in eval mode
    (previous modes restored afterwards) under `torch.inference_mode`, and returns a
    0-d tensor (no autograd graph).  Calls with unchanged parameters return identical
    values.  ``device``: move the batch there once, when the closure is made.
    """
    b = _move(batch, device)
    return eval_closure(objective, lambda: objective(b))


def doubled_batch(batch: Batch) -> Batch:
    """The batch twice, one copy after the other (every tensor concatenated with itself along dim 0): the input of a
    paired evaluation, whose first half runs at ``x + r z`` and second half at ``x - r z``."""
    changes = {
        f.name: torch.cat([getattr(batch, f.name)] * 2)
        for f in fields(batch)
        if isinstance(getattr(batch, f.name), torch.Tensor)
    }
    # mypy checks replace() against the intersection of the union's fields; each key is a tensor field of batch
    return replace(batch, **changes)  # type: ignore[arg-type]


def make_paired_closure(
    objective: _ClassificationObjective,
    batch: Batch,
    device: torch.device | str | None = None,
) -> PairedClosure:
    """The closure of :func:`make_closure` that can also run the ``+`` and ``-`` evaluations of a central difference
    as one forward over :func:`doubled_batch` (:class:`zotheory.paired.PairedClosure`; the optimizer uses it for
    central estimates, ``objective.pair_losses`` gives the two losses). The doubled batch is built once, here."""
    b = _move(batch, device)
    b2 = doubled_batch(b)
    rows = int(b2.model_inputs()["input_ids"].shape[0])
    return PairedClosure(
        objective,
        eval_closure(objective, lambda: objective(b)),
        eval_closure(objective, lambda: objective.pair_losses(b2)),
        rows,
    )


def eval_closure(module: nn.Module, loss: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """The zeroth-order closure of any loss: each call runs ``loss()`` with ``module`` in eval mode
    (dropout off, so every evaluation of a step sees the same function; previous modes restored
    afterwards) under `torch.inference_mode` (no autograd graph, no ``.grad``)."""

    def closure() -> torch.Tensor:
        with eval_mode(module), torch.inference_mode():
            return loss()

    return closure


def make_backward_closure(
    objective: nn.Module,
    batch: Batch,
    *,
    train: bool = False,
    dropout_seed: int | None = None,
    device: torch.device | str | None = None,
) -> Callable[[], torch.Tensor]:
    """Closure for first-order baselines: zero grads, loss, ``loss.backward()``, return loss.

    Gradients of the trainable parameters (``requires_grad``) are reset to ``None``
    first, so each call leaves the gradient of this batch's loss (the usual
    ``torch.optim`` closure contract).  ``train=False`` (default): eval mode, no
    dropout -- the same function the ZO closure evaluates.  ``train=True``: train mode
    (dropout on); with ``dropout_seed`` the dropout masks are drawn inside
    ``torch.random.fork_rng`` after ``torch.manual_seed(dropout_seed)``, so they are
    reproducible and the caller's global RNG is untouched.  Returns the detached loss.
    """
    b = _move(batch, device)
    params = [p for p in objective.parameters() if p.requires_grad]
    if not params:
        raise ValueError("make_backward_closure: the objective has no trainable parameters")
    cuda = sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})

    def closure() -> torch.Tensor:
        for p in params:
            p.grad = None
        with torch.enable_grad(), _mode(objective, train):
            if train and dropout_seed is not None:
                with torch.random.fork_rng(devices=cuda):
                    torch.manual_seed(dropout_seed)
                    loss = objective(b)
            else:
                loss = objective(b)
            loss.backward()
        return loss.detach()

    return closure
