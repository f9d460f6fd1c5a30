"""The optimisation engine: Adam on a list of parameter tensors, level by level, in compiled chunks.

One ``tf.function`` (XLA by default) performs ``chunk`` Adam steps in a ``tf.while_loop`` and returns every
loss term of every step, so Python only reports progress (callbacks) and tests for a plateau between
chunks. The engine draws nothing: progress goes to ``callbacks`` (see :mod:`tutorialreg.callbacks`).
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tutorialreg.callbacks import Callback, ProgressBar, close_all, notify
from tutorialreg.checks import NonFiniteError
from tutorialreg.optimise.settings import Schedule

__all__ = ["ADAM_BETA_1", "ADAM_BETA_2", "ADAM_EPSILON", "Stage", "Trace", "adam_update", "run"]

#: Adam's constants, as in ``keras.optimizers.Adam`` (and the tutorial's ``tf.optimizers.Adam``).
ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-7


def adam_update(param, grad, m, v, step, lr):
    """One Adam step, written out: returns ``(param, m, v)``.

    ``step`` counts from 1. Identical to ``keras.optimizers.Adam`` (beta_1 0.9, beta_2 0.999,
    epsilon 1e-7): ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
    ``param <- param - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``.
    """
    m = m + (grad - m) * (1.0 - ADAM_BETA_1)
    v = v + (tf.square(grad) - v) * (1.0 - ADAM_BETA_2)
    alpha = lr * tf.sqrt(1.0 - ADAM_BETA_2**step) / (1.0 - ADAM_BETA_1**step)
    return param - alpha * m / (tf.sqrt(v) + ADAM_EPSILON), m, v


@dataclass
class Stage:
    """One level of an optimisation: the objective's extra arguments ``data``, a step budget, a rate."""

    data: tuple
    steps: int
    lr: float


@dataclass(frozen=True)
class Trace:
    """What happened during an optimisation.

    :ivar history: ``{term: [steps]}`` loss values of every step (``"total"`` first).
    :ivar level: ``[steps]`` pyramid level index of every step.
    :ivar level_steps: steps run at each level (fewer than budgeted when a plateau stopped it).
    :ivar level_time_per_step: median seconds per step of each level, compilation excluded.
    :ivar time_per_step: mean seconds per step over all levels, compilation excluded.
    :ivar compile_time: seconds spent building and compiling (each level's first chunk minus its steps
        at that level's median rate).
    :ivar stopped_early: True when a plateau stopped at least one level before its budget.
    """

    history: dict[str, np.ndarray]
    level: np.ndarray
    level_steps: list[int]
    level_time_per_step: list[float]
    time_per_step: float
    compile_time: float
    stopped_early: bool


def _make_chunk(objective: Callable, n_terms: int, chunk: int, decay: str, jit: bool):
    """Compile ``chunk`` Adam steps of ``objective(params, *data) -> [total, term1, ...]`` into one call."""

    def run_chunk(params, ms, vs, start, n_run, level_steps, lr0, *data):
        def body(i, params, ms, vs, record):
            with tf.GradientTape() as tape:
                tape.watch(params)
                terms = objective(params, *data)
            grads = tape.gradient(terms[0], params)
            t = tf.cast(start + i, tf.float32)
            lr = lr0
            if decay == "cosine":
                lr = lr0 * 0.5 * (1.0 + tf.cos(np.pi * t / tf.cast(level_steps, tf.float32)))
            new = [adam_update(p, g, m, v, t + 1.0, lr)
                   for p, g, m, v in zip(params, grads, ms, vs, strict=True)]
            record = tf.tensor_scatter_nd_update(record, [[i]], tf.stack(terms)[None])
            return i + 1, [x[0] for x in new], [x[1] for x in new], [x[2] for x in new], record

        record = tf.zeros([chunk, n_terms])
        out = tf.while_loop(lambda i, *_: i < n_run, body, [tf.constant(0), params, ms, vs, record])
        return out[1], out[2], out[3], out[4]

    # a partial, so TensorFlow counts retracing per registration (one trace per pyramid level is expected)
    # instead of pooling every registration of the session under the one code object of ``run_chunk``
    return tf.function(functools.partial(run_chunk), jit_compile=jit)


class _CompiledChunks:
    """Compiled chunk functions kept for reuse: a registration with the same settings and image shape as an
    earlier one (e.g. the same method on every pair of a data set) skips tracing and XLA compilation.
    Bounded: the ``size`` most recently used are kept."""

    def __init__(self, size: int = 8):
        self.size, self.items = size, OrderedDict()

    def get(self, key, make: Callable):
        if key is None:
            return make()
        if key not in self.items:
            self.items[key] = make()
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        self.items.move_to_end(key)
        return self.items[key]


_COMPILED = _CompiledChunks()


def _plateau(values: list[float], window: int, tol: float) -> bool:
    """True when the mean of the last ``window`` values improved on the window before by less than
    ``tol`` (relative to the loss range seen so far at this level)."""
    if len(values) < 2 * window:
        return False
    last = float(np.mean(values[-window:]))
    prev = float(np.mean(values[-2 * window:-window]))
    scale = max(float(np.max(values)) - float(np.min(values)), 1e-12)
    return (prev - last) < tol * scale


