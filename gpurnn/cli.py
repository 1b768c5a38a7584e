"""The `gpurnn` command line: train, use and evaluate Elman RNNs (`gpurnn --help`).

    gpurnn train --task charlm|autocomplete|tag|classify|sequences --data PATH... --out DIR
    gpurnn sample | complete | tag | classify | predict  CHECKPOINT ...
    gpurnn eval CHECKPOINT --data PATH...        ends with lines `metric SPLIT/NAME VALUE`

(and `diagnose`, registered by `gpurnn.diagnostics.figures`). A CHECKPOINT is a `.safetensors` file or
a run directory (its `best.safetensors` when there is one, else `checkpoint.safetensors`).
Option values are checked as the command line is read, and every user error ends as one
line on stderr with exit status 2 (`gpurnn.cli_checks`); `train` is run by `gpurnn.train_run`.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .cli_checks import DEBUG, OneLineErrors, choices, fail, finite
from .diagnostics.figures import diagnose_command
from .model import RECURRENT_INITS
from .distributed import abort_job_on_error
from .tasks import tasks, tasks_with_command
from .train_run import defaults_help, run_training, scored_split
from .trained import checkpoint_file

app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True,
                  help="Train Elman RNNs with backpropagation through time on a GPU or the CPU.")

Task = choices("Task", tasks())
Activation = choices("Activation", ("tanh", "logistic", "relu"))
Init = choices("Init", RECURRENT_INITS)
Optimizer = choices("Optimizer", ("sgd", "adagrad", "rmsprop", "adam"))
Schedule = choices("Schedule", ("constant", "step", "cosine"))
Clip = choices("Clip", ("norm", "value", "none"))
Pool = choices("Pool", ("mean", "last", "max"))
BackendName = choices("BackendName", ("auto", "cpu", "cuda"))
Backend = typer.Option("auto", help="where to compute")
CpuBackend = typer.Option("cpu", help="where to compute")
MORE_DATA = typer.Argument(None, metavar="[DATA]...", show_default=False,
                           help="more --data items (`--data A B` reads as `--data A --data B`)")


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", envvar="GPURNN_DEBUG",
                                    help="show the traceback of an error instead of its one line")) -> None:
    """gpurnn: Elman RNNs trained by BPTT (Numba CUDA on NVIDIA GPUs, NumPy/Numba on the CPU)."""
    DEBUG["on"] = debug


def checkpoint_path(path: Path) -> Path:
    """A checkpoint file, or the best (else last) checkpoint of a run directory; it must exist."""
    path = checkpoint_file(path)
    if not path.is_file():
        raise fail(f"{path} does not exist; expected a checkpoint file or a run folder holding one", "CHECKPOINT")
    return path


def load_model(checkpoint: Path, command: str):
    """(path, Checkpoint) of a model that `gpurnn COMMAND` uses (its task declares the command;
    `eval` uses all), its vocabulary checked against its shape."""
    from .checkpoint import load_checkpoint
    from .data.features import FeatureEncoder
    from .data.vocab import Vocab

    path = checkpoint_path(checkpoint)
    ckpt = load_checkpoint(path)
    takes = tuple(tasks()) if command == "eval" else tasks_with_command(command)
    if ckpt.meta.get("task") not in takes:
        raise fail(f"{path} holds a {ckpt.meta.get('task')!r} model; `gpurnn {command}` needs a model trained with "
                   f"--task {' or '.join(takes)}", "CHECKPOINT")
    if ckpt.meta["task"] == "sequences":          # measurements: no vocabulary
        return path, ckpt
    try:
        size = len(FeatureEncoder.from_meta(Vocab.from_json(ckpt.meta["vocab"]), ckpt.meta))   # words + fields
    except (KeyError, TypeError, ValueError):
        size = None
    if size != ckpt.params.n_in:
        raise fail(f"{path}: its vocabulary metadata is damaged ({size} symbols for a model of "
                   f"{ckpt.params.n_in} inputs)", "CHECKPOINT")
    return path, ckpt


@app.command()
@abort_job_on_error
def train(
    ctx: typer.Context,
    task: Task = typer.Option(..., help="what to train"),
    data: List[str] = typer.Option(..., help="training data: a text (charlm), a word list or 'stdlib' "
                                   "(autocomplete), CoNLL-U (tag), LABEL=PATH items or a LABEL<TAB>TEXT file (classify), "
                                   "a .ts or .npz file of labelled measurement sequences (sequences)"),
    more_data: Optional[List[str]] = MORE_DATA,
    valid: Optional[str] = typer.Option(None, help="validation file (default: held out from --data)"),
    test: List[str] = typer.Option([], help="evaluate on these files at the end (default: the part held out "
                                   "from --data, or --valid for tag)"),
    out: Path = typer.Option(Path("runs/last"), help="run folder: checkpoints, metrics.jsonl, metrics.json, loss.png"),
    resume: bool = typer.Option(False, help="continue the run in --out from its checkpoint, with its settings"),
    overwrite: bool = typer.Option(False, help="replace the run already in --out"),
    hidden: Optional[int] = typer.Option(None, min=1, help="hidden units d, per layer and direction "
                                          + defaults_help("hidden")),
    layers: Optional[int] = typer.Option(None, min=1, show_default=False,
                                         help="stacked recurrent layers (each reads the states of the one below) "
                                         + defaults_help("layers")),
    bidirectional: Optional[bool] = typer.Option(None, "--bidirectional/--no-bidirectional", show_default=False,
                                                 help="add a backward direction to every layer (tag, classify, "
                                                 "sequences: each step's output sees the steps after it too) "
                                                 + defaults_help("bidirectional")),
    dropout: float = typer.Option(0.0, parser=finite(0, 1, high_open=True),
                                  help="inverted dropout on the states between layers while training (--layers >= 2)"),
    activation: Optional[Activation] = typer.Option(None, show_default=False,
                                                    help="σ " + defaults_help("activation")),
    recurrent_init: Optional[Init] = typer.Option(None, show_default=False, help="W at the start "
                                                  + defaults_help("recurrent_init") + ": uniform (±1/sqrt(d), as torch) | identity "
                                        "(W = I, the IRNN of Le et al. 2015, with relu: the state starts as a running sum) "
                                        "| orthogonal (random orthogonal W, Saxe et al. 2014: for long sequences)"),
    optimizer: Optimizer = typer.Option("adam"),
    lr: Optional[float] = typer.Option(None, parser=finite(0, low_open=True), help="learning rate " + defaults_help("lr")),
    schedule: Optional[Schedule] = typer.Option(None, show_default=False,
                                                help="learning-rate schedule " + defaults_help("schedule")),
    clip: Clip = typer.Option("norm", help="gradient clipping"),
    max_norm: float = typer.Option(5.0, parser=finite(0, low_open=True), help="global-norm clipping threshold"),
    average: Optional[float] = typer.Option(None, parser=finite(0, 1, high_open=True), show_default=False,
                                            help="evaluate, save and score a running average of the parameters over "
                                            "the steps with this decay (e.g. 0.99: about the last 100 steps; 0: the "
                                            "trained ones) " + defaults_help("average")),
    truncate: Optional[int] = typer.Option(None, min=1, help="per-loss truncation τ (default: exact BPTT per chunk)"),
    batch_size: Optional[int] = typer.Option(None, min=1, help="sequences (streams for charlm) per batch "
                                              + defaults_help("batch_size")),
    seq_len: int = typer.Option(50, min=1, help="charlm: chunk length of streaming BPTT"),
    epochs: Optional[int] = typer.Option(None, min=1, help="epochs in all, unless --steps "
                                          + defaults_help("epochs")),
    steps: Optional[int] = typer.Option(None, min=1, help="steps in all (instead of epochs)"),
    eval_every: int = typer.Option(0, min=0, help="evaluate every this many steps (0: each epoch)"),
    checkpoint_every: int = typer.Option(0, min=0, help="also save the checkpoint every this many steps (0: at "
                                         "evaluations and the end)"),
    patience: int = typer.Option(2, min=0, help="stop after this many evaluations without a lower validation loss "
                                 "and score the best model (0: train to the end and score the last)"),
    min_count: int = typer.Option(2, min=1, help="tag/classify: rarer words get unknown-word ids"),
    pool: Optional[Pool] = typer.Option(None, show_default=False,
                                        help="classify: mean (label at every step) | last | max (of the states); "
                                        "sequences: last | mean | max, the output read from that pool of the "
                                        "states over each sequence's real steps " + defaults_help("pool")),
    signatures: Optional[bool] = typer.Option(None, "--signatures/--no-signatures", show_default=False,
                                              help="classify: rarer words read their spelling signature (as the "
                                              "tagger's, e.g. <unk|x|||ly>) instead of <unk> " + defaults_help("signatures")),
    word_dropout: Optional[float] = typer.Option(None, parser=finite(0, 1, high_open=True), show_default=False,
                                                 help="classify: chance a training word reads as unknown " + defaults_help("word_dropout")),
    features: Optional[str] = typer.Option(None, help="tag/classify: fields read beside each word, "
                                           "comma-separated suffixK, prefixK, signature, lower, bigram, negated, or "
                                           "'none' " + defaults_help("features") + " (e.g. "
                                           "suffix2,suffix3,prefix1)"),
    signature_dropout: Optional[float] = typer.Option(None, parser=finite(0, 1, high_open=True), show_default=False,
                                                      help="tag: chance a training word seen once reads as its "
                                                      "spelling signature (seen c times: a/(a+c), a = p/(1-p)), "
                                                      "redrawn every epoch " + defaults_help("signature_dropout")),
    valid_fraction: Optional[float] = typer.Option(None, parser=finite(0, 1, high_open=True), show_default=False,
                                                   help="held out for validation when --valid is not given (classify 0: "
                                                   "it trains on all but its fixed test split) "
                                                   + defaults_help("valid_fraction")),
    seed: int = typer.Option(0, min=0, help="seed of the initial weights, data order and splits"),
    backend: BackendName = Backend,
    progress: bool = typer.Option(True, help="show a progress bar on a terminal (--no-progress, or "
                                  "output to a file: a line per evaluation and every 30 s between)"),
    tensorboard: bool = typer.Option(False, help="also write TensorBoard event files to --out/tensorboard "
                                     "(needs the [tensorboard] extra)"),
) -> None:
    """Train a model on one of the five tasks; `--out` gets the checkpoint, metrics and loss.png.
    Ctrl-C (SIGINT) or SIGTERM ends the step in progress and saves; `--resume` continues.
    Under `mpiexec -n N` (or srun), N ranks train data-parallel, each on --batch-size sequences of a
    global batch of N × --batch-size (docs/distributed.md)."""
    given = {name for name in ctx.params if ctx.get_parameter_source(name).name in ("COMMANDLINE", "ENVIRONMENT")}
    run_training(dict(ctx.params), given)


@app.command("eval")
def evaluate(checkpoint: Path = typer.Argument(..., help="checkpoint file or run directory"),
             data: List[str] = typer.Option(..., help="data files, as for `train` (the held-out part is scored "
                                            "when they are the training files)"),
             more_data: Optional[List[str]] = MORE_DATA,
             ensemble: List[Path] = typer.Option([], help="classify: more models (runs) whose class "
                                                 "probabilities are averaged with CHECKPOINT's"),
             backend: BackendName = Backend) -> None:
    """Score a model on data: loss or accuracy, with the task's baseline; ends with `metric` lines."""
    from .report import print_metrics, with_split
    from .tasks import get_task

    path, ckpt = load_model(checkpoint, "eval")
    data, meta, extra = list(data) + list(more_data or []), ckpt.meta, {}
    if ensemble:
        if meta["task"] != "classify":
            raise fail("only classify models average an ensemble", "--ensemble")
        extra = {"ensemble": [load_model(p, "classify")[0] for p in ensemble]}
    metrics = get_task(meta["task"]).evaluate(path, data, meta, backend.value, **extra)
    print_metrics(with_split(metrics, scored_split(meta, data)), typer.echo)


