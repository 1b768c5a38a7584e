"""`make demo`: the lecture's autocompletion task on real words, end to end, in a few minutes.

Trains a character RNN on the words of the installed Python standard library's docstrings
(no download, no data files), on the GPU when there is one (backend auto), showing
progress; writes `runs/demo/` (checkpoint, loss.png, metrics.json) and prints the most
probable completions of a few prefixes, found by beam search until `<stop>`.
"""
from __future__ import annotations

import sys
import time

from .cli import app

OUT = "runs/demo"
PREFIXES = ["pro", "con", "arg", "str", "def", "imp"]
TRAIN = ["train", "--task", "autocomplete", "--data", "stdlib", "--hidden", "256", "--epochs", "30",
         "--lr", "2e-3", "--backend", "auto", "--patience", "3"]   # 30 s on an idle 2-core CPU


def main(argv: list[str] | None = None, out: str = OUT) -> None:
    """Train (extra command-line arguments, other than --out, are passed on to `gpurnn train`;
    the run in `out` is replaced unless they hold --resume), then complete prefixes with the
    model in `out`."""
    start = time.perf_counter()
    print("gpurnn demo: autocompletion of the words in Python's docstrings")
    extra = list(argv if argv is not None else sys.argv[1:])
    fresh = [] if "--resume" in extra else ["--overwrite"]       # each demo starts its run again
    app(TRAIN + ["--out", str(out)] + fresh + extra, standalone_mode=False)
    print("\nmost probable completions (beam search, log-probability in brackets):")
    app(["complete", str(out), *PREFIXES, "--k", "3"], standalone_mode=False)
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s; see {out}/loss.png and {out}/metrics.json")


if __name__ == "__main__":
    main()