@dataclass
class _Progress:
    """Bookkeeping of one run: the records, step counts and chunk timings."""

    names: list[str]
    callbacks: list
    bar: ProgressBar | None
    done_total: int = 0
    stopped_early: bool = False

    def __post_init__(self) -> None:
        self.records: list[np.ndarray] = []
        self.level_of_step: list[int] = []
        self.level_steps: list[int] = []
        self.steady: list[list[float]] = []  # per level: s/step of the chunks after the first
        self.first_chunks: list[tuple[float, int]] = []  # per level: (seconds, steps) of the first chunk

    def report(self, rec: np.ndarray, level: int) -> None:
        n = len(rec)
        self.records.append(rec)
        self.level_of_step.extend([level] * n)
        for j, row in enumerate(rec):
            notify(self.callbacks, self.done_total + j, dict(zip(self.names, map(float, row), strict=True)))
        self.done_total += n
        if self.bar is not None:
            self.bar.on_step(self.done_total, dict(zip(self.names, map(float, rec[-1]), strict=True)))


def _run_level(run_chunk, params: list, stage: Stage, li: int, schedule: Schedule, chunk: int,
               progress: _Progress) -> list:
    """Adam over one level until its budget or a plateau; returns the parameters."""
    ms = [tf.zeros_like(p) for p in params]
    vs = [tf.zeros_like(p) for p in params]
    done, level_losses = 0, []
    progress.steady.append([])
    while done < stage.steps:
        n = min(chunk, stage.steps - done)
        t0 = time.perf_counter()
        counters = (tf.constant(done), tf.constant(n), tf.constant(stage.steps),
                    tf.constant(stage.lr, tf.float32))
        params, ms, vs, rec = run_chunk(params, ms, vs, *counters, *stage.data)
        rec = rec.numpy()[:n]
        elapsed = time.perf_counter() - t0
        if done == 0:
            progress.first_chunks.append((elapsed, n))
        elif n == chunk:
            progress.steady[-1].append(elapsed / n)
        if not np.all(np.isfinite(rec)) or not all(np.all(np.isfinite(p.numpy())) for p in params):
            raise NonFiniteError(f"loss or parameters became NaN/inf at level {li}, steps {done + 1}-"
                                 f"{done + n}: lower the learning rate")
        progress.report(rec, li)
        level_losses.extend(rec[:, 0].tolist())
        done += n
        stop = schedule.plateau_tol is not None and _plateau(level_losses, schedule.plateau_window,
                                                             schedule.plateau_tol)
        if stop and done < stage.steps:
            progress.stopped_early = True
            if progress.bar is not None:
                progress.bar.shorten(stage.steps - done)
            break
    progress.level_steps.append(done)
    return params


def _trace(progress: _Progress) -> Trace:
    # each level's rate: median over its chunks after the first (the first one also compiles); a level of
    # one chunk only has the first, compilation included
    rates = [float(np.median(r)) if r else t / n
             for r, (t, n) in zip(progress.steady, progress.first_chunks, strict=True)]
    compile_time = sum(max(0.0, t - n * r) for (t, n), r in zip(progress.first_chunks, rates, strict=True))
    steps = progress.level_steps
    rate = sum(r * n for r, n in zip(rates, steps, strict=True)) / max(1, sum(steps))
    hist = np.concatenate(progress.records, axis=0)
    return Trace(history={name: hist[:, i].copy() for i, name in enumerate(progress.names)},
                 level=np.asarray(progress.level_of_step, dtype=np.int32), level_steps=list(steps),
                 level_time_per_step=rates, time_per_step=rate, compile_time=compile_time,
                 stopped_early=progress.stopped_early)


def run(objective: Callable, names: list[str], params: list[tf.Tensor], stages: Sequence[Stage],
        on_stage: Callable[[int, list[tf.Tensor]], list[tf.Tensor]], schedule: Schedule, *, chunk: int,
        jit: bool, callbacks: list[Callback], progress: bool, desc: str,
        cache_key=None) -> tuple[list[tf.Tensor], Trace]:
    """Run Adam stage by stage; ``on_stage(i, params)`` maps the parameters into stage ``i``.

    ``objective(params, *stage.data)`` returns ``[total, term1, ...]`` named by ``names``; ``total`` is
    minimised. Every callback gets ``on_step(step, {name: value})`` for every step and ``close()`` at the
    end, also when the run fails. ``cache_key``: a hashable description of everything the objective
    depends on besides ``stage.data`` (settings, image shape); runs with the same key reuse one compiled
    step function.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    key = None if cache_key is None else (cache_key, len(names), chunk, schedule.decay, jit)
    run_chunk = _COMPILED.get(key, lambda: _make_chunk(objective, len(names), chunk, schedule.decay, jit))
    bar = ProgressBar(sum(s.steps for s in stages), desc) if progress else None
    state = _Progress(names, list(callbacks), bar)
    try:
        for li, stage in enumerate(stages):
            params = _run_level(run_chunk, on_stage(li, params), stage, li, schedule, chunk, state)
    finally:
        close_all([*callbacks, *([bar] if bar is not None else [])])
    return params, _trace(state)
