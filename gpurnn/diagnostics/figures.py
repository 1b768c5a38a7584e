"""`gpurnn diagnose`: the figures and numbers of docs/gradient-flow.md (vanishing and exploding
gradients, measured).

It runs the three studies of `gpurnn.diagnostics.studies` on the CPU in float64 and writes

    gradient-flow-lag.png       ‖∂s_t/∂s_k‖₂ by lag (geometric mean and maximum over pairs), the
                                relative loss-gradient profile and the bound (γλ)^(t−k), for tanh /
                                logistic / relu (rows) and ρ(W) = 0.5, 1, 1.5 and 3 (columns)
    gradient-flow-clipping.png  temporal order (2 symbols): loss, gradient norm before clipping and
                                ‖W‖_F per SGD step, with and without global-norm clipping (same seed,
                                same learning rate; the JSON has the same pair for `run_seeds` seeds,
                                and the lag study's rates for `seeds` random W)
    gradient-flow.json          every number docs/gradient-flow.md quotes, with the command, date
                                and commit that produced them (tests/test_published.py checks
                                the page against it and recomputes the deterministic part)

and prints `metric NAME VALUE` lines. Defaults take a few minutes on two CPU cores.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import numpy as np
import typer

from ..provenance import provenance
from .studies import lag_study, longest_solved, train_run

RHOS = (0.5, 1.0, 1.5, 3.0)
SEARCH_LENGTHS = (10, 15, 20, 30, 40, 60)
# The training studies' verdicts: 10 seeds each, and a length counts as solved when at least 8
# of them solve it (one or two chaotic runs flipping cannot change the verdict).
RUN_SEEDS, MIN_SOLVED = 10, 8
PROVENANCE_PREFIX = "Numbers and figures of this page:"
PAGE_TABLES = ("lag", "clipping", "longest_solved")      # docs/gradient-flow.md's tables, in order


def measured_rate(curve: np.ndarray, first=1, last=20) -> float:
    """The per-step factor of a by-lag curve: (c[last]/c[first])^(1/(last−first)), over the
    lags where the curve is positive (float64 underflows to 0 far out)."""
    positive = np.flatnonzero(np.isfinite(curve) & (curve > 0))
    last = min(last, int(positive.max()))
    if last <= first:
        return float("nan")
    return float((curve[last] / curve[first]) ** (1.0 / (last - first)))


def lag_figure(curves, path):
    """The grid of gradient-norm-vs-lag panels (log scale), bound drawn over the measurements."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({c.activation for c in curves}, key=[c.activation for c in curves].index)
    rhos = sorted({round(c.rho, 6) for c in curves})
    fig, axes = plt.subplots(len(names), len(rhos), figsize=(3.2 * len(rhos), 2.6 * len(names)),
                             sharex=True, sharey=True, squeeze=False)
    for c in curves:
        ax = axes[names.index(c.activation), rhos.index(round(c.rho, 6))]
        lags = np.arange(len(c.bound))
        ax.semilogy(lags, c.bound, "k--", label="bound (γλ)^ℓ")
        ax.semilogy(lags, c.jacobian_max, color="tab:red", label="max ‖∂s_t/∂s_k‖₂")
        ax.semilogy(lags, c.jacobian_geomean, color="tab:blue", label="geo-mean ‖∂s_t/∂s_k‖₂")
        ax.semilogy(lags, c.profile_geomean, color="tab:green", ls=":", label="‖∂L_t/∂s_k‖/‖∂L_t/∂s_t‖")
        ax.set_title(f"{c.activation}, ρ={c.rho:g}, γλ={c.gamma * c.norm:.2f}", fontsize=9)
        ax.set_ylim(1e-12, 1e8)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("lag t − k")
    for ax in axes[:, 0]:
        ax.set_ylabel("norm")
    axes[0, 0].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def clipping_figure(runs, path):
    """Loss and gradient norm (before clipping) per step for each run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom, weights) = plt.subplots(3, 1, figsize=(7, 7.5), sharex=True)
    for run, color in zip(runs, ("tab:red", "tab:blue")):
        label = "no clipping" if run.clip is None else f"clip ‖g‖ ≤ {run.clip:g}"
        label += f" (error {run.evaluation.error:.1%})"
        steps = run.log.column("step")
        top.plot(steps, _smooth(run.log.column("loss")), color=color, label=label)
        bottom.semilogy(steps, run.log.column("norm"), color=color, lw=0.6, label=label)
        weights.plot(np.arange(1, len(run.weight_norm) + 1), run.weight_norm, color=color, label=label)
    top.set_ylabel("loss (mean of 25 steps)")
    bottom.set_ylabel("‖g‖ before clipping")
    weights.set_ylabel("‖W‖_F after the step")
    weights.set_xlabel("SGD step")
    top.set_title(f"temporal order, 2 symbols, T = {runs[0].length}")
    top.legend(fontsize=8)
    for ax in (top, bottom, weights):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _smooth(values, window=25):
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def run_diagnose(out_dir="runs/diagnose", *, T=60, hidden=32, length=20, lr=0.3, clip=1.0, steps=1500,
                 search=SEARCH_LENGTHS, seeds=3, run_seeds=RUN_SEEDS, min_solved=MIN_SOLVED, sequences=10_000,
                 echo=print, command="gpurnn diagnose", page=None) -> dict:
    """Run the studies, write the figures and gradient-flow.json into `out_dir`, rewrite the
    tables of the page at `page` (docs/gradient-flow.md; None: none) by `update_page`, return
    the numbers.

    seeds: random W per (σ, ρ) of the lag study; run_seeds: seeds of each training study (the
    clipping pair and every length of the search); min_solved: the rule of the search, a length
    is solved when at least that many of the run_seeds seeds solve it. sequences: fresh
    sequences per final evaluation (the success criteria use 10,000). `command` is recorded
    in the JSON's provenance with the date and the commit.
    """
    out, start = pathlib.Path(out_dir), time.perf_counter()

    def stage(number: int, what: str) -> None:
        echo(f"[{time.perf_counter() - start:5.0f} s] stage {number}/3: {what}")

    out.mkdir(parents=True, exist_ok=True)
    stage(1, f"Jacobian norms by lag, tanh, logistic and relu x {len(RHOS)} spectral radii, {seeds} random W each")
    studies = [lag_study(rhos=RHOS, T=T, d=hidden, seed=seed) for seed in range(seeds)]
    curves = studies[0]
    lag_figure(curves, out / "gradient-flow-lag.png")
    numbers = {"provenance": provenance(command),
               "settings": {"T": T, "hidden": hidden, "length": length, "lr": lr, "clip": clip, "steps": steps,
                            "lag_seeds": seeds, "run_seeds": run_seeds, "min_solved": min_solved,
                            "sequences": sequences},
               "lag_study": [_curve_numbers(c) for c in curves],
               "lag_rate_by_seed": {f"{c.activation}_rho{c.rho:g}": [measured_rate(study[i].jacobian_geomean)
                                                                      for study in studies]
                                    for i, c in enumerate(curves)},
               "lag_violations_all_seeds": sum(c.violations for study in studies for c in study)}
    stage(2, f"temporal order of length {length}, SGD without and with clipping at {clip:g}, {run_seeds} seeds "
             f"x {steps} steps")
    runs = []
    for seed in range(run_seeds):
        runs.append([train_run(length=length, clip=value, lr=lr, steps=steps, hidden=hidden, seed=seed,
                               sequences=sequences) for value in (None, clip)])
        solved = ["yes" if run.evaluation.solved else "no" for run in runs[-1]]
        echo(f"  seed {seed + 1}/{run_seeds}: solved without clipping {solved[0]}, with {solved[1]}")
    clipping_figure(runs[0], out / "gradient-flow-clipping.png")
    numbers["clipping"] = [_run_numbers(run) for pair in runs for run in pair]
    numbers["clipping_solved"] = {str(value): sum(pair[i].evaluation.solved for pair in runs)
                                  for i, value in enumerate((None, clip))}
    numbers["longest_solved"] = []
    stage(3, f"the longest length solved by {min_solved} of {run_seeds} seeds, of {', '.join(map(str, search))}, "
             "without and with clipping")
    for value in (None, clip):
        def report(n, k, value=value):
            echo(f"  {'no clipping' if value is None else f'clipping at {value:g}'}: length {n} solved by {k} "
                 f"of {run_seeds} seeds")

        best, made, solved = longest_solved(search, range(run_seeds), min_solved=min_solved, clip=value, lr=lr,
                                            steps=steps, hidden=hidden, check_every=100, sequences=sequences,
                                            report=report)
        numbers["longest_solved"].append({"clip": value, "searched": list(search), "longest": best,
                                          "solved_by_length": {str(n): k for n, k in solved.items()},
                                          "runs": [_run_numbers(run) for run in made]})
    (out / "gradient-flow.json").write_text(json.dumps(numbers, indent=1) + "\n")
    (out / "gradient-flow-tables.md").write_text("\n\n".join(markdown_tables(numbers).values()) + "\n")
    if page is not None:
        page = pathlib.Path(page)
        page.write_text(update_page(page.read_text(encoding="utf-8"), numbers), encoding="utf-8")
    echo(f"[{time.perf_counter() - start:5.0f} s] wrote {out}/: gradient-flow-lag.png, gradient-flow-clipping.png, "
         "gradient-flow.json, gradient-flow-tables.md" + (f"; rewrote the tables of {page}" if page is not None else ""))
    for name, rates in numbers["lag_rate_by_seed"].items():
        for seed, rate in enumerate(rates):
            echo(f"metric rate_{name}_seed{seed} {rate:.4f}")
    echo(f"metric bound_violations {numbers['lag_violations_all_seeds']}")
    for r in numbers["clipping"]:
        echo(f"metric clip_{r['clip']}_seed{r['seed']}_error {r['error']:.4f}")
    for s in numbers["longest_solved"]:
        echo(f"metric longest_solved_clip_{s['clip']} {s['longest']}")
    return numbers


def markdown_tables(numbers: dict) -> dict[str, str]:
    """docs/gradient-flow.md's provenance line and tables, rendered from gradient-flow.json's numbers
    (tests/test_published.py checks that the page holds them verbatim)."""
    p, cfg = numbers["provenance"], numbers["settings"]
    seeds = ", ".join(str(i) for i in range(cfg["lag_seeds"]))
    last = cfg["T"] - 1
    mid = min(10, last)
    lag = [f"| σ | ρ(W) | λ | γρ | γλ | rate, lags 1–20 (W seeds {seeds}) | geo-mean, lag {mid} "
           f"| lag {last} (one pair) | bound, lag {last} |", "|---|---|---|---|---|---|---|---|---|"]
    for row in numbers["lag_study"]:
        rates = numbers["lag_rate_by_seed"][f"{row['activation']}_rho{row['rho']:g}"]
        lag.append(f"| {row['activation']} | {row['rho']:g} | {row['norm']:.2f} | {row['gamma_rho']:g} "
                   f"| {row['gamma_lambda']:.3g} | {', '.join(f'{r:.3f}' for r in rates)} "
                   f"| {row[f'geomean_lag{mid}']:.2e} | {row[f'geomean_lag{last}']:.2e} "
                   f"| {row[f'bound_lag{last}']:.2e} |")
    clip = [f"| seed | clipping | error on {cfg['sequences']:,} fresh sequences | max ‖g‖ | median ‖g‖ "
            "| max loss (one batch) | final loss | max ‖W‖_F |", "|---|---|---|---|---|---|---|---|"]
    for r in numbers["clipping"]:
        setting = "none" if r["clip"] is None else f"‖g‖ ≤ {r['clip']:g}"
        clip.append(f"| {r['seed']} | {setting} | {r['error']:.1%} | {r['max_norm']:.1f} | {r['median_norm']:.2g} "
                    f"| {r['max_loss']:.2f} | {r['final_loss']:.2g} | {r['max_weight_norm']:.1f} |")
    search = numbers["longest_solved"][0]["searched"]
    longest = [f"| setting | {' | '.join(f'T = {n}' for n in search)} | longest solved "
               f"(≥ {cfg['min_solved']} of {cfg['run_seeds']} seeds) |", "|---" * (len(search) + 2) + "|"]
    for s in numbers["longest_solved"]:
        setting = "no clipping" if s["clip"] is None else f"clip ‖g‖ ≤ {s['clip']:g}"
        counts = [f"{s['solved_by_length'][str(n)]} of {cfg['run_seeds']}" if str(n) in s["solved_by_length"]
                  else "not run" for n in search]
        verdict = "none" if s["longest"] is None else f"T = {s['longest']}"
        longest.append(f"| {setting} | {' | '.join(counts)} | {verdict} |")
    return {"provenance": f"{PROVENANCE_PREFIX} `{p['command']}`, run {p['date'][:10]} at commit "
                          f"{p['commit']}.",
            "lag": "\n".join(lag), "clipping": "\n".join(clip), "longest_solved": "\n".join(longest)}


def update_page(page: str, numbers: dict) -> str:
    """docs/gradient-flow.md's text with its provenance line and its three tables (lag,
    clipping, longest solved, in that order: the page's only lines starting with "|") rendered
    anew from `numbers` by `markdown_tables`; the prose around them is kept."""
    if count_tables(page) != len(PAGE_TABLES):
        raise ValueError(f"the page must hold {len(PAGE_TABLES)} tables, got {count_tables(page)}")
    tables, blocks = markdown_tables(numbers), iter(PAGE_TABLES)
    lines, out = page.split("\n"), []
    for i, line in enumerate(lines):
        if line.startswith(PROVENANCE_PREFIX):
            out.append(tables["provenance"])
        elif not line.startswith("|"):
            out.append(line)
        elif i == 0 or not lines[i - 1].startswith("|"):
            out.append(tables[next(blocks)])
    return "\n".join(out)


def count_tables(page: str) -> int:
    """The markdown tables of a page: runs of lines starting with "|"."""
    lines = page.split("\n")
    return sum(line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|")) for i, line in enumerate(lines))


def _curve_numbers(c) -> dict:
    row = {key: value for key, value in dataclasses.asdict(c).items()
           if not isinstance(value, (np.ndarray, dict))}      # the arrays (and the profile's) go to figures
    row.update(gamma_rho=c.gamma * c.rho, gamma_lambda=c.gamma * c.norm,
               rate_lags_1_20=measured_rate(c.jacobian_geomean),
               rate_lags_1_59=measured_rate(c.jacobian_geomean, last=len(c.bound) - 1))
    for lag in sorted({lag for lag in (1, 10, 30) if lag < len(c.bound)} | {len(c.bound) - 1}):
        row[f"geomean_lag{lag}"] = float(c.jacobian_geomean[lag])
        row[f"max_lag{lag}"] = float(c.jacobian_max[lag])
        row[f"bound_lag{lag}"] = float(c.bound[lag])
    return row


def _run_numbers(run) -> dict:
    norms, losses = run.log.column("norm"), run.log.column("loss")
    tail = max(len(losses) // 10, 1)
    return {"length": run.length, "seed": run.seed, "clip": run.clip, "steps": len(losses),
            "error": run.evaluation.error,
            "solved": run.evaluation.solved, "diverged": run.diverged, "max_norm": float(np.nanmax(norms)),
            "median_norm": float(np.nanmedian(norms)), "max_loss": float(np.nanmax(losses)),
            "final_loss": float(np.nanmean(losses[-tail:])),
            "max_weight_norm": float(np.max(run.weight_norm, initial=0.0))}


def diagnose_command(
    out: pathlib.Path = typer.Option(pathlib.Path("runs/diagnose"), help="folder for the PNGs and gradient-flow.json "
                                     "(docs/figures: the published ones)"),
    page: pathlib.Path = typer.Option(None, help="a page whose tables to rewrite from the numbers "
                                                 "(docs/gradient-flow.md)", exists=True, dir_okay=False),
    steps: int = typer.Option(1500, min=1, help="SGD steps per training run (the length search's budget)"),
    lr: float = typer.Option(0.3, min=0.0, help="SGD learning rate of the clipping study"),
    clip: float = typer.Option(1.0, min=0.0, help="max ‖g‖ of the clipped runs"),
    length: int = typer.Option(20, min=10, help="temporal-order length of the clipping figure"),
    seeds: int = typer.Option(RUN_SEEDS, min=1, help="seeds of each training study (clipping pair, length search)"),
    min_solved: int = typer.Option(MIN_SOLVED, min=1, help="a length is solved when at least this many seeds solve it"),
) -> None:
    """Measure vanishing/exploding gradients (tanh, logistic, relu; ρ(W) = 0.5, 1, 1.5, 3) and the
    effect of norm clipping on temporal order; write the figures of docs/gradient-flow.md."""
    if min_solved > seeds:
        raise typer.BadParameter(f"must be at most --seeds ({seeds}), got {min_solved}", param_hint="--min-solved")
    if page is not None and count_tables(page.read_text(encoding="utf-8")) != len(PAGE_TABLES):
        raise typer.BadParameter(f"must hold the {len(PAGE_TABLES)} tables of docs/gradient-flow.md (lag, clipping, "
                                 f"longest solved), got {count_tables(page.read_text(encoding='utf-8'))}",
                                 param_hint="--page")
    command = f"gpurnn diagnose --out {out} --steps {steps} --lr {lr:g} --clip {clip:g} --length {length} " \
              f"--seeds {seeds} --min-solved {min_solved}"
    run_diagnose(out, steps=steps, lr=lr, clip=clip, length=length, run_seeds=seeds, min_solved=min_solved,
                 echo=typer.echo, command=command, page=page)
