"""Tests of llm.data: tasks, loaders, the MeZO sampling protocol, tokenisation, batches.

All offline: local fixtures under tests/fixtures, `datasets.load_dataset` monkeypatched.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from llm import data
from llm.data import RTE, SST2, Example

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def tok():
    from llm.models import offline_tokenizer

    return offline_tokenizer()


# --------------------------------------------------------------------------------------
# Tasks and templates
# --------------------------------------------------------------------------------------


def test_sst2_prompt_strips_and_appends_label_words():
    ex = Example(texts=("a fine film ",), label=1)
    assert SST2.prompt(ex) == "a fine film It was"
    assert SST2.candidates(ex) == ("a fine film It was terrible", "a fine film It was great")
    assert SST2.label_words == (" terrible", " great") and SST2.num_labels == 2


def test_rte_pair_template():
    ex = Example(texts=(" A man sleeps. ", "Someone sleeps."), label=0)
    assert RTE.prompt(ex) == 'A man sleeps.\nDoes this mean that "Someone sleeps." is true? Yes or No?'
    assert RTE.candidates(ex)[0].endswith("Yes or No? Yes")
    assert RTE.is_pair and not SST2.is_pair


def test_make_task_infers_columns_and_validates():
    t = data.make_task("boolq", "{passage}\nQuestion: {question}?\nAnswer:", (" No", " Yes"), label_column="answer")
    assert t.text_columns == ("passage", "question") and t.label_column == "answer"
    with pytest.raises(ValueError, match="'hypothesis'"):
        data.make_task("x", "{premise}", (" a", " b"), text_columns=("premise", "hypothesis"))
    with pytest.raises(ValueError, match="not among text_columns"):
        data.make_task("x", "{premise} {other}", (" a", " b"), text_columns=("premise",))
    with pytest.raises(ValueError, match="distinct"):
        data.make_task("x", "{s}", (" a", " a"))
    with pytest.raises(ValueError, match="placeholder"):
        data.make_task("x", "{} It was", (" a", " b"))
    with pytest.raises(ValueError, match="unknown task"):
        data.get_task("mnli-nonexistent")


def test_parse_label():
    assert SST2.parse_label("1") == 1 and SST2.parse_label(" 0 ") == 0 and SST2.parse_label(1) == 1
    assert SST2.parse_label("positive") == 1
    for bad in ("1.0", "abc", 2, -1, True, 1.0, None):
        with pytest.raises(ValueError):
            SST2.parse_label(bad)


# --------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------


def test_load_glue_tsv_fixture():
    path = FIX / "sst2_tiny.tsv"
    exs = data.load_examples("sst2", "train", path)
    assert len(exs) == 11  # 12 lines = header + 11 rows
    assert exs[0].texts == ("a warm , funny and quietly moving film ",)  # raw text kept, trailing space
    assert [e.label for e in exs] == [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]
    assert exs[0].source == f"{path}:2" and exs[-1].source == f"{path}:12"
    assert exs[6].texts[0] == 'it \'s a "small" picture with a big heart '  # no quote processing in TSV


def test_tsv_has_no_quoting_skips_blank_lines_and_counts_lines(tmp_path):
    """GLUE TSV read through ``csv`` with ``QUOTE_NONE``: a field that starts with an unbalanced quote stays one
    field on one line (a quoting reader would swallow the following lines), whitespace-only lines are skipped,
    CRLF endings are accepted and sources keep the file's line numbers."""
    p = tmp_path / "train.tsv"
    p.write_bytes(b'sentence\tlabel\r\n"an unbalanced quote \t1\r\n   \r\n\r\nplain text \t0\r\n')
    exs = data.load_examples(SST2, "train", p)
    assert [(e.texts, e.label, e.source) for e in exs] == [
        (('"an unbalanced quote ',), 1, f"{p}:2"),
        (("plain text ",), 0, f"{p}:5"),
    ]
    p.write_text("sentence\tlabel\nok \t1\n\ntoo\tmany\tfields\n")
    with pytest.raises(ValueError, match=r"train.tsv:4: expected 2 tab-separated columns"):
        data.load_examples(SST2, "train", p)


