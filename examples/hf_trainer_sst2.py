r"""SST-2 sentiment classification with the Hugging Face Trainer and a zotheory zeroth-order method.

An ordinary ``transformers`` fine-tuning script; the only zeroth-order parts are the class
(``llm.ZOTrainer`` instead of ``transformers.Trainer``) and its ``zo_method`` / ``zo_options``.

    # a real encoder and GLUE SST-2 through `datasets` (network or cache), LoRA, JAGUAR SignSGD
    python examples/hf_trainer_sst2.py --model prajjwal1/bert-tiny --method jaguar-signsgd \
        --opt eps=1e-3 --lr 1e-4 --lora --steps 2000 --batch-size 16 --grad-accum 4 --out runs/sst2-jaguar

    # offline: a tiny random BERT and the offline tokenizer, SST-2 files in a folder (train.tsv, dev.tsv)
    python examples/hf_trainer_sst2.py --model preset:tiny-bert --data-dir DIR --steps 20 --out runs/smoke

    # continue from the last checkpoint in --out (same directions as an uninterrupted run)
    python examples/hf_trainer_sst2.py ... --resume

Prints the final dev accuracy and the training forward passes as JSON and writes them to
``OUT/results.json``. Exit status 2 with a one-line message for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    """The command line of this example: model, data, zotheory method and its options, Trainer settings."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default="preset:tiny-bert", help="HF name or path of an encoder, or preset:tiny-bert (offline)"
    )
    p.add_argument("--data-dir", help="folder with train.tsv and dev.tsv (GLUE format); omit to use `datasets`")
    p.add_argument(
        "--method", default="zo-sgd", help="a zotheory registry name (zo-sgd, jaguar-signsgd, adanaged, ...)"
    )
    p.add_argument("--opt", action="append", metavar="KEY=VALUE", help="method option, repeatable (eps=1e-3)")
    p.add_argument("--policy", help="direction policy: ldsd, gv, greedy, carried-best")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (query, value) instead of every weight")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (TrainingArguments.learning_rate)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=16, help="per_device_train_batch_size")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step, all under one perturbation")
    p.add_argument("--num-train", type=int, default=1000, help="training examples (MeZO's protocol: 1000)")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--eval-steps", type=int, default=500)
    p.add_argument("--save-steps", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output_dir of the Trainer")
    p.add_argument("--resume", action="store_true", help="resume from the last checkpoint in --out")
    return p


class _Encoded:
    """A list of tokenised examples as a map-style dataset of dicts."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]


def _encode(tokenizer: Any, examples: Sequence[Any], max_length: int) -> _Encoded:
    enc = tokenizer([e.texts[0] for e in examples], truncation=True, max_length=max_length)
    return _Encoded(
        [
            {"input_ids": ids, "attention_mask": mask, "labels": e.label}
            for ids, mask, e in zip(enc["input_ids"], enc["attention_mask"], examples, strict=False)
        ]
    )


def _model_and_tokenizer(name: str, seed: int) -> tuple[Any, Any]:
    from llm import models

    if name == "preset:tiny-bert":
        return models.build_tiny_bert_classifier(2, seed=seed), models.offline_tokenizer()
    return models.load_sequence_classifier(name, 2, seed=seed)


def main(argv: Sequence[str] | None = None) -> int:
    """Fine-tune on SST-2 with ``ZOTrainer``, write ``OUT/results.json``; exit status 0, or 2 on bad input."""
    args = build_parser().parse_args(argv)
    import numpy as np
    from transformers import DataCollatorWithPadding, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    from llm import data, models
    from llm.config import parse_key_values
    from llm.distributed import close_process_group
    from llm.hf_trainer import ZOTrainer

    try:
        options = parse_key_values(args.opt)
        task = data.get_task("sst2")
        pool = data.load_examples(task, "train", args.data_dir)
        dev = data.load_examples(task, "validation", args.data_dir)
        train = data.sample_splits(pool, args.num_train, 0, 0, seed=args.seed).train
        model, tokenizer = _model_and_tokenizer(args.model, args.seed)
        if args.lora:
            model = models.apply_lora(model, target_modules=("query", "value"), seed=args.seed)
        training_args = TrainingArguments(
            output_dir=args.out,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            gradient_accumulation_steps=args.grad_accum,
            per_device_eval_batch_size=64,
            learning_rate=args.lr,
            lr_scheduler_type="constant",
            eval_strategy="steps",
            eval_steps=args.eval_steps,
            save_strategy="steps",
            save_steps=args.save_steps,
            logging_steps=max(1, min(50, args.steps // 10)),
            seed=args.seed,
            report_to="none",
            disable_tqdm=True,
            use_cpu=not _cuda(),
        )

        def accuracy(pred: Any) -> dict[str, float]:
            return {"accuracy": float((np.argmax(pred.predictions, axis=-1) == pred.label_ids).mean())}

        trainer = ZOTrainer(
            model=model,
            args=training_args,
            train_dataset=_encode(tokenizer, train, args.max_length),
            eval_dataset=_encode(tokenizer, dev, args.max_length),
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=accuracy,
            zo_method=args.method,
            zo_options=options,
            zo_policy=args.policy,
        )
        resume = get_last_checkpoint(args.out) if args.resume else None
        if args.resume and resume is None:
            raise ValueError(f"--resume: no checkpoint in {args.out!r}")
        trainer.train(resume_from_checkpoint=resume)
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    metrics = trainer.evaluate()
    count = trainer.zo_forward_count
    results = {
        "method": args.method,
        "steps": trainer.state.global_step,
        "dev_accuracy": metrics["eval_accuracy"],
        "dev_loss": metrics["eval_loss"],
        "forward_passes": count.forward_passes,
        "forward_calls": count.forward_calls,
        "num_train": len(train),
        "num_dev": len(dev),
    }
    if trainer.is_world_process_zero():
        Path(args.out, "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2))
    close_process_group()  # under torchrun: a clean exit (no-op in one process)
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    raise SystemExit(main())
