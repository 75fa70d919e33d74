"""Classification data for LLM fine-tuning, framed as language modelling.

This module turns a labelled classification dataset into what the zeroth-order
(ZO) optimizers consume: a fixed, collated minibatch that an objective
(`llm.objective`) maps to a scalar loss.

Pipeline (each step a small function or a thin class)::

    Task  --load_examples-->  [Example]  --sample_splits-->  SampledSplits
          --encode_classification-->  [EncodedLMExample]
          --CausalLMCollator / BatchStream-->  CausalLMBatch  -> objective

Conventions
-----------
*Prompting.*  As in MeZO (Malladi et al., NeurIPS 2023, App. A: "MeZO only works
when using prompts") and ZO-Bench (`--train_as_classification`), a task is a prompt
template plus one *label word* per class; the candidate text for class ``k`` is
``prompt + label_words[k]``.  SST-2: ``"<sentence> It was"`` + ``" terrible"``/
``" great"``.  Label words carry their leading space.

*Input text.*  Field values are stripped of surrounding whitespace before they are
put in the template (``Task.strip_inputs``; GLUE SST-2 sentences end with a space).

*Sampling.*  `sample_splits` implements the MeZO / ZO-Bench protocol
(``num_train=1000, num_dev=500, num_eval=1000, train_set_seed=0``; see
`docs/theory.md` §6.2) with a seeded
`numpy.random.Generator`; no global RNG is touched.

*Tokenisation.*  Prompts are *left*-truncated (the start of a long sentence is
dropped, the template's tail and the label word are kept); special tokens that
the tokenizer puts in front (OPT's ``</s>`` BOS) are kept.  Label-word tokens are
the tokens that the label word adds after the prompt (tokenised in context, so
BPE and SentencePiece word-boundary rules are respected).  A label word may span
several tokens: the objective scores the *full* label-word token sequence
(see `llm.objective`).

*Batches.*  Causal-LM batches are *left*-padded, with explicit ``position_ids``
(``cumsum(attention_mask) - 1``) so that the last position of every row is a real
token and a model can be asked for the last ``T`` logits only
(``logits_to_keep=T``).  Two layouts give identical scores:

- ``"shared"`` (every label word is one token): one row per example holding the
  prompt; the scores of all candidates are read from the next-token distribution
  at the last position.  ``K`` times cheaper than one row per candidate.
- ``"per_option"`` (the general case): one row per (example, candidate) holding
  ``prompt + label_word[:-1]``; the label-word tokens are predicted by the last
  ``len(label_word)`` positions.

*Resumable order.*  `EpochSampler` draws epoch ``e``'s permutation from
``numpy.random.default_rng([seed, e])``; its state is ``(epoch, position)``, so a
run restored from `EpochSampler.state_dict` sees exactly the batches it would
have seen.
"""

from __future__ import annotations

import contextlib
import csv
import json
import string
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

__all__ = [
    "Example",
    "Task",
    "SST2",
    "RTE",
    "TASKS",
    "get_task",
    "make_task",
    "load_examples",
    "SampledSplits",
    "sample_splits",
    "EncodedLMExample",
    "EncodedSeqExample",
    "label_token_ids",
    "encode_classification",
    "encode_sequence_classification",
    "CausalLMBatch",
    "SequenceClassificationBatch",
    "CausalLMCollator",
    "SequenceClassificationCollator",
    "collate_causal_lm",
    "collate_sequence_classification",
    "EpochSampler",
    "BatchStream",
    "iter_batches",
]

# --------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------

#: Canonical split names and the names accepted for them.
_SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "validation": ("validation", "dev", "valid", "val"),
    "test": ("test",),
}


def _canonical_split(split: str) -> str:
    if not isinstance(split, str):
        raise TypeError(f"split must be a str, got {type(split).__name__} {split!r}")
    for canon, names in _SPLIT_ALIASES.items():
        if split.lower() in names:
            return canon
    raise ValueError(
        f"unknown split {split!r}; expected one of {sorted(n for names in _SPLIT_ALIASES.values() for n in names)}"
    )


@dataclass(frozen=True)
class Example:
    """One labelled example.

    ``texts`` holds the input fields in the order of `Task.text_columns`
    (one for single-sentence tasks, two for sentence-pair tasks); ``label`` is a
    class index in ``range(task.num_labels)``; ``source`` names where it came from
    (``"path:line"`` or ``"dataset[split] row i"``), for error messages and provenance.
    """

    texts: tuple[str, ...]
    label: int
    source: str = ""


