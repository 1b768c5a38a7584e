"""`gpurnn train` from its options (declared in `gpurnn.cli`) to a finished run folder.

    check      the run folder (`RunFolder.check`), the backend, and, with --resume, the options
               against the run's own settings
    prepare    the task's data; then check that the model fits in the device's memory
               (`gpurnn.memory_estimate`): every check before the folder is touched
    claim      the folder (created and locked; --overwrite's earlier run moved aside until the
               new one has saved, and put back if it fails before), the trainer (new or
               loaded), the history log
    fit        until --steps/--epochs, early stopping, or SIGINT/SIGTERM (which finish the step
               in progress, then save the checkpoint, metrics and plot like any other ending)
    report     why it stopped, the scored metrics (`metric SPLIT/NAME VALUE`), metrics.json, loss.png

Under `mpiexec -n N` (or srun) the N ranks train data-parallel (gpurnn.distributed), each on
--batch-size sequences of a global batch of N × --batch-size; rank 0 alone checks, claims and
writes the run folder and reports.

A run's settings (the options below, with the task's defaults filled in) go into the
checkpoint's meta["settings"] and metrics.json, so a resumed run takes them from there.
"""
from __future__ import annotations

import contextlib
import signal
import sys
from enum import Enum

import typer

from .cli_checks import check_model_options, fail
from .data.errors import DataError
from .memory_estimate import check_fits
from .run_folder import LOG, TENSORBOARD, RunFolder, RunFolderError
from .train import BEST, CHECKPOINT

# What the model and its data are: a resumed run keeps them (--batch-size too: the position
# in the epoch and the streams' states belong to it).
FIXED = ("task", "hidden", "layers", "bidirectional", "dropout", "activation", "recurrent_init", "optimizer",
         "schedule", "clip", "truncate", "average", "batch_size", "seq_len", "valid_fraction", "min_count", "pool",
         "word_dropout", "features", "signature_dropout", "signatures", "seed")
# The defaults of the options a task's declaration (`defaults`) does not set.
GENERAL_DEFAULTS = {"layers": 1, "bidirectional": False, "pool": None, "activation": "tanh",
                    "recurrent_init": "uniform", "schedule": "constant", "average": 0.0, "signatures": False,
                    "word_dropout": 0.0, "features": None, "signature_dropout": 0.0, "valid_fraction": 0.1}
# What a resumed run may change: the trainer's configuration takes the new value.
ADJUSTABLE = ("lr", "max_norm", "patience", "eval_every", "checkpoint_every")
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}
LOG_EVERY_SECONDS = 30     # without a progress bar: a line at least this often between evaluations


def defaults_help(name: str) -> str:
    """`--help`'s "(default: ...)" for the option `name`, from the tasks' declarations and
    GENERAL_DEFAULTS, e.g. "(default: classify relu, the others tanh)"."""
    from .tasks import TASK_OPTIONS, tasks

    def shown(value) -> str:
        return ("yes" if value else "no") if isinstance(value, bool) else "none" if value is None else f"{value:g}" \
            if isinstance(value, float) else str(value)

    own = [f"{task} {shown(t.defaults[name])}" for task, t in tasks().items() if name in t.defaults]
    others = [task for task, t in tasks().items()
              if name not in t.defaults and (name not in TASK_OPTIONS or name in t.options)]
    label = "" if not own else "the others" if name not in TASK_OPTIONS else " and ".join(others)
    rest = [f"{label} {shown(GENERAL_DEFAULTS[name])}".strip()] if others else []
    return f"(default: {', '.join(own + rest)})"


