"""`python -m gpurnn ...`: the `gpurnn` command line."""
from .cli import app

app(prog_name="gpurnn")
