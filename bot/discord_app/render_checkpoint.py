"""The `/checkpoint info` card, built from the engine's CheckpointInfo.

A pure function of the answer and a locale, like bot.discord_app.render: names come from
files and strangers' metadata, so they go through `safe`/`code` and are clipped to
Discord's limits.
"""

from __future__ import annotations

from typing import Any

import discord

from bot.discord_app import limits
from bot.discord_app import texts as T
from bot.discord_app.render import _lines, _render_all, arch_label, code, safe
from engine.i18n import EN, Text

F_TYPE = Text("Type", "類型")
F_PARENTS = Text("Merged from", "融合自")
F_ANCESTORS = Text("Earlier ancestors", "更早的來源")
F_SIBLINGS = Text("Same family in the library", "模型庫中同系列的模型")
F_LORAS = Text("LoRAs that suit it", "適合的 LoRA")
F_CONVENTIONS = Text("Prompt conventions", "提示詞慣例")
F_FACTS = Text("Model", "模型")
TYPES = {
    "merge": Text("🧪 Checkpoint Merge", "🧪 融合模型（Checkpoint Merge）"),
    "trained": Text("🏋️ Checkpoint Trained", "🏋️ 訓練模型（Checkpoint Trained）"),
    "unknown": Text("❔ unknown: merged or trained", "❔ 未知：融合或訓練"),
}
TYPE_SOURCES = {
    "civitai": Text("from CivitAI", "來自 CivitAI"),
    "file": Text("from the file's metadata", "來自檔案的中繼資料"),
}
IN_LIBRARY = Text("in the library as {name}", "模型庫中的 {name}")
NOT_IN_LIBRARY = Text("not in the library", "不在模型庫中")
NO_LORAS = Text("None in the library.", "模型庫中沒有。")
LEFT_OUT = Text("{count} LoRA(s) of another architecture left out.", "另有 {count} 個其他架構的 LoRA 未列出。")
FACTS = Text("v-prediction: {vpred} · VAE baked in: {vae}", "v-prediction：{vpred} · 內含 VAE：{vae}")
YES, NO = Text("yes", "是"), Text("no", "否")
_VERDICTS = ("exact", "same_family", "other_family", "unknown")
_LORAS_PER_VERDICT = 12


def checkpoint_info_embed(info: Any, locale: str = EN) -> discord.Embed:
    s = info.summary
    embed = discord.Embed(title=s.label, url=info.civitai_url or None, colour=discord.Colour.teal())
    if info.civitai_name:
        embed.description = safe(info.civitai_name)
    kind = TYPES.get(info.checkpoint_type, TYPES["unknown"]).render(locale)
    source = TYPE_SOURCES.get(info.checkpoint_type_source or "")
    embed.add_field(name=F_TYPE.render(locale), value=f"{kind} ({source.render(locale)})" if source else kind, inline=False)
    base = safe(s.base_model) if s.base_model else T.UNKNOWN.render(locale)
    base_source = T.source_label(s.base_model_source, locale)
    embed.add_field(name=T.F_BASE_MODEL.render(locale), value=f"{base} ({base_source})" if base_source else base, inline=True)
    embed.add_field(
        name=T.F_FAMILY.render(locale), value=safe(s.family_label) if s.family_label else T.UNKNOWN.render(locale), inline=True
    )
    embed.add_field(name=T.F_ARCH.render(locale), value=arch_label(s.architecture), inline=True)
    if info.parents:
        how = [str(x) for x in (info.merge_tool, info.merge_method, info.merge_multiplier) if x is not None]
        lines = [_parent_line(p, locale) for p in info.parents]
        if how:
            lines.insert(0, f"*{safe(' · '.join(how))}*")
        embed.add_field(name=F_PARENTS.render(locale), value=_lines(lines, locale), inline=False)
    if info.ancestors:
        names = ", ".join(code(a.name or "?") for a in info.ancestors)
        embed.add_field(name=F_ANCESTORS.render(locale), value=limits.clip(names, limits.FIELD_VALUE), inline=False)
    if info.siblings:
        names = ", ".join(f"**{safe(x.name)}**" for x in info.siblings)
        embed.add_field(name=F_SIBLINGS.render(locale), value=limits.clip(names, limits.FIELD_VALUE), inline=False)
    embed.add_field(name=F_LORAS.render(locale), value=_loras(info, locale), inline=False)
    if info.prompt_conventions:
        lines = [f"{', '.join(code(t) for t in c.tags)}\n↳ {safe(c.text.render(locale))} *({safe(c.source)})*" for c in info.prompt_conventions]
        embed.add_field(name=F_CONVENTIONS.render(locale), value=_lines(lines, locale), inline=False)
    yes, no = YES.render(locale), NO.render(locale)
    facts = [FACTS.render(locale, vpred=yes if info.v_prediction else no, vae=yes if info.has_vae else no)]
    facts.append(T.FILE_LINE.render(locale, file=code(info.file), size=T.human_size(info.size)))
    if info.autov2:
        facts.append(f"AutoV2 {code(info.autov2)}")
    embed.add_field(name=F_FACTS.render(locale), value="\n".join(facts), inline=False)
    if info.evidence:
        embed.add_field(name=T.F_EVIDENCE.render(locale), value=_lines(_render_all(info.evidence, locale), locale), inline=False)
    if info.notes:
        embed.add_field(name=T.F_NOTES.render(locale), value=_lines(_render_all(info.notes, locale), locale), inline=False)
    return limits.fit_embed(embed)


def _parent_line(parent: Any, locale: str) -> str:
    role = f"**{safe(parent.role)}** " if parent.role else ""
    where = IN_LIBRARY.render(locale, name=f"**{safe(parent.library_name)}**") if parent.in_library else NOT_IN_LIBRARY.render(locale)
    extra = [safe(parent.base_model)] if parent.base_model else []
    if parent.civitai_url:
        extra.append(f"[CivitAI]({parent.civitai_url})")
    return f"{role}{code(parent.name or '?')} — {where}" + (f" ({', '.join(extra)})" if extra else "")


def _loras(info: Any, locale: str) -> str:
    lines = []
    for verdict in _VERDICTS:
        names = [x.label for x in info.loras if x.verdict == verdict]
        if not names:
            continue
        shown = ", ".join(f"**{safe(n)}**" for n in names[:_LORAS_PER_VERDICT])
        if len(names) > _LORAS_PER_VERDICT:
            shown += " " + T.AND_MORE.render(locale, count=len(names) - _LORAS_PER_VERDICT)
        lines.append(f"{T.verdict_label(verdict, locale)}: {shown}")
    if not lines:
        lines.append(NO_LORAS.render(locale))
    if info.incompatible_loras:
        lines.append(LEFT_OUT.render(locale, count=info.incompatible_loras))
    return _lines(lines, locale)
