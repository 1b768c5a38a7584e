"""Using a trained model: sample text, complete a prefix, beam search, tag, classify.

Every function reads the model through `gpurnn.forward`: a prime or prefix of L ids is one
call on inputs (L,1), and each further step is a call on T = 1 from the previous state
(`s0`). Probabilities are p = softmax(z) of the logits z (B,k); log-probabilities are
`scipy.special.log_softmax`.
"""
from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, softmax

from .bptt import forward, output_logits
from .data.vocab import Vocab
from .data.words import STOP
from .model import Params


class Reader:
    """A model with its vocabulary: `state(ids)` runs ids (L,) from `s0` and `step(ids, s)` one step
    for B sequences at once (ids (B,), states (B,d), or (cells,B,d) for a stack, as `forward`'s
    s_last); both return (logits (B,k), states)."""

    def __init__(self, params: Params, vocab: Vocab, *, activation: str = "tanh", backend: str = "cpu"):
        self.params, self.vocab, self.activation, self.backend = params, vocab, activation, backend

    def run(self, ids: np.ndarray, s0=None) -> tuple[np.ndarray, np.ndarray]:
        """ids (L,B) -> (logits (L,B,k), s_last (B,d))."""
        out = forward(self.params, np.asarray(ids, np.int64), s0=s0, activation=self.activation,
                      backend=self.backend)
        return np.asarray(out.logits), np.asarray(out.s_last)

    def state(self, ids: np.ndarray, s0=None) -> tuple[np.ndarray, np.ndarray]:
        logits, s = self.run(np.asarray(ids).reshape(-1, 1), s0)
        return logits[-1], s

    def step(self, ids: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, s = self.run(np.asarray(ids).reshape(1, -1), s)
        return logits[0], s


def _draw(logits: np.ndarray, temperature: float, rng, never: int | None = None) -> int:
    """argmax for temperature 0, else a draw from softmax(z / temperature); never the symbol
    `never` (the unknown symbol: it stands for characters the model never saw, none of which
    it could write)."""
    if never is not None:
        logits = logits.copy()
        logits[never] = -np.inf
    if temperature == 0:
        return int(np.argmax(logits))
    p = softmax(logits.astype(np.float64) / temperature)
    return int(rng.choice(len(p), p=p))


def _check_temperature(temperature):
    if not isinstance(temperature, (int, float)) or temperature < 0:
        raise ValueError(f"temperature must be a number >= 0 (0: greedy), got {temperature!r}")


def sample(reader: Reader, prime: str, length: int, *, temperature: float = 1.0, seed: int = 0) -> str:
    """`length` characters drawn after `prime` (a non-empty text; its state starts the model)."""
    _check_temperature(temperature)
    if not prime:
        raise ValueError("prime must be a non-empty text (the model needs an input to start from)")
    rng = np.random.default_rng(seed)
    logits, s = reader.state(reader.vocab.encode(prime))
    out = []
    for _ in range(length):
        nxt = _draw(logits[0], temperature, rng, never=reader.vocab.unk_id)
        out.append(reader.vocab.symbols[nxt])
        logits, s = reader.step(np.array([nxt]), s)
    return "".join(out)


def _prefix_state(reader: Reader, prefix: str):
    """(log p of the next symbol (k,), state) after reading `<stop> prefix`."""
    ids = np.concatenate(([reader.vocab.id(STOP)], reader.vocab.encode(prefix)))
    logits, s = reader.state(ids)
    return log_softmax(logits[0].astype(np.float64)), s


def complete(reader: Reader, prefix: str, *, max_len: int = 30, temperature: float = 0.0,
             seed: int = 0) -> tuple[str, float]:
    """(prefix + completion, log p(completion, <stop> | prefix)): greedy for temperature 0, else
    sampled, until `<stop>` or `max_len` more characters (then the word has no `<stop>`)."""
    _check_temperature(temperature)
    rng = np.random.default_rng(seed)
    stop = reader.vocab.id(STOP)
    logp, s = _prefix_state(reader, prefix)
    chars, total = [], 0.0
    for _ in range(max_len + 1):
        nxt = _draw(logp, temperature, rng, never=reader.vocab.unk_id)
        total += float(logp[nxt])
        if nxt == stop:
            break
        chars.append(reader.vocab.symbols[nxt])
        logits, s = reader.step(np.array([nxt]), s)
        logp = log_softmax(logits[0].astype(np.float64))
    return prefix + "".join(chars), total


def beam_complete(reader: Reader, prefix: str, *, k: int = 5, beam: int = 16,
                  max_len: int = 30) -> list[tuple[str, float]]:
    """The `k` most probable completions found by beam search (width `beam`), each ending in
    `<stop>`, as (word, log p(completion, <stop> | prefix)), best first. The live beams run as
    one batch (B = beam) through the model at each step."""
    if k < 1 or beam < k:
        raise ValueError(f"need 1 <= k <= beam, got k={k}, beam={beam}")
    stop = reader.vocab.id(STOP)
    logp, s = _prefix_state(reader, prefix)
    beams = [("", 0.0)]                                   # (completion so far, log p)
    step_logp, states = logp[None, :], s                  # (B,k), (B,d) or (cells,B,d) for a stack
    finished = []
    for _ in range(max_len + 1):
        scores = np.array([lp for _, lp in beams])[:, None] + step_logp
        best = np.argsort(scores, axis=None)[::-1]
        survivors = []
        for flat in best:
            b, sym = divmod(int(flat), scores.shape[1])
            word = beams[b][0]
            if sym == stop:
                finished.append((prefix + word, float(scores[b, sym])))
            elif sym != reader.vocab.unk_id:
                survivors.append((b, word + reader.vocab.symbols[sym], sym, float(scores[b, sym])))
            if len(survivors) == beam:
                break
        finished.sort(key=lambda f: -f[1])
        if not survivors or len(finished) >= k and finished[k - 1][1] >= survivors[0][3]:
            break                                         # no live beam can overtake the k-th best
        beams = [(w, lp) for _, w, _, lp in survivors]
        logits, states = reader.step(np.array([sym for _, _, sym, _ in survivors]),
                                     states[..., [b for b, _, _, _ in survivors], :])
        step_logp = log_softmax(logits.astype(np.float64), axis=1)
    return sorted(finished, key=lambda f: -f[1])[:k]


def tag(reader: Reader, ids: np.ndarray, tags: list[str]) -> tuple[list[str], np.ndarray]:
    """(tag per word, its probability (L,)) for a sentence of word ids (L,) or (L,F) (F ids per word)."""
    logits, _ = reader.run(np.asarray(ids)[:, None])
    p = softmax(logits[:, 0].astype(np.float64), axis=1)
    best = p.argmax(axis=1)
    return [tags[i] for i in best], p[np.arange(len(best)), best]


def pooled_probabilities(logits: np.ndarray, lengths: np.ndarray, pool: str) -> np.ndarray:
    """p(class) (B,k) from per-step logits (T,B,k): the softmax at each sequence's last step
    (pool="last", a one-directional model's), or the mean over its steps of each step's softmax
    (pool="mean", for models trained with the label at every step)."""
    p = softmax(logits.astype(np.float64), axis=2)
    lengths = np.asarray(lengths)
    if pool == "last":
        return p[lengths - 1, np.arange(p.shape[1])]
    if pool == "mean":
        mask = np.arange(p.shape[0])[:, None] < lengths[None, :]
        return (p * mask[..., None]).sum(axis=0) / lengths[:, None]
    raise ValueError(f"pool must be 'last' or 'mean', got {pool!r}")


# A classifier's pool -> the engine's output mode it trains and reads (`gpurnn.bptt`): "mean"
# trains with the label at every step (target replication) and averages the steps'
# probabilities; "last" reads the final states; "max" the per-unit max over the real states.
CLASS_OUTPUTS = {"mean": "all", "last": "last", "max": "max"}


def sentence_probabilities(params: Params, inputs, lengths, pool: str, *, activation: str = "tanh",
                           backend: str = "cpu") -> np.ndarray:
    """p(class) (B,k) for B sentences of word ids `inputs` (T,B) with `lengths` (B,), read as
    the classifier's `pool` (a key of CLASS_OUTPUTS) says."""
    if pool not in CLASS_OUTPUTS:
        raise ValueError(f"pool must be one of {tuple(CLASS_OUTPUTS)}, got {pool!r}")
    logits, _ = output_logits(params, inputs, lengths=lengths, activation=activation, output=CLASS_OUTPUTS[pool],
                              backend=backend)
    if pool == "mean":
        return pooled_probabilities(np.asarray(logits), lengths, "mean")
    return softmax(np.asarray(logits, np.float64), axis=1)


def class_probabilities(reader: Reader, ids: np.ndarray, *, pool: str = "last") -> np.ndarray:
    """p(class) (k,) for one sentence of word ids (L,) or (L,F) (see `sentence_probabilities`)."""
    ids = np.asarray(ids, np.int64)
    return sentence_probabilities(reader.params, ids[:, None], np.array([len(ids)]), pool,
                                  activation=reader.activation, backend=reader.backend)[0]