def run_training(options: dict, given: set, echo=typer.echo) -> None:
    """Train as the `train` command's `options` say; `given`: the names set on the command line."""
    from .checkpoint import load_checkpoint
    from .distributed import world
    from .tasks import get_task

    o = {k: v.value if isinstance(v, Enum) else v for k, v in options.items()}
    o["data"] = list(o["data"]) + list(o.pop("more_data") or [])
    comm = world()
    root = comm is None or comm.Get_rank() == 0
    if not root:
        echo = _quiet
    folder = RunFolder(o["out"], resume=o["resume"], overwrite=o["overwrite"])
    if root:
        folder.check()
    if comm is not None:
        comm.Barrier()                      # the other ranks wait for rank 0's verdict (a failure aborts all)
    if o["tensorboard"]:
        _check_tensorboardx()
    backend = _backend(o["backend"])
    saved = load_checkpoint(folder.checkpoint) if o["resume"] else None
    task = get_task(o["task"])
    settings = _settings(o, given, saved, task)
    check_model_options(task, settings, given)
    if saved is not None and _finished(saved, settings, o["out"], echo):
        return
    prepared = task.prepare(o["data"], o["valid"], _task_options(settings, ranks=1 if comm is None else comm.Get_size()))
    scores_valid = task.held_out_in_data and task.held_out_split[0] == "valid"   # classify: its test split
    if prepared.valid is None and scores_valid and not (o["valid"] or o["test"]):
        raise DataError(", ".join(o["data"]), None, "too little data to hold out a part to validate and score on at "
                        f"--valid-fraction {settings['valid_fraction']}: give more data, a larger --valid-fraction, "
                        "--valid or --test")
    if saved is not None and saved.meta.get("vocab") != prepared.meta.get("vocab"):
        raise RunFolderError(f"--data gives another vocabulary than the run's in {o['out']}: resume with its data")
    model = {"inputs": prepared.n_in, "hidden": settings["hidden"], "outputs": prepared.n_out,
             "layers": settings["layers"], "bidirectional": settings["bidirectional"]}
    check_fits(model, settings["optimizer"], bool(settings["average"]), backend.name)
    with folder.claim() if root else contextlib.nullcontext(folder):
        if saved is None:
            echo(_defaults_used(task, given, settings))
        for note in prepared.notes:
            echo(note)
        if folder.took_over_from:
            echo(f"note: took over {o['out']} from pid {folder.took_over_from}, which ended without releasing it")
        _train_in(folder, task, prepared, model, settings, o, saved, echo, comm)


def _defaults_used(task, given: set, settings: dict) -> str:
    """One line naming the task's defaults that this run takes (the options it was not given)."""
    horizon = {"steps", "epochs"} & given
    used = [f"{name.replace('_', ' ')} {settings[name]}" if not isinstance(settings[name], bool)
            else ("" if settings[name] else "no ") + name.replace("_", " ")
            for name in task.defaults if name not in given and not (name == "epochs" and horizon)]
    return f"{task.name} defaults: {', '.join(used)}" if used else f"{task.name}: no task default used"


def _quiet(*args, **kwargs) -> None:
    """The `echo` of ranks other than 0: rank 0 alone speaks for the job."""


def _settings(o: dict, given: set, saved, task) -> dict:
    """The run's settings: the options, with the task's defaults for those not given (new
    run) or the run's own settings (resumed run; FIXED options given that differ are refused)."""
    settings = {name: o[name] for name in FIXED + ADJUSTABLE}
    settings.update({k: v for k, v in task.defaults.items() if k != "epochs" and k not in given})
    settings.update({k: v for k, v in GENERAL_DEFAULTS.items() if settings[k] is None})
    if settings["features"] == "none":
        settings["features"] = None
    horizon_given = bool({"steps", "epochs"} & given)
    settings.update(data=o["data"], valid=o["valid"], test=o["test"], steps=o["steps"],
                    epochs=o["epochs"] if horizon_given else task.defaults["epochs"])
    if saved is None:
        return settings
    before = {**_legacy_settings(saved), **saved.meta.get("settings", {})}
    differ = [name for name in FIXED if name in given and name in before and before[name] != settings[name]]
    if differ:
        listed = ", ".join(f"--{n.replace('_', '-')} {settings[n]} (run: {before[n]})" for n in differ)
        why = " (the position in the epoch and the streams' states belong to it)" if "batch_size" in differ else ""
        raise RunFolderError(f"--resume continues the run in {o['out']} with its own settings, and these options "
                             f"differ: {listed}{why}; drop them, or start a new run with --overwrite or another --out")
    settings.update({name: before[name] for name in FIXED + ADJUSTABLE if name not in given and name in before})
    if not horizon_given and ("steps" in before or "epochs" in before):
        settings.update(steps=before.get("steps"), epochs=before.get("epochs"))
    return settings


