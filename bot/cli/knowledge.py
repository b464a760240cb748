"""`loracle lora info`, `loracle family check` and `loracle checkpoint info`: what Loracle
knows about LoRAs and checkpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text as Styled

from bot.cli import hints
from bot.cli.common import (
    JsonOpt,
    LangOpt,
    app,
    err,
    family_app,
    lora_app,
    out,
    print_json,
    printable,
    run_engine,
)
from engine.i18n import EN, Text, normalize_locale

if TYPE_CHECKING:
    from engine.answers import FamilyCheck, LoraInfo
    from engine.api import Engine
    from engine.checkpoint_types import CheckpointInfo


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


# -- checkpoint info ---------------------------------------------------------------------
checkpoint_app = typer.Typer(help="What Loracle knows about a checkpoint: merged or trained, parents, what suits it.", no_args_is_help=True)
app.add_typer(checkpoint_app, name="checkpoint")

_CK = {
    "type": Text("type: {value}{source}", "類型：{value}{source}"),
    "base": Text("base model: {base}  family: {family}{source}", "基礎模型：{base}  系列：{family}{source}"),
    "parents": Text("merged from{how}:", "融合自{how}："),
    "in_library": Text("in the library as {name}", "模型庫中的 {name}"),
    "not_in_library": Text("not in the library", "不在模型庫中"),
    "ancestors": Text("earlier ancestors: {names}", "更早的來源：{names}"),
    "siblings": Text("same family in the library: {names}", "模型庫中同系列的模型：{names}"),
    "loras": Text("LoRAs that suit it:", "適合的 LoRA："),
    "no_loras": Text("LoRAs that suit it: none in the library", "適合的 LoRA：模型庫中沒有"),
    "incompatible": Text("({count} LoRA(s) of another architecture left out)", "（另有 {count} 個其他架構的 LoRA 未列出）"),
    "conventions": Text("prompt conventions:", "提示詞慣例："),
    "facts": Text("v-prediction: {vpred} · VAE baked in: {vae}", "v-prediction：{vpred} · 內含 VAE：{vae}"),
    "unknown": Text("unknown", "未知"),
    "yes": Text("yes", "是"),
    "no": Text("no", "否"),
}
_TYPES = {
    "merge": Text("merge", "融合模型（Merge）"),
    "trained": Text("trained", "訓練模型（Trained）"),
    "unknown": Text("unknown", "未知"),
}
_TYPE_SOURCES = {
    "civitai": Text(" (from CivitAI)", "（來自 CivitAI）"),
    "file": Text(" (from the file's metadata)", "（來自檔案的中繼資料）"),
}
_BASE_SOURCES = {
    "admin": Text(" (set by an admin)", "（管理員設定）"),
    "civitai": Text(" (from CivitAI)", "（來自 CivitAI）"),
    "metadata": Text(" (from the file's metadata)", "（來自檔案的中繼資料）"),
    "filename": Text(" (from the file name)", "（來自檔名）"),
}
_VERDICT_WORDS = {
    "exact": Text("exact match", "完全相符"),
    "same_family": Text("same family", "同一系列"),
    "other_family": Text("other family", "其他系列"),
    "unknown": Text("unknown", "未知"),
}


def lineage_lines(data: dict[str, Any], locale: str) -> list[str]:
    """`checkpoint info` as lines of text, in the reader's language (also used by the demo)."""
    t = {k: v.render(locale) for k, v in _CK.items() if "{" not in v.en}
    source = _TYPE_SOURCES.get(data["checkpoint_type_source"] or "")
    lines = [_CK["type"].render(locale, value=_TYPES[data["checkpoint_type"]].render(locale), source=source.render(locale) if source else "")]
    base_source = _BASE_SOURCES.get(data["base_model_source"] or "")
    lines.append(_CK["base"].render(
        locale,
        base=data["base_model"] or t["unknown"],
        family=data["family_label"] or t["unknown"],
        source=base_source.render(locale) if base_source else "",
    ))
    if data["parents"]:
        merge = data["merge"] or {}
        how = [str(merge.get(k)) for k in ("tool", "method", "multiplier") if merge.get(k) is not None]
        lines.append(_CK["parents"].render(locale, how=f" ({', '.join(how)})" if how else ""))
        for p in data["parents"]:
            where = _CK["in_library"].render(locale, name=p["library_name"]) if p["in_library"] else t["not_in_library"]
            extra = [x for x in (p["base_model"], f"SHA-256 {p['sha256'][:12]}…" if p["sha256"] else None) if x]
            role = f"{p['role']} " if p["role"] else ""
            lines.append(f"  {role}{p['name'] or '?'} — {where}" + (f" ({', '.join(extra)})" if extra else ""))
    if data["ancestors"]:
        lines.append(_CK["ancestors"].render(locale, names=", ".join(a["name"] or "?" for a in data["ancestors"])))
    if data["siblings"]:
        lines.append(_CK["siblings"].render(locale, names=", ".join(s["name"] for s in data["siblings"])))
    if data["loras"]:
        lines.append(t["loras"])
        for verdict, words in _VERDICT_WORDS.items():
            names = [x["name"] for x in data["loras"] if x["verdict"] == verdict]
            if names:
                lines.append(f"  {words.render(locale)}: {', '.join(names)}")
    else:
        lines.append(t["no_loras"])
    if data["incompatible_loras"]:
        lines.append("  " + _CK["incompatible"].render(locale, count=data["incompatible_loras"]))
    if data["prompt_conventions"]:
        lines.append(t["conventions"])
        for c in data["prompt_conventions"]:
            lines.append(f"  {', '.join(c['tags'])} — {c['text']} [{c['source']}]")
    yes, no = t["yes"], t["no"]
    lines.append(_CK["facts"].render(locale, vpred=yes if data["v_prediction"] else no, vae=yes if data["has_vae"] else no))
    if data["civitai_url"]:
        lines.append(f"CivitAI: {data['civitai_url']}")
    return lines


@checkpoint_app.command("info")
def checkpoint_info(name: str, as_json: JsonOpt = False, lang: LangOpt = EN) -> None:
    """Merged or trained, base model and family, the parents its file names, what suits it."""
    locale = normalize_locale(lang)

    async def body(engine: Engine) -> CheckpointInfo:
        return await engine.checkpoint_info(name)

    info = run_engine(body, json_mode=as_json, locale=locale)
    data = info.to_json(locale)
    if as_json:
        print_json(data)
        return
    out.print(Styled.assemble((printable(data["label"]), "bold"), f"  ({data['architecture']}, {printable(data['file'])})"))
    for line in lineage_lines(data, locale):
        out.print(printable(line))
    for line in data["evidence"]:
        out.print(Styled(printable(f"  · {line}"), style="dim"))
    for note in data["notes"]:
        err.print(printable(f"note: {note}"))