def test_load_directory_by_split(tmp_path):
    (tmp_path / "train.tsv").write_text((FIX / "sst2_tiny.tsv").read_text())
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nshort one \t1\n")
    assert len(data.load_examples(SST2, "train", tmp_path)) == 11
    dev = data.load_examples(SST2, "validation", tmp_path)  # "validation" finds dev.tsv
    assert dev == [Example(("short one ",), 1, f"{tmp_path / 'dev.tsv'}:2")]
    with pytest.raises(ValueError, match="no file for split 'test'"):
        data.load_examples(SST2, "test", tmp_path)


def test_load_jsonl_pair_with_aliases():
    exs = data.load_examples("rte", "train", FIX / "rte_tiny.jsonl")
    assert len(exs) == 6 and exs[1].label == 1
    assert exs[0].texts == (
        "The museum opened in 1990 and draws a million visitors a year.",
        "The museum opened in 1990.",
    )


def test_load_csv_with_quoting_label_names_and_multiline():
    exs = data.load_examples(RTE, "train", FIX / "pairs_tiny.csv")
    assert [e.label for e in exs] == [0, 1, 0, 1]
    assert exs[0].texts[0] == "Prices rose, then fell, then rose again."
    assert exs[1].texts[0] == 'She said "no" twice.'
    assert exs[2].texts[0] == "A line\nthat continues on the next line."
    assert exs[3].source.endswith("pairs_tiny.csv:6")  # the quoted field spans lines 4-5


def test_generic_task_with_column_override(tmp_path):
    p = tmp_path / "reviews.jsonl"
    p.write_text("\n".join(json.dumps({"review": r, "stars": s}) for r, s in [("good", 1), ("bad", 0)]) + "\n\n")
    t = data.make_task("reviews", "{text} All in all, it was", (" bad", " good"), label_column="stars")
    exs = data.load_examples(t, "train", p, columns={"text": "review"})
    assert [(e.texts, e.label) for e in exs] == [(("good",), 1), (("bad",), 0)]
    with pytest.raises(ValueError, match="not columns of task"):
        data.load_examples(t, "train", p, columns={"nope": "review"})


@pytest.mark.parametrize(
    "name, task, line, phrase",
    [
        ("bad_columns.tsv", "sst2", 4, "expected 2 tab-separated columns"),
        ("missing_column.tsv", "sst2", 1, "missing column(s) 'label'; found columns ['sentence', 'score']"),
        ("bad_label.tsv", "sst2", 3, "label 'maybe' is not an integer"),
        ("label_out_of_range.tsv", "sst2", 5, "label 2 outside the label set [0, 1]"),
        ("bad_json.jsonl", "sst2", 3, "invalid JSON"),
        ("missing_key.jsonl", "sst2", 2, "missing column(s) 'label'"),
        ("float_label.csv", "sst2", 3, "label '1.5' is not an integer"),
    ],
)
def test_malformed_files_name_file_and_line(name, task, line, phrase):
    path = FIX / "broken" / name
    with pytest.raises(ValueError) as info:
        data.load_examples(task, "train", path)
    msg = str(info.value)
    assert f"{path}:{line}:" in msg, msg
    assert phrase in msg, msg


def test_loader_input_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        data.load_examples("sst2", "train", tmp_path / "nope.tsv")
    odd = tmp_path / "data.txt"
    odd.write_text("text\tlabel\nx \t1\n")
    with pytest.raises(ValueError, match="file_format"):
        data.load_examples("sst2", "train", odd)
    assert len(data.load_examples("sst2", "train", odd, file_format="tsv")) == 1
    with pytest.raises(ValueError, match="unknown split"):
        data.load_examples("sst2", "holdout", odd, file_format="tsv")
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty.tsv:1: empty file"):
        data.load_examples("sst2", "train", empty)


class _FakeDataset(list):
    """What the loader needs from a `datasets.Dataset`: iteration over dict rows and column_names."""

    @property
    def column_names(self):
        return list(self[0]) if self else []