def _legacy_settings(saved) -> dict:
    """The settings a checkpoint written before meta["settings"] existed still tells."""
    config = saved.config
    return {"task": saved.meta.get("task"), "hidden": saved.params.hidden,
            **{k: config[k] for k in ("activation", "optimizer", "schedule", "clip", "truncate", "seed", "lr",
                                      "max_norm", "patience", "eval_every", "checkpoint_every") if k in config},
            **{k: saved.meta[k] for k in ("batch_size", "seq_len", "valid_fraction", "pool") if k in saved.meta}}


def _finished(saved, settings: dict, out, echo) -> bool:
    """Whether the resumed run has nothing left to do (then it says so and nothing changes)."""
    pos = saved.meta["trainer"]
    steps, epochs, patience = settings["steps"], settings["epochs"], settings["patience"]
    if steps is not None and pos["step"] >= steps:
        why = f"it has done {pos['step']} steps of --steps {steps}; give a larger --steps to train on"
    elif steps is None and pos["epoch"] >= epochs:
        why = f"it has done {pos['epoch']} epochs of --epochs {epochs}; give a larger --epochs to train on"
    elif 0 < patience <= pos.get("evals_since_best", 0):
        why = (f"it stopped early at step {pos['step']} (best step {pos.get('best_step')}, valid/loss "
               f"{pos['best_loss']:.4f}); give a larger --patience to train on")
    else:
        return False
    echo(f"the run in {out} is finished: {why}. Nothing changed.")
    return True


def _task_options(settings: dict, ranks: int):
    """The task's options; the data are batched for the global batch of `ranks` × --batch-size."""
    from .tasks import Options

    return Options(batch_size=settings["batch_size"] * ranks,
                   features=tuple(settings["features"].split(",")) if settings.get("features") else (),
                   **{k: settings[k] for k in ("seq_len", "valid_fraction", "min_count", "pool", "word_dropout",
                                               "signature_dropout", "signatures", "seed")})


def _backend(name: str):
    """The backend `--backend name` picks, refused in one line when this machine cannot run it."""
    from .backends import BackendUnavailableError, get_backend

    try:
        return get_backend(name)
    except BackendUnavailableError as error:
        raise fail(str(error), "--backend") from None


def _check_tensorboardx():
    import importlib.util

    if importlib.util.find_spec("tensorboardX") is None:
        raise ValueError("--tensorboard writes through tensorboardX, which is not installed: "
                             "pip install 'gpurnn[tensorboard]'")


def _train_in(folder: RunFolder, task, prepared, model: dict, settings: dict, o: dict, saved, echo, comm) -> None:
    """Train in the claimed `folder`, then report and score (see the module doc); ranks other
    than 0 (`comm`) train and save (a collective) and leave the rest to rank 0."""
    from .report import EvalLog, History, TensorBoardLog, plot_loss, print_metrics, with_split, write_metrics

    out, root = folder.path, comm is None or comm.Get_rank() == 0
    history = History(out / LOG if root else None, upto=None if saved is None else saved.meta["trainer"]["step"])
    logs = [history] + ([TensorBoardLog(out / TENSORBOARD)] if o["tensorboard"] and root else [])
    bar = o["progress"] and sys.stderr.isatty()        # a log file gets lines, not a bar's carriage returns
    callbacks = logs + ([] if bar else [EvalLog(echo, every_seconds=LOG_EVERY_SECONDS)])
    try:
        trainer = _trainer(prepared, settings, model, o["backend"], saved, callbacks, out, echo, comm)
        echo(f"{task.name}: {prepared.n_in} inputs, hidden {model['hidden']}, {prepared.n_out} outputs, "
             f"{len(prepared.train)} batches per epoch, backend {trainer.backend.name}")
        with _stop_on_signals(trainer):
            trainer.fit(prepared.train, steps=settings["steps"], epochs=settings["epochs"], valid=prepared.valid,
                        progress=bar)
        trainer.save()
        if not root:
            return
        echo(_why_stopped(trainer, settings))
        interrupted = trainer.stop_reason.startswith("interrupted")
        metrics = {}
        if not interrupted:
            scored = o["test"] or (o["data"] if task.held_out_in_data or not o["valid"] else [o["valid"]])
            final = out / CHECKPOINT if not settings["patience"] or not (out / BEST).is_file() else out / BEST
            split = "test" if o["test"] else scored_split(trainer.meta, scored)
            metrics = with_split(task.evaluate(final, scored, trainer.meta, o["backend"]), split)
        ranks = 1 if comm is None else comm.Get_size()
        metrics.update({"train/seconds": sum(s.seconds for s in history.steps), "train/steps": float(trainer.step_count),
                        "train/tokens_per_s": history.steps[-1].tokens_per_s * ranks if history.steps else 0.0})
        write_metrics(out, metrics, history, {"task": task.name, "settings": settings, "model": model,
                                              "config": vars(trainer.config), "stop": trainer.stop_reason})
        plot_loss(out, history, f"gpurnn {task.name}")
    finally:
        for log in logs:
            log.close()
    echo(f"wrote {out}/{CHECKPOINT}, metrics.json, metrics.jsonl, loss.png")
    print_metrics(metrics, echo)
    if interrupted:
        raise typer.Exit(EXIT_CODES.get(trainer.stop_reason.split()[-1], 130))