def _reader(checkpoint: Path, backend: BackendName, command: str):
    """A Reader of the model in `checkpoint`, which must be of a task whose models `command` uses."""
    from .data.vocab import Vocab
    from .generate import Reader

    _, ckpt = load_model(checkpoint, command)
    return Reader(ckpt.params, Vocab.from_json(ckpt.meta["vocab"]), activation=ckpt.activation,
                  backend=backend.value), ckpt.meta


def _note_unseen(vocab, text: str, what: str) -> None:
    note = vocab.unseen_note(text, what)
    if note:
        typer.echo(note, err=True)


def _words(sentence: str) -> list:
    words = sentence.split()
    if not words:
        raise fail("expected at least one word, got an empty sentence", "SENTENCE")
    return words


@app.command()
def sample(checkpoint: Path, prime: str = typer.Option("\n", help="text the model reads first (at least one character)"),
           length: int = typer.Option(500, min=1, help="characters to draw"),
           temperature: float = typer.Option(0.8, parser=finite(0), help="0: greedy; <1 sharper; >1 flatter"),
           seed: int = typer.Option(0, min=0), backend: BackendName = CpuBackend) -> None:
    """Draw text from a character model, after a prime text."""
    from .generate import sample as draw

    if not prime:
        raise fail("expected at least one character for the model to read first, got an empty text", "--prime")
    reader, _ = _reader(checkpoint, backend, "sample")
    _note_unseen(reader.vocab, prime, "the prime")
    typer.echo(prime + draw(reader, prime, length, temperature=temperature, seed=seed))


