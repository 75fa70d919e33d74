"""Tasks: a prompt template plus one label word per class (MeZO App. A; ZO-Bench), and the built-in SST-2 and RTE."""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

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
    r"""A `Task` for any single-sentence or sentence-pair classification dataset.

    ``text_columns`` defaults to the template's placeholders in order of appearance.
    Example (BoolQ-like pair task from a JSONL file with keys ``passage``, ``question``
    and ``answer``)::

        make_task("boolq", "{passage}\nQuestion: {question}?\nAnswer:", (" No", " Yes"),
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
