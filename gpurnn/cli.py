"""The `gpurnn` command line: train, use and evaluate Elman RNNs (`gpurnn --help`).

    gpurnn train --task charlm|autocomplete|tag|classify|sequences --data PATH... --out DIR
    gpurnn sample | complete | tag | classify | predict  CHECKPOINT ...
    gpurnn eval CHECKPOINT --data PATH...        ends with lines `metric NAME VALUE`

(and `diagnose`, registered by `gpurnn.diagnose`). A CHECKPOINT is a `.safetensors` file or
a run directory (its `best.safetensors` when there is one, else `checkpoint.safetensors`).
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import List, Optional

import typer

from .diagnose import diagnose_command

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train Elman RNNs with backpropagation through time on a GPU or the CPU.")

# Per-task defaults: (hidden, lr, batch_size, epochs); charlm trains by steps (see `train`).
DEFAULTS = {"charlm": (256, 2e-3, 32, 1), "autocomplete": (128, 5e-3, 32, 10), "tag": (128, 2e-3, 32, 5),
            "classify": (64, 1e-3, 32, 5), "sequences": (64, 2e-3, 16, 100)}
Backend = typer.Option("auto", help="auto | cpu | cuda")


@app.callback()
def main() -> None:
    """gpurnn: Elman RNNs trained by BPTT (Numba CUDA on NVIDIA GPUs, NumPy/Numba on the CPU)."""


def checkpoint_path(path: Path) -> Path:
    """A checkpoint file, or the best (else last) checkpoint of a run directory."""
    if path.is_dir():
        best = path / "best.safetensors"
        return best if best.is_file() else path / "checkpoint.safetensors"
    return path


@contextlib.contextmanager
def data_errors():
    """Report a malformed data file (the message names file and line) and exit with status 2."""
    from .data.errors import DataError

    try:
        yield
    except DataError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


@app.command()
def train(
    task: str = typer.Option(..., help="charlm | autocomplete | tag | classify | sequences"),
    data: List[str] = typer.Option(..., help="training data: a text (charlm), a word list or 'stdlib' "
                                   "(autocomplete), CoNLL-U (tag), LABEL=PATH items or a LABEL<TAB>TEXT file (classify), "
                                   "a .ts or .npz file of labelled measurement sequences (sequences)"),
    valid: Optional[str] = typer.Option(None, help="validation file (default: held out from --data)"),
    test: List[str] = typer.Option([], help="evaluate on these files at the end (default: the part held out "
                                   "from --data, or --valid for tag)"),
    out: Path = typer.Option(Path("runs/last"), help="directory for checkpoints, metrics.json and loss.png"),
    hidden: Optional[int] = typer.Option(None, help="hidden units d (task default)"),
    activation: str = typer.Option("tanh", help="tanh | logistic | relu"),
    recurrent_init: str = typer.Option("uniform", help="W at the start: uniform (±1/sqrt(d), as torch) | identity "
                                       "(W = I, the IRNN of Le et al. 2015, with relu: the state starts as a running sum) "
                                       "| orthogonal (random orthogonal W, Saxe et al. 2014: for long sequences)"),
    optimizer: str = typer.Option("adam", help="sgd | adagrad | rmsprop | adam"),
    lr: Optional[float] = typer.Option(None, help="learning rate (task default)"),
    schedule: str = typer.Option("constant", help="constant | step | cosine"),
    clip: str = typer.Option("norm", help="norm | value | none"),
    max_norm: float = typer.Option(5.0, help="global-norm clipping threshold"),
    truncate: Optional[int] = typer.Option(None, help="per-loss truncation τ (default: exact BPTT per chunk)"),
    batch_size: Optional[int] = typer.Option(None, help="sequences (streams for charlm) per batch"),
    seq_len: int = typer.Option(50, help="charlm: chunk length of streaming BPTT"),
    epochs: Optional[int] = typer.Option(None, help="epochs in all (task default unless --steps)"),
    steps: Optional[int] = typer.Option(None, help="steps in all (instead of epochs)"),
    eval_every: int = typer.Option(0, help="evaluate every this many steps (0: each epoch)"),
    patience: int = typer.Option(2, help="stop after this many evaluations without a lower validation loss and "
                                 "score the best model (0: train to the end and score the last)"),
    min_count: int = typer.Option(2, help="tag/classify: rarer words get unknown-word ids"),
    pool: str = typer.Option("mean", help="classify: mean (label at every step) | last; sequences: last | mean | "
                             "max, the output read from that pool of the states over each sequence's real steps"),
    word_dropout: float = typer.Option(0.25, help="classify: chance a training word reads as unknown"),
    valid_fraction: float = typer.Option(0.1, help="held out for validation when --valid is not given"),
    seed: int = typer.Option(0, help="seed of the initial weights, data order and splits"),
    backend: str = Backend,
    resume: bool = typer.Option(False, help="continue the run in --out from its checkpoint"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Train a model on one of the five tasks; `--out` gets the checkpoint, metrics.json, loss.png."""
    from .model import RECURRENT_INITS, init_params
    from .report import History, plot_loss, print_metrics, write_metrics
    from .tasks import Options, get_task
    from .train import TrainConfig, Trainer

    the_task = get_task(task)
    d_hidden, d_lr, d_batch, d_epochs = DEFAULTS[task]
    opts = Options(batch_size=batch_size or d_batch, seq_len=seq_len, valid_fraction=valid_fraction,
                   min_count=min_count, pool=pool, word_dropout=word_dropout, seed=seed)
    with data_errors():
        prepared = the_task.prepare(data, valid, opts)
    history = History()
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        trainer = Trainer.load(out / "checkpoint.safetensors", backend=backend, callbacks=[history], out_dir=out)
        if trainer.meta.get("vocab") != prepared.meta.get("vocab"):
            raise typer.BadParameter("--data gives another vocabulary than the checkpoint's", param_hint="--data")
    else:
        config = TrainConfig(activation=activation, optimizer=optimizer, lr=lr or d_lr, schedule=schedule, clip=clip,
                             max_norm=max_norm, truncate=truncate, output=prepared.output, seed=seed,
                             backend=backend, eval_every=eval_every, patience=patience)
        if recurrent_init not in RECURRENT_INITS:
            raise typer.BadParameter(f"must be one of {', '.join(RECURRENT_INITS)}, got {recurrent_init!r}",
                                     param_hint="--recurrent-init")
        params = init_params(prepared.n_in, hidden or d_hidden, prepared.n_out, seed=seed, recurrent=recurrent_init)
        trainer = Trainer(params, config, callbacks=[history], meta=prepared.meta, out_dir=out)
    typer.echo(f"{task}: {prepared.n_in} inputs, hidden {trainer.params.hidden}, {prepared.n_out} outputs, "
               f"{len(prepared.train)} batches per epoch, backend {trainer.backend.name}")
    start = time.perf_counter()
    trainer.fit(prepared.train, steps=steps, epochs=None if steps else (epochs or d_epochs), valid=prepared.valid,
                progress=progress)
    seconds = time.perf_counter() - start
    trainer.save()
    scored = test or (data if the_task.held_out_in_data or not valid else [valid])
    with data_errors():
        final = checkpoint_path(out) if patience else out / "checkpoint.safetensors"   # early stopping keeps the best
        metrics = the_task.evaluate(final, scored, trainer.meta, backend)
    metrics.update(train_seconds=seconds, steps=float(trainer.step_count),
                   tokens_per_s=history.steps[-1].tokens_per_s if history.steps else 0.0)
    write_metrics(out, metrics, history, {"task": task, "config": vars(trainer.config)})
    plot_loss(out, history, f"gpurnn {task}")
    typer.echo(f"wrote {out}/checkpoint.safetensors, metrics.json, loss.png")
    print_metrics(metrics, typer.echo)


