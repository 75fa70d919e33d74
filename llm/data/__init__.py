"""Classification data for LLM fine-tuning, framed as language modelling.

This package turns a labelled classification dataset into what the zeroth-order
(ZO) optimizers consume: a fixed, collated minibatch that an objective
(`llm.objective`) maps to a scalar loss.

Pipeline (each step a small function or a thin class)::

    Task  --load_examples-->  [Example]  --sample_splits-->  SampledSplits
          --encode_classification-->  [EncodedLMExample]
          --CausalLMCollator / BatchStream-->  CausalLMBatch  -> objective

Modules (everything is re-exported here, so ``from llm.data import X`` works for every name below)
------------------------------------------------------------------------------------------------
- `llm.data.tasks`     `Task`, `Example`, the built-in `TASKS` (a new task goes here)
- `llm.data.readers`   `load_examples`: TSV / CSV through the ``csv`` module, JSON Lines through ``json``,
                       ``datasets.load_dataset`` (a new file format goes here)
- `llm.data.sampling`  `sample_splits` (MeZO / ZO-Bench protocol) and `EpochSampler` (resumable order)
- `llm.data.encoding`  tokenisation: `encode_classification`, `encode_sequence_classification`
- `llm.data.batches`   batch types, collation, `BatchStream`, `iter_batches`

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

from llm.data.batches import (
    BatchStream,
    CausalLMBatch,
    CausalLMCollator,
    SequenceClassificationBatch,
    SequenceClassificationCollator,
    collate_causal_lm,
    collate_sequence_classification,
    iter_batches,
)
from llm.data.encoding import (
    EncodedLMExample,
    EncodedSeqExample,
    encode_classification,
    encode_sequence_classification,
    label_token_ids,
)
from llm.data.readers import load_examples
from llm.data.sampling import EpochSampler, SampledSplits, sample_splits
from llm.data.tasks import RTE, SST2, TASKS, Example, Task, get_task, make_task

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
