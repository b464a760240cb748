"""`loracle draw`: one job through the same queue as the bot, with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text as Styled

from bot.cli.common import OUT_DIR, JsonOpt, LangOpt, app, err, fail, out, print_json, printable, run_engine
from engine.errors import ImageInputError, RequestError
from engine.i18n import EN, Text, normalize_locale

if TYPE_CHECKING:
    from engine.api import Engine
    from engine.images.types import LikeRequest
    from engine.queue.handle import JobHandle
    from engine.requests import DrawResult


_NO_PROMPT = Text("Give a prompt, or a picture to draw like with --like.", "請給提示詞，或用 --like 指定要仿照的圖片。")


@app.command("draw")
def draw(
    prompt: Annotated[str | None, typer.Argument(help="The prompt (with --like: replaces the picture's)")] = None,
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
    # -- image jobs (hires fix, image-to-image) --
    image: Annotated[Path | None, typer.Option("--image", help="Start from this picture (image-to-image)")] = None,
    strength: Annotated[float | None, typer.Option("--strength", help="How far to move from --image, 0-1")] = None,
    hires: Annotated[float | None, typer.Option("--hires", help="Hires fix scale, e.g. 1.5 (1 = off)")] = None,
    hires_denoise: Annotated[float | None, typer.Option("--hires-denoise", help="Hires denoising strength, 0-1")] = None,
    hires_steps: Annotated[int | None, typer.Option("--hires-steps", help="Hires steps (0 = same as --steps)")] = None,
    hires_upscaler: Annotated[str | None, typer.Option("--hires-upscaler", help="latent, lanczos or an upscaler model")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Also copy the images here")] = None,
    like: Annotated[Path | None, typer.Option("--like", help="Draw like this picture (its parameters; options given override them)")] = None,
    as_json: JsonOpt = False,
    lang: LangOpt = EN,
) -> None:
    """Draw with a checkpoint and LoRAs; prints the PNG paths and the applied weights."""
    from engine.planning.lora_weights import parse_lora_list

    locale = normalize_locale(lang)
    check_out_dir(out_dir, as_json, locale)
    if like is not None:
        from bot.cli.images import read_picture

        like_data = read_picture(like, as_json, locale)
    elif prompt is None:
        fail(RequestError(_NO_PROMPT), as_json, locale)

    liked: list[LikeRequest] = []  # --like: the picture's request and how it matched

    async def body(engine: Engine) -> DrawResult:
        from engine.requests import DrawRequest

        loras = parse_lora_list(",".join(lora or []), max_loras=engine.settings.max_loras)
        request = DrawRequest(
            prompt=prompt or "",
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
            strength=strength,
            hires=hires,
            hires_denoise=hires_denoise,
            hires_steps=hires_steps,
            hires_upscaler=hires_upscaler,
        )
        if like is not None:
            from bot.cli.images import like_with_overrides

            liked.append(await like_with_overrides(engine, like_data, request, locale=locale, quiet=as_json))
            request = liked[0].request
        if image is not None:
            request.init_image = (await engine.store_image(await _read_image(image))).id
        # Jobs a crash left behind belong to the bot, which re-queues them when it starts.
        await engine.start(recover=False, front_end="cli")
        handle = await engine.submit(request)
        return await _follow(handle, quiet=as_json)

    result = run_engine(body, json_mode=as_json, locale=locale)
    finish(result, liked[0] if liked else None, out_dir=out_dir, as_json=as_json, locale=locale)


def check_out_dir(out_dir: Path | None, as_json: bool, locale: str) -> None:
    """Checked before drawing: a typo in --out must not cost a GPU job and end in a traceback."""
    if out_dir is None:
        return
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(RequestError(OUT_DIR, path=str(out_dir), reason=exc.strerror or type(exc).__name__), as_json, locale)


def finish(
    result: DrawResult, like: LikeRequest | None, *, out_dir: Path | None, as_json: bool, locale: str
) -> None:
    """Copy a finished job's pictures to --out and print it: the PNG paths, each LoRA's
    requested and applied weight, the warnings and a summary line (or all of it as JSON)."""
    if out_dir is not None:
        import shutil

        try:
            result.images = [Path(shutil.copy2(p, out_dir / p.name)) for p in result.images]
        except OSError as exc:
            fail(RequestError(OUT_DIR, path=str(out_dir), reason=exc.strerror or type(exc).__name__), as_json, locale)
    data = result.to_json(locale)
    if like is not None:
        from bot.cli.images import add_like_json

        add_like_json(data, like, locale)
    if as_json:
        print_json(data)
        return
    for path in data["images"]:
        out.print(printable(path))
    for item in data["loras"]:
        requested = "default" if item["requested_weight"] is None else f"{item['requested_weight']:g}"
        out.print(printable(f"  {item['name']}: {requested} → {item['applied_weight']:g} ({item['status']}, {item['verdict']})"))
    for warning in data["warnings"]:
        err.print(Styled.assemble(("warning:", "yellow"), printable(f" {warning}")))
    out.print(printable(summary_line(data)))


def summary_line(data: dict[str, Any]) -> str:
    """One line under a drawn picture: seed, steps, CFG, size (the final one after hires)."""
    size = f"{data['width']}×{data['height']}"
    if data.get("hires"):
        size += f" → hires {data['hires']['width']}×{data['hires']['height']}"
    return f"seed {data['seed']}, {data['steps']} steps, CFG {data['cfg']:g}, {size}, {data['seconds']:.1f} s"


_UNREADABLE_IMAGE = Text(
    "Cannot read the picture {path}: {reason}.",
    "無法讀取圖片 {path}：{reason}。",
)


async def _read_image(path: Path) -> bytes:
    import asyncio

    from engine.images.input import MAX_INPUT_BYTES

    def read() -> bytes:
        try:
            with path.open("rb") as handle:
                return handle.read(MAX_INPUT_BYTES + 1)  # store_image refuses a larger one
        except OSError as exc:
            raise ImageInputError(_UNREADABLE_IMAGE, path=str(path), reason=exc.strerror or type(exc).__name__) from None

    return await asyncio.to_thread(read)


async def _follow(handle: JobHandle, *, quiet: bool) -> DrawResult:
    """Show queue position and a step progress bar while the job runs."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from engine.queue.handle import Loading, Queued, Started, Step

    result: DrawResult
    if quiet or not err.is_terminal:
        result = await handle.result()
        return result
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task("queued", total=None)
        async for event in handle.events():
            match event:
                case Queued(position=position):
                    bar.update(task, description=f"queued (position {position})")
                case Started():
                    bar.update(task, description="starting")
                case Loading(checkpoint=name):
                    bar.update(task, description=printable(f"loading checkpoint {name}"))
                case Step(i=i, n=n):
                    bar.update(task, description="drawing", completed=i, total=n)
    result = await handle.result()
    return result
