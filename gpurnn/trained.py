"""A trained model back from its checkpoint, ready to use from Python: `gpurnn.load(path)`.

    model = gpurnn.load("runs/demo")     # a run folder (best.safetensors, else checkpoint.safetensors) or a file
    model.params, model.settings, model.vocab, model.task
    model.forward(ids)                   # ids (T,) or (T,B) -> gpurnn.ForwardResult
    model.sample("ROMEO:", 200)          # character models (charlm, autocomplete)
    model.complete("pro", k=3)           # autocomplete: [(word, log p)], best first (beam search)
    model.tag("The cat sat .")           # tag: [(word, tag, p)]
    model.classify("a witty film")       # classify: {label: p}, most probable first

Each use goes through `gpurnn.generate` (one `forward` over a prime, then one step at a
time); the task's facts (tags, labels, pooling) come from the checkpoint's metadata.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .bptt import ForwardResult, forward
from .checkpoint import load_checkpoint
from .data.features import FeatureEncoder
from .data.vocab import Vocab
from .generate import Reader, beam_complete, class_probabilities, sample, tag
from .model import Params

__all__ = ["TrainedModel", "checkpoint_file", "load"]


def checkpoint_file(path) -> Path:
    """A checkpoint file itself, or the best (else the last) checkpoint of a run folder."""
    path = Path(path)
    if path.is_dir():
        best = path / "best.safetensors"
        return best if best.is_file() else path / "checkpoint.safetensors"
    return path


@dataclasses.dataclass
class TrainedModel:
    """params: the weights (NumPy); settings: the training configuration (a `TrainConfig` as a
    dict: activation, optimizer, lr, ...); vocab: the input vocabulary (None when the checkpoint
    has none); meta: the task's facts (task, tags, labels, pool, ...); backend: where it runs."""

    params: Params
    settings: dict
    vocab: Vocab | None
    meta: dict
    backend: str = "cpu"

    @property
    def task(self) -> str | None:
        return self.meta.get("task")

    @property
    def activation(self) -> str:
        return self.settings.get("activation", "tanh")

    def forward(self, ids, **kwargs) -> ForwardResult:
        """`gpurnn.forward` with this model's parameters and activation; ids (T,) run as one
        sequence (B = 1), (T,B) as a batch; kwargs as for `gpurnn.forward` (lengths, s0)."""
        ids = np.asarray(ids)
        ids = ids.reshape(-1, 1) if ids.ndim == 1 else ids
        return forward(self.params, ids, activation=self.activation, backend=self.backend, **kwargs)

    def reader(self) -> Reader:
        """The `gpurnn.generate.Reader` of this model (needs a vocabulary)."""
        if self.vocab is None:
            raise ValueError("this checkpoint has no vocabulary (meta['vocab']); use forward() with ids")
        return Reader(self.params, self.vocab, activation=self.activation, backend=self.backend)

    def sample(self, prime: str, length: int, *, temperature: float = 1.0, seed: int = 0) -> str:
        """`length` characters drawn after `prime` (see `gpurnn.generate.sample`)."""
        self._need("sample", "charlm", "autocomplete")
        return sample(self.reader(), prime, length, temperature=temperature, seed=seed)

    def complete(self, prefix: str, *, k: int = 5, beam: int = 16, max_len: int = 30) -> list[tuple[str, float]]:
        """The k most probable words starting with `prefix`, as (word, log p), best first."""
        self._need("complete", "autocomplete")
        return beam_complete(self.reader(), prefix, k=k, beam=max(beam, k), max_len=max_len)

    def tag(self, words) -> list[tuple[str, str, float]]:
        """(word, tag, its probability) for each word of a sentence (a str split on spaces, or words)."""
        self._need("tag", "tag")
        words = _words(words)
        tags, probs = tag(self.reader(), FeatureEncoder.from_meta(self.vocab, self.meta).encode(words), self.meta["tags"])
        return list(zip(words, tags, probs.tolist()))

    def classify(self, sentence) -> dict[str, float]:
        """{label: probability}, most probable first, for a sentence (a str, lower-cased and split
        on spaces as in training, or words)."""
        self._need("classify", "classify")
        words = _words(sentence.lower() if isinstance(sentence, str) else sentence)
        ids = FeatureEncoder.from_meta(self.vocab, self.meta).encode(words)   # rare words: their signatures, if any
        p = class_probabilities(self.reader(), ids, pool=self.meta.get("pool", "last"))
        return {self.meta["labels"][i]: float(p[i]) for i in np.argsort(-p, kind="stable")}

    def _need(self, use: str, *tasks: str):
        if self.task not in tasks:
            raise ValueError(f"{use} needs a model trained for {' or '.join(tasks)}, this one is for {self.task!r}")


def _words(sentence) -> list[str]:
    words = sentence.split() if isinstance(sentence, str) else [str(w) for w in sentence]
    if not words:
        raise ValueError(f"sentence must hold at least one word, got {sentence!r}")
    return words


def load(path, *, backend: str = "cpu") -> TrainedModel:
    """The model in `path` (a checkpoint file or a run folder) with its settings and vocabulary,
    its uses running on `backend` (auto | cpu | cuda)."""
    ckpt = load_checkpoint(checkpoint_file(path))
    vocab = ckpt.vocab
    if isinstance(vocab, dict):
        vocab = Vocab.from_json(vocab)
    elif isinstance(vocab, list):
        vocab = Vocab(vocab, unk="<unk>" if "<unk>" in vocab else None)
    meta = {k: v for k, v in ckpt.meta.items() if k not in ("format", "version", "config", "trainer", "vocab")}
    return TrainedModel(ckpt.params, dict(ckpt.config), vocab, meta, backend)