def _trainer(prepared, settings: dict, model: dict, backend: str, saved, callbacks, out, echo, comm):
    """A new trainer for `settings`, or the run's own (`saved`) with the ADJUSTABLE settings applied;
    `settings` and the `model`'s shape go into its checkpoints' meta."""
    from .model import init_params
    from .train import TrainConfig, Trainer

    if saved is not None:
        trainer = Trainer.load(out / CHECKPOINT, backend=backend, callbacks=callbacks, out_dir=out, comm=comm)
        for name in ADJUSTABLE:
            if getattr(trainer.config, name) != settings[name]:
                echo(f"resume: --{name.replace('_', '-')} {settings[name]} (the run had {getattr(trainer.config, name)})")
                setattr(trainer.config, name, settings[name])
        trainer.meta.update(settings=settings, model=model)
        return trainer
    config = TrainConfig(output=prepared.output, backend=backend,
                         **{k: settings[k] for k in ("activation", "optimizer", "lr", "schedule", "clip", "max_norm",
                                                     "truncate", "dropout", "seed", "eval_every", "patience",
                                                     "checkpoint_every", "average")})
    params = init_params(prepared.n_in, settings["hidden"], prepared.n_out, layers=settings["layers"],
                         bidirectional=settings["bidirectional"], seed=settings["seed"],
                         recurrent=settings["recurrent_init"])
    return Trainer(params, config, callbacks=callbacks, meta={**prepared.meta, "settings": settings, "model": model},
                   out_dir=out, comm=comm)


@contextlib.contextmanager
def _stop_on_signals(trainer):
    """SIGINT/SIGTERM make `trainer.fit` stop after the step in progress; a second one stops at once."""
    received = []

    def handle(signum, frame):
        if received:
            raise KeyboardInterrupt
        received.append(signal.Signals(signum).name)
        trainer.request_stop(f"interrupted by {received[0]}")

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _why_stopped(trainer, settings: dict) -> str:
    reason, step, pos = trainer.stop_reason, trainer.step_count, trainer.position
    if reason == "steps":
        return f"stopped: {step} steps done (--steps {settings['steps']})"
    if reason == "epochs":
        return f"stopped: {pos['epoch']} epochs done (--epochs {settings['epochs']}), {step} steps"
    if reason == "early stopping":
        return (f"stopped early at step {step}: no lower valid/loss in {settings['patience']} evaluations; the best, "
                f"step {pos['best_step']} (valid/loss {pos['best_loss']:.4f}), is the model kept and scored")
    return (f"{reason} after step {step}: checkpoint, metrics and plot written; to continue, run the same "
            "command with --resume")


def scored_split(meta: dict, paths: list) -> str:
    """The split that scoring the model of `meta` on `paths` measures: the task's held-out
    split of its training files, its validation file, or "test" (any other files)."""
    from .tasks import get_task

    settings = meta.get("settings", {})
    if list(paths) == settings.get("data"):
        return get_task(meta["task"]).held_out_split[bool(settings.get("valid"))]
    if settings.get("valid") and list(paths) == [settings["valid"]]:
        return "valid"
    return "test"
