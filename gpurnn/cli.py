"""The `gpurnn` command line: train, use and evaluate Elman RNNs (`gpurnn --help`).

Subcommands: `train`, `sample`, `complete`, `tag`, `classify`, `eval` (and `diagnose`,
registered by `gpurnn.diagnostics`). Every evaluation ends with lines `metric NAME VALUE`.
"""
from __future__ import annotations

import typer

from .diagnose import diagnose_command

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train Elman RNNs with backpropagation through time on a GPU or the CPU.")


@app.callback()
def main() -> None:
    """gpurnn: Elman RNNs trained by BPTT (Numba CUDA on NVIDIA GPUs, NumPy/Numba on the CPU)."""


app.command("diagnose")(diagnose_command)


if __name__ == "__main__":
    app()
