"""Building a run: everything the loop needs (data, model, objective, optimizer, device), validated before
anything is written; the output-folder checks; the data-parallel shard of each batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llm import data as D
from llm import models
from llm.config import FinetuneConfig
from llm.distributed import shard_bounds
from llm.methods import MethodSpec, build_optimizer, check_method_options
from llm.objective import CausalLMClassificationObjective, SequenceClassificationObjective
from llm.prototype_head import (
    PrototypeClassifier,
    default_label_sentences,
    load_minilm_prototype_classifier,
    prepare_prototype_model,
)


@dataclass
class Run:
    """Everything the loop needs, built and validated before anything is written."""

    cfg: FinetuneConfig
    spec: MethodSpec
    model: nn.Module
    tokenizer: Any
    objective: nn.Module
    optimizer: torch.optim.Optimizer
    named_params: list[tuple[str, nn.Parameter]]
    stream: Any  # llm.data.BatchStream
    dev: list[Any]
    eval: list[Any]
    collate: Callable[[Sequence[Any]], Any]
    device: torch.device
    data_info: dict[str, Any] = field(default_factory=dict)
    data_parallel: DataParallel | None = None

    @property
    def num_trainable(self) -> int:
        return sum(p.numel() for _, p in self.named_params)


@dataclass
class DataParallel:
    """This process's place in a data-parallel ZO run (``--distributed``, :mod:`llm.distributed`).

    Every rank draws the same batch (same seed), keeps its contiguous shard of it
    (:func:`llm.distributed.shard_bounds`) and evaluates the closure on that shard; the closure
    all-reduces the example-weighted loss (two float64 scalars per evaluation), so every rank
    sees the full-batch loss and applies the same update. ``log`` counts the bytes sent.
    """

    rank: int
    world: int
    log: Any  # llm.distributed.CommunicationLog


def _shard_collate(collate: Callable[[Sequence[Any]], Any], rank: int, world: int) -> Callable[[Sequence[Any]], Any]:
    """Collate only this rank's contiguous shard of each batch's examples."""

    def shard(examples: Sequence[Any]) -> Any:
        start, stop = shard_bounds(len(examples), rank, world)
        return collate(list(examples)[start:stop])

    return shard


def parse_device(name: str) -> torch.device:
    """``torch.device(name)``, with a ``ValueError`` naming the device when it is unknown or absent."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} requested but MPS is not available")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r} is not supported; use cpu, cuda, cuda:N or mps")
    return device


#: Files a finished or resumable run holds; a folder with none of them (a failed start) may be re-run.
_RUN_FILES = ("last.pt", "results.json")
#: Files of a failed start that a fresh run replaces.
_START_FILES = ("best.pt", "metrics.jsonl", "last.prev.pt", "config.json")


def check_output_dir(out: str | None, resume: bool) -> None:
    """Refuse an ``out`` that is a file, a run to overwrite, or a resume without a checkpoint (writes nothing)."""
    if out is None:
        if resume:
            raise ValueError("resume needs an output directory")
        return
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ValueError(f"--out {out!r} is a file, not a directory")
    if resume and not (p / "last.pt").is_file():
        raise ValueError(f"cannot resume: {str(p / 'last.pt')!r} does not exist")
    if not resume:
        taken = [n for n in _RUN_FILES if (p / n).exists()]
        if taken:
            raise ValueError(
                f"output directory {out!r} already holds a run ({taken}); "
                "pass resume=True / --resume or choose another --out"
            )


def _load_model(cfg: FinetuneConfig, num_labels: int) -> tuple[nn.Module, Any, str]:
    """``(model, tokenizer, kind)`` with kind ``"causal"``, ``"seqcls"`` or ``"prototype"``
    (an encoder with the cosine-prototype head of :mod:`llm.prototype_head`; scored like ``seqcls``)."""
    if cfg.model.startswith("preset:"):
        name = cfg.model.removeprefix("preset:")
        preset = models.get_opt_preset(name)
        model = models.build_opt_from_preset(preset, dtype=cfg.dtype, seed=cfg.seed, device=cfg.device)
        tokenizer = models.offline_tokenizer(vocab_size=min(preset.vocab_size, 4096))
        return model, tokenizer, "causal"
    if cfg.model.lower() in ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"):
        sentences = cfg.label_sentences if cfg.label_sentences is not None else default_label_sentences(cfg.task)
        if len(sentences) != num_labels:
            raise ValueError(
                f"label_sentences has {len(sentences)} entries, task {cfg.task!r} has {num_labels} classes"
            )
        model, tokenizer = load_minilm_prototype_classifier(
            sentences, pooling=cfg.pooling, scale=cfg.head_scale, dtype=cfg.dtype, device=cfg.device
        )
        return model, tokenizer, "prototype"
    if cfg.model.lower() == "minilm-linear":
        model, tokenizer = models.load_minilm_classifier(num_labels, dtype=cfg.dtype, device=cfg.device, seed=cfg.seed)
        return model, tokenizer, "seqcls"
    model, tokenizer = models.load_causal_lm(cfg.model, dtype=cfg.dtype, device=cfg.device)
    return model, tokenizer, "causal"


