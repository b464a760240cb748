"""`loracle`: the command line front end. Every command calls the same Engine methods
as the Discord bot, so anything the bot does can be scripted and tested from a shell."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text as Styled

from bot import cli_hints
from engine.errors import LoracleError, RequestError, UnknownNameError
from engine.i18n import EN, Text, normalize_locale

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


def _settings() -> Any:
    from engine.settings import load_settings

    return load_settings()


def _run(
    body: Callable[[Any], Awaitable[T]], *, json_mode: bool = False, scan: bool = True, locale: str = EN
) -> T:
    """Open the engine, run `body(engine)`, close it; user errors exit 1 with their message.

    Commands first bring the library up to date with the files on disk (a rescan of an
    unchanged library hashes nothing and takes milliseconds), so a file copied in a moment
    ago can be named at once."""
    from engine.api import Engine

    async def main() -> T:
        engine = Engine(_settings())
        try:
            if scan:
                await engine.scan()
            return await body(engine)
        finally:
            await engine.close()

    try:
        return asyncio.run(main())
    except LoracleError as exc:
        _fail(exc, json_mode, locale)
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


def _fail(exc: LoracleError, json_mode: bool, locale: str = EN) -> None:
    message = cli_hints.error_message(exc, locale)
    if json_mode:
        payload: dict[str, Any] = {"error": message, "type": type(exc).__name__}
        if isinstance(exc, UnknownNameError):
            payload["suggestions"] = exc.suggestions
        print(json.dumps(payload, ensure_ascii=False), file=sys.stderr)
    else:
        err.print(Styled.assemble(("error:", "red"), f" {message}"))
    raise typer.Exit(1)


_OUT_DIR = Text(
    "Cannot write the images to “{path}” ({reason}).",
    "無法把圖片寫入「{path}」（{reason}）。",
)


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


# -- library -------------------------------------------------------------------------
class _Category(StrEnum):
    checkpoint = "checkpoint"
    lora = "lora"


@library_app.command("scan")
def library_scan(
    no_civitai: Annotated[bool, typer.Option("--no-civitai", help="Do not ask CivitAI about new files.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Find new, changed and removed files; hash and inspect what changed."""

    async def body(engine: Any) -> Any:
        return await engine.scan(civitai=not no_civitai)

    report = _run(body, json_mode=as_json, scan=False)
    notes = [str(n) for n in getattr(report, "notes", [])]
    if as_json:
        _print_json(
            {
                "added": report.added,
                "updated": report.updated,
                "removed": report.removed,
                "unchanged": report.unchanged,
                "hashed": report.hashed,
                "seconds": round(report.seconds, 4),
                "problems": [{"path": p.rel_path, "message": p.message} for p in report.problems],
                "notes": notes,
            }
        )
        return
    out.print(report.summary())
    for problem in report.problems:
        err.print(Styled.assemble(("skipped", "yellow"), f" {problem.rel_path}: {problem.message}"))
    for note in notes:
        err.print(Styled.assemble(("note:", "dim"), f" {note}"))


