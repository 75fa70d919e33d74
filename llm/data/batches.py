"""Batches: left-padded collation into the two causal-LM layouts, sequence-classification batches, and
batch streams over a resumable epoch order."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Self

import torch

from llm.data.encoding import EncodedLMExample, EncodedSeqExample, _Tokenizer
from llm.data.sampling import EpochSampler, _check_int


class _BatchMixin:
    # Mixed into the frozen batch dataclasses below: mypy cannot see that ``self`` is a dataclass with ``labels``,
    # hence the three ignores.

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Self:
        """A copy with every tensor moved to ``device``."""
        changes = {
            f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
            for f in fields(self)  # type: ignore[arg-type]
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **changes)  # type: ignore[type-var]

    def __len__(self) -> int:
        return int(self.labels.shape[0])  # type: ignore[attr-defined]


@dataclass(frozen=True)
class CausalLMBatch(_BatchMixin):
    """A collated causal-LM classification batch (``B`` examples, ``K`` candidates).

    ``input_ids``, ``attention_mask``, ``position_ids``: ``(N, L)``, left-padded.
    ``layout == "shared"``: ``N = B``; ``targets`` ``(B, K)`` holds each candidate's
    single label token, scored at the last position.
    ``layout == "per_option"``: ``N = B*K`` (row ``b*K + k`` is example ``b``,
    candidate ``k``); ``targets`` ``(N, T)`` holds the label-word tokens right-aligned,
    ``target_mask`` ``(N, T)`` marks the real ones, predicted by the last ``T`` positions.
    ``labels``: ``(B,)`` gold class indices.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    targets: torch.Tensor
    target_mask: torch.Tensor
    labels: torch.Tensor
    num_options: int
    layout: str

    @property
    def num_target_positions(self) -> int:
        """How many trailing positions' logits the objective needs (``T``)."""
        return 1 if self.layout == "shared" else int(self.targets.shape[1])

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "position_ids": self.position_ids,
        }


