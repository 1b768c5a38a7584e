"""The sequence-classification results of docs/results.md, with both baselines, in one run.

    .venv/bin/python profiling/sequence_results.py [--data ../shared/data] [--out runs/sequences]

For JapaneseVowels and BasicMotions (the UEA archive's `.ts` files) it measures

    dtw      1-NN with dependent DTW on the raw series (`profiling/dtw_baseline.py`)
    plain    a plain last-step RNN: `gpurnn train --task sequences --pool last` with the default
             uniform initialisation (tanh, hidden 64, Adam 2e-3, 100 epochs), seeds 0, 1, 2
    model    the model docs/results.md reports (MODELS below), seeds 0, 1, 2
    STACKED  on JapaneseVowels also the bidirectional models docs/results.md reports, seeds 0, 1, 2

each gpurnn run through the command line (the exact commands are printed and saved); on
BasicMotions also the plain model with one change at a time (ABLATION: which choice closes the
gap), and the gradient reaching each step of the plain and the reported model
(`gradient_profile(...).totals`: ‖∂L/∂s_{T−ℓ}‖ / max_k ‖∂L/∂s_k‖ by lag ℓ from the end, over
the training file, at the initial and at the trained weights). It prints markdown tables;
`OUT/results.json` keeps every number.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dtw_baseline import nearest_neighbour_accuracy  # noqa: E402

from gpurnn.checkpoint import load_checkpoint  # noqa: E402
from gpurnn.data.measurements import Standardizer, read_measurements  # noqa: E402
from gpurnn.diagnostics import gradient_profile  # noqa: E402
from gpurnn.model import init_params  # noqa: E402

SEEDS = (0, 1, 2)
COMMON = ("--patience", "0", "--backend", "cpu", "--no-progress")
PLAIN = ("--pool", "last")
MODELS = {
    "JapaneseVowels": ("--pool", "last", "--activation", "logistic", "--recurrent-init", "orthogonal", "--hidden", "128",
                       "--lr", "5e-3"),
    "BasicMotions": ("--pool", "max"),
}
STACKED = {  # JapaneseVowels: the bidirectional sweep's best by validation and its best by test accuracy
    "bi, by validation": ("--bidirectional", "--pool", "last", "--recurrent-init", "orthogonal", "--schedule",
                          "cosine", "--hidden", "128"),
    "bi 2 layers, by test": ("--bidirectional", "--layers", "2", "--dropout", "0.3", "--pool", "last",
                             "--recurrent-init", "orthogonal", "--schedule", "cosine", "--hidden", "128")}
ABLATION = {"orthogonal W": ("--pool", "last", "--recurrent-init", "orthogonal"),
            "clip at 1": ("--pool", "last", "--max-norm", "1"),
            "relu, W = I": ("--pool", "last", "--activation", "relu", "--recurrent-init", "identity"),
            "mean pool": ("--pool", "mean"),
            "max pool": ("--pool", "max")}
LAGS = (0, 1, 5, 10, 25, 50, 99)


def train(data: Path, name: str, flags, seed: int, out: Path):
    """(test accuracy, train seconds, the command) of one `gpurnn train` run."""
    one_way = () if "--bidirectional" in flags else ("--no-bidirectional",)    # the task's default is both
    command = ["gpurnn", "train", "--task", "sequences", "--data", str(data / f"{name}_TRAIN.ts"),
               "--test", str(data / f"{name}_TEST.ts"), *flags, *one_way, "--seed", str(seed), "--out", str(out),
               *COMMON]
    done = subprocess.run([sys.executable, "-m", "gpurnn.cli", *command[1:]], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    metrics = {m[1]: float(m[2]) for m in re.finditer(r"^metric (\S+) (\S+)$", done.stdout, re.M)}
    return metrics["test/accuracy"], metrics["train/seconds"], " ".join(command)


def gradient_by_lag(run: Path, train_file: Path) -> dict:
    """{"initial" | "trained": {ℓ: ‖∂L/∂s_{T−ℓ}‖ / max_k ‖∂L/∂s_k‖}} at LAGS over the training
    file's sequences (float64), at the run's initial weights (uniform W, drawn again from its
    seed) and at its trained weights."""
    ckpt = load_checkpoint(run / "checkpoint.safetensors")
    meta = ckpt.meta
    data = read_measurements(train_file)
    scaler = Standardizer.from_json(meta["standardize"])
    inputs = np.stack([scaler(x, np.float64) for x in data.series], axis=1)     # equal lengths: (T,B,n)
    targets = np.array([meta["classes"].index(label) for label in data.labels])
    P = ckpt.params
    initial = init_params(P.n_in, P.hidden, P.n_out, seed=ckpt.config["seed"], dtype="float64")
    out = {}
    for when, params in (("initial", initial), ("trained", P.map(lambda a: a.astype(np.float64)))):
        totals = gradient_profile(params, inputs, targets, activation=ckpt.activation, output=meta["pool"],
                                  backend="cpu").totals
        out[when] = {lag: float(totals[-1 - lag] / totals.max()) for lag in LAGS if lag < len(totals)}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/sequences"))
    args = parser.parse_args()
    results, started = {}, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for name in MODELS:
        train_file, test_file = args.data / f"{name}_TRAIN.ts", args.data / f"{name}_TEST.ts"
        row = {"dtw": nearest_neighbour_accuracy(read_measurements(train_file), read_measurements(test_file))}
        kinds = (("plain", PLAIN), ("model", MODELS[name]), *(STACKED.items() if name == "JapaneseVowels" else ()))
        for kind, flags in kinds:
            tag = re.sub(r"\W+", "-", kind).strip("-")
            runs = [train(args.data, name, flags, seed, args.out / f"{name}-{tag}-s{seed}") for seed in SEEDS]
            row[kind] = {"accuracy": [r[0] for r in runs], "mean": float(np.mean([r[0] for r in runs])),
                         "train_seconds": [r[1] for r in runs], "commands": [r[2] for r in runs]}
        if name == "BasicMotions":
            row["gradient_by_lag"] = {kind: gradient_by_lag(args.out / f"{name}-{kind}-s0", train_file)
                                      for kind in ("plain", "model")}
            row["ablation"] = {}
            for change, flags in ABLATION.items():
                tag = re.sub(r"\W+", "-", change).strip("-")
                accuracy = [train(args.data, name, flags, seed, args.out / f"{name}-{tag}-s{seed}")[0] for seed in SEEDS]
                row["ablation"][change] = {"flags": " ".join(flags), "accuracy": accuracy}
        results[name] = row
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"date": started, **results}, indent=1))
    print(f"| data set | 1-NN DTW | plain last-step RNN (3 seeds) | gpurnn model (3 seeds) |  ({started})")
    print("| --- | --- | --- | --- |")
    for name, row in results.items():
        cells = [f"{np.mean(row[k]['accuracy']):.1%} ({', '.join(f'{a:.1%}' for a in row[k]['accuracy'])})"
                 for k in ("plain", "model")]
        print(f"| {name} | {row['dtw']:.1%} | {cells[0]} | {cells[1]} |")
    print("\n| JapaneseVowels, bidirectional | flags | accuracy (seeds 0, 1, 2) | mean |")
    print("| --- | --- | --- | --- |")
    for kind in STACKED:
        r = results["JapaneseVowels"][kind]
        print(f"| {kind} | `{' '.join(STACKED[kind])}` | {', '.join(f'{a:.1%}' for a in r['accuracy'])} | "
              f"{r['mean']:.1%} |")
    bm = results["BasicMotions"]
    print("\n| BasicMotions, one change to the plain model | flags | accuracy (seeds 0, 1, 2) | mean |")
    print("| --- | --- | --- | --- |")
    for change, r in bm["ablation"].items():
        print(f"| {change} | `{r['flags']}` | {', '.join(f'{a:.1%}' for a in r['accuracy'])} | "
              f"{np.mean(r['accuracy']):.1%} |")
    print("\n| ‖∂L/∂s_(T−ℓ)‖ / max_k, BasicMotions train, seed 0 | " + " | ".join(f"ℓ={k}" for k in LAGS) + " |")
    print("| --- " * (len(LAGS) + 1) + "|")
    for kind, by_when in bm["gradient_by_lag"].items():
        for when, by_lag in by_when.items():
            print(f"| {kind}, {when} | " + " | ".join(f"{v:.2g}" for v in by_lag.values()) + " |")
    for name, row in results.items():
        for kind in ("model", *(STACKED if name == "JapaneseVowels" else ())):
            print(f"{name} {kind}, seed 0: {row[kind]['commands'][0]}")


if __name__ == "__main__":
    main()