def test_load_dataset_path_monkeypatched(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(*args, split=None, **kw):
        calls.append((args, split))
        if args[0] == "nyu-mll/glue":
            raise ConnectionError("no network in tests")
        return _FakeDataset(
            [{"sentence": "a gem ", "label": 1, "idx": 0}, {"sentence": "a dud ", "label": 0, "idx": 1}]
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    exs = data.load_examples("sst2", "dev")
    assert calls == [(("nyu-mll/glue", "sst2"), "validation"), (("glue", "sst2"), "validation")]
    assert [(e.texts, e.label) for e in exs] == [(("a gem ",), 1), (("a dud ",), 0)]
    assert exs[1].source == "glue/sst2[validation] row 2"


def test_load_dataset_real_dataset_object_and_errors(monkeypatch):
    import datasets

    ds = datasets.Dataset.from_dict({"sentence": ["x ", "y "], "label": [1, -1], "idx": [0, 1]})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, split=None, **k: ds)
    with pytest.raises(ValueError, match=r"\[test\] row 2: label -1 outside the label set"):
        data.load_examples("sst2", "test")  # GLUE test splits carry label -1

    def offline(*a, **k):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ValueError, match=r"offline.*--data-dir DIR \(path=\)"):
        data.load_examples("sst2", "train")


# --------------------------------------------------------------------------------------
# Sampling protocol
# --------------------------------------------------------------------------------------


def _pool(n: int, tag: str = "t") -> list[Example]:
    return [Example((f"{tag}{i}",), i % 2) for i in range(n)]


def test_sample_splits_deterministic_disjoint_and_sized():
    pool, evpool = _pool(3000), _pool(1200, "e")
    a = data.sample_splits(pool, 1000, 500, 1000, seed=0, eval_examples=evpool)
    b = data.sample_splits(pool, 1000, 500, 1000, seed=0, eval_examples=evpool)
    c = data.sample_splits(pool, 1000, 500, 1000, seed=1, eval_examples=evpool)
    assert (a.train_indices, a.dev_indices, a.eval_indices) == (b.train_indices, b.dev_indices, b.eval_indices)
    assert a.train_indices != c.train_indices and a.eval_indices != c.eval_indices
    assert (len(a.train), len(a.dev), len(a.eval)) == (1000, 500, 1000)
    assert not set(a.train_indices) & set(a.dev_indices)
    assert len(set(a.eval_indices)) == 1000 and a.eval_source == "eval_pool"
    assert all(e.texts[0].startswith("e") for e in a.eval)
    assert [pool[i] for i in a.train_indices] == a.train
    # the eval draw does not depend on the training pool's size (independent streams)
    d = data.sample_splits(_pool(2000), 1000, 500, 1000, seed=0, eval_examples=evpool)
    assert d.eval_indices == a.eval_indices


def test_sample_splits_eval_from_training_pool_and_whole_pool():
    s = data.sample_splits(_pool(2600), 1000, 500, 1000, seed=3)
    assert s.eval_source == "train_pool"
    assert len(set(s.train_indices) | set(s.dev_indices) | set(s.eval_indices)) == 2500
    whole = data.sample_splits(_pool(20), 5, 5, None, seed=0, eval_examples=_pool(7, "e"))
    assert whole.eval == _pool(7, "e")  # num_eval=None keeps the eval pool in order
    rest = data.sample_splits(_pool(20), 5, 5, None, seed=0)
    assert len(rest.eval) == 10


def test_sample_splits_errors_name_the_numbers():
    with pytest.raises(ValueError, match=r"training pool has 1200 examples, fewer than num_train=1000 \+ num_dev=500"):
        data.sample_splits(_pool(1200), eval_examples=_pool(1000))
    with pytest.raises(ValueError, match=r"num_eval=1000.*= 2500"):
        data.sample_splits(_pool(2000))
    with pytest.raises(ValueError, match=r"eval pool has 872 examples, fewer than num_eval=1000"):
        data.sample_splits(_pool(2000), eval_examples=_pool(872))
    with pytest.raises(ValueError, match="num_train"):
        data.sample_splits(_pool(10), num_train=-1)
    with pytest.raises(ValueError, match="seed"):
        data.sample_splits(_pool(10), 1, 1, 1, seed=-2)