def _lora_kwargs(cfg: FinetuneConfig, kind: str) -> dict[str, Any]:
    kw: dict[str, Any] = {"r": cfg.lora_r, "alpha": cfg.lora_alpha}
    if kind in ("seqcls", "prototype"):
        kw["target_modules"] = ("query", "value")
    return kw


def _by_length(encoded: list[Any]) -> list[Any]:
    """Evaluation sets sorted by length (less padding, same accuracy); stable."""

    def length(e: Any) -> int:
        return len(getattr(e, "prompt_ids", None) or e.input_ids)

    return sorted(encoded, key=length)


def build_run(cfg: FinetuneConfig, *, data_parallel: DataParallel | None = None) -> Run:
    """Validate the method and its options, load and sample the data, build model,
    objective and optimizer. Raises ``ValueError`` for bad input; writes nothing.
    ``data_parallel``: train on this rank's shard of every batch (see :class:`DataParallel`)."""
    spec, opts, policy_cls, policy_opts = check_method_options(cfg)
    if data_parallel is not None:
        if spec.kind != "zo":
            raise ValueError(f"--distributed supports zeroth-order methods only (scalar all-reduce), not {spec.name!r}")
        if cfg.batch_size < data_parallel.world:
            raise ValueError(
                f"batch_size {cfg.batch_size} is smaller than the {data_parallel.world} data-parallel ranks"
            )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = parse_device(cfg.device)

    task = D.get_task(cfg.task)
    train_pool = D.load_examples(task, "train", cfg.data_dir, allow_download=cfg.allow_download)
    eval_pool = (
        D.load_examples(task, "validation", cfg.data_dir, allow_download=cfg.allow_download)
        if cfg.eval_from == "dev"
        else None
    )
    splits = D.sample_splits(
        train_pool, cfg.num_train, cfg.num_dev, cfg.num_eval, seed=cfg.data_seed, eval_examples=eval_pool
    )
    if not splits.train:
        raise ValueError("num_train=0: nothing to train on")
    if cfg.batch_size > len(splits.train):
        raise ValueError(
            f"batch_size {cfg.batch_size} is larger than the {len(splits.train)} training examples; lower --batch-size"
        )

    model, tokenizer, kind = _load_model(cfg, task.num_labels)
    lora = _lora_kwargs(cfg, kind) if cfg.mode == "lora" else {}
    if kind == "prototype":
        if not isinstance(model, PrototypeClassifier):
            raise TypeError(f"a prototype model must be a PrototypeClassifier, got {type(model).__name__}")
        model = prepare_prototype_model(model, cfg.mode, seed=cfg.seed, **lora)
    else:
        model = models.prepare_model(model, cfg.mode, seed=cfg.seed, **lora)
    model.to(device)
    encode: Callable[[list[D.Example]], list[Any]]
    if kind == "causal":
        objective: nn.Module = CausalLMClassificationObjective(model)
        encode = lambda exs: D.encode_classification(tokenizer, exs, task, max_length=cfg.max_length)  # noqa: E731
        collate: Callable[[Sequence[Any]], Any] = D.CausalLMCollator.from_tokenizer(tokenizer)
    else:
        objective = SequenceClassificationObjective(model)
        encode = lambda exs: D.encode_sequence_classification(tokenizer, exs, task, max_length=cfg.max_length)  # noqa: E731
        collate = D.SequenceClassificationCollator.from_tokenizer(tokenizer)
    train_enc = encode(splits.train)
    train_collate = (
        collate if data_parallel is None else _shard_collate(collate, data_parallel.rank, data_parallel.world)
    )
    stream = D.BatchStream(train_enc, train_collate, cfg.batch_size, seed=cfg.seed)
    named = models.named_trainable_parameters(model)
    policy = policy_cls(**policy_opts) if policy_cls is not None else None
    optimizer = build_optimizer(spec, named, opts, seed=cfg.seed, policy=policy)
    if hasattr(optimizer, "check_radius"):
        optimizer.check_radius()  # a radius below the dtype's resolution fails now, before anything is written
    return Run(
        cfg=cfg,
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        objective=objective,
        optimizer=optimizer,
        named_params=named,
        stream=stream,
        dev=_by_length(encode(splits.dev)),
        eval=_by_length(encode(splits.eval)),
        collate=collate,
        device=device,
        data_parallel=data_parallel,
        data_info={
            "task": task.name,
            "num_train": len(splits.train),
            "num_dev": len(splits.dev),
            "num_eval": len(splits.eval),
            "eval_source": splits.eval_source,
            "data_seed": splits.seed,
            "model_kind": kind,
        },
    )