@app.command()
def complete(checkpoint: Path, prefixes: List[str] = typer.Argument(..., help="word beginnings"),
             k: int = typer.Option(5, help="completions per prefix (beam search; --beam grows to --k when smaller)"),
             beam: int = typer.Option(16, min=1, help="beam width"), max_len: int = typer.Option(30, min=1),
             backend: BackendName = CpuBackend) -> None:
    """The k most probable completions of each prefix (until <stop>), with log-probabilities."""
    from .generate import beam_complete

    if k < 1:
        raise fail(f"expected at least 1 completion per prefix (--beam {beam} then grows to --k when smaller), "
                   f"got {k}", "--k")
    reader, _ = _reader(checkpoint, backend, "complete")
    _note_unseen(reader.vocab, "".join(prefixes), "the prefixes")
    for prefix in prefixes:
        found = beam_complete(reader, prefix, k=k, beam=max(beam, k), max_len=max_len)
        typer.echo(f"{prefix}: " + "  ".join(f"{w} ({lp:.2f})" for w, lp in found))


@app.command("tag")
def tag_command(checkpoint: Path, sentence: str = typer.Argument(..., help="words separated by spaces"),
                backend: BackendName = CpuBackend) -> None:
    """Tag each word of a sentence with its part of speech (and the tag's probability)."""
    from .data.features import FeatureEncoder
    from .generate import tag

    words = _words(sentence)
    reader, meta = _reader(checkpoint, backend, "tag")
    tags, probs = tag(reader, FeatureEncoder.from_meta(reader.vocab, meta).encode(words), meta["tags"])
    typer.echo(" ".join(f"{w}/{t}" for w, t in zip(words, tags)))
    typer.echo(" ".join(f"{p:.2f}" for p in probs))