def _template_fields(template: str) -> list[str]:
    """Names of the ``{placeholders}`` of a `str.format` template, in order."""
    names: list[str] = []
    for _, name, spec, conv in string.Formatter().parse(template):
        if name is None:
            continue
        if name == "" or not name.isidentifier():
            raise ValueError(
                f"template {template!r} has placeholder {{{name}}}; placeholders must be "
                "named after the task's text columns, e.g. '{sentence} It was'"
            )
        if spec or conv:
            raise ValueError(f"template {template!r}: placeholder {{{name}}} must not carry a format spec")
        names.append(name)
    return names


@dataclass(frozen=True)
class Task:
    """A classification task framed as language modelling.

    Attributes:
    ----------
    name:
        Short name (``"sst2"``).
    text_columns:
        Canonical names of the input fields, in order; the template refers to them
        as ``{name}`` placeholders.
    template:
        `str.format` template of the prompt, e.g. ``"{sentence} It was"``.
    label_words:
        One verbalizer per class, index = label id; the candidate for class ``k`` is
        ``prompt + label_words[k]`` (so label words normally start with a space).
    label_column:
        Name of the label column in files and datasets.
    column_aliases:
        Per text column, other accepted column names (the GLUE SST-2 TSV here calls
        its text column ``text``, the ``datasets`` copy ``sentence``).  Empty or one
        tuple per text column.
    label_names:
        Optional class names (``"negative"``, ``"positive"``) accepted in place of the
        integer label in files.
    hf_datasets:
        ``datasets.load_dataset`` argument tuples tried in order when no path is given,
        e.g. ``(("nyu-mll/glue", "sst2"), ("glue", "sst2"))``.
    strip_inputs:
        Strip surrounding whitespace of each field before formatting.
    """

    name: str
    text_columns: tuple[str, ...]
    template: str
    label_words: tuple[str, ...]
    label_column: str = "label"
    column_aliases: tuple[tuple[str, ...], ...] = ()
    label_names: tuple[str, ...] = ()
    hf_datasets: tuple[tuple[str, ...], ...] = ()
    strip_inputs: bool = True

    def __post_init__(self) -> None:
        if not self.text_columns:
            raise ValueError(f"task {self.name!r}: text_columns must not be empty")
        if len(set(self.text_columns)) != len(self.text_columns):
            raise ValueError(f"task {self.name!r}: duplicate text_columns {self.text_columns!r}")
        used = _template_fields(self.template)
        unknown = [n for n in used if n not in self.text_columns]
        if unknown:
            raise ValueError(
                f"task {self.name!r}: template {self.template!r} uses {unknown!r}, "
                f"not among text_columns {self.text_columns!r}"
            )
        unused = [c for c in self.text_columns if c not in used]
        if unused:
            raise ValueError(f"task {self.name!r}: text columns {unused!r} do not appear in template {self.template!r}")
        if len(self.label_words) < 2:
            raise ValueError(f"task {self.name!r}: need at least 2 label words, got {self.label_words!r}")
        if any(not isinstance(w, str) or w.strip() == "" for w in self.label_words):
            raise ValueError(f"task {self.name!r}: label words must be non-blank strings, got {self.label_words!r}")
        if len(set(self.label_words)) != len(self.label_words):
            raise ValueError(f"task {self.name!r}: label words must be distinct, got {self.label_words!r}")
        if self.label_names and len(self.label_names) != len(self.label_words):
            raise ValueError(
                f"task {self.name!r}: {len(self.label_names)} label_names {self.label_names!r} "
                f"for {len(self.label_words)} label words"
            )
        if self.column_aliases and len(self.column_aliases) != len(self.text_columns):
            raise ValueError(
                f"task {self.name!r}: column_aliases needs one tuple per text column "
                f"({len(self.text_columns)}), got {self.column_aliases!r}"
            )

    # -- structure ---------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return len(self.label_words)

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    def accepted_names(self, i: int) -> tuple[str, ...]:
        """Column names accepted for text column ``i`` (canonical first)."""
        aliases = self.column_aliases[i] if self.column_aliases else ()
        return (self.text_columns[i], *aliases)

    # -- text --------------------------------------------------------------------------
    def _values(self, example: Example) -> dict[str, str]:
        if len(example.texts) != len(self.text_columns):
            raise ValueError(
                f"task {self.name!r} expects {len(self.text_columns)} text field(s) "
                f"{self.text_columns!r}, example {example.source or ''} has {len(example.texts)}"
            )
        vals = [t.strip() if self.strip_inputs else t for t in example.texts]
        return dict(zip(self.text_columns, vals, strict=False))

    def prompt(self, example: Example) -> str:
        """The prompt (context) text, without label word."""
        return self.template.format(**self._values(example))

    def candidates(self, example: Example) -> tuple[str, ...]:
        """``prompt + label_word`` for every class, in label order."""
        p = self.prompt(example)
        return tuple(p + w for w in self.label_words)

    def parse_label(self, raw: Any) -> int:
        """Label id from a raw file / dataset value (int, integer string, or label name).

        Raises `ValueError` (without location; loaders add it) for a non-integer value
        or one outside ``range(num_labels)``.
        """
        if isinstance(raw, bool):
            raise ValueError(f"label {raw!r} is a boolean, expected an integer in {list(range(self.num_labels))}")
        if isinstance(raw, (int, np.integer)):
            value = int(raw)
        elif isinstance(raw, str):
            s = raw.strip()
            if s in self.label_names:
                return self.label_names.index(s)
            try:
                value = int(s)
            except ValueError:
                names = f" or one of {list(self.label_names)}" if self.label_names else ""
                raise ValueError(f"label {raw!r} is not an integer{names}") from None
        else:
            raise ValueError(f"label {raw!r} ({type(raw).__name__}) is not an integer")
        if not 0 <= value < self.num_labels:
            raise ValueError(
                f"label {value} outside the label set {list(range(self.num_labels))} of task {self.name!r}"
            )
        return value

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (for run records)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


