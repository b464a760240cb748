"""`loracle lora info` and `loracle family check`: what Loracle knows about LoRAs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text as Styled

from bot.cli import hints
from bot.cli.common import JsonOpt, LangOpt, err, family_app, lora_app, out, print_json, printable, run_engine
from engine.i18n import EN, Text, normalize_locale

if TYPE_CHECKING:
    from engine.answers import FamilyCheck, LoraInfo
    from engine.api import Engine


# -- lora info -------------------------------------------------------------------------
_WEIGHT_LINE = Text("recommended weight: {value:g}{detail}", "建議權重：{value:g}{detail}")
_WEIGHT_RANGE = Text("range {low:g}–{high:g}", "範圍 {low:g}–{high:g}")
_WEIGHT_SOURCES = {
    "admin": Text("set by an admin", "管理員設定"),
    "civitai": Text("from CivitAI", "來自 CivitAI"),
    "description": Text("from the author's description", "來自作者的說明"),
    "examples": Text("from the author's example images", "來自作者的範例圖"),
    "default": Text("default", "預設"),
}


def weight_line(data: dict[str, Any], locale: str) -> str:
    """The recommended weight, the author's range and who says so, in the reader's language."""
    parts = []
    if data.get("recommended_range"):
        low, high = data["recommended_range"]
        parts.append(_WEIGHT_RANGE.render(locale, low=low, high=high))
    source = str(data["recommended_weight_source"])
    parts.append(_WEIGHT_SOURCES[source].render(locale) if source in _WEIGHT_SOURCES else source)
    return _WEIGHT_LINE.render(locale, value=data["recommended_weight"], detail=f" ({', '.join(parts)})")

@lora_app.command("info")
def lora_info(name: str, as_json: JsonOpt = False, lang: LangOpt = EN) -> None:
    """Base model, family, trigger words, recommended weight and where it fits."""
    locale = normalize_locale(lang)

    async def body(engine: Engine) -> LoraInfo:
        return await engine.lora_info(name)

    info = run_engine(body, json_mode=as_json, locale=locale)
    data = info.to_json(locale)
    if as_json:
        print_json(data)
        return
    out.print(Styled.assemble((printable(data["label"]), "bold"), f"  ({data['kind']}, {data['architecture']})"))
    source = f"  (from {data['base_model_source']})" if data["base_model_source"] else ""
    out.print(Styled.assemble(
        printable(f"base model: {data['base_model'] or 'unknown'}  family: {data['family_label'] or 'unknown'}"),
        (printable(source), "dim"),
    ))
    out.print(printable(f"trigger words: {', '.join(data['trigger_words']) or '-'}"))
    out.print(printable(weight_line(data, locale)))
    if data["civitai_url"]:
        out.print(printable(f"CivitAI: {data['civitai_url']}"))
    if data["trained_on"]:
        t = data["trained_on"]
        out.print(printable(f"trained on: {t.get('name') or '?'} ({t.get('base_model') or 'base model unknown'})"))
    out.print(printable(f"file: {data['file']}  rank {data['rank']}  alpha {data['alpha']}  AutoV2 {data['autov2']}"))
    for line in data["evidence"]:
        out.print(printable(f"  evidence: {line}"))
    if data["suits"]:
        out.print("checkpoints in the library:")
        for s in data["suits"]:
            family = s["family_label"]
            out.print(printable(f"  {s['verdict']:<13} {s['checkpoint']} ({family or 'unknown family'})"))
    for note in data["notes"]:
        err.print(printable(f"note: {note}"))


@family_app.command("check")
def family_check(
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help="Checkpoint name")],
    lora: Annotated[list[str], typer.Option("--lora", "-l", help="LoRA name (repeatable)")],
    as_json: JsonOpt = False,
    lang: LangOpt = EN,
) -> None:
    """The verdict for each LoRA on the checkpoint, with evidence and an explanation."""
    locale = normalize_locale(lang)

    async def body(engine: Engine) -> FamilyCheck:
        return await engine.family_check(checkpoint, lora)

    check = run_engine(body, json_mode=as_json, locale=locale)
    data = hints.family_check_json(check.to_json(locale), locale)
    if as_json:
        print_json(data)
        return
    cp = data["checkpoint"]
    base = f"{cp['base_model'] or 'unknown base model'} ({cp['family_label'] or 'unknown family'})"
    out.print(Styled.assemble("checkpoint ", (printable(cp["name"]), "bold"), printable(f": {cp['architecture']}, {base}")))
    for item in data["loras"]:
        out.print(Styled.assemble("\n", (printable(item["name"]), "bold"), " → ", (item["verdict"], "bold")))
        out.print(printable(f"  {item['explanation']}"))
        for line in item["evidence"]:
            out.print(printable(f"  · {line}"))
    for note in data["notes"]:
        err.print(printable(f"note: {note}"))
