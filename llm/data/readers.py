"""Reading labelled examples: local TSV / CSV (the stdlib ``csv`` module) and JSON Lines (``json``) files, or
``datasets.load_dataset`` from the local cache."""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from llm.data.tasks import _SPLIT_ALIASES, Example, Task, _canonical_split, get_task

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


#: ``csv`` dialects of the delimited formats. GLUE TSV files have no quoting (their text contains quotes), so
#: a field ends at the next tab; CSV files use the standard (RFC 4180) quoting and may span lines.
_DIALECTS: dict[str, dict[str, Any]] = {
    "tsv": {"delimiter": "\t", "quoting": csv.QUOTE_NONE},
    "csv": {"delimiter": ",", "quoting": csv.QUOTE_MINIMAL},
}
_SEPARATOR_NAMES = {"tsv": "tab", "csv": "comma"}


def _is_blank(fmt: str, fields: Sequence[str]) -> bool:
    """A blank line: nothing (CSV), or only whitespace (TSV, as GLUE files are read)."""
    return not fields if fmt == "csv" else not "".join(fields).strip()


def _read_delimited(task: Task, path: Path, columns: Mapping[str, str] | None, fmt: str) -> list[Example]:
    """A header row, then one example per row, read by :func:`csv.reader` in the ``fmt`` dialect.

    Errors name ``path`` and the 1-based line where the offending row starts.
    """
    sep = _SEPARATOR_NAMES[fmt]
    out: list[Example] = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, **_DIALECTS[fmt])
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}:1: empty file, expected a header line") from None
        except csv.Error as e:
            raise ValueError(f"{path}:1: malformed {fmt.upper()} ({e})") from None
        if len(set(header)) != len(header):
            raise ValueError(f"{path}:1: duplicate column names in header {header!r}")
        text_cols, label_col = _resolve_columns(task, header, columns, f"{path}:1")
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                raise ValueError(f"{path}:{start}: malformed {fmt.upper()} ({e})") from None
            if _is_blank(fmt, fields):
                continue
            if len(fields) != len(header):
                raise ValueError(
                    f"{path}:{start}: expected {len(header)} {sep}-separated columns {header!r}, got {len(fields)}"
                )
            row = dict(zip(header, fields, strict=True))
            out.append(_row_to_example(task, row, text_cols, label_col, f"{path}:{start}"))
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
            "offline: it is not in the local datasets cache. Pass --data-dir DIR (path=) with train.tsv and "
            "dev.tsv (GLUE format: a header line, text<TAB>label), or --allow-download (allow_download=True) "
            "to let datasets fetch it"
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
    if fmt == "jsonl":
        return _read_jsonl(task, p, columns)
    if fmt not in _DIALECTS:
        raise ValueError(f"unknown file_format {fmt!r}; expected one of {sorted([*_DIALECTS, 'jsonl'])}")
    return _read_delimited(task, p, columns, fmt)