SST2 = Task(
    name="sst2",
    text_columns=("sentence",),
    template="{sentence} It was",
    label_words=(" terrible", " great"),
    column_aliases=(("text",),),
    label_names=("negative", "positive"),
    hf_datasets=(("nyu-mll/glue", "sst2"), ("glue", "sst2")),
)
"""GLUE SST-2 with the MeZO prompt "<S> It was terrible/great" (MeZO paper, App. A)."""

RTE = Task(
    name="rte",
    text_columns=("premise", "hypothesis"),
    template='{premise}\nDoes this mean that "{hypothesis}" is true? Yes or No?',
    label_words=(" Yes", " No"),
    column_aliases=(("sentence1",), ("sentence2",)),
    label_names=("entailment", "not_entailment"),
    hf_datasets=(("nyu-mll/glue", "rte"), ("glue", "rte")),
)
"""GLUE RTE (label 0 = entailment -> " Yes", 1 = not_entailment -> " No")."""

TASKS: dict[str, Task] = {t.name: t for t in (SST2, RTE)}


def get_task(task: Task | str) -> Task:
    """A registered task by name (``"sst2"``, ``"rte"``), or the task itself."""
    if isinstance(task, Task):
        return task
    if not isinstance(task, str):
        raise TypeError(f"task must be a Task or a name, got {type(task).__name__} {task!r}")
    key = task.lower().replace("-", "")
    if key not in TASKS:
        raise ValueError(f"unknown task {task!r}; registered: {sorted(TASKS)} (or build one with make_task)")
    return TASKS[key]


def make_task(
    name: str,
    template: str,
    label_words: Sequence[str],
    text_columns: Sequence[str] | None = None,
    *,
    label_column: str = "label",
    column_aliases: Mapping[str, Sequence[str]] | None = None,
    label_names: Sequence[str] = (),
    hf_dataset: Sequence[str] | None = None,
    strip_inputs: bool = True,
) -> Task:
    """A `Task` for any single-sentence or sentence-pair classification dataset.

    ``text_columns`` defaults to the template's placeholders in order of appearance.
    Example (BoolQ-like pair task from a JSONL file with keys ``passage``, ``question``
    and ``answer``)::

        make_task("boolq", "{passage}\\nQuestion: {question}?\\nAnswer:", (" No", " Yes"),
                  label_column="answer")
    """
    if text_columns is None:
        seen: list[str] = []
        for n in _template_fields(template):
            if n not in seen:
                seen.append(n)
        text_columns = seen
    cols = tuple(text_columns)
    aliases: tuple[tuple[str, ...], ...] = ()
    if column_aliases:
        bad = [k for k in column_aliases if k not in cols]
        if bad:
            raise ValueError(f"column_aliases keys {bad!r} are not text columns {cols!r}")
        aliases = tuple(tuple(column_aliases.get(c, ())) for c in cols)
    return Task(
        name=name,
        text_columns=cols,
        template=template,
        label_words=tuple(label_words),
        label_column=label_column,
        column_aliases=aliases,
        label_names=tuple(label_names),
        hf_datasets=(tuple(hf_dataset),) if hf_dataset else (),
        strip_inputs=strip_inputs,
    )


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------

_FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


def _resolve_columns(
    task: Task, available: Sequence[str], columns: Mapping[str, str] | None, where: str
) -> tuple[list[str], str]:
    """Actual column names (text columns in task order, label column) in ``available``."""
    columns = dict(columns or {})
    unknown = [k for k in columns if k not in (*task.text_columns, task.label_column)]
    if unknown:
        raise ValueError(
            f"columns override keys {unknown!r} are not columns of task {task.name!r} "
            f"({[*task.text_columns, task.label_column]})"
        )
    avail = list(available)
    chosen: list[str] = []
    missing: list[str] = []
    for i, canon in enumerate(task.text_columns):
        names = (columns[canon],) if canon in columns else task.accepted_names(i)
        hit = next((n for n in names if n in avail), None)
        if hit is None:
            missing.append(" or ".join(repr(n) for n in names))
        else:
            chosen.append(hit)
    label_col = columns.get(task.label_column, task.label_column)
    if label_col not in avail:
        missing.append(repr(label_col))
    if missing:
        raise ValueError(f"{where}: missing column(s) {', '.join(missing)}; found columns {avail!r}")
    return chosen, label_col


def _find_split_file(directory: Path, split: str) -> Path:
    canon = _canonical_split(split)
    tried: list[str] = []
    for stem in _SPLIT_ALIASES[canon]:
        for ext in (".tsv", ".csv", ".jsonl", ".json"):
            p = directory / f"{stem}{ext}"
            tried.append(p.name)
            if p.is_file():
                return p
    raise ValueError(f"no file for split {split!r} in directory {str(directory)!r}; tried {tried}")


def _row_to_example(
    task: Task, row: Mapping[str, Any], text_cols: Sequence[str], label_col: str, where: str
) -> Example:
    texts = []
    for c in text_cols:
        v = row[c]
        if not isinstance(v, str):
            raise ValueError(f"{where}: column {c!r} must be a string, got {type(v).__name__} {v!r}")
        texts.append(v)
    try:
        label = task.parse_label(row[label_col])
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return Example(texts=tuple(texts), label=label, source=where)


def _read_tsv(task: Task, path: Path, columns: Mapping[str, str] | None) -> list[Example]:
    """GLUE-style TSV: header line, tab-separated fields, no quoting (GLUE text has quotes)."""
    out: list[Example] = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        header_line = f.readline()
        if header_line == "":
            raise ValueError(f"{path}:1: empty file, expected a header line")
        header = header_line.rstrip("\r\n").split("\t")
        if len(set(header)) != len(header):
            raise ValueError(f"{path}:1: duplicate column names in header {header!r}")
        text_cols, label_col = _resolve_columns(task, header, columns, f"{path}:1")
        for lineno, line in enumerate(f, start=2):
            line = line.rstrip("\r\n")
            if line.strip() == "":
                continue
            parts = line.split("\t")
            if len(parts) != len(header):
                raise ValueError(
                    f"{path}:{lineno}: expected {len(header)} tab-separated columns {header!r}, got {len(parts)}"
                )
            out.append(
                _row_to_example(task, dict(zip(header, parts, strict=False)), text_cols, label_col, f"{path}:{lineno}")
            )
    return out


def _read_csv(task: Task, path: Path, columns: Mapping[str, str] | None) -> list[Example]:
    """CSV with a header row and standard (RFC 4180) quoting."""
    out: list[Example] = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}:1: empty file, expected a header line") from None
        except csv.Error as e:
            raise ValueError(f"{path}:1: malformed CSV ({e})") from None
        if len(set(header)) != len(header):
            raise ValueError(f"{path}:1: duplicate column names in header {header!r}")
        text_cols, label_col = _resolve_columns(task, header, columns, f"{path}:1")
        prev_end = reader.line_num
        while True:
            start = prev_end + 1
            try:
                parts = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                raise ValueError(f"{path}:{start}: malformed CSV ({e})") from None
            prev_end = reader.line_num
            if not parts:  # blank line
                continue
            if len(parts) != len(header):
                raise ValueError(
                    f"{path}:{start}: expected {len(header)} comma-separated columns {header!r}, got {len(parts)}"
                )
            out.append(
                _row_to_example(task, dict(zip(header, parts, strict=False)), text_cols, label_col, f"{path}:{start}")
            )
    return out


