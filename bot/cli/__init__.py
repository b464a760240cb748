"""`loracle`: the command line front end. Every command calls the same Engine methods
as the Discord bot, so anything the bot does can be scripted and tested from a shell.

One module per command group; importing them registers their commands on `app`, in the
order `--help` lists them.
"""

from __future__ import annotations

import sys

from rich.text import Text as Styled

from bot.cli import cluster, draw, images, knowledge, library, service  # noqa: F401  (registers the commands)
from bot.cli.common import app, err, printable
from engine.errors import LoracleError

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except LoracleError as exc:  # settings errors raised before a command body runs
        err.print(Styled.assemble(("error:", "red"), f" {printable(exc)}"))
        sys.exit(1)
