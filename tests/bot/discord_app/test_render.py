"""Embeds from engine answers, without Discord."""

from __future__ import annotations

from pathlib import Path

from bot.discord_app.render import draw_embed, lora_info_embed, queue_embed, safe, worst_verdict
from engine.answers import LoraInfo, ModelSummary
from engine.i18n import Message, Text
from engine.kinds import Architecture
from engine.planning.lora_weights import LoraStatus
from engine.requests import (
    DrawPlan,
    DrawRequest,
    DrawResult,
    GenerationParams,
    PlannedCheckpoint,
    PlannedLora,
)


def summary(**changes):
    data = dict(
        name="x", label="x", category="lora", kind="lora", architecture="sdxl",
        base_model=None, base_model_source=None, family=None, family_label=None,
    )
    data.update(changes)
    return ModelSummary(**data)


def result(loras, warnings=()):
    plan = DrawPlan(
        request=DrawRequest(prompt="p"),
        checkpoint=PlannedCheckpoint(
            name="ck", label="My *Checkpoint*", path=Path("m"), format="safetensors", sha256=None, autov2=None,
            architecture=Architecture.SDXL, base_model="NoobAI", family="illustrious", family_label="Illustrious",
        ),
        loras=loras,
        params=GenerationParams("a <@123456789012345678> cat", "", 42, 28, 5.5, 832, 1216, 2, "DPM++ 2M Karras"),
    )
    return DrawResult("j" * 32, [], [42, 43], plan, list(warnings), "", 12.34, queued_seconds=65)


def lora(name, requested, applied, status, verdict):
    return PlannedLora(name, name, None, None, None, requested, applied, status, verdict)


def test_draw_embed_in_both_languages():
    warning = Message.of(Text("{name}: careful", "{name}：小心"), name="b")
    res = result([lora("a", None, 1.0, LoraStatus.APPLIED, "exact"), lora("b", 0.0, 0.0, LoraStatus.NOT_APPLIED, "unknown")], [warning, warning])
    en = draw_embed(res, "en")
    values = {f.name: f.value for f in en.fields}
    assert en.title == "🖼️ My *Checkpoint*"
    assert values["Checkpoint"] == "**My \\*Checkpoint\\***\nIllustrious family · SDXL · NoobAI"
    assert values["LoRAs"] == "`a` default → 1 · applied · ✅ exact match\n`b` 0 → 0 · not applied · ❔ unknown"
    assert values["Warnings"] == "• b: careful"  # the same warning once
    assert values["Seed"] == "42, 43" and values["CFG"] == "5.5" and values["Size"] == "832×1216"
    assert values["Time"] == "12.3 s (waited 65 s)"
    assert en.description == "a <@\u200b123456789012345678> cat"  # shown, never a ping
    zh = {f.name: f.value for f in draw_embed(res, "zh-TW").fields}
    assert zh["模型"].endswith("Illustrious 系列 · SDXL · NoobAI")
    assert zh["LoRA"].startswith("`a` 預設 → 1 · 已套用 · ✅ 完全相符")
    assert zh["耗時"] == "12.3 秒（排隊 65 秒）"


def test_lora_info_with_nothing_known():
    info = LoraInfo(
        summary=summary(architecture="unknown"), sha256=None, autov2=None, autov3=None, size=1234, rank=None,
        alpha=None, file="loras/x.safetensors", trigger_words=[], trigger_source=None, recommended_weight=1.0,
        recommended_weight_source="default", civitai_url=None, civitai_name=None, preview_url=None, nsfw=False,
        enabled=True, trained_on=None, top_tags=[], evidence=[], suits=[],
    )
    embed = lora_info_embed(info, "en")
    values = {f.name: f.value for f in embed.fields}
    assert embed.url is None and embed.thumbnail.url is None
    assert values["Base model"] == "unknown" and values["Family"] == "unknown"
    assert values["Trigger words"] == "none" and values["Recommended weight"] == "1 (default)"
    assert values["File"] == "`loras/x.safetensors` · 1.2 KB"


def test_queue_embed_and_helpers():
    assert queue_embed([], 0, True, "en").footer.text == "0 waiting in total · paused by an admin"
    assert worst_verdict(["exact", "other_family", "nonsense"]) == "other_family"
    assert worst_verdict([]) is None
    assert safe("**@everyone**") == "\\*\\*@\u200beveryone\\*\\*"


def test_control_characters_in_names_cannot_forge_lines():
    from bot.discord_app.render import code

    name = "evil\x1b[31m\n**Seed**: 1\r\x85x"
    for shown in (safe(name), code(name)):
        assert not any(ch in shown for ch in "\x1b\n\r\x85")
        assert "\ufffd" in shown and "evil" in shown


def test_lora_info_shows_the_authors_weight_its_range_and_source_in_both_languages():
    def info(value: float, source: str, range_: tuple[float, float] | None) -> LoraInfo:
        return LoraInfo(
            summary=summary(), sha256=None, autov2=None, autov3=None, size=1, rank=None, alpha=None,
            file="loras/x.safetensors", trigger_words=["ink"], trigger_source="civitai", recommended_weight=value,
            recommended_weight_source=source, civitai_url=None, civitai_name=None, preview_url=None, nsfw=False,
            enabled=True, trained_on=None, top_tags=[], evidence=[], suits=[], recommended_range=range_,
        )

    def weight(item: LoraInfo, locale: str) -> str:
        embed = lora_info_embed(item, locale)
        return next(f.value for f in embed.fields if f.name in ("Recommended weight", "建議權重"))

    assert weight(info(0.7, "civitai", (0.6, 0.8)), "en") == "0.7 (range 0.6–0.8, from CivitAI)"
    assert weight(info(0.7, "civitai", (0.6, 0.8)), "zh-TW") == "0.7 (範圍 0.6–0.8, 來自 CivitAI)"
    assert weight(info(0.6, "description", (0.5, 0.7)), "en") == "0.6 (range 0.5–0.7, from the author's description)"
    assert weight(info(0.5, "examples", None), "en") == "0.5 (from the author's example images)"
    assert weight(info(0.5, "examples", None), "zh-TW") == "0.5 (來自作者的範例圖)"
    assert weight(info(0.8, "admin", None), "zh-TW") == "0.8 (管理員設定)"
