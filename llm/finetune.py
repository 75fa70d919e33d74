r"""Command line: fine-tune a Hugging Face model with a zotheory optimizer (or an FO baseline).

Examples::

    # MeZO protocol (1000 train / 500 dev / 1000 eval, batch 16) on OPT-1.3B, ZO-SGD, LoRA
    python -m llm.finetune --model facebook/opt-1.3b --task sst2 --data-dir data/sst2 \
        --method zo-sgd --mode lora --opt lr=1e-4 --opt eps=1e-2 --steps 20000 \
        --eval-every 1000 --dtype fp16 --device cuda --out runs/opt13-zosgd-lora

    # offline smoke run: random tiny OPT, two steps
    python -m llm.finetune --model preset:tiny --data-dir DIR --method zo-sgd --steps 2 --out runs/smoke

    # every option from a file (JSON or TOML); flags given on the command line win
    python -m llm.finetune --config run.toml --opt lr=5e-7

    # continue an interrupted run (same --out): bit-exact on the CPU
    python -m llm.finetune --config run.toml --resume

``--opt key=value`` may be repeated; values are typed against the optimizer's constructor
(``python -m llm.finetune --method NAME --list-options`` prints them).

Exit status: 0 done (or stopped at ``--stop-at``); 2 bad input, with a one-line message naming
the bad value, and nothing written; 3 the training diverged (a non-finite loss or update, or
too many skipped steps): a one-line message with the step, the method, the advice and the
last good checkpoint, from which ``--resume`` continues. Catalogue: ``docs/errors.md``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Sequence
from typing import Any

from llm.config import FinetuneConfig, accepted_options, load_config_file, merge_config, parse_key_values

__all__ = ["EXIT_DIVERGED", "EXIT_RANK_FAILURE", "build_parser", "config_from_args", "main"]

#: Exit status of a run stopped by divergence (non-finite loss/update, too many skipped steps).
EXIT_DIVERGED = 3
#: Exit status of a ``--distributed`` run whose loss all-reduce failed: another rank died, raised or hung.
EXIT_RANK_FAILURE = 4


def _int_or_none(text: str) -> int | None:
    if text.lower() in ("none", "all"):
        return None
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m llm.finetune`` parser; every flag defaults to absent, so only given flags override."""
    p = argparse.ArgumentParser(
        prog="python -m llm.finetune",
        description="Fine-tune a Hugging Face model with a zotheory zeroth-order optimizer (or fo-sgd / fo-adam).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1] if __doc__ else None,
        argument_default=argparse.SUPPRESS,  # only flags actually given override the config
    )
    d = FinetuneConfig()
    g = p.add_argument_group("model and data")
    g.add_argument("--config", help="JSON or TOML file with config keys (the long flag names with '_')")
    g.add_argument(
        "--model",
        help="HF name or local path, preset:NAME (random weights: tiny, opt-125m, opt-1.3b, ...), "
        f"minilm (prototype head), or minilm-linear (random head) [default {d.model}]",
    )
    g.add_argument("--task", help=f"task name [default {d.task}]")
    g.add_argument(
        "--data-dir",
        dest="data_dir",
        help="directory with train.tsv / dev.tsv (or .csv/.jsonl); omit to use the local `datasets` cache",
    )
    g.add_argument(
        "--allow-download",
        dest="allow_download",
        action="store_true",
        help="without --data-dir, let `datasets` download the task (default: offline)",
    )
    g.add_argument(
        "--eval-from",
        dest="eval_from",
        choices=("train", "dev"),
        help=f"draw eval examples from the training pool (MeZO) or the dev file [default {d.eval_from}]",
    )
    g.add_argument("--num-train", dest="num_train", type=int, help=f"[default {d.num_train}]")
    g.add_argument("--num-dev", dest="num_dev", type=int, help=f"[default {d.num_dev}]")
    g.add_argument(
        "--num-eval", dest="num_eval", type=_int_or_none, help=f"'all' = the whole eval pool [default {d.num_eval}]"
    )
    g.add_argument(
        "--data-seed", dest="data_seed", type=int, help=f"sampling seed (train_set_seed) [default {d.data_seed}]"
    )
    g.add_argument("--max-length", dest="max_length", type=int, help=f"tokens per example [default {d.max_length}]")
    g.add_argument(
        "--label-sentence",
        dest="label_sentences",
        action="append",
        metavar="TEXT",
        help="minilm prototype head: one label sentence per class, in label order, repeated "
        "[default: the task's, SST-2 'It was terrible.' / 'It was great.']",
    )
    g.add_argument("--pooling", choices=("mean", "cls"), help=f"minilm prototype head pooling [default {d.pooling}]")
    g.add_argument(
        "--head-scale",
        dest="head_scale",
        type=float,
        help=f"minilm prototype head: logits = scale x cosine [default {d.head_scale:g}]",
    )
    g = p.add_argument_group("method")
    g.add_argument("--method", help=f"optimizer name from the registry, or fo-sgd / fo-adam [default {d.method}]")
    g.add_argument("--mode", choices=("ft", "lora"), help=f"[default {d.mode}]")
    g.add_argument("--lora-r", dest="lora_r", type=int, help=f"[default {d.lora_r}]")
    g.add_argument("--lora-alpha", dest="lora_alpha", type=int, help=f"[default {d.lora_alpha}]")
    g.add_argument("--lr", type=float, help="learning rate (shortcut for --opt lr=...)")
    g.add_argument(
        "--opt",
        action="append",
        metavar="KEY=VALUE",
        help="optimizer option, repeatable (e.g. --opt eps=1e-3 --opt momentum=0.9)",
    )
    g.add_argument("--policy", help="direction policy: ldsd, gv, greedy, carried-best")
    g.add_argument(
        "--policy-opt", dest="policy_opt", action="append", metavar="KEY=VALUE", help="policy option, repeatable"
    )
    g.add_argument(
        "--seed", type=int, help=f"master seed: directions, presets' weights, heads, batch order [default {d.seed}]"
    )
    g.add_argument("--list-methods", action="store_true", help="print the available methods and exit")
    g.add_argument("--list-options", action="store_true", help="print the options of --method (and --policy) and exit")
    g = p.add_argument_group("loop")
    g.add_argument("--steps", type=int, help=f"[default {d.steps}]")
    g.add_argument("--batch-size", dest="batch_size", type=int, help=f"[default {d.batch_size}]")
    g.add_argument(
        "--eval-every", dest="eval_every", type=int, help=f"0: only at the start and the end [default {d.eval_every}]"
    )
    g.add_argument("--eval-batch-size", dest="eval_batch_size", type=int, help=f"[default {d.eval_batch_size}]")
    g.add_argument(
        "--no-eval-at-start", dest="eval_at_start", action="store_false", help="skip the step-0 dev evaluation"
    )
    g.add_argument(
        "--save-every",
        dest="save_every",
        type=int,
        help=f"also write the resume checkpoint every N steps [default {d.save_every}]",
    )
    g.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), help=f"[default {d.dtype}]")
    g.add_argument("--device", help=f"cpu, cuda, cuda:1, ... [default {d.device}]")
    g.add_argument("--threads", type=int, help="torch.set_num_threads (0: torch's default)")
    g.add_argument("--out", help="output directory (config.json, metrics.jsonl, last.pt, best.pt, results.json)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    g.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel ZO under torchrun: scalar all-reduce of the loss (llm.distributed)",
    )
    g.add_argument(
        "--dist-timeout",
        dest="dist_timeout",
        type=float,
        help="--distributed: seconds a rank waits for the others in the loss all-reduce before it stops with an "
        f"error naming the step and the rank [default {d.dist_timeout:g}]",
    )
    g.add_argument(
        "--max-forward-passes",
        dest="max_forward_passes",
        type=int,
        help="training budget in forward passes (FO step = 3): stop before a step that would exceed it",
    )
    g.add_argument(
        "--stop-at", dest="stop_at", type=int, help="save the resume state after this step and exit (time-sliced jobs)"
    )
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no tqdm bar")
    g.add_argument(
        "--max-consecutive-skips",
        dest="max_consecutive_skips",
        type=int,
        help="stop after this many consecutive skipped steps (--opt on_nonfinite=skip) "
        f"[default {d.max_consecutive_skips}]",
    )
    g.add_argument(
        "--max-skips",
        dest="max_skips",
        type=_int_or_none,
        help="stop after more skipped steps than this in total [default: 10%% of --steps]",
    )
    return p


