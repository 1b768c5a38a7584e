"""`make demo`: the lecture's autocompletion task on real running text, end to end, in about a minute.

Trains a character RNN on the words of the installed Python standard library's docstrings as
they occur (a frequent word is seen as often as it is written; no download, no data files),
on the GPU when there is one (backend auto), showing progress; holds out the last 10% of
the text, and scores autocompletion there as a user feels it: the share of words whose
top-3 completions from the first 2 or 3 typed letters hold the word, and the keystrokes
saved, beside the most-frequent-word baseline (`metric test/...` lines). Writes `runs/demo/`
(checkpoint, loss.png, metrics.json) and prints the most probable completions of a few
prefixes, found by beam search until `<stop>`.
"""
from __future__ import annotations

import sys
import time

from threadpoolctl import threadpool_limits

from .cli import app

OUT = "runs/demo"
PREFIXES = ["pro", "con", "arg", "str", "def", "imp"]
TRAIN = ["train", "--task", "autocomplete", "--data", "stdlib", "--hidden", "256", "--steps", "8000",
         "--eval-every", "1000", "--lr", "5e-3", "--schedule", "cosine", "--backend", "auto", "--patience", "3"]


def main(argv: list[str] | None = None, out: str = OUT) -> None:
    """Train (extra command-line arguments, other than --out, are passed on to `gpurnn train`;
    the run in `out` is replaced unless they hold --resume), then complete prefixes with the
    model in `out`."""
    start = time.perf_counter()
    print("gpurnn demo: autocompletion of the words of Python's docstrings, as they occur")
    extra = list(argv if argv is not None else sys.argv[1:])
    fresh = [] if "--resume" in extra else ["--overwrite"]       # each demo starts its run again
    # The model's products are small: one BLAS thread runs them as fast on an idle machine, and
    # 10-16x faster than OpenBLAS's spinning threads on a busy one (docs/results.md).
    with threadpool_limits(1, user_api="blas"):
        app(TRAIN + ["--out", str(out)] + fresh + extra, standalone_mode=False)
        print("\nmost probable completions (beam search, log-probability in brackets):")
        app(["complete", str(out), *PREFIXES, "--k", "3"], standalone_mode=False)
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s; see {out}/loss.png and {out}/metrics.json")


if __name__ == "__main__":
    main()
