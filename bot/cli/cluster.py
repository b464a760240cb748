"""`loracle cluster status`: the GPU workers of the running bot (local or Ray).

The bot owns the queue and the workers, so this command reads the status file the bot
rewrites every few seconds (engine.workers.status) rather than starting workers of its own.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from bot.cli.common import app, err, out, settings
from engine.workers.status import PUBLISH_EVERY_S, read_status, status_path

cluster_app = typer.Typer(help="The GPU workers: local, or Ray actors on several GPUs.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")

# Older than this, the bot that wrote the file is stopped or stuck.
_STALE_S = 6 * PUBLISH_EVERY_S


@cluster_app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False) -> None:
    """Each worker: node, GPU, loaded checkpoint, jobs done, busy share, last error."""
    config = settings()
    path = status_path(config.root)
    data = read_status(path)
    if data is None:
        err.print(f"No status at {path}: the bot is not running (start it with `loracle run`). "
                  f"Configured: LORACLE_CLUSTER={config.cluster}.")
        raise typer.Exit(1)
    age = max(0.0, time.time() - float(data.get("time", 0)))
    data["age_s"] = round(age, 1)
    data["stale"] = age > _STALE_S
    if as_json:
        out.print(json.dumps(data, ensure_ascii=False, indent=2))
        raise typer.Exit(1 if data["stale"] else 0)
    for line in render(data):
        out.print(line)
    raise typer.Exit(1 if data["stale"] else 0)


def render(data: dict[str, Any]) -> list[str]:
    workers = data.get("workers") or []
    drawing = "drawing available" if data.get("available") else "DRAWING UNAVAILABLE"
    lines = [f"mode {data.get('mode')} · {drawing} · {data.get('queued', 0)} job(s) waiting · "
             f"written {data.get('age_s', 0):.0f} s ago{' (STALE: is the bot running?)' if data.get('stale') else ''}"]
    if data.get("note"):
        lines.append(str(data["note"]))
    if not workers:
        lines.append("no workers")
    for w in workers:
        loaded = w.get("loaded") or "-"
        lines.append(
            f"{w['id']:<6} {w.get('state', '?'):<11} node {w.get('node')}  GPU {w.get('gpu') or 'none (CPU)'}  "
            f"loaded {loaded[:16]}  jobs {w.get('jobs_done', 0)}  busy {100 * float(w.get('busy_share', 0)):.0f}%"
        )
        if w.get("missing"):
            lines.append(f"       lacks: {', '.join(w['missing'])}")
        if w.get("last_error"):
            lines.append(f"       last error: {w['last_error']}")
    return lines