@given(
    n=st.integers(1, 60),
    fr=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
    seed=st.integers(0, 2**32 - 1),
)
def test_sample_splits_property_disjoint_within_pool(n, fr, seed):
    nt = int(fr[0] * n)
    nd = int(fr[1] * (n - nt))
    ne = int(fr[2] * (n - nt - nd))
    s = data.sample_splits(_pool(n), nt, nd, ne, seed=seed)
    idx = s.train_indices + s.dev_indices + s.eval_indices
    assert len(idx) == nt + nd + ne == len(set(idx))
    assert all(0 <= i < n for i in idx)


# --------------------------------------------------------------------------------------
# Tokenisation and collation
# --------------------------------------------------------------------------------------


def test_label_words_are_single_tokens_with_offline_tokenizer(tok):
    for task in (SST2, RTE):
        ids = data.label_token_ids(tok, task)
        assert all(len(i) == 1 for i in ids), (task.name, ids)


def test_encode_keeps_label_words_and_matches_joint_tokenisation(tok):
    exs = data.load_examples("sst2", "train", FIX / "sst2_tiny.tsv")
    enc = data.encode_classification(tok, exs, SST2, max_length=256)
    for ex, e in zip(exs, enc, strict=False):
        assert e.truncated == 0 and e.label == ex.label
        for cand, opt in zip(SST2.candidates(ex), e.option_ids, strict=False):
            assert list(e.prompt_ids + opt) == tok(cand)["input_ids"]  # BOS + prompt + label word
        assert tok.decode(e.prompt_ids, skip_special_tokens=True) == SST2.prompt(ex)


def test_encode_left_truncates_and_keeps_bos_and_template_tail(tok):
    long = Example(("word " * 200,), 1)
    (e,) = data.encode_classification(tok, [long], SST2, max_length=24)
    assert len(e.prompt_ids) + max(len(o) for o in e.option_ids) <= 24
    assert e.prompt_ids[0] == tok.convert_tokens_to_ids("</s>") and e.truncated > 0
    assert tok.decode(e.prompt_ids, skip_special_tokens=True).endswith("word It was")
    with pytest.raises(ValueError, match="max_length=2 leaves no room"):
        data.encode_classification(tok, [long], SST2, max_length=2)


def test_collate_layouts_padding_and_positions(tok):
    exs = [Example(("good",), 1), Example(("a much longer sentence here",), 0)]
    enc = data.encode_classification(tok, exs, SST2, max_length=64)
    b = data.CausalLMCollator.from_tokenizer(tok)(enc)
    assert b.layout == "shared" and b.input_ids.shape[0] == 2 and b.targets.shape == (2, 2)
    n0 = len(enc[0].prompt_ids)
    L = b.input_ids.shape[1]
    assert b.attention_mask[0].tolist() == [0] * (L - n0) + [1] * n0  # left padding
    assert b.input_ids[0, : L - n0].eq(tok.pad_token_id).all()
    assert b.position_ids[0, L - n0 :].tolist() == list(range(n0))
    assert b.labels.tolist() == [1, 0] and len(b) == 2
    p = data.collate_causal_lm(enc, tok.pad_token_id, layout="per_option")
    assert p.input_ids.shape[0] == 4 and p.targets.shape == (4, 1) and p.num_target_positions == 1
    # per_option row b*K + k holds prompt_b + option_k[:-1]; with single-token words that is the prompt
    assert torch.equal(p.input_ids[2], b.input_ids[1]) and p.targets[:, 0].tolist() == b.targets.flatten().tolist()
    with pytest.raises(ValueError, match="empty batch"):
        data.collate_causal_lm([], 1)


def test_collate_multi_token_label_words(tok):
    task = data.make_task("multi", "{s} Verdict:", (" utterly terrible", " great"))
    enc = data.encode_classification(tok, [Example(("fine",), 0)], task, max_length=64)
    assert len(enc[0].option_ids[0]) > 1 == len(enc[0].option_ids[1])
    b = data.CausalLMCollator.from_tokenizer(tok)(enc)
    assert b.layout == "per_option"
    T = len(enc[0].option_ids[0])
    assert b.targets.shape == (2, T)
    assert b.target_mask.tolist() == [[True] * T, [False] * (T - 1) + [True]]
    # the row of candidate 0 ends with all but the last label-word token
    assert b.input_ids[0, -(T - 1) :].tolist() == list(enc[0].option_ids[0][:-1])
    with pytest.raises(ValueError, match="single-token"):
        data.collate_causal_lm(enc, 1, layout="shared")