@library_app.command("list")
def library_list(
    category: Annotated[_Category | None, typer.Option("--category", help="Only checkpoints or only LoRAs")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List checkpoints and LoRAs with their architecture and family."""

    async def body(engine: Any) -> list[dict[str, Any]]:
        rows = []
        for entry in await asyncio.to_thread(engine.entries, category.value if category else None):
            summary = engine.summary(entry) if entry.error is None else None
            rows.append(
                {
                    "name": entry.name,
                    "display_name": entry.display_name,
                    "category": str(entry.category),
                    "kind": str(entry.kind),
                    "architecture": summary.architecture if summary else str(entry.architecture),
                    "base_model": summary.base_model if summary else None,
                    "family": summary.family if summary else None,
                    "recommended_weight": entry.weight_override,
                    "nsfw": engine.is_nsfw(entry),
                    "enabled": entry.enabled,
                    "size": entry.size,
                    "autov2": entry.autov2,
                    "path": entry.rel_path,
                    "error": entry.error,
                }
            )
        return rows

    rows = _run(body, json_mode=as_json)
    if as_json:
        _print_json(rows)
        return
    # Names are what the other commands take, so they are never cut short with "…"; the
    # file column, which repeats them, is shown only where there is room for it.
    def width(key: str, title: str) -> int:
        return max([len(title), *(len(str(row.get(key) or "")) for row in rows)])

    wide = out.width >= 110
    table = Table(
        Column("name", no_wrap=True, min_width=min(width("name", "name"), 40)),
        "type",
        "arch",
        Column("base model", min_width=min(width("base_model", "base model"), 16)),
        Column("family", min_width=min(width("family", "family"), 12)),
        "weight",
        *([Column("file", overflow="fold")] if wide else []),
        box=box.SIMPLE_HEAD,
    )
    broken = [row for row in rows if row["error"]]
    for row in rows:
        file = [row["path"]] if wide else []
        if row["error"]:
            table.add_row(row["name"], row["category"], "-", "-", "-", "-", *file)
            continue
        table.add_row(
            row["name"] + ("" if row["enabled"] else " (disabled)"),
            row["kind"],
            row["architecture"],
            row["base_model"] or "?",
            row["family"] or "unknown",
            "" if row["recommended_weight"] is None else f"{row['recommended_weight']:g}",
            *file,
        )
    out.print(table)
    for row in broken:  # below the table, where a long reason has the whole line
        out.print(f"cannot use {row['name']} ({row['path']}): {row['error']}", style="red")


@library_app.command("set")
def library_set(
    name: str,
    base_model: Annotated[str | None, typer.Option("--base-model", help='CivitAI base model, e.g. "Illustrious"; "" clears')] = None,
    weight: Annotated[float | None, typer.Option("--weight", help="Recommended LoRA weight")] = None,
    display_name: Annotated[str | None, typer.Option("--name", help="Display name")] = None,
    nsfw: Annotated[bool | None, typer.Option("--nsfw/--sfw", help="Mark NSFW or not")] = None,
    enabled: Annotated[bool | None, typer.Option("--enable/--disable", help="Allow or forbid its use")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Override what CivitAI and the file say (stored by content hash)."""
    values: dict[str, Any] = {}
    for key, value in (
        ("base_model", base_model),
        ("weight", weight),
        ("display_name", display_name),
        ("nsfw", nsfw),
        ("enabled", enabled),
    ):
        if value is not None:
            values[key] = value if value != "" else None
    if not values:
        err.print("nothing to set: give --base-model, --weight, --name, --nsfw/--sfw or --enable/--disable")
        raise typer.Exit(2)

    async def body(engine: Any) -> dict[str, Any]:
        entry = await asyncio.to_thread(lambda: engine.set_entry(name, by="cli", **values))
        summary = engine.summary(entry)
        return {**summary.to_json(), "recommended_weight": entry.weight_override, "nsfw": engine.is_nsfw(entry), "enabled": entry.enabled}

    result = _run(body, json_mode=as_json)
    if as_json:
        _print_json(result)
    else:
        out.print(f"{result['name']}: base model {result['base_model'] or '?'} ({result['family'] or 'unknown family'})")


@library_app.command("add")
def library_add(
    source: Annotated[str, typer.Argument(help="CivitAI URL or model-version id, or a path inside the data dir")],
    as_json: JsonOpt = False,
) -> None:
    """Download from CivitAI (verified by SHA256) or adopt a file in the data dir."""

    async def body(engine: Any) -> Any:
        candidate = engine.settings.root / source
        if candidate.exists():
            return await engine.add_from_path(source)
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

        with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), console=err) as bar:
            task = bar.add_task("downloading", total=None)
            return await engine.add_from_civitai(
                source, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )

    entry = _run(body, json_mode=as_json)
    if as_json:
        _print_json({"name": entry.name, "category": str(entry.category), "path": entry.rel_path, "sha256": entry.sha256})
    else:
        out.print(f"added {entry.category} {entry.name} ({entry.rel_path})")


@library_app.command("remove")
def library_remove(
    name: str, yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False, as_json: JsonOpt = False
) -> None:
    """Delete a file from the library (and from disk)."""
    if not yes:
        # On stderr, so that stdout stays the JSON answer alone.
        typer.confirm(f"Delete {name} from disk?", abort=True, err=True)

    async def body(engine: Any) -> Any:
        return await engine.remove(name)

    entry = _run(body, json_mode=as_json)
    if as_json:
        _print_json({"removed": entry.name, "category": str(entry.category), "path": entry.rel_path})
    else:
        out.print(f"removed {entry.rel_path}")


