"""A character model of a text (`--task charlm`).

The text's ids (N,) are split, last `valid_fraction` for validation, and read as B streams in
chunks of `seq_len` (streaming BPTT). `evaluate` scores the loss per character on the held-out
part beside the unigram baseline; `gpurnn sample` draws text from the model.
"""
from __future__ import annotations

import numpy as np

from ..batches import TokenStreams
from ..data.errors import DataError
from ..data.text import encode_text, read_text, split_text
from ..data.vocab import Vocab
from ..train import Trainer
from . import Options, Prepared, loss_metrics

LANGUAGE_MODEL = ("each output predicts the next symbol, which a backward direction would already have read "
                  "(tag, classify and sequences take it)")


class CharLM:
    name = "charlm"
    # the 2-layer model of docs/results.md (issue 10), lower on validation than one layer at equal
    # training time; 19 epochs of tinyshakespeare's 628 batches are its 12,000 steps
    defaults = {"hidden": 160, "layers": 2, "lr": 3e-3, "batch_size": 32, "epochs": 19, "schedule": "cosine"}
    options = ("seq_len", "valid_fraction")
    refusals = {"bidirectional": LANGUAGE_MODEL}
    held_out_split = ("valid", "train")   # with --valid it trains on all the text, and scores that
    held_out_in_data = True
    commands = ("sample",)

    def prepare(self, paths: list[str], valid: str | None, opts: Options) -> Prepared:
        text = "".join(read_text(p) for p in paths)
        ids, vocab = encode_text(text)
        valid_text = read_text(valid) if valid else ""
        train_ids, valid_ids = (ids, vocab.encode(valid_text)) if valid else split_text(ids, opts.valid_fraction)
        if len(train_ids) <= opts.batch_size:
            raise DataError(", ".join(paths), None, f"{len(train_ids)} characters to train on, fewer than batch_size + 1 "
                            f"= {opts.batch_size + 1} (a stream per row of a batch): lower --batch-size or give more text")
        streams = TokenStreams(train_ids, opts.batch_size, opts.seq_len)
        held = TokenStreams(valid_ids, opts.batch_size, opts.seq_len) if len(valid_ids) > opts.batch_size else None
        meta = {"task": self.name, "vocab": vocab.to_json(), "valid_fraction": opts.valid_fraction,
                "batch_size": opts.batch_size, "seq_len": opts.seq_len}
        notes = [n for n in [vocab.unseen_note(valid_text, f"--valid {valid}")] if n]
        return Prepared(streams, held, len(vocab), len(vocab), "all", meta, notes)

    def evaluate(self, checkpoint_path, paths: list[str], meta: dict, backend: str) -> dict:
        """Loss on the last `valid_fraction` of the text of `paths`, and the unigram baseline's:
        −mean log q(c) with q the (add-one smoothed) character frequencies of the rest."""
        vocab = Vocab.from_json(meta["vocab"])
        ids = vocab.encode("".join(read_text(p) for p in paths))
        train_ids, valid_ids = split_text(ids, meta["valid_fraction"]) if meta["valid_fraction"] > 0 else (ids, ids)
        trainer = Trainer.load(checkpoint_path, backend=backend)
        loss = trainer.evaluate(TokenStreams(valid_ids, meta["batch_size"], meta["seq_len"])).loss
        counts = np.bincount(train_ids, minlength=len(vocab)) + 1.0
        unigram = -float(np.mean(np.log(counts / counts.sum())[valid_ids[1:]]))
        return {**loss_metrics(loss), "baseline_unigram_nats": unigram}


TASK = CharLM()
