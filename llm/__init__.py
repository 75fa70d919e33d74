"""zotheory's LLM path: the same optimizers on Hugging Face models.

Submodules (imported lazily, so ``import llm`` does not pull in transformers):

- `llm.data`      tasks as prompts + label words, loaders, MeZO sampling, tokenisation,
                  collation, resumable batch order (a package: tasks, readers, sampling,
                  encoding, batches)
- `llm.models`    checkpoint loading, offline OPT presets, offline tokenizer, LoRA,
                  MiniLM / BERT classifiers
- `llm.objective` loss modules and the closures the optimizers call
- `llm.step`      one optimizer step: closure over micro-batches, forward-pass accounting
- `llm.hf_trainer` `ZOTrainer`, a `transformers.Trainer` for every zotheory method
- `llm.train`     the plain loop (`llm.methods` resolves methods, `llm.run` builds a run)
- `llm.memory`    peak RSS, GPU peak and optimizer-state bytes, the device meters

Typical use (offline, tiny)::

    from llm import data, models, objective
    task = data.get_task("sst2")
    exs = data.load_examples(task, "train", "path/to/train.tsv")
    splits = data.sample_splits(exs, num_train=1000, num_dev=500, num_eval=1000, seed=0)
    tok = models.offline_tokenizer()
    model = models.prepare_model(models.build_opt_from_preset("tiny", seed=0), "lora")
    enc = data.encode_classification(tok, splits.train, task, max_length=128)
    stream = data.BatchStream(enc, data.CausalLMCollator.from_tokenizer(tok), batch_size=16, seed=0)
    obj = objective.CausalLMClassificationObjective(model)
    closure = objective.make_closure(obj, next(stream))   # optimizer.step(closure)
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = ("data", "models", "objective")

_EXPORTS = {
    # data
    "Example": "data",
    "Task": "data",
    "TASKS": "data",
    "get_task": "data",
    "make_task": "data",
    "load_examples": "data",
    "sample_splits": "data",
    "encode_classification": "data",
    "encode_sequence_classification": "data",
    "CausalLMCollator": "data",
    "SequenceClassificationCollator": "data",
    "EpochSampler": "data",
    "BatchStream": "data",
    "iter_batches": "data",
    # models
    "load_causal_lm": "models",
    "OPT_PRESETS": "models",
    "build_opt_from_preset": "models",
    "count_parameters": "models",
    "offline_tokenizer": "models",
    "apply_lora": "models",
    "prepare_model": "models",
    "trainable_parameters": "models",
    "named_trainable_parameters": "models",
    "load_minilm_classifier": "models",
    "load_sequence_classifier": "models",
    # objective
    "CausalLMClassificationObjective": "objective",
    "SequenceClassificationObjective": "objective",
    "make_closure": "objective",
    "make_backward_closure": "objective",
    "eval_closure": "objective",
    # Hugging Face Trainer
    "ZOTrainer": "hf_trainer",
}

__all__ = [*_SUBMODULES, *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
