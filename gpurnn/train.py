"""The trainer: one gradient step in one place, epochs over a data source, evaluation, checkpoints.

Each step, on whatever backend holds the parameters (NumPy on the CPU, CuPy on a GPU;
parameters, gradients, optimizer state and the carried stream states stay there):

    loss_sum, grads, count = bptt(θ, batch)              # summed cross-entropy, ∂(sum)/∂θ
    grads, loss_sum, count = reduce(grads, ...)          # hook: an all-reduce goes here (data parallel)
    g = grads / count   (loss_norm="mean", default)      # mean loss per target; "sum" keeps the sum
    ‖g‖ checked finite, then clipped (norm or value)     # the norm *before* clipping is logged
    θ ← optimizer(θ, g, lr(step))

A NaN or Inf loss or gradient raises `TrainingDiverged` before the update, so the
parameters (and, with `out_dir`, the checkpoint `last_good.safetensors`) hold the last
good state.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from tqdm.auto import tqdm

from .averaging import ParamAverage
from .backends import get_backend
from .batches import Batch
from .bptt import bptt, output_logits
from .arrays import on_host, to_host
from .checkpoint import load_checkpoint, save_checkpoint
from .clip import NonFiniteGradientError, clip_grad_norm, clip_grad_value, global_norm
from .distributed import DataParallel
from .model import Params
from .optim import make_optimizer, make_schedule
from .profiling_ranges import nvtx_range
from .train_config import EvalStats, StepStats, TrainConfig, TrainingDiverged, check_config
from .validation import check_call, check_params

__all__ = ["EvalStats", "StepStats", "TrainConfig", "Trainer", "TrainingDiverged"]

CHECKPOINT, BEST, LAST_GOOD = "checkpoint.safetensors", "best.safetensors", "last_good.safetensors"
TRAINED = "trained."     # with config.average, a checkpoint's params are the average and these arrays the trained ones


class Trainer:
    """Train `params` with `config` on `config.backend`.

    params: initial `Params` (copied, then moved to the backend's device once).
    callbacks: callables `fn(stats: StepStats)`, or objects with any of
        `on_step(trainer, StepStats)`, `on_grads(trainer, step, grads: Params)` (`step` the
        1-based number of the step being taken, as in its StepStats; the gradients after the
        reduction and normalisation, before clipping), `on_eval(trainer, EvalStats)`.
    meta: JSON-serialisable facts saved in checkpoints (e.g. {"vocab": [...], "task": "charlm"}).
    out_dir: receives `checkpoint.safetensors` (at evaluations, every `checkpoint_every`
        steps and at the end of `fit`), `best.safetensors` (lowest validation loss) and
        `last_good.safetensors` when training diverges.
    reduce: the data-parallel hook `reduce(grads, loss_sum, count) -> (grads, loss_sum, count)`,
        e.g. an NCCL all-reduce (sum) of the gradients, losses and counts over the ranks.
    comm: an mpi4py communicator: train data-parallel over its ranks (gpurnn.distributed;
        `fit` takes the global data source and reads this rank's part, rank 0 alone writes).
    """

    def __init__(self, params: Params, config: TrainConfig | None = None, *, callbacks: Iterable[Any] = (),
                 meta: dict | None = None, out_dir=None, reduce: Callable | None = None, comm=None):
        self.config = config = dataclasses.replace(config or TrainConfig())
        check_config(config)
        check_params(params)
        self.backend = get_backend(config.backend)
        self.parallel = None if comm is None else DataParallel(comm, self.backend)   # picks the rank's GPU
        if self.parallel is not None:
            if reduce is not None:
                raise ValueError("give reduce or comm, not both (comm brings its own all-reduce)")
            reduce = self.parallel.reduce
        self.params = params.map(lambda a: self.backend.asarray(to_host(a).copy()))
        args = {"momentum": config.momentum} if config.optimizer == "sgd" else {}
        self.optimizer = make_optimizer(config.optimizer, self.params, **{**args, **config.optimizer_args})
        self.average = ParamAverage(config.average, self.params, self.backend) if config.average else None
        self.callbacks = list(callbacks)
        self.meta = dict(meta or {})
        reserved = set(self.meta) & {"format", "version", "config", "trainer"}
        if reserved:
            raise ValueError(f"meta must not use the reserved keys {sorted(reserved)}")
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.reduce = reduce
        self.rng = np.random.default_rng(config.seed)
        self.position = {"step": 0, "epoch": 0, "batch": 0, "rng": self.rng.bit_generator.state,
                         "best_loss": None, "best_step": None, "evals_since_best": 0}
        self.carry = None                      # streams' states after the last step: (B,d), (cells,B,d) for a stack
        self.last_eval: EvalStats | None = None
        self.stop_reason: str | None = None    # why the last `fit` ended (see `fit`)
        self._stop_request: str | None = None
        self._throughput = _Throughput()

    @property
    def step_count(self) -> int:
        return self.position["step"]

    @property
    def model_params(self) -> Params:
        """The parameters the model is evaluated and saved with: the running average with
        `config.average` (`gpurnn.averaging`), else the trained ones."""
        return self.params if self.average is None else self.average.params

    def request_stop(self, reason: str) -> None:
        """Make `fit` end after the step in progress (e.g. from a signal handler), with `reason`."""
        self._stop_request = reason

    def lr(self) -> float:
        """The learning rate of the next step."""
        c = self.config
        return make_schedule(c.schedule, c.lr, every=c.lr_step_every, gamma=c.lr_gamma, total=c.total_steps,
                             lr_min=c.lr_min)(self.step_count)

    def step(self, batch: Batch) -> StepStats:
        """One gradient step on `batch`: the only place the parameters change (see the module doc)."""
        cfg, start = self.config, time.perf_counter()
        if self.parallel is not None:
            self.parallel.check(self)
        s0 = self.carry if batch.carry else None
        with nvtx_range("bptt"):
            result = bptt(self.params, batch.inputs, batch.targets, lengths=batch.lengths, s0=s0,
                          activation=cfg.activation, output=cfg.output, truncate=cfg.truncate, dropout=cfg.dropout,
                          dropout_seed=(cfg.seed, self.step_count), backend=self.backend,
                          check_values=False)    # values: checked on the host (`_moved`), here on a GPU
        grads, loss_sum, count = result.grads, result.loss, result.count
        if self.reduce is not None:
            grads, loss_sum, count = self.reduce(grads, loss_sum, count)
        scale = 1.0 / max(count, 1) if cfg.loss_norm == "mean" else 1.0
        loss = loss_sum / max(count, 1)
        if not math.isfinite(loss):
            self._diverged(f"the loss is {loss}")
        if scale != 1.0:
            grads = grads.map(lambda g: self.backend.scale(g, scale))
        self._notify("on_grads", self.step_count + 1, grads)
        with nvtx_range("clip"):
            grads, norm = self._clip(grads)
        lr = self.lr()
        with nvtx_range("optimizer step"):
            self.optimizer.step(self.params, grads, lr)
        self.carry = result.s_last
        self.position["step"] += 1
        if self.average is not None:
            self.average.update(self.params, self.step_count)
        seconds = time.perf_counter() - start
        stats = StepStats(self.step_count, self.position["epoch"], loss, count, batch.tokens, norm, lr, seconds,
                          self._throughput.add(batch.tokens, seconds))
        self._notify("on_step", stats)
        return stats

    def _clip(self, grads):
        """(clipped grads, global norm before clipping); a non-finite norm ends training."""
        cfg = self.config
        try:
            if cfg.clip == "norm":
                return clip_grad_norm(grads, cfg.max_norm)
            norm = global_norm(grads)
            if not math.isfinite(norm):
                raise NonFiniteGradientError(f"gradient norm is {norm}")
        except NonFiniteGradientError as error:
            self._diverged(str(error))
        return (clip_grad_value(grads, cfg.clip_value) if cfg.clip == "value" else grads), norm

    def _diverged(self, why):
        where = ""
        if self.out_dir is not None:
            where = f"; saved to {self.save(self.out_dir / LAST_GOOD)}"
        raise TrainingDiverged(f"training diverged at step {self.step_count + 1}: {why}. The parameters keep "
                               f"the state after step {self.step_count}{where}. Lower the learning rate or "
                               "clip the gradients (clip='norm', max_norm=1..5).")

    def _notify(self, event, *values):
        for callback in self.callbacks:
            if event == "on_step" and callable(callback) and not hasattr(callback, event):
                callback(*values)
            elif hasattr(callback, event):
                getattr(callback, event)(self, *values)

    def fit(self, data, *, steps: int | None = None, epochs: int | None = None, valid=None,
            progress: bool = True, max_seconds: float | None = None) -> list[StepStats]:
        """Train on `data` until `steps` steps or `epochs` epochs in all (totals, so a resumed run
        given the same arguments stops where the uninterrupted one would), or until this call
        has run `max_seconds` (wall clock; where it stops then depends on the machine's speed),
        or until `request_stop`, evaluating on `valid` every `eval_every` steps (0: after each
        epoch). Returns this call's `StepStats`; `data` is any `__len__` + `iter_epoch(rng)`
        source (`gpurnn.batches`). `stop_reason` then says why it ended: "steps", "epochs",
        "early stopping", "time" or the reason given to `request_stop`."""
        if steps is None and epochs is None:
            raise ValueError("fit needs steps or epochs (the totals to train to), got neither")
        if len(data) == 0:
            raise ValueError("data must yield at least one batch per epoch, got an empty source")
        deadline = None if max_seconds is None else time.perf_counter() + max_seconds
        if self.parallel is not None:
            data = self.parallel.shard(data)
            progress = progress and self.parallel.is_root
        data = self._moved(data)
        valid = None if valid is None else self._moved(valid)
        if self.config.schedule == "cosine" and self.config.total_steps is None:
            self.config.total_steps = steps if steps is not None else epochs * len(data)
        pos, history, self._stop_request = self.position, [], None
        total = steps if steps is not None else epochs * len(data)
        with tqdm(total=total, initial=pos["step"], disable=not progress, unit="step", dynamic_ncols=True) as bar:
            while not self._done(steps, epochs, deadline):
                self.rng.bit_generator.state = pos["rng"]       # replay this epoch's order
                for index, batch in enumerate(data.iter_epoch(self.rng)):
                    if index < pos["batch"]:
                        continue
                    if self._done(steps, epochs, deadline):
                        break
                    history.append(stats := self.step(batch))
                    pos["batch"] = index + 1
                    if progress:
                        bar.update(1)
                        bar.set_postfix(epoch=pos["epoch"] + 1, loss=f"{stats.loss:.3f}",
                                        valid="-" if self.last_eval is None else f"{self.last_eval.loss:.3f}",
                                        tok_s=f"{stats.tokens_per_s:,.0f}", refresh=False)
                    if self._after_step(valid, stats.step):
                        self.stop_reason = "early stopping"
                        return history
                else:
                    pos.update(epoch=pos["epoch"] + 1, batch=0, rng=self.rng.bit_generator.state)
                    if valid is not None and self.config.eval_every == 0 and self._evaluate_and_track(valid):
                        self.stop_reason = "early stopping"
                        return history
        self.stop_reason = self._done(steps, epochs, deadline)
        if self.out_dir is not None:
            self.save()
        return history

    def _moved(self, data):
        """`data` on the backend's device (`to`). What moved there has its batches' values
        (token ids, targets, lengths) checked on the host here, once, so the steps can skip
        those checks, each of which would wait for the GPU; batches left on the host are
        checked at each step (no wait)."""
        if not hasattr(data, "to"):
            return data
        moved = data.to(self.backend.asarray)
        if moved is not data and self.backend.name != "cpu":
            cfg = self.config
            for batch in data.iter_epoch(None):
                if not on_host(batch.inputs):
                    break                        # moved (and checked) already
                check_call(self.params, batch.inputs, lengths=batch.lengths, activation=cfg.activation,
                           output=cfg.output, targets=batch.targets, need_targets=True, check_values=False)
        return moved

    def _done(self, steps, epochs, deadline) -> str | None:
        """Why training ends now (None: it goes on)."""
        pos = self.position
        interrupted = self._stop_request
        late = deadline is not None and time.perf_counter() >= deadline
        if self.parallel is not None and self.parallel.any(late or interrupted is not None):
            # every rank stops at the same step, whichever rank's clock or signal came first
            return interrupted or ("time" if late else "interrupted on another rank")
        if interrupted is not None:
            return interrupted
        if steps is not None and pos["step"] >= steps:
            return "steps"
        if epochs is not None and pos["epoch"] >= epochs:
            return "epochs"
        if late:
            return "time"
        return None

    def _after_step(self, valid, step) -> bool:
        """Evaluate every `eval_every` steps, checkpoint every `checkpoint_every`; True: stop early."""
        cfg = self.config
        if valid is not None and cfg.eval_every and step % cfg.eval_every == 0:
            return self._evaluate_and_track(valid)
        if self.out_dir is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            self.save()
        return False

    def _evaluate_and_track(self, valid) -> bool:
        """Evaluate, keep the best checkpoint, checkpoint; True when `patience` says stop."""
        stats, pos = self.evaluate(valid), self.position
        if pos["best_loss"] is None or stats.loss < pos["best_loss"]:
            pos.update(best_loss=stats.loss, best_step=stats.step, evals_since_best=0)
            if self.out_dir is not None:
                self.save(self.out_dir / BEST)
        else:
            pos["evals_since_best"] += 1
        if self.out_dir is not None:
            self.save()
        return 0 < self.config.patience <= pos["evals_since_best"]

    def evaluate(self, data) -> EvalStats:
        """Mean cross-entropy per target (nats) over one pass of `data` in its fixed order, streams'
        states carried from chunk to chunk as in training; no update."""
        data = self._moved(data)
        cfg, be, P = self.config, self.backend, self.model_params
        total, count, carry = 0.0, 0, None
        with nvtx_range("evaluate"):
            for batch in data.iter_epoch(None):
                s0 = carry if batch.carry else None
                targets = check_call(P, batch.inputs, lengths=batch.lengths, s0=s0, activation=cfg.activation,
                                     output=cfg.output, targets=batch.targets, need_targets=True,
                                     check_values=False).targets
                logits, carry = output_logits(P, batch.inputs, lengths=batch.lengths, s0=s0,
                                              activation=cfg.activation, output=cfg.output, backend=be,
                                              check_values=False)
                logits = logits.reshape(-1, P.n_out)
                loss, n, _ = be.softmax_xent(logits, be.asarray(targets))
                total, count = total + loss, count + n
        self.last_eval = stats = EvalStats(self.step_count, total / max(count, 1), count)
        self._notify("on_eval", stats)
        return stats

    def save(self, path=None) -> Path:
        """Write a checkpoint (atomically; default `out_dir/checkpoint.safetensors`) holding all a
        resumed run needs to continue bit for bit: parameters, optimizer state, streams' states,
        step, epoch, position in the epoch, the epoch's RNG state, configuration, `meta`. With a
        communicator every rank calls it (the streams' states are gathered) and rank 0 writes.
        With `config.average` the file's params are the average, the trained ones `TRAINED` arrays."""
        if path is None:
            if self.out_dir is None:
                raise ValueError("save needs a path (or a trainer with out_dir), got neither")
            path = self.out_dir / CHECKPOINT
        arrays = {f"optim.{key}": value for key, value in self.optimizer.state_dict().items()}
        if self.average is not None:
            arrays.update({f"{TRAINED}{name}": value for name, value in self.params.items()})
        if self.carry is not None:       # the ranks' rows gathered: the batch axis is -2, (B,d) or (cells,B,d)
            arrays["carry"] = self.carry if self.parallel is None else _swap_batch_first(
                self.parallel.gather_rows(_swap_batch_first(to_host(self.carry))))
        if self.parallel is not None and not self.parallel.is_root:
            return path
        trainer = {**self.position, "optimizer_t": self.optimizer.t}
        return save_checkpoint(path, self.model_params, arrays=arrays,
                               meta={**self.meta, "config": dataclasses.asdict(self.config), "trainer": trainer})

    @classmethod
    def load(cls, path, *, backend: str | None = None, callbacks: Iterable[Any] = (), out_dir=None,
             reduce: Callable | None = None, comm=None) -> "Trainer":
        """A trainer resumed from the checkpoint at `path`, on `backend` (default: the saved one)."""
        ckpt = load_checkpoint(path)
        config = TrainConfig(**ckpt.config)
        if backend is not None:
            config.backend = backend
        meta = {k: v for k, v in ckpt.meta.items() if k not in ("format", "version", "config", "trainer")}
        trained = {key[len(TRAINED):]: value for key, value in ckpt.arrays.items() if key.startswith(TRAINED)}
        params = ckpt.params.like(trained) if config.average else ckpt.params
        trainer = cls(params, config, callbacks=callbacks, meta=meta, out_dir=out_dir, reduce=reduce, comm=comm)
        if trainer.average is not None:
            trainer.average.params = ckpt.params.map(trainer.backend.asarray)
        saved = dict(ckpt.meta["trainer"])
        optim = {key[len("optim."):]: value for key, value in ckpt.arrays.items() if key.startswith("optim.")}
        trainer.optimizer.load_state_dict(optim, saved.pop("optimizer_t"))
        trainer.position.update(saved)
        if "carry" in ckpt.arrays:
            carry = ckpt.arrays["carry"]
            trainer.carry = trainer.backend.asarray(
                carry if comm is None else _swap_batch_first(trainer.parallel.local_rows(_swap_batch_first(carry))))
        return trainer

    def host_params(self) -> Params:
        """A NumPy copy of `model_params` (the trainer updates its own arrays in place)."""
        return self.model_params.map(lambda a: np.array(to_host(a)))


class _Throughput:
    """Tokens per second over a session's steps; the first step (Numba's compilation) counts
    only until a second one exists."""

    def __init__(self):
        self.started, self.tokens, self.seconds = False, 0, 0.0

    def add(self, tokens, seconds) -> float:
        if not self.started:
            self.started = True
            return tokens / max(seconds, 1e-9)
        self.tokens, self.seconds = self.tokens + tokens, self.seconds + seconds
        return self.tokens / max(self.seconds, 1e-9)


def _swap_batch_first(states):
    """Carried states (cells,B,d) as (B,cells,d) and back (the swap undoes itself); (B,d) as is."""
    return None if states is None else states.swapaxes(0, -2)
