"""What every `loracle` command shares: the Typer apps, the consoles, opening the engine,
failing with one line, and printing names safely."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text as Styled

from bot.cli import hints
from engine.errors import LoracleError, UnknownNameError
from engine.i18n import EN, Text

if TYPE_CHECKING:
    from bot.settings import BotSettings
    from engine.api import Engine

T = TypeVar("T")

app = typer.Typer(
    name="loracle",
    help="Loracle: draw with SDXL checkpoints and LoRAs, and learn which LoRA suits which checkpoint.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
library_app = typer.Typer(help="Manage the model library (data/models, data/loras).", no_args_is_help=True)
lora_app = typer.Typer(help="What Loracle knows about a LoRA.", no_args_is_help=True)
family_app = typer.Typer(help="Does a LoRA suit a checkpoint?", no_args_is_help=True)
app.add_typer(library_app, name="library")
app.add_typer(lora_app, name="lora")
app.add_typer(family_app, name="family")

# soft_wrap: long paths and explanations are left to the terminal to wrap, so they can be
# copied whole; tables still fit the width. No markup: names, prompts and CivitAI's words
# are printed as written ("style[red]v2" is a real file name); colours go in as rich Text (`Styled`).
out = Console(soft_wrap=True, markup=False, highlight=False)
err = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
LangOpt = Annotated[str, typer.Option("--lang", help="Language of explanations: en or zh-TW.")]

# C0 and C1 controls (ESC starts ANSI sequences, CR and LF start new lines) and DEL; a
# file name may contain any of them, and printed raw they would recolour the terminal or
# forge rows of a table.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """`text` with every control character shown as an escape (`\\x1b`, `\\n`), for the
    terminal; JSON output is left as it is (its encoder escapes them already)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))


def settings() -> BotSettings:
    from bot.settings import load_settings

    return load_settings()


def run_engine(
    body: Callable[[Engine], Awaitable[T]], *, json_mode: bool = False, scan: bool = True, locale: str = EN
) -> T:
    """Open the engine, run `body(engine)`, close it; user errors exit 1 with their message.

    Commands first bring the library up to date with the files on disk (a rescan of an
    unchanged library hashes nothing and takes milliseconds), so a file copied in a moment
    ago can be named at once."""
    from engine.api import Engine

    async def main() -> T:
        engine = Engine(settings())
        try:
            if scan:
                await engine.scan()
            return await body(engine)
        finally:
            await engine.close()

    try:
        return asyncio.run(main())
    except LoracleError as exc:
        fail(exc, json_mode, locale)
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


def fail(exc: LoracleError, json_mode: bool, locale: str = EN) -> NoReturn:
    message = hints.error_message(exc, locale)
    if json_mode:
        payload: dict[str, Any] = {"error": message, "type": type(exc).__name__}
        if isinstance(exc, UnknownNameError):
            payload["suggestions"] = exc.suggestions
        print(json.dumps(payload, ensure_ascii=False), file=sys.stderr)
    else:
        err.print(Styled.assemble(("error:", "red"), f" {printable(message)}"))
    raise typer.Exit(1)


OUT_DIR = Text(
    "Cannot write the images to “{path}” ({reason}).",
    "無法把圖片寫入「{path}」（{reason}）。",
)


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