@dataclass(frozen=True)
class SequenceClassificationBatch(_BatchMixin):
    """A right-padded encoder batch: ``input_ids``/``attention_mask`` ``(B, L)``,
    optional ``token_type_ids``, ``labels`` ``(B,)``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None
    labels: torch.Tensor

    def model_inputs(self) -> dict[str, torch.Tensor]:
        d = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            d["token_type_ids"] = self.token_type_ids
        return d


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r) == 0:
            raise ValueError(f"row {i} of the batch is empty")
        ids[i, L - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, L - len(r) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


def collate_causal_lm(encoded: Sequence[EncodedLMExample], pad_token_id: int, layout: str = "auto") -> CausalLMBatch:
    """Collate encoded examples into a `CausalLMBatch`.

    ``layout="auto"`` picks ``"shared"`` when every label word of every example in
    the batch is one token, else ``"per_option"``; both give the same scores.
    """
    if len(encoded) == 0:
        raise ValueError("cannot collate an empty batch")
    if layout not in ("auto", "shared", "per_option"):
        raise ValueError(f"layout must be 'auto', 'shared' or 'per_option', got {layout!r}")
    if isinstance(pad_token_id, bool) or not isinstance(pad_token_id, int):
        raise TypeError(f"pad_token_id must be an int, got {pad_token_id!r}")
    K = len(encoded[0].option_ids)
    for e in encoded:
        if len(e.option_ids) != K:
            raise ValueError(f"examples with {K} and {len(e.option_ids)} candidates in one batch")
    single = all(len(o) == 1 for e in encoded for o in e.option_ids)
    if layout == "auto":
        layout = "shared" if single else "per_option"
    if layout == "shared" and not single:
        raise ValueError("layout='shared' needs single-token label words; use 'per_option' or 'auto'")
    labels = torch.tensor([e.label for e in encoded], dtype=torch.long)
    if layout == "shared":
        ids, mask, pos = _left_pad([e.prompt_ids for e in encoded], pad_token_id)
        targets = torch.tensor([[o[0] for o in e.option_ids] for e in encoded], dtype=torch.long)
        tmask = torch.ones_like(targets, dtype=torch.bool)
    else:
        rows: list[tuple[int, ...]] = []
        opts: list[tuple[int, ...]] = []
        for e in encoded:
            for o in e.option_ids:
                rows.append(e.prompt_ids + o[:-1])
                opts.append(o)
        ids, mask, pos = _left_pad(rows, pad_token_id)
        T = max(len(o) for o in opts)
        targets = torch.zeros((len(opts), T), dtype=torch.long)
        tmask = torch.zeros((len(opts), T), dtype=torch.bool)
        for i, o in enumerate(opts):
            targets[i, T - len(o) :] = torch.tensor(o, dtype=torch.long)
            tmask[i, T - len(o) :] = True
    return CausalLMBatch(
        input_ids=ids,
        attention_mask=mask,
        position_ids=pos,
        targets=targets,
        target_mask=tmask,
        labels=labels,
        num_options=K,
        layout=layout,
    )


def collate_sequence_classification(
    encoded: Sequence[EncodedSeqExample], pad_token_id: int
) -> SequenceClassificationBatch:
    """Right-pad encoder examples into a `SequenceClassificationBatch`."""
    if len(encoded) == 0:
        raise ValueError("cannot collate an empty batch")
    L = max(len(e.input_ids) for e in encoded)
    B = len(encoded)
    ids = torch.full((B, L), pad_token_id, dtype=torch.long)
    mask = torch.zeros((B, L), dtype=torch.long)
    has_tt = all(e.token_type_ids is not None for e in encoded)
    tt = torch.zeros((B, L), dtype=torch.long) if has_tt else None
    for i, e in enumerate(encoded):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids, dtype=torch.long)
        mask[i, :n] = 1
        if tt is not None and e.token_type_ids is not None:
            tt[i, :n] = torch.tensor(e.token_type_ids, dtype=torch.long)
    labels = torch.tensor([e.label for e in encoded], dtype=torch.long)
    return SequenceClassificationBatch(input_ids=ids, attention_mask=mask, token_type_ids=tt, labels=labels)


def _pad_id(tokenizer: _Tokenizer) -> int:
    for v in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if v is not None:
            return int(v)
    return 0


@dataclass(frozen=True)
class CausalLMCollator:
    """``collate_fn`` for causal-LM batches; ``from_tokenizer`` takes the pad id
    (pad, else EOS, else 0 -- padded positions are masked, so the value is inert)."""

    pad_token_id: int
    layout: str = "auto"

    @classmethod
    def from_tokenizer(cls, tokenizer: _Tokenizer, layout: str = "auto") -> CausalLMCollator:
        return cls(_pad_id(tokenizer), layout)

    def __call__(self, encoded: Sequence[EncodedLMExample]) -> CausalLMBatch:
        return collate_causal_lm(encoded, self.pad_token_id, self.layout)


@dataclass(frozen=True)
class SequenceClassificationCollator:
    """``collate_fn`` for encoder batches."""

    pad_token_id: int

    @classmethod
    def from_tokenizer(cls, tokenizer: _Tokenizer) -> SequenceClassificationCollator:
        return cls(_pad_id(tokenizer))

    def __call__(self, encoded: Sequence[EncodedSeqExample]) -> SequenceClassificationBatch:
        return collate_sequence_classification(encoded, self.pad_token_id)


class BatchStream:
    """Endless stream of collated training batches: `EpochSampler` + collate.

    ``next(stream)`` returns ``collate([data[i] for i in sampler.next_indices()])``;
    ``state_dict``/``load_state_dict`` delegate to the sampler, so a resumed run sees
    the same batches.
    """

    def __init__(
        self,
        data: Sequence[Any],
        collate: Callable[[Sequence[Any]], Any],
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> None:
        if len(data) == 0:
            raise ValueError("BatchStream needs a non-empty dataset")
        self.data = data
        self.collate = collate
        self.sampler = EpochSampler(len(data), batch_size, seed=seed, shuffle=shuffle, drop_last=drop_last)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return self.collate([self.data[i] for i in self.sampler.next_indices()])

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sampler.load_state_dict(state)


def iter_batches(data: Sequence[Any], collate: Callable[[Sequence[Any]], Any], batch_size: int) -> Iterator[Any]:
    """Sequential, unshuffled batches covering ``data`` once (for evaluation)."""
    batch_size = _check_int("batch_size", batch_size, 1)
    for start in range(0, len(data), batch_size):
        yield collate(data[start : start + batch_size])