def _read_jsonl(task: Task, path: Path, columns: Mapping[str, str] | None) -> list[Example]:
    """JSON Lines: one object per non-blank line."""
    out: list[Example] = []
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip() == "":
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
            # Columns are resolved per line: JSONL has no header, every line must carry them.
            text_cols, label_col = _resolve_columns(task, list(row), columns, where)
            out.append(_row_to_example(task, row, text_cols, label_col, where))
    return out


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """Put ``datasets`` and ``huggingface_hub`` in offline mode (local cache only) for the block."""
    import datasets

    if not offline:
        yield
        return
    targets: list[tuple[Any, str]] = [(datasets.config, "HF_HUB_OFFLINE"), (datasets.config, "HF_DATASETS_OFFLINE")]
    try:
        import huggingface_hub.constants as hub_constants

        targets.append((hub_constants, "HF_HUB_OFFLINE"))
    except ImportError:  # pragma: no cover - datasets depends on huggingface_hub
        pass
    saved = [(obj, name, getattr(obj, name)) for obj, name in targets if hasattr(obj, name)]
    for obj, name, _ in saved:
        setattr(obj, name, True)
    try:
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)


def _load_hf(
    task: Task,
    split: str,
    hf_dataset: Sequence[str] | None,
    columns: Mapping[str, str] | None,
    allow_download: bool = False,
) -> list[Example]:
    import datasets  # imported here so that monkeypatching datasets.load_dataset works

    canon = _canonical_split(split)
    candidates = [tuple(hf_dataset)] if hf_dataset else list(task.hf_datasets)
    if not candidates:
        raise ValueError(f"task {task.name!r} names no datasets source; pass path= (a local TSV/CSV/JSONL file)")
    errors: list[str] = []
    ds = None
    used: tuple[str, ...] = ()
    for args in candidates:
        try:
            with _hub_offline(not allow_download):
                ds = datasets.load_dataset(*args, split=canon)
            used = tuple(args)
            break
        except Exception as e:  # noqa: BLE001 - report every attempt below
            errors.append(f"load_dataset{tuple(args)!r}: {type(e).__name__}: {str(e)[:200]}")
    if ds is None:
        how = (
            "offline: it is not in the local datasets cache. Pass --data-dir DIR (path=) with train.tsv and dev.tsv "
            "(GLUE format: a header line, text<TAB>label), or --allow-download (allow_download=True) to let datasets fetch it"
            if not allow_download
            else "the download failed (no network?). Pass --data-dir DIR (path=) with train.tsv and dev.tsv instead"
        )
        raise ValueError(
            f"could not load task {task.name!r} split {canon!r} through datasets, {how}. Attempts: "
            + " | ".join(errors)
        )
    name = "/".join(used)
    col_names = list(getattr(ds, "column_names", None) or [])
    out: list[Example] = []
    text_cols: list[str] | None = None
    label_col = task.label_column
    if col_names:
        text_cols, label_col = _resolve_columns(task, col_names, columns, f"{name}[{canon}]")
    for i, row in enumerate(ds, start=1):
        where = f"{name}[{canon}] row {i}"
        if text_cols is None:
            tc, lc = _resolve_columns(task, list(row), columns, where)
        else:
            tc, lc = text_cols, label_col
        out.append(_row_to_example(task, row, tc, lc, where))
    return out