@app.command("eval")
def evaluate(checkpoint: Path = typer.Argument(..., help="checkpoint file or run directory"),
             data: List[str] = typer.Option(..., help="data files, as for `train` (the held-out part is scored "
                                            "when they are the training files)"),
             ensemble: List[Path] = typer.Option([], help="classify: more models (runs) whose class "
                                                 "probabilities are averaged with CHECKPOINT's"),
             backend: str = Backend) -> None:
    """Score a model on data: loss or accuracy, with the task's baseline; ends with `metric` lines."""
    from .checkpoint import load_checkpoint
    from .report import print_metrics
    from .tasks import get_task

    path = checkpoint_path(checkpoint)
    meta = load_checkpoint(path).meta
    extra = {}
    if ensemble:
        if meta["task"] != "classify":
            raise typer.BadParameter("only classify models average an ensemble", param_hint="--ensemble")
        extra = {"ensemble": [checkpoint_path(p) for p in ensemble]}
    with data_errors():
        print_metrics(get_task(meta["task"]).evaluate(path, data, meta, backend, **extra), typer.echo)


def _reader(checkpoint: Path, backend: str, task: str):
    from .checkpoint import load_checkpoint
    from .data.vocab import Vocab
    from .generate import Reader

    ckpt = load_checkpoint(checkpoint_path(checkpoint))
    if ckpt.meta.get("task") not in (task if isinstance(task, tuple) else (task,)):
        raise typer.BadParameter(f"this is a {ckpt.meta.get('task')!r} model", param_hint="CHECKPOINT")
    return Reader(ckpt.params, Vocab.from_json(ckpt.meta["vocab"]), activation=ckpt.activation,
                  backend=backend), ckpt.meta