@app.command("classify")
def classify_command(checkpoint: Path, sentence: str = typer.Argument(..., help="the sentence to classify"),
                     backend: BackendName = CpuBackend) -> None:
    """Class probabilities of a sentence, most probable first."""
    from .data.features import FeatureEncoder
    from .generate import class_probabilities

    words = _words(sentence.lower())
    reader, meta = _reader(checkpoint, backend, "classify")
    p = class_probabilities(reader, FeatureEncoder.from_meta(reader.vocab, meta).encode(words), pool=meta["pool"])
    for i in p.argsort()[::-1]:
        typer.echo(f"{meta['labels'][i]} {p[i]:.4f}")


@app.command()
def predict(checkpoint: Path = typer.Argument(..., help="a sequences model: checkpoint file or run directory"),
            data: Path = typer.Argument(..., help="a .ts or .npz file of sequences (labels, if any, are ignored)"),
            backend: BackendName = CpuBackend) -> None:
    """The most probable class of every sequence of a file, one per line, in file order."""
    from .tasks import get_task

    path, ckpt = load_model(checkpoint, "predict")
    for label in get_task(ckpt.meta["task"]).predict(path, data, backend.value):
        typer.echo(label)


app.command("diagnose")(diagnose_command)


if __name__ == "__main__":
    app()
