"""The experiments behind `gpurnn diagnose` and docs/gradient-flow.md.

lag_study      for each σ and each target ρ(W): W = a Gaussian matrix rescaled so that its spectral
               radius is exactly ρ, random tokens; `measure_flow` (‖∂s_t/∂s_k‖₂ and the relative
               loss-gradient profile by lag, the bound (γλ)^(t−k), the pairs above it).
train_run      plain SGD on a pathological problem through `gpurnn.train.Trainer` (optimizer "sgd",
               momentum 0, loss_norm "mean": the batch-mean gradient), with clip "norm" or "none",
               and a `GradientNormLog` callback (one row per step, norm before clipping); two runs
               with the same seed differ only in the clipping.
longest_solved increasing lengths until one is not solved within the step budget by at least
               `min_solved` of the seeds (the stated rule that makes the verdict stable).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..batches import Batch
from ..model import init_params
from ..pathological import Evaluation, make_problem
from ..train import TrainConfig, Trainer, TrainingDiverged
from .flow import GradientFlow, measure_flow
from .jacobians import spectral_radius
from .monitor import GradientNormLog


def recurrent_matrix(d: int, rho: float, seed: int = 0) -> np.ndarray:
    """A (d,d) Gaussian matrix scaled so that ρ(W) = rho exactly."""
    W = np.random.default_rng(seed).standard_normal((d, d))
    return W * (rho / spectral_radius(W))


def lag_study(activation_names=("tanh", "logistic", "relu"), rhos=(0.5, 1.0, 1.5), *, T=60, d=32,
              n_in=10, batch=8, seed=0) -> list[GradientFlow]:
    """`measure_flow` for every (σ, ρ) pair on the same random tokens (float64, CPU)."""
    rng = np.random.default_rng(seed)
    inputs = rng.integers(0, n_in, (T, batch))
    targets = rng.integers(0, n_in, (T, batch))
    curves = []
    for name in activation_names:
        for rho in rhos:
            params = init_params(n_in, d, n_in, seed=seed, dtype="float64", scale=0.5)
            params.W[:] = recurrent_matrix(d, rho, seed)
            curves.append(measure_flow(params, inputs, targets, activation=name, backend="cpu"))
    return curves


@dataclasses.dataclass
class TrainingRun:
    """One training run: its per-step log and weight norms, the final evaluation."""

    problem: str
    length: int
    seed: int
    clip: float | None
    log: GradientNormLog
    weight_norm: np.ndarray      # ‖W‖_F after each step
    evaluation: Evaluation
    diverged: bool               # a non-finite loss or gradient stopped the run


def train_run(problem_name="temporal-order-2", length=20, *, clip=None, lr=0.3, rho=1.2, steps=1500,
              hidden=32, batch=20, activation="tanh", seed=0, check_every=0, sequences=10_000) -> TrainingRun:
    """Plain SGD (`gpurnn.train.Trainer`, momentum 0) θ ← θ − lr·g, g the batch-mean gradient,
    clipped to ‖g‖ ≤ clip when given (clip None: no clipping).

    W starts with ρ(W) = rho (`recurrent_matrix`), U and V uniform in ±0.5. Every `check_every`
    steps (0: never) the model is scored on 500 fresh sequences and training stops early once it
    makes no error there; the run ends with the problem's evaluation on `sequences` fresh ones.
    A non-finite loss or gradient (`TrainingDiverged`) ends the run with diverged=True.
    """
    problem = make_problem(problem_name)
    params = init_params(problem.n_in, hidden, problem.n_out, seed=seed, dtype="float64", scale=0.5)
    params.W[:] = recurrent_matrix(hidden, rho, seed)
    config = TrainConfig(activation=activation, optimizer="sgd", momentum=0.0, lr=lr, output=problem.output,
                         clip="none" if clip is None else "norm", max_norm=clip or 1.0, seed=seed, backend="cpu")
    log, weight_norm = GradientNormLog(), []
    trainer = Trainer(params, config, callbacks=[log])
    rng, diverged = np.random.default_rng(seed), False
    for step in range(steps):
        sample = problem.generate(length, batch, rng)
        try:
            trainer.step(Batch(sample.inputs, sample.targets))
        except TrainingDiverged:
            diverged = True
            break
        weight_norm.append(float(np.linalg.norm(trainer.params.W)))
        if check_every and (step + 1) % check_every == 0 and problem.evaluate(
                trainer.params, length, activation=activation, sequences=500, seed=seed + step,
                backend="cpu").error == 0:
            break
    evaluation = problem.evaluate(trainer.params, length, activation=activation, sequences=sequences, backend="cpu")
    return TrainingRun(problem_name, length, seed, clip, log, np.array(weight_norm), evaluation, diverged)


def longest_solved(lengths, seeds=(0, 1, 2), *, min_solved: int | None = None, report=None,
                   **train_kwargs) -> tuple[int | None, list[TrainingRun], dict]:
    """Train at each length in increasing order, once per seed; a length counts as solved when
    at least `min_solved` seeds (default: a majority) solve it, and the search stops at the
    first length that is not.

    `report(length, seeds that solved it)`, when given, is called after each length.
    Returns (the longest solved length or None, every run made, {length: seeds that solved
    it}). Unclipped SGD is chaotic (a change in the order of a BLAS sum can flip one run), so
    a verdict needs many seeds and a rule with a margin (e.g. 8 of 10).
    """
    seeds = list(seeds)
    need = len(seeds) // 2 + 1 if min_solved is None else min_solved
    if not 1 <= need <= len(seeds):
        raise ValueError(f"min_solved must lie in [1, {len(seeds)}] (the number of seeds), got {min_solved!r}")
    runs, best, solved = [], None, {}
    for length in sorted(lengths):
        made = [train_run(length=length, seed=seed, **train_kwargs) for seed in seeds]
        runs.extend(made)
        solved[length] = sum(run.evaluation.solved for run in made)
        if report is not None:
            report(length, solved[length])
        if solved[length] < need:
            break
        best = length
    return best, runs, solved