_CLI_ONLY = ("config", "resume", "stop_at", "distributed", "list_methods", "list_options")


def config_from_args(ns: argparse.Namespace) -> FinetuneConfig:
    """Defaults <- config file <- flags given on the command line."""
    given = vars(ns).copy()
    layers: list[dict[str, Any]] = []
    if "config" in given:
        layers.append(load_config_file(given["config"]))
    flags = {k: v for k, v in given.items() if k not in _CLI_ONLY}
    if "opt" in flags:
        flags["opt"] = parse_key_values(flags["opt"], flag="--opt")
    if "policy_opt" in flags:
        flags["policy_opt"] = parse_key_values(flags["policy_opt"], flag="--policy-opt")
    layers.append(flags)
    return merge_config(*layers, source="command line")


def _describe_options(options: dict[str, inspect.Parameter], title: str) -> str:
    lines = [title]
    for name, prm in options.items():
        if name in ("seed", "policy"):
            continue
        default = "required" if prm.default is inspect.Parameter.empty else repr(prm.default)
        lines.append(f"  {name} = {default}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: parse, check and run one fine-tuning job; the exit status (module docstring)."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    # Imported after parsing: --help and a bad flag answer without loading torch (llm.train and llm.distributed do).
    from llm.distributed import RankFailure
    from llm.train import TrainingDiverged, available_methods, method_options, resolve_method, resolve_policy, train

    try:
        if getattr(ns, "list_methods", False):
            print("\n".join(available_methods()))
            return 0
        cfg = config_from_args(ns)
        if getattr(ns, "list_options", False):
            spec = resolve_method(cfg.method)
            print(_describe_options(method_options(spec), f"options of {spec.name} ({spec.kind}):"))
            if cfg.policy:
                print(
                    _describe_options(accepted_options(resolve_policy(cfg.policy)), f"options of policy {cfg.policy}:")
                )
            return 0
        stop_at = getattr(ns, "stop_at", None)
        if stop_at is not None and stop_at < 1:
            raise ValueError(f"--stop-at must be >= 1, got {stop_at}")
        results = train(
            cfg, resume=getattr(ns, "resume", False), stop_at=stop_at, distributed=getattr(ns, "distributed", False)
        )
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except RankFailure as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_RANK_FAILURE
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if "stopped_at" in results:
        print(f"stopped after step {results['stopped_at']}; resume with --resume --out {cfg.out}", file=sys.stderr)
        return 0
    summary = {
        k: results[k]
        for k in (
            "method",
            "steps",
            "forward_passes",
            "eval_forward_passes",
            "dev_accuracy_step0",
            "best_dev_accuracy",
            "best_step",
            "eval_accuracy",
            "wall_time_s",
            "peak_memory_bytes",
        )
    }
    if "data_parallel" in results:
        summary["data_parallel"] = results["data_parallel"]
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
