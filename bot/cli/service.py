"""`loracle demo`, `loracle run` and `loracle health`: the bot's life outside Discord."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli.common import app, err, fail, out, settings
from engine.errors import LoracleError


@app.command("demo")
def demo(
    draw_image: Annotated[bool, typer.Option("--draw/--no-draw", help="Also draw one image")] = True,
) -> None:
    """Build a tiny offline demo library, check families, and draw one image."""
    from bot.demo import run_demo

    try:
        run_demo(settings(), draw=draw_image)
    except LoracleError as exc:
        fail(exc, False)


@app.command("run")
def run() -> None:
    """Start the Discord bot (needs LORACLE_DISCORD_TOKEN)."""
    from bot.discord_app.launch import run_bot

    try:
        run_bot(settings())
    except LoracleError as exc:
        fail(exc, False)


@app.command("health")
def health() -> None:
    """Exit 0 when the database opens and a running bot's heartbeat is fresh."""
    from bot.health import check_health

    ok, message = check_health(settings())
    (out if ok else err).print(message)
    raise typer.Exit(0 if ok else 1)
