"""Seeded sampling: the MeZO / ZO-Bench train/dev/eval protocol and the resumable epoch order of batches."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llm.data.tasks import Example


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