@app.command()
def sample(checkpoint: Path, prime: str = typer.Option("\n", help="text the model reads first"),
           length: int = typer.Option(500, help="characters to draw"),
           temperature: float = typer.Option(0.8, help="0: greedy; <1 sharper; >1 flatter"),
           seed: int = 0, backend: str = typer.Option("cpu", help="auto | cpu | cuda")) -> None:
    """Draw text from a character model, after a prime text."""
    from .generate import sample as draw

    reader, _ = _reader(checkpoint, backend, ("charlm", "autocomplete"))
    typer.echo(prime + draw(reader, prime, length, temperature=temperature, seed=seed))


@app.command()
def complete(checkpoint: Path, prefixes: List[str] = typer.Argument(..., help="word beginnings"),
             k: int = typer.Option(5, help="completions per prefix (beam search)"),
             beam: int = typer.Option(16, help="beam width"), max_len: int = 30,
             backend: str = typer.Option("cpu", help="auto | cpu | cuda")) -> None:
    """The k most probable completions of each prefix (until <stop>), with log-probabilities."""
    from .generate import beam_complete

    reader, _ = _reader(checkpoint, backend, "autocomplete")
    for prefix in prefixes:
        found = beam_complete(reader, prefix, k=k, beam=max(beam, k), max_len=max_len)
        typer.echo(f"{prefix}: " + "  ".join(f"{w} ({lp:.2f})" for w, lp in found))


@app.command("tag")
def tag_command(checkpoint: Path, sentence: str = typer.Argument(..., help="words separated by spaces"),
                backend: str = typer.Option("cpu", help="auto | cpu | cuda")) -> None:
    """Tag each word of a sentence with its part of speech (and the tag's probability)."""
    from .data.signatures import WordEncoder
    from .generate import tag

    reader, meta = _reader(checkpoint, backend, "tag")
    words = sentence.split()
    tags, probs = tag(reader, WordEncoder(reader.vocab).encode(words), meta["tags"])
    typer.echo(" ".join(f"{w}/{t}" for w, t in zip(words, tags)))
    typer.echo(" ".join(f"{p:.2f}" for p in probs))


@app.command("classify")
def classify_command(checkpoint: Path, sentence: str = typer.Argument(..., help="the sentence to classify"),
                     backend: str = typer.Option("cpu", help="auto | cpu | cuda")) -> None:
    """Class probabilities of a sentence, most probable first."""
    from .generate import class_probabilities

    reader, meta = _reader(checkpoint, backend, "classify")
    p = class_probabilities(reader, reader.vocab.encode(sentence.lower().split()), pool=meta["pool"])
    for i in p.argsort()[::-1]:
        typer.echo(f"{meta['labels'][i]} {p[i]:.4f}")


@app.command()
def predict(checkpoint: Path = typer.Argument(..., help="a sequences model: checkpoint file or run directory"),
            data: Path = typer.Argument(..., help="a .ts or .npz file of sequences (labels, if any, are ignored)"),
            backend: str = Backend) -> None:
    """The most probable class of every sequence of a file, one per line, in file order."""
    from .checkpoint import load_checkpoint
    from .tasks import get_task

    path = checkpoint_path(checkpoint)
    if load_checkpoint(path).meta.get("task") != "sequences":
        raise typer.BadParameter("this is not a sequences model", param_hint="CHECKPOINT")
    with data_errors():
        labels = get_task("sequences").predict(path, data, backend)
    for label in labels:
        typer.echo(label)


app.command("diagnose")(diagnose_command)


if __name__ == "__main__":
    app()
