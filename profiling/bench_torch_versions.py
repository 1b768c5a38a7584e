"""gpurnn.torch.RNN of this checkout against the one of a git revision, forward + backward.

    .venv/bin/python profiling/bench_torch_versions.py REV [--shape T B n d] [--layers 2] [--unidirectional]

REV's `gpurnn/torch` package alone is taken with `git archive` into a temporary folder, its
relative imports pointed at `gpurnn`, and imported beside `gpurnn.torch`: both run on this
checkout's gpurnn, so REV's package must call only what this checkout still offers. Both
sides time `bench_torch_module.step` on the same weights and inputs in one process (float32,
tanh, torch at one thread, the BLAS libraries at their own default, which is what lets the
CPU backend run a layer's two cells on two threads), rounds alternating as in
`bench_torch_module.time_sides`; medians over all samples.
"""
from __future__ import annotations

import argparse
import importlib
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import gpurnn.torch as gt
from bench_torch_module import time_sides

ROOT = Path(__file__).resolve().parent.parent


def load_revision(rev):
    """REV's gpurnn.torch as a module of its own (module docstring), imported whole (its
    package imports every file) before its temporary folder goes."""
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(f"git archive {shlex.quote(rev)} gpurnn/torch | tar -x -C {shlex.quote(folder)}",
                       shell=True, check=True, cwd=ROOT)
        name = "gpurnn_torch_" + re.sub(r"\W", "_", rev)
        package = (Path(folder) / "gpurnn" / "torch").rename(Path(folder) / name)
        for path in package.glob("*.py"):
            text = re.sub(r"^from \.\.(\w*)", lambda m: "from gpurnn" + (f".{m[1]}" if m[1] else ""),
                          path.read_text(), flags=re.M)
            path.write_text(text)
        sys.path.insert(0, folder)
        module = importlib.import_module(name)
        sys.path.remove(folder)
    return module


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rev", help="the git revision to compare with (e.g. a commit before a change)")
    p.add_argument("--shape", type=int, nargs=4, default=[100, 64, 64, 128], metavar=("T", "B", "n", "d"))
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--unidirectional", action="store_true", help="one direction (default: bidirectional)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    old = load_revision(args.rev)
    T, B, n, d = args.shape
    bidirectional = not args.unidirectional
    torch.manual_seed(0)
    modules = {args.rev: old.RNN(n, d, args.layers, bidirectional=bidirectional),
               "this checkout": gt.RNN(n, d, args.layers, bidirectional=bidirectional)}
    modules["this checkout"].load_state_dict(modules[args.rev].state_dict())
    directions = 2 if bidirectional else 1
    x = torch.randn(T, B, n, requires_grad=True)
    h0 = torch.randn(args.layers * directions, B, d, requires_grad=True)
    R = torch.randn(T, B, directions * d)
    ms = time_sides(modules, x, h0, R, args.rounds, args.repeats, args.warmup)
    print(f"T={T} B={B} n={n} d={d} layers={args.layers} directions={directions}: "
          + ", ".join(f"{side} {value:.2f} ms" for side, value in ms.items())
          + f", ratio {ms[args.rev] / ms['this checkout']:.2f}x")


if __name__ == "__main__":
    main()
