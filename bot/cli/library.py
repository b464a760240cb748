"""`loracle library ...`: scan, list, set, add, remove and refresh the model library."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Column, Table
from rich.text import Text as Styled

from bot.cli.common import JsonOpt, err, library_app, out, print_json, printable, run_engine

if TYPE_CHECKING:
    from engine.api import Engine
    from engine.i18n import Message
    from engine.library import LibraryEntry, ScanReport


class _Category(StrEnum):
    checkpoint = "checkpoint"
    lora = "lora"
    upscaler = "upscaler"


@library_app.command("scan")
def library_scan(
    no_civitai: Annotated[bool, typer.Option("--no-civitai", help="Do not ask CivitAI about new files.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Find new, changed and removed files; hash and inspect what changed."""

    async def body(engine: Engine) -> ScanReport:
        return await engine.scan(civitai=not no_civitai)

    report = run_engine(body, json_mode=as_json, scan=False)
    notes = [str(n) for n in getattr(report, "notes", [])]
    if as_json:
        print_json(
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
        err.print(Styled.assemble(("skipped", "yellow"), printable(f" {problem.rel_path}: {problem.message}")))
    for note in notes:
        err.print(Styled.assemble(("note:", "dim"), printable(f" {note}")))


@library_app.command("list")
def library_list(
    category: Annotated[_Category | None, typer.Option("--category", help="Only checkpoints, LoRAs or upscalers")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List checkpoints and LoRAs with their architecture and family."""

    async def body(engine: Engine) -> list[dict[str, Any]]:
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

    rows = run_engine(body, json_mode=as_json)
    if as_json:
        print_json(rows)
        return
    # Names are what the other commands take, so they are never cut short with "…"; the
    # file column, which repeats them, is shown only where there is room for it.
    def width(key: str, title: str) -> int:
        return max([len(title), *(len(printable(row.get(key) or "")) for row in rows)])

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
        file = [printable(row["path"])] if wide else []
        if row["error"]:
            table.add_row(printable(row["name"]), row["category"], "-", "-", "-", "-", *file)
            continue
        table.add_row(
            printable(row["name"]) + ("" if row["enabled"] else " (disabled)"),
            row["kind"],
            row["architecture"],
            printable(row["base_model"] or "?"),
            printable(row["family"] or "unknown"),
            "" if row["recommended_weight"] is None else f"{row['recommended_weight']:g}",
            *file,
        )
    out.print(table)
    for row in broken:  # below the table, where a long reason has the whole line
        out.print(printable(f"cannot use {row['name']} ({row['path']}): {row['error']}"), style="red")


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

    async def body(engine: Engine) -> dict[str, Any]:
        entry = await asyncio.to_thread(lambda: engine.set_entry(name, by="cli", **values))
        summary = engine.summary(entry)
        return {**summary.to_json(), "recommended_weight": entry.weight_override, "nsfw": engine.is_nsfw(entry), "enabled": entry.enabled}

    result = run_engine(body, json_mode=as_json)
    if as_json:
        print_json(result)
    else:
        out.print(printable(f"{result['name']}: base model {result['base_model'] or '?'} ({result['family'] or 'unknown family'})"))


@library_app.command("add")
def library_add(
    source: Annotated[str, typer.Argument(help="CivitAI URL or model-version id, or a path inside the data dir")],
    as_json: JsonOpt = False,
) -> None:
    """Download from CivitAI (verified by SHA256) or adopt a file in the data dir."""

    async def body(engine: Engine) -> LibraryEntry:
        candidate = engine.settings.root / source
        if candidate.exists():
            return await engine.add_from_path(source)
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

        with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), console=err) as bar:
            task = bar.add_task("downloading", total=None)
            return await engine.add_from_civitai(
                source, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )

    entry = run_engine(body, json_mode=as_json)
    if as_json:
        print_json({"name": entry.name, "category": str(entry.category), "path": entry.rel_path, "sha256": entry.sha256})
    else:
        out.print(printable(f"added {entry.category} {entry.name} ({entry.rel_path})"))


@library_app.command("remove")
def library_remove(
    name: str, yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False, as_json: JsonOpt = False
) -> None:
    """Delete a file from the library (and from disk)."""
    if not yes:
        # On stderr, so that stdout stays the JSON answer alone.
        typer.confirm(f"Delete {name} from disk?", abort=True, err=True)

    async def body(engine: Engine) -> LibraryEntry:
        return await engine.remove(name)

    entry = run_engine(body, json_mode=as_json)
    if as_json:
        print_json({"removed": entry.name, "category": str(entry.category), "path": entry.rel_path})
    else:
        out.print(printable(f"removed {entry.rel_path}"))


@library_app.command("refresh")
def library_refresh(name: Annotated[str | None, typer.Argument()] = None, as_json: JsonOpt = False) -> None:
    """Ask CivitAI again, ignoring cached answers (for one file or all)."""

    async def body(engine: Engine) -> list[Message]:
        return await engine.refresh(name)

    notes = [str(note) for note in run_engine(body, json_mode=as_json)]
    if as_json:
        print_json({"refreshed": name, "notes": notes})
        return
    for note in notes:
        err.print(printable(f"note: {note}"))
    out.print("refreshed")