@library_app.command("refresh")
def library_refresh(name: Annotated[str | None, typer.Argument()] = None, as_json: JsonOpt = False) -> None:
    """Ask CivitAI again, ignoring cached answers (for one file or all)."""

    async def body(engine: Any) -> Any:
        return await engine.refresh(name)

    notes = [str(note) for note in _run(body, json_mode=as_json)]
    if as_json:
        _print_json({"refreshed": name, "notes": notes})
        return
    for note in notes:
        err.print(f"note: {note}")
    out.print("refreshed")


# -- lora info -------------------------------------------------------------------------
@lora_app.command("info")
def lora_info(name: str, as_json: JsonOpt = False, lang: LangOpt = EN) -> None:
    """Base model, family, trigger words, recommended weight and where it fits."""
    locale = normalize_locale(lang)

    async def body(engine: Any) -> Any:
        return await engine.lora_info(name)

    info = _run(body, json_mode=as_json, locale=locale)
    data = info.to_json(locale)
    if as_json:
        _print_json(data)
        return
    out.print(Styled.assemble((data["label"], "bold"), f"  ({data['kind']}, {data['architecture']})"))
    source = f"  (from {data['base_model_source']})" if data["base_model_source"] else ""
    out.print(Styled.assemble(
        f"base model: {data['base_model'] or 'unknown'}  family: {data['family_label'] or 'unknown'}", (source, "dim")
    ))
    out.print(f"trigger words: {', '.join(data['trigger_words']) or '-'}")
    out.print(f"recommended weight: {data['recommended_weight']:g} ({data['recommended_weight_source']})")
    if data["civitai_url"]:
        out.print(f"CivitAI: {data['civitai_url']}")
    if data["trained_on"]:
        t = data["trained_on"]
        out.print(f"trained on: {t.get('name') or '?'} ({t.get('base_model') or 'base model unknown'})")
    out.print(f"file: {data['file']}  rank {data['rank']}  alpha {data['alpha']}  AutoV2 {data['autov2']}")
    for line in data["evidence"]:
        out.print(f"  evidence: {line}")
    if data["suits"]:
        out.print("checkpoints in the library:")
        for s in data["suits"]:
            family = s["family_label"]
            out.print(f"  {s['verdict']:<13} {s['checkpoint']} ({family or 'unknown family'})")
    for note in data["notes"]:
        err.print(f"note: {note}")


# -- family check ----------------------------------------------------------------------
@family_app.command("check")
def family_check(
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help="Checkpoint name")],
    lora: Annotated[list[str], typer.Option("--lora", "-l", help="LoRA name (repeatable)")],
    as_json: JsonOpt = False,
    lang: LangOpt = EN,
) -> None:
    """The verdict for each LoRA on the checkpoint, with evidence and an explanation."""
    locale = normalize_locale(lang)

    async def body(engine: Any) -> Any:
        return await engine.family_check(checkpoint, lora)

    check = _run(body, json_mode=as_json, locale=locale)
    data = cli_hints.family_check_json(check.to_json(locale), locale)
    if as_json:
        _print_json(data)
        return
    cp = data["checkpoint"]
    base = f"{cp['base_model'] or 'unknown base model'} ({cp['family_label'] or 'unknown family'})"
    out.print(Styled.assemble("checkpoint ", (cp["name"], "bold"), f": {cp['architecture']}, {base}"))
    for item in data["loras"]:
        out.print(Styled.assemble("\n", (item["name"], "bold"), " → ", (item["verdict"], "bold")))
        out.print(f"  {item['explanation']}")
        for line in item["evidence"]:
            out.print(f"  · {line}")
    for note in data["notes"]:
        err.print(f"note: {note}")


