"""Autocompletion scored as a user feels it, on held-out running text.

For each held-out word w longer than p letters (p = 2 and 3): the user types its first p
letters and is offered k = 3 completions; the word counts as found when it is among them
(top-k accuracy; top-1 too), and then the user selects it with one keystroke instead of
typing the remaining len(w) − p letters:

    keystrokes saved = Σ_found (len(w) − p − 1) / Σ_all len(w)       (all held-out words)

The baseline offers the k most frequent training words that start with the typed letters
(ties: first seen first). Completions are computed once per distinct prefix.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Callable

PREFIX_LENGTHS = (2, 3)
K = 3


def frequency_completer(training_words) -> Callable[[str, int], list[str]]:
    """complete(prefix, k): the k most frequent of `training_words` starting with `prefix`."""
    by_prefix = defaultdict(Counter)
    for word, count in Counter(training_words).items():
        for p in PREFIX_LENGTHS:
            if len(word) >= p:
                by_prefix[word[:p]][word] = count
    return lambda prefix, k: [w for w, _ in by_prefix.get(prefix, Counter()).most_common(k)]


def completion_scores(complete: Callable[[str, int], list[str]], words, *, k: int = K,
                      prefix_lengths=PREFIX_LENGTHS) -> dict:
    """{"top1_from_p", f"top{k}_from_p", "keystrokes_saved_from_p"} for p in `prefix_lengths`, over
    the running text `words`; `complete(prefix, k)` returns up to k words, best first."""
    words = list(words)
    if not words:
        raise ValueError("words must hold at least one held-out word, got none")
    typed = sum(len(w) for w in words)
    scores = {}
    for p in prefix_lengths:
        offered = {prefix: complete(prefix, k) for prefix in sorted({w[:p] for w in words if len(w) > p})}
        scored = [w for w in words if len(w) > p]
        found = [w for w in scored if w in offered[w[:p]]]
        scores[f"top1_from_{p}"] = sum(offered[w[:p]][:1] == [w] for w in scored) / max(len(scored), 1)
        scores[f"top{k}_from_{p}"] = len(found) / max(len(scored), 1)
        scores[f"keystrokes_saved_from_{p}"] = sum(len(w) - p - 1 for w in found) / typed
    return scores
