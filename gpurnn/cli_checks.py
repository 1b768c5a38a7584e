"""The command line's checks: option types that refuse bad values while the command line is
parsed, and the boundary that turns every user error into one line on stderr and exit 2.

A user error is a bad option value (typer/click ranges, choices, `finite`), a malformed
data file (`DataError`), a checkpoint that cannot be read, a run folder that cannot be used
(`RunFolderError`), a backend this machine cannot run (`BackendUnavailableError`), a model
too large for memory (refused by `gpurnn.memory_estimate` before the run, or a `MemoryError`
while it runs), or any `ValueError`/`TypeError`/`OSError` the library raises about its
input. It ends as `error: <message naming the option or file>` and exit status 2, before any
work starts. `gpurnn --debug ...` (or GPURNN_DEBUG=1) shows the traceback instead; other
exceptions are bugs and always show theirs. A diverged training run says so on one line and
exits with 1.
"""
from __future__ import annotations

import enum
import math
import sys
from typing import Callable

import typer
from typer.core import TyperGroup

from .backends import BackendUnavailableError
from .train_config import TrainingDiverged

USER_ERRORS = (ValueError, TypeError, OSError, BackendUnavailableError, MemoryError)
DEBUG = {"on": False}    # set by the `--debug` option of the `gpurnn` group for this invocation


def choices(name: str, values) -> type[enum.Enum]:
    """A str Enum whose members are `values`: typer shows them in --help and refuses others."""
    return enum.Enum(name, {v: v for v in values}, type=str)


def finite(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> Callable[[str], float]:
    """A typer `parser` for a finite float in [low, high] (ends open when `*_open`); NaN and
    ±inf are refused, which click's FloatRange lets through."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    bounds = f" in {left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"

    def parse(text) -> float:
        try:
            value = float(text)
        except ValueError:
            raise typer.BadParameter(f"expected a number{bounds}, got {text!r}") from None
        ok = math.isfinite(value) and (low is None or (value > low if low_open else value >= low)) and \
            (high is None or (value < high if high_open else value <= high))
        if not ok:
            raise typer.BadParameter(f"expected a finite number{bounds}, got {text}")
        return value

    return parse


def check_model_options(task, settings: dict, given: set) -> None:
    """The `train` settings that depend on the task or on each other: an option of some tasks
    only, given to another (the tasks' declarations, `gpurnn.tasks.check_options`); --steps
    and --epochs together; dropout, which acts between layers, with one layer; --features
    fields that do not exist."""
    from .tasks import check_options

    check_options(task, given)
    if {"steps", "epochs"} <= given:
        raise fail(f"--steps {settings['steps']} and --epochs {settings['epochs']} both say how long to train: "
                   "give one", "--epochs")
    if settings["dropout"] and settings["layers"] < 2:
        raise fail(f"--dropout {settings['dropout']} acts between stacked layers: give --layers 2 or more", "--dropout")
    if settings.get("features"):
        from .data.features import check_fields

        try:
            check_fields(settings["features"].split(","))
        except ValueError as error:
            raise fail(str(error), "--features") from None


def fail(message: str, option: str | None = None) -> typer.BadParameter:
    """The error to raise for a value typer cannot check alone (e.g. one that depends on another)."""
    return typer.BadParameter(message, param_hint=option)


def _one_line(message: str, code: int):
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    sys.exit(code)


class OneLineErrors(TyperGroup):
    """The `gpurnn` group: click's usage errors and the library's input errors as one line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        DEBUG["on"] = False
        if not standalone_mode:        # a caller in Python (e.g. the demo) handles the exceptions
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        from typer._click.exceptions import ClickException, NoArgsIsHelpError

        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as error:
            error.show()
            sys.exit(error.exit_code)
        except ClickException as error:
            _one_line(error.format_message(), error.exit_code)
        except TrainingDiverged as error:
            if DEBUG["on"]:
                raise
            _one_line(error, 1)
        except USER_ERRORS as error:
            if DEBUG["on"]:
                raise
            _one_line(error, 2)
        sys.exit(code if isinstance(code, int) else 0)