# -- draw ------------------------------------------------------------------------------
@app.command("draw")
def draw(
    prompt: str,
    negative: Annotated[str, typer.Option("--negative", help="Negative prompt")] = "",
    checkpoint: Annotated[str | None, typer.Option("--checkpoint", "-c")] = None,
    lora: Annotated[list[str] | None, typer.Option("--lora", "-l", help="NAME or NAME:WEIGHT (repeatable)")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    steps: Annotated[int | None, typer.Option("--steps")] = None,
    cfg: Annotated[float | None, typer.Option("--cfg")] = None,
    width: Annotated[int | None, typer.Option("--width")] = None,
    height: Annotated[int | None, typer.Option("--height")] = None,
    count: Annotated[int, typer.Option("--count")] = 1,
    sampler: Annotated[str | None, typer.Option("--sampler", help='e.g. "Euler a", "DPM++ 2M Karras"')] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Also copy the images here")] = None,
    as_json: JsonOpt = False,
    lang: LangOpt = EN,
) -> None:
    """Draw with a checkpoint and LoRAs; prints the PNG paths and the applied weights."""
    from engine.planning.lora_weights import parse_lora_list

    locale = normalize_locale(lang)
    if out_dir is not None:
        # Checked before drawing: a typo here must not cost a GPU job and end in a traceback.
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _fail(RequestError(_OUT_DIR, path=str(out_dir), reason=exc.strerror or type(exc).__name__), as_json, locale)

    async def body(engine: Any) -> Any:
        from engine.requests import DrawRequest

        loras = parse_lora_list(",".join(lora or []), max_loras=engine.settings.max_loras)
        request = DrawRequest(
            prompt=prompt,
            negative=negative,
            checkpoint=checkpoint,
            loras=loras,
            seed=seed,
            steps=steps,
            cfg=cfg,
            width=width,
            height=height,
            count=count,
            sampler=sampler,
            user_id="cli",
            locale=locale,
        )
        # Jobs a crash left behind belong to the bot, which re-queues them when it starts.
        await engine.start(recover=False)
        handle = await engine.submit(request)
        return await _follow(handle, quiet=as_json)

    result = _run(body, json_mode=as_json, locale=locale)
    if out_dir is not None:
        import shutil

        try:
            result.images = [Path(shutil.copy2(p, out_dir / p.name)) for p in result.images]
        except OSError as exc:
            _fail(RequestError(_OUT_DIR, path=str(out_dir), reason=exc.strerror or type(exc).__name__), as_json, locale)
    data = result.to_json(locale)
    if as_json:
        _print_json(data)
        return
    for path in data["images"]:
        out.print(path)
    for item in data["loras"]:
        requested = "default" if item["requested_weight"] is None else f"{item['requested_weight']:g}"
        out.print(f"  {item['name']}: {requested} → {item['applied_weight']:g} ({item['status']}, {item['verdict']})")
    for warning in data["warnings"]:
        err.print(Styled.assemble(("warning:", "yellow"), f" {warning}"))
    out.print(f"seed {data['seed']}, {data['steps']} steps, CFG {data['cfg']:g}, {data['width']}×{data['height']}, {data['seconds']:.1f} s")


async def _follow(handle: Any, *, quiet: bool) -> Any:
    """Show queue position and a step progress bar while the job runs."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if quiet or not err.is_terminal:
        return await handle.result()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task("queued", total=None)
        async for event in handle.events():
            kind = type(event).__name__
            if kind == "Queued":
                bar.update(task, description=f"queued (position {event.position})")
            elif kind == "Step":
                bar.update(task, description="drawing", completed=event.i, total=event.n)
    return await handle.result()


# -- demo, run, health ------------------------------------------------------------------
@app.command("demo")
def demo(
    draw_image: Annotated[bool, typer.Option("--draw/--no-draw", help="Also draw one image")] = True,
) -> None:
    """Build a tiny offline demo library, check families, and draw one image."""
    from bot.demo import run_demo

    try:
        run_demo(_settings(), draw=draw_image)
    except LoracleError as exc:
        _fail(exc, False)


@app.command("run")
def run() -> None:
    """Start the Discord bot (needs LORACLE_DISCORD_TOKEN)."""
    from bot.discord_app.runner import run_bot

    try:
        run_bot(_settings())
    except LoracleError as exc:
        _fail(exc, False)


@app.command("health")
def health() -> None:
    """Exit 0 when the database opens and a running bot's heartbeat is fresh."""
    from bot.health import check_health

    ok, message = check_health(_settings())
    (out if ok else err).print(message)
    raise typer.Exit(0 if ok else 1)


def main() -> None:
    try:
        app()
    except LoracleError as exc:  # settings errors raised before a command body runs
        err.print(Styled.assemble(("error:", "red"), f" {exc}"))
        sys.exit(1)


if __name__ == "__main__":
    main()
