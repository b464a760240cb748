"""`loracle info`, `loracle upscale`, `loracle vary` and `draw --like`: from a picture to
its parameters, and to a new job made from them. Each says which of the picture's
resources matched by hash, which by name only, and which are missing (with the CivitAI
page of a missing one, when CivitAI knows its hash)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text as Styled

from bot.cli.common import JsonOpt, LangOpt, app, err, fail, out, print_json, printable, run_engine
from engine.errors import ImageInputError
from engine.i18n import EN, Message, Text, normalize_locale

if TYPE_CHECKING:
    from engine.api import Engine
    from engine.images.types import ImageInfo, LikeRequest, ResourceMatch
    from engine.requests import DrawRequest, DrawResult

_UNREADABLE = Text("Cannot read “{path}” ({reason}).", "無法讀取「{path}」（{reason}）。")
_ADD_HINT = Text("add it with: loracle library add {url}", "可用此指令加入：loracle library add {url}")
_HOW = {
    "hash": ("matched by hash", "依雜湊值找到"),
    "name": ("matched by name only", "只有名稱相符"),
    "missing": ("missing", "模型庫中沒有"),
}
DEFAULT_STRENGTH = 0.5
# DrawRequest fields a `draw --like` option replaces when given.
_OVERRIDES = (
    "prompt", "negative", "checkpoint", "seed", "steps", "cfg", "width", "height", "sampler",
    "init_image", "strength", "hires", "hires_denoise", "hires_steps", "hires_upscaler",
)  # fmt: skip

ImageArg = Annotated[Path, typer.Argument(help="A PNG (or JPEG/WEBP) with generation parameters")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Also copy the images here")]


def read_picture(path: Path, as_json: bool, locale: str) -> bytes:
    """The file's bytes; a missing, unreadable or oversized file fails with one line."""
    from engine.images.image_text import MAX_IMAGE_BYTES

    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise ImageInputError(_UNREADABLE, path=str(path), reason=f"over {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
        return path.read_bytes()
    except OSError as exc:
        fail(ImageInputError(_UNREADABLE, path=str(path), reason=exc.strerror or type(exc).__name__), as_json, locale)
    except ImageInputError as exc:
        fail(exc, as_json, locale)


def matches_json(matches: list[ResourceMatch]) -> list[dict[str, Any]]:
    return [m.to_json() for m in matches]


def add_like_json(data: dict[str, Any], like: LikeRequest, locale: str) -> None:
    """A job's `--json` output, with how the picture's resources matched and what was
    changed or left out on the way (printed on stderr instead, without --json)."""
    data["resources"] = matches_json(like.matches)
    data["warnings"] = [w.render(locale) for w in like.warnings] + data["warnings"]


def print_matches(matches: list[ResourceMatch], warnings: list[Message], locale: str) -> None:
    """One line per resource: how it matched, its verdict, and a missing one's page."""
    zh = normalize_locale(locale) != EN
    for m in matches:
        ref = m.ref
        label = ref.name or ref.hash or "?"
        weight = f" ({ref.weight:g})" if ref.weight is not None else ""
        how = _HOW[m.how][1 if zh else 0]
        line = f"  {ref.kind} {label}{weight}: {how}"
        if m.matched and m.matched != label:
            line += f" → {m.matched}"
        if m.verdict:
            line += f" [{m.verdict}]"
        if m.civitai_url:
            line += f" — {m.civitai_url} ({_ADD_HINT.render(locale, url=m.civitai_url)})"
        err.print(printable(line))
    for warning in warnings:
        err.print(Styled.assemble(("warning:", "yellow"), printable(f" {warning.render(locale)}")))


@app.command("info")
def info(
    image: ImageArg,
    checkpoint: Annotated[str | None, typer.Option("--checkpoint", "-c", help="Judge the LoRAs against this checkpoint")] = None,
    as_json: JsonOpt = False,
    lang: LangOpt = EN,
) -> None:
    """Show a picture's generation parameters and how each of its resources matches the library."""
    from engine.images.parameters import parameters_json

    locale = normalize_locale(lang)
    data = read_picture(image, as_json, locale)

    async def body(engine: Engine) -> ImageInfo:
        return await engine.image_info(data, checkpoint=checkpoint)

    found = run_engine(body, json_mode=as_json, locale=locale)
    if as_json:
        print_json(
            {
                "parameters": parameters_json(found.parameters),
                "resources": matches_json(found.matches),
                "warnings": [w.render(locale) for w in found.warnings],
            }
        )
        return
    p = parameters_json(found.parameters)
    out.print(printable(f"source: {p['source']}"))
    out.print(printable(f"prompt: {p['prompt']}"))
    if p["negative"]:
        out.print(printable(f"negative: {p['negative']}"))
    settings = [f"{key} {p[key]}" for key in ("seed", "steps", "cfg", "sampler", "clip_skip") if p[key] is not None]
    if p["width"] and p["height"]:
        settings.append(f"{p['width']}×{p['height']}")
    if p["hires"]:
        settings.append(f"hires {p['hires']:g}")
    out.print(printable(", ".join(settings)))
    print_matches(found.matches, found.warnings, locale)


async def like_with_overrides(engine: Engine, data: bytes, given: DrawRequest, *, locale: str, quiet: bool) -> LikeRequest:
    """`draw --like`: the picture's request, with every option the user gave on top."""
    like = await engine.like_request(data, user_id=given.user_id)
    request = like.request
    for name in _OVERRIDES:
        value = getattr(given, name)
        if value is not None and value != "":
            setattr(request, name, value)
    if given.count != 1:
        request.count = given.count
    if given.loras:  # same name: the given weight wins; new names are added
        names = {l.name.casefold() for l in given.loras}
        request.loras = [l for l in request.loras if l.name.casefold() not in names] + list(given.loras)
    request.locale = locale
    if not quiet:
        print_matches(like.matches, like.warnings, locale)
    return like


def _draw_from(request_for: Any, as_json: bool, locale: str, out_dir: Path | None) -> None:
    """Run the job `request_for(engine)` builds and print it as `loracle draw` does."""
    from bot.cli.draw import _follow, check_out_dir, finish

    check_out_dir(out_dir, as_json, locale)

    async def body(engine: Engine) -> tuple[DrawResult, LikeRequest]:
        like: LikeRequest = await request_for(engine)
        like.request.locale = locale
        if not as_json:
            print_matches(like.matches, like.warnings, locale)
        await engine.start(recover=False, front_end="cli")
        handle = await engine.submit(like.request)
        return await _follow(handle, quiet=as_json), like

    result, like = run_engine(body, json_mode=as_json, locale=locale)
    finish(result, like, out_dir=out_dir, as_json=as_json, locale=locale)


@app.command("upscale")
def upscale(
    image: ImageArg,
    scale: Annotated[float | None, typer.Option("--scale", help="Hires scale, e.g. 1.5 (default: the admin's)")] = None,
    upscaler: Annotated[str | None, typer.Option("--upscaler", help='"latent", "lanczos" or an upscaler model')] = None,
    out_dir: OutOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = EN,
) -> None:
    """A hires pass over a Loracle picture: its checkpoint, LoRAs, weights and seed, bigger."""
    locale = normalize_locale(lang)
    data = read_picture(image, as_json, locale)

    async def request_for(engine: Engine) -> LikeRequest:
        return await engine.upscale_request(data, user_id="cli", scale=scale, upscaler=upscaler)

    _draw_from(request_for, as_json, locale, out_dir)


@app.command("vary")
def vary(
    image: ImageArg,
    strength: Annotated[float, typer.Option("--strength", help="How far from the picture, 0-1")] = DEFAULT_STRENGTH,
    out_dir: OutOpt = None,
    as_json: JsonOpt = False,
    lang: LangOpt = EN,
) -> None:
    """A variation of a Loracle picture: image-to-image from it with a new seed."""
    locale = normalize_locale(lang)
    data = read_picture(image, as_json, locale)

    async def request_for(engine: Engine) -> LikeRequest:
        return await engine.vary_request(data, strength=strength, user_id="cli")

    _draw_from(request_for, as_json, locale, out_dir)