def test_batch_to_device_copies():
    b = data.collate_causal_lm([data.EncodedLMExample((2, 5, 6), ((7,), (8,)), 1)], 1)
    c = b.to("cpu")
    assert c is not b and torch.equal(c.input_ids, b.input_ids) and c.layout == b.layout


# --------------------------------------------------------------------------------------
# Deterministic, resumable order
# --------------------------------------------------------------------------------------


def test_epoch_sampler_permutations_and_determinism():
    s = data.EpochSampler(10, 3, seed=5)
    assert s.batches_per_epoch == 4
    epochs = []
    for _ in range(3):
        batches = [s.next_indices() for _ in range(4)]
        assert [len(x) for x in batches] == [3, 3, 3, 1]
        flat = [i for x in batches for i in x]
        assert sorted(flat) == list(range(10))
        epochs.append(flat)
    assert s.epoch == 3 and s.position == 0
    assert epochs[0] != epochs[1]
    assert epochs == [list(data.EpochSampler(10, 3, seed=5).order(e)) for e in range(3)]
    assert epochs[0] != list(data.EpochSampler(10, 3, seed=6).order(0))
    assert list(data.EpochSampler(4, 2, shuffle=False).order(7)) == [0, 1, 2, 3]


def test_epoch_sampler_state_roundtrip_is_exact():
    a = data.EpochSampler(17, 4, seed=11, drop_last=True)
    for _ in range(7):  # into the second epoch
        a.next_indices()
    state = a.state_dict()
    assert (state["epoch"], state["position"]) == (1, 12)
    expected = [a.next_indices() for _ in range(10)]
    b = data.EpochSampler(17, 4, seed=11, drop_last=True)
    b.load_state_dict(json.loads(json.dumps(state)))  # survives a JSON checkpoint
    assert [b.next_indices() for _ in range(10)] == expected
    assert all(len(x) == 4 for x in expected)  # drop_last: 4 batches of 4 per epoch
    with pytest.raises(ValueError, match="seed=11"):
        data.EpochSampler(17, 4, seed=12, drop_last=True).load_state_dict(state)
    with pytest.raises(ValueError, match="past the end"):
        b.load_state_dict({**state, "position": 16})
    with pytest.raises(ValueError, match="no batches"):
        data.EpochSampler(3, 4, drop_last=True)


def test_batch_stream_resume_gives_identical_batches(tok):
    exs = data.load_examples("sst2", "train", FIX / "sst2_tiny.tsv")
    enc = data.encode_classification(tok, exs, SST2, max_length=64)
    col = data.CausalLMCollator.from_tokenizer(tok)
    s1 = data.BatchStream(enc, col, batch_size=4, seed=0)
    for _ in range(5):
        next(s1)
    st_ = s1.state_dict()
    ref = [next(s1) for _ in range(4)]
    s2 = data.BatchStream(enc, col, batch_size=4, seed=0)
    s2.load_state_dict(st_)
    for x, y in zip(ref, (next(s2) for _ in range(4)), strict=False):
        assert torch.equal(x.input_ids, y.input_ids) and torch.equal(x.labels, y.labels)
    ev = list(data.iter_batches(enc, col, 4))
    assert [len(b) for b in ev] == [4, 4, 3]
    assert torch.cat([b.labels for b in ev]).tolist() == [e.label for e in exs]


def test_sequence_classification_encoding_and_collate(tok):
    exs = data.load_examples("rte", "train", FIX / "rte_tiny.jsonl")
    enc = data.encode_sequence_classification(tok, exs, RTE, max_length=16)
    assert all(len(e.input_ids) <= 16 for e in enc)
    b = data.SequenceClassificationCollator.from_tokenizer(tok)(enc[:3])
    assert b.input_ids.shape[0] == 3 and b.attention_mask[:, 0].eq(1).all()  # right padding
    assert set(b.model_inputs()) >= {"input_ids", "attention_mask"}
    np.testing.assert_array_equal(b.labels.numpy(), [e.label for e in exs[:3]])