def load_examples(
    task: Task | str,
    split: str = "train",
    path: str | Path | None = None,
    *,
    file_format: str | None = None,
    columns: Mapping[str, str] | None = None,
    hf_dataset: Sequence[str] | None = None,
    allow_download: bool = False,
) -> list[Example]:
    """Load labelled examples of ``task``.

    Parameters
    ----------
    path:
        A file (``.tsv`` GLUE format: header line, tab-separated, no quoting; ``.csv``
        with a header and standard quoting; ``.jsonl``/``.json`` JSON Lines), or a
        directory holding ``<split>.<ext>`` (``dev`` and ``validation`` are the same
        split).  ``None``: load through ``datasets.load_dataset`` using the task's
        ``hf_datasets`` (e.g. ``("nyu-mll/glue", "sst2")``), or ``hf_dataset``, from the
        local cache only unless ``allow_download`` (a ``ValueError`` says what to do).
    split:
        ``"train"``, ``"validation"``/``"dev"`` or ``"test"``; with a file path it is
        only used to pick a file from a directory.  The GLUE test splits carry label
        -1 and are rejected as outside the label set.
    file_format:
        ``"tsv"``, ``"csv"`` or ``"jsonl"`` when the suffix does not tell.
    columns:
        Override of column names: ``{canonical_column: name_in_file}``.

    Raises:
    ------
    ValueError
        For a malformed file, naming the file and the 1-based line number: wrong
        column count, missing header columns, non-integer label, label outside the
        label set, invalid JSON.
    """
    task = get_task(task)
    _canonical_split(split)
    if path is None:
        return _load_hf(task, split, hf_dataset, columns, allow_download)
    p = Path(path)
    if p.is_dir():
        p = _find_split_file(p, split)
    if not p.is_file():
        raise ValueError(f"data file {str(p)!r} does not exist")
    fmt = file_format or _FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the format of {str(p)!r} from its suffix; pass file_format='tsv'|'csv'|'jsonl'")
    readers: dict[str, Callable[[Task, Path, Mapping[str, str] | None], list[Example]]] = {
        "tsv": _read_tsv,
        "csv": _read_csv,
        "jsonl": _read_jsonl,
    }
    if fmt not in readers:
        raise ValueError(f"unknown file_format {fmt!r}; expected one of {sorted(readers)}")
    return readers[fmt](task, p, columns)


# --------------------------------------------------------------------------------------
# Sampling protocol (MeZO / ZO-Bench)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampledSplits:
    """Train / dev / eval examples and the indices they were drawn at.

    ``*_indices`` index the pool they came from: train and dev always index the
    training pool; eval indexes ``eval_examples`` when it was given
    (``eval_source == "eval_pool"``), else the training pool (``"train_pool"``).
    """

    train: list[Example]
    dev: list[Example]
    eval: list[Example]
    train_indices: tuple[int, ...]
    dev_indices: tuple[int, ...]
    eval_indices: tuple[int, ...]
    eval_source: str
    seed: int


