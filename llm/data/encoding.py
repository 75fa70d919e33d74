"""Tokenisation of prompts and label words for the causal-LM and sequence-classification objectives."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from llm.data.tasks import Example, Task, get_task


class _Tokenizer(Protocol):  # the part of the HF tokenizer API used here
    pad_token_id: int | None
    eos_token_id: int | None

    def __call__(self, text: Any, *args: Any, **kwargs: Any) -> Any: ...


def _ids(tokenizer: _Tokenizer, text: str, special: bool) -> list[int]:
    out = tokenizer(text, add_special_tokens=special)["input_ids"]
    return [int(i) for i in out]


def _special_prefix(tokenizer: _Tokenizer) -> list[int]:
    """Token ids the tokenizer puts in front of a text (OPT: [</s>]; GPT-2: [])."""
    probe = "a"
    plain = _ids(tokenizer, probe, False)
    full = _ids(tokenizer, probe, True)
    n = len(plain)
    for i in range(len(full) - n + 1):
        if full[i : i + n] == plain:
            return full[:i]
    return []


@dataclass(frozen=True)
class EncodedLMExample:
    """A tokenised example for a causal LM.

    ``prompt_ids`` includes the tokenizer's leading special tokens and is already
    left-truncated; ``option_ids[k]`` are the tokens of ``label_words[k]`` as they
    follow the prompt; ``truncated`` counts prompt tokens dropped on the left.
    """

    prompt_ids: tuple[int, ...]
    option_ids: tuple[tuple[int, ...], ...]
    label: int
    truncated: int = 0


def label_token_ids(tokenizer: _Tokenizer, task: Task | str) -> tuple[tuple[int, ...], ...]:
    """Token ids of each label word tokenised on its own (no special tokens).

    For BPE tokenizers with a leading-space convention (GPT-2, OPT, the offline
    tokenizer) these equal the in-context tokens that `encode_classification` uses.
    Raises `ValueError` if a label word gives no token or two label words give the
    same tokens.
    """
    task = get_task(task)
    out = tuple(tuple(_ids(tokenizer, w, False)) for w in task.label_words)
    for w, ids in zip(task.label_words, out, strict=False):
        if not ids:
            raise ValueError(f"label word {w!r} of task {task.name!r} tokenises to no tokens")
    if len(set(out)) != len(out):
        raise ValueError(f"label words {task.label_words!r} of task {task.name!r} tokenise identically: {out}")
    return out


def encode_classification(
    tokenizer: _Tokenizer,
    examples: Iterable[Example],
    task: Task | str,
    max_length: int = 256,
) -> list[EncodedLMExample]:
    """Tokenise examples for causal-LM classification.

    For each example: ``prompt_ids = prefix + tok(prompt)`` (``prefix`` = the special
    tokens the tokenizer puts in front, e.g. OPT's BOS) and, per class ``k``,
    ``option_ids[k]`` = the tokens that ``label_words[k]`` adds after the prompt:
    ``tok(prompt + word)`` minus the leading ``tok(prompt)`` when the latter is a
    prefix of the former (the usual case), else ``tok(word)`` on its own.

    Truncation: ``len(prompt_ids) + max_k len(option_ids[k]) <= max_length``; longer
    prompts lose tokens on the *left* (after the special prefix), so the label word
    and the template's tail are kept.
    """
    task = get_task(task)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an integer >= 2, got {max_length!r}")
    prefix = _special_prefix(tokenizer)
    standalone = label_token_ids(tokenizer, task)
    out: list[EncodedLMExample] = []
    for ex in examples:
        prompt = task.prompt(ex)
        body = _ids(tokenizer, prompt, False)
        options: list[tuple[int, ...]] = []
        for k, word in enumerate(task.label_words):
            joint = _ids(tokenizer, prompt + word, False)
            if len(joint) > len(body) and joint[: len(body)] == body:
                options.append(tuple(joint[len(body) :]))
            else:
                options.append(standalone[k])
        if len(set(options)) != len(options):
            raise ValueError(
                f"example {ex.source or prompt[:40]!r}: label words {task.label_words!r} tokenise identically"
            )
        budget = max_length - len(prefix) - max(len(o) for o in options)
        if budget < 1:
            raise ValueError(
                f"max_length={max_length} leaves no room for the prompt: {len(prefix)} special prefix token(s) "
                f"and label words of up to {max(len(o) for o in options)} token(s)"
            )
        dropped = max(0, len(body) - budget)
        kept = body[dropped:]
        out.append(
            EncodedLMExample(
                prompt_ids=tuple(prefix + kept), option_ids=tuple(options), label=ex.label, truncated=dropped
            )
        )
    return out


@dataclass(frozen=True)
class EncodedSeqExample:
    """A tokenised example for an encoder with a classification head."""

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None
    label: int


def encode_sequence_classification(
    tokenizer: _Tokenizer,
    examples: Iterable[Example],
    task: Task | str,
    max_length: int = 128,
    use_template: bool = False,
) -> list[EncodedSeqExample]:
    """Tokenise for a sequence-classification model (BERT family).

    The raw field(s) are encoded as a single text or a text pair with the
    tokenizer's special tokens (``[CLS] a [SEP] b [SEP]``) and ``longest_first``
    truncation to ``max_length``; ``use_template=True`` encodes the task prompt
    instead (one text).
    """
    task = get_task(task)
    out: list[EncodedSeqExample] = []
    for ex in examples:
        if use_template:
            enc = tokenizer(task.prompt(ex), truncation=True, max_length=max_length)
        else:
            vals = [t.strip() if task.strip_inputs else t for t in ex.texts]
            if len(vals) == 1:
                enc = tokenizer(vals[0], truncation=True, max_length=max_length)
            elif len(vals) == 2:
                enc = tokenizer(vals[0], vals[1], truncation=True, max_length=max_length)
            else:
                raise ValueError(f"task {task.name!r} has {len(vals)} text fields; encoders take 1 or 2")
        tt = enc.get("token_type_ids") if hasattr(enc, "get") else None
        out.append(
            EncodedSeqExample(
                input_ids=tuple(int(i) for i in enc["input_ids"]),
                token_type_ids=tuple(int(i) for i in tt) if tt is not None else None,
                label=ex.label,
            )
        )
    return out