def _check_count(name: str, value: int | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def sample_splits(
    examples: Sequence[Example],
    num_train: int = 1000,
    num_dev: int = 500,
    num_eval: int | None = 1000,
    seed: int = 0,
    eval_examples: Sequence[Example] | None = None,
) -> SampledSplits:
    """The MeZO / ZO-Bench sampling protocol.

    Train and dev are disjoint draws without replacement from ``examples`` (the
    training pool): with ``perm`` a permutation of the pool,
    ``train = perm[:num_train]``, ``dev = perm[num_train:num_train+num_dev]``.
    Eval is a draw of ``num_eval`` from ``eval_examples`` when given (its own
    permutation), else the next ``num_eval`` of ``perm`` (disjoint from train and
    dev).  ``num_eval=None`` takes the whole eval pool in its original order (or all
    of the rest of the training pool).

    Randomness: ``numpy.random.SeedSequence(seed).spawn(2)`` gives independent streams
    for the training-pool and eval-pool permutations, so the eval draw does not
    depend on the size of the training pool.  The global RNG is not touched.

    Raises `ValueError` when a pool is too small, naming the numbers.
    """
    _check_count("num_train", num_train)
    _check_count("num_dev", num_dev)
    _check_count("num_eval", num_eval, allow_none=True)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    pool = list(examples)
    need = num_train + num_dev
    if eval_examples is None and num_eval is not None:
        need += num_eval
    if need > len(pool):
        what = f"num_train={num_train} + num_dev={num_dev}"
        if eval_examples is None and num_eval is not None:
            what += f" + num_eval={num_eval} (eval drawn from the training pool since no eval pool was given)"
        raise ValueError(f"training pool has {len(pool)} examples, fewer than {what} = {need}")
    train_ss, eval_ss = np.random.SeedSequence(int(seed)).spawn(2)
    perm = np.random.default_rng(train_ss).permutation(len(pool))
    tr = perm[:num_train]
    dv = perm[num_train : num_train + num_dev]
    if eval_examples is None:
        rest = perm[num_train + num_dev :]
        ev = rest if num_eval is None else rest[:num_eval]
        eval_pool = pool
        source = "train_pool"
    else:
        eval_pool = list(eval_examples)
        if num_eval is None:
            ev = np.arange(len(eval_pool))
        else:
            if num_eval > len(eval_pool):
                raise ValueError(
                    f"eval pool has {len(eval_pool)} examples, fewer than num_eval={num_eval}; "
                    "pass num_eval=None to use the whole eval pool"
                )
            ev = np.random.default_rng(eval_ss).permutation(len(eval_pool))[:num_eval]
        source = "eval_pool"
    return SampledSplits(
        train=[pool[i] for i in tr],
        dev=[pool[i] for i in dv],
        eval=[eval_pool[i] for i in ev],
        train_indices=tuple(int(i) for i in tr),
        dev_indices=tuple(int(i) for i in dv),
        eval_indices=tuple(int(i) for i in ev),
        eval_source=source,
        seed=int(seed),
    )


# --------------------------------------------------------------------------------------
# Tokenisation
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Batches and collation
# --------------------------------------------------------------------------------------


class _BatchMixin:
    def to(self, device: torch.device | str, non_blocking: bool = False):  # type: ignore[no-untyped-def]
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


# --------------------------------------------------------------------------------------
# Deterministic, resumable batch order
# --------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class EpochSampler:
    """Endless stream of index batches, reshuffled every epoch, resumable exactly.

    Epoch ``e`` visits ``numpy.random.default_rng([seed, e]).permutation(n)`` (or
    ``range(n)`` without shuffling) in consecutive chunks of ``batch_size``; the last
    chunk is shorter unless ``drop_last``.  The order depends only on
    ``(seed, epoch)``, so it can be regenerated on resume without storing it.

    State: ``epoch`` and ``position`` (index into the epoch's order of the next
    example).  After the last batch of an epoch the state moves to
    ``(epoch + 1, 0)``.  `state_dict` / `load_state_dict` round-trip it (together with
    the configuration, which `load_state_dict` checks).
    """

    def __init__(
        self, num_examples: int, batch_size: int, seed: int = 0, shuffle: bool = True, drop_last: bool = False
    ) -> None:
        self.num_examples = _check_int("num_examples", num_examples, 1)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.seed = _check_int("seed", seed, 0)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if self.drop_last and self.batch_size > self.num_examples:
            raise ValueError(
                f"batch_size={batch_size} > num_examples={num_examples} with drop_last=True gives no batches"
            )
        self.epoch = 0
        self.position = 0
        self._order_cache: tuple[int, np.ndarray] | None = None

    @property
    def batches_per_epoch(self) -> int:
        n, b = self.num_examples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    @property
    def _epoch_end(self) -> int:
        return self.batches_per_epoch * self.batch_size if self.drop_last else self.num_examples

    def order(self, epoch: int) -> np.ndarray:
        """The visiting order of epoch ``epoch``."""
        epoch = _check_int("epoch", epoch, 0)
        if self._order_cache is not None and self._order_cache[0] == epoch:
            return self._order_cache[1]
        if self.shuffle:
            o = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
        else:
            o = np.arange(self.num_examples)
        self._order_cache = (epoch, o)
        return o

    def next_indices(self) -> list[int]:
        """Indices of the next batch; advances the state."""
        o = self.order(self.epoch)
        stop = min(self.position + self.batch_size, self._epoch_end)
        idx = [int(i) for i in o[self.position : stop]]
        self.position = stop
        if self.position >= self._epoch_end:
            self.epoch += 1
            self.position = 0
        return idx

    def __iter__(self) -> Iterator[list[int]]:
        return self

    def __next__(self) -> list[int]:
        return self.next_indices()

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_examples": self.num_examples,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "epoch": self.epoch,
            "position": self.position,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k in ("num_examples", "batch_size", "seed", "shuffle", "drop_last"):
            if k in state and state[k] != getattr(self, k):
                raise ValueError(f"sampler state has {k}={state[k]!r}, this sampler has {getattr(self, k)!r}")
        epoch = _check_int("epoch", state["epoch"], 0)
        position = _check_int("position", state["position"], 0)
        if position >= self._epoch_end:
            raise ValueError(f"position={position} is past the end of an epoch ({self._epoch_end})")
        self.epoch, self.position = epoch, position


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
