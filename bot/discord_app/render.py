"""Embeds built from the engine's answers (DrawResult, LoraInfo, FamilyCheck, queue).

Pure functions of the data and a locale: no Discord calls, so they are tested directly.
Names, prompts and metadata come from users and model files, so they are escaped (no
accidental markdown or mentions) and clipped to Discord's limits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import discord
from discord.utils import escape_markdown, escape_mentions

from bot.discord_app import limits
from bot.discord_app import texts as T
from engine.i18n import EN, Message

# Embed colours follow the verdict: green is good, yellow "runs but differs", red refused.
COLOURS = {
    "exact": discord.Colour.green(),
    "same_family": discord.Colour.dark_green(),
    "other_family": discord.Colour.gold(),
    "unknown": discord.Colour.light_grey(),
    "incompatible": discord.Colour.red(),
}
_VERDICT_ORDER = ["exact", "same_family", "other_family", "unknown", "incompatible"]
DRAW_COLOUR = discord.Colour.blurple()


# Direction overrides and isolates: a file named "x\u202eavol.safetensors" would reverse
# the rest of its line (the weights after it, the verdict) in every embed that names it.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


# Control characters (a newline or an escape in a file name) would start new lines that
# look like the bot's own; they are shown as the replacement character instead.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _inert(text: str) -> str:
    return _CONTROL.sub("\ufffd", _BIDI.sub("", text))


def safe(text: str | None) -> str:
    """User- or file-provided text made inert: no markdown, no pings, no reversed text, no
    control characters."""
    return escape_mentions(escape_markdown(_inert(text or "")))


def code(text: str) -> str:
    # Inline code cannot contain backticks; a name with one is shown with it replaced.
    return f"`{_inert(text).replace('`', 'ˋ')}`"


def arch_label(architecture: Any) -> str:
    label = getattr(architecture, "label", None)
    if label:
        return str(label)
    try:
        from engine.kinds import Architecture

        return Architecture(str(architecture)).label
    except ValueError:
        return str(architecture)


def weight(value: float | None, locale: str) -> str:
    return T.DEFAULT_WEIGHT.render(locale) if value is None else f"{value:g}"


def _more(locale: str) -> Callable[[int], str]:
    return lambda n: T.AND_MORE.render(locale, count=n)


def _lines(lines: Sequence[str], locale: str, limit: int = limits.FIELD_VALUE) -> str:
    return limits.join_lines(lines, limit, _more(locale))


def _render_all(messages: Sequence[Message], locale: str) -> list[str]:
    return [f"• {safe(m.render(locale))}" for m in messages]


def family_line(family_label: str | None, architecture: Any, locale: str) -> str:
    arch = arch_label(architecture)
    if family_label:
        return T.FAMILY_LINE.render(locale, family=safe(family_label), arch=arch)
    return T.FAMILY_UNKNOWN_LINE.render(locale, arch=arch)


# -- /draw ------------------------------------------------------------------------------
def lora_line(lora: Any, locale: str) -> str:
    """`name` requested → applied · status · verdict"""
    return (
        f"{code(lora.label or lora.name)} {weight(lora.requested_weight, locale)} → {lora.applied_weight:g}"
        f" · {T.status_label(lora.status, locale)} · {T.verdict_label(lora.verdict, locale)}"
    )


def draw_embed(result: Any, locale: str = EN, extra: Sequence[tuple[str, str]] = ()) -> discord.Embed:
    """The final /draw reply: checkpoint and family, each LoRA's weights, status and
    verdict, warnings, and the parameters needed to draw the same picture again; `extra`
    fields (name, value) say where the request came from (a picture, the user's defaults)."""
    plan = result.plan
    cp = plan.checkpoint
    p = plan.params
    embed = discord.Embed(title=f"🖼️ {cp.label}", colour=DRAW_COLOUR)
    description = safe(p.prompt)
    if p.negative:
        description += f"\n\n🚫 {safe(p.negative)}"
    embed.description = limits.clip(description, 1500)
    checkpoint = f"**{safe(cp.label)}**\n{family_line(cp.family_label, cp.architecture, locale)}"
    if cp.base_model and cp.base_model != cp.family_label:
        checkpoint += f" · {safe(cp.base_model)}"
    embed.add_field(name=T.F_CHECKPOINT.render(locale), value=checkpoint, inline=False)
    if plan.loras:
        embed.add_field(
            name=T.F_LORAS.render(locale), value=_lines([lora_line(l, locale) for l in plan.loras], locale), inline=False
        )
    if result.warnings:
        embed.add_field(
            name=T.F_WARNINGS.render(locale), value=_lines(_render_all(_unique(result.warnings), locale), locale), inline=False
        )
    for name, value in extra:
        embed.add_field(name=name, value=value, inline=False)
    seeds = result.seeds or [p.seed]
    embed.add_field(name=T.F_SEED.render(locale), value=", ".join(str(s) for s in seeds), inline=True)
    embed.add_field(name=T.F_STEPS.render(locale), value=str(p.steps), inline=True)
    embed.add_field(name=T.F_CFG.render(locale), value=f"{p.cfg:g}", inline=True)
    size = f"{p.width}×{p.height}"
    hires = getattr(plan.request, "hires", None)
    if isinstance(hires, (int, float)) and hires > 1:
        size += f" · hires {hires:g}×"
    embed.add_field(name=T.F_SIZE.render(locale), value=size, inline=True)
    embed.add_field(name=T.F_SAMPLER.render(locale), value=safe(p.sampler), inline=True)
    if result.queued_seconds >= 1:
        took = T.SECONDS_QUEUED.render(locale, seconds=result.seconds, queued=result.queued_seconds)
    else:
        took = T.SECONDS.render(locale, seconds=result.seconds)
    embed.add_field(name=T.F_TIME.render(locale), value=took, inline=True)
    return limits.fit_embed(embed)


def _unique(messages: Sequence[Message]) -> list[Message]:
    # The engine lists a LoRA's warnings both on the LoRA and in the job's warnings.
    seen: set[str] = set()
    out = []
    for message in messages:
        key = message.render(EN)
        if key not in seen:
            seen.add(key)
            out.append(message)
    return out


# -- /lora info -------------------------------------------------------------------------
def recommended_weight(info: Any, locale: str) -> str:
    """"0.7 (range 0.6–0.8, from CivitAI)": the value a draw without a weight uses, the
    author's range beside it, and who says so."""
    parts = []
    if info.recommended_range:
        low, high = info.recommended_range
        parts.append(T.WEIGHT_RANGE.render(locale, low=low, high=high))
    source = T.source_label(info.recommended_weight_source, locale)
    if source:
        parts.append(source)
    return f"{info.recommended_weight:g}" + (f" ({', '.join(parts)})" if parts else "")


def lora_info_embed(info: Any, locale: str = EN) -> discord.Embed:
    s = info.summary
    colour = discord.Colour.teal()
    embed = discord.Embed(title=s.label, url=info.civitai_url or None, colour=colour)
    if info.civitai_name:
        embed.description = safe(info.civitai_name)
    if info.preview_url:
        embed.set_thumbnail(url=info.preview_url)
    base = safe(s.base_model) if s.base_model else T.UNKNOWN.render(locale)
    source = T.source_label(s.base_model_source, locale)
    embed.add_field(name=T.F_BASE_MODEL.render(locale), value=f"{base} ({source})" if source else base, inline=True)
    embed.add_field(
        name=T.F_FAMILY.render(locale), value=safe(s.family_label) if s.family_label else T.UNKNOWN.render(locale), inline=True
    )
    embed.add_field(name=T.F_ARCH.render(locale), value=f"{arch_label(s.architecture)} · {safe(s.kind)}", inline=True)
    triggers = ", ".join(code(w) for w in info.trigger_words) if info.trigger_words else T.NONE.render(locale)
    trigger_source = T.source_label(info.trigger_source, locale)
    if info.trigger_words and trigger_source:
        triggers += f" ({trigger_source})"
    embed.add_field(name=T.F_TRIGGERS.render(locale), value=limits.clip(triggers, limits.FIELD_VALUE), inline=False)
    embed.add_field(name=T.F_WEIGHT.render(locale), value=recommended_weight(info, locale), inline=True)
    if info.trained_on:
        trained = info.trained_on
        line = T.TRAINED_ON_LINE.render(
            locale,
            name=safe(trained.get("name") or "?"),
            base_model=safe(trained.get("base_model") or T.UNKNOWN.render(locale)),
        )
        if trained.get("in_library"):
            line += "\n" + T.IN_LIBRARY.render(locale, names=", ".join(code(n) for n in trained["in_library"]))
        embed.add_field(name=T.F_TRAINED_ON.render(locale), value=line, inline=True)
    details = [T.FILE_LINE.render(locale, file=code(info.file), size=T.human_size(info.size))]
    extras = []
    if info.rank is not None:
        extras.append(f"rank {info.rank}")
    if info.alpha is not None:
        extras.append(f"alpha {info.alpha:g}")
    if info.autov2:
        extras.append(f"AutoV2 {code(info.autov2)}")
    if extras:
        details.append(" · ".join(extras))
    embed.add_field(name=T.F_FILE.render(locale), value="\n".join(details), inline=False)
    if info.suits:
        lines = [
            f"{T.verdict_label(s.verdict, locale)} · **{safe(s.checkpoint)}**"
            + (f" ({safe(s.family_label)})" if s.family_label else "")
            for s in info.suits
        ]
        embed.add_field(name=T.F_SUITS.render(locale), value=_lines(lines, locale), inline=False)
    if info.top_tags:
        tags = ", ".join(f"{safe(tag)} ({count})" for tag, count in info.top_tags)
        embed.add_field(name=T.F_TAGS.render(locale), value=limits.clip(tags, limits.FIELD_VALUE), inline=False)
    if info.evidence:
        embed.add_field(name=T.F_EVIDENCE.render(locale), value=_lines(_render_all(info.evidence, locale), locale), inline=False)
    if info.notes:
        embed.add_field(name=T.F_NOTES.render(locale), value=_lines(_render_all(info.notes, locale), locale), inline=False)
    return limits.fit_embed(embed)


# -- /family check ----------------------------------------------------------------------
def worst_verdict(verdicts: Sequence[str]) -> str | None:
    known = [v for v in verdicts if v in _VERDICT_ORDER]
    return max(known, key=_VERDICT_ORDER.index) if known else None


def family_check_embed(check: Any, locale: str = EN) -> discord.Embed:
    cp = check.checkpoint
    worst = worst_verdict([v.verdict for v in check.loras])
    embed = discord.Embed(
        title=T.FAMILY_CHECK_TITLE.render(locale, checkpoint=cp.label),
        colour=COLOURS.get(worst or "", discord.Colour.light_grey()),
    )
    description = family_line(cp.family_label, cp.architecture, locale)
    if cp.base_model and cp.base_model != cp.family_label:
        description += f" · {safe(cp.base_model)}"
    embed.description = description
    for item in check.loras[: limits.EMBED_FIELDS - 1]:
        explanation = item.explanation.get(locale) or item.explanation.get(EN) or ""
        evidence = _render_all(item.evidence, locale)
        value = safe(explanation)
        if evidence:
            value += "\n" + _lines(evidence, locale, limits.FIELD_VALUE - len(value) - 1)
        embed.add_field(
            name=f"{T.verdict_label(item.verdict, locale)} · {item.lora.label}",
            value=limits.clip(value, limits.FIELD_VALUE),
            inline=False,
        )
    if check.notes:
        embed.add_field(name=T.F_NOTES.render(locale), value=_lines(_render_all(check.notes, locale), locale), inline=False)
    return limits.fit_embed(embed)


# -- /queue and /help -------------------------------------------------------------------
def queue_embed(entries: Sequence[Any], size: int, paused: bool, locale: str = EN) -> discord.Embed:
    embed = discord.Embed(title=T.QUEUE_TITLE.render(locale), colour=DRAW_COLOUR)
    if not entries:
        embed.description = T.QUEUE_EMPTY.render(locale)
    else:
        lines = []
        for entry in entries:
            where = (
                T.QUEUE_RUNNING.render(locale)
                if entry.position == 0
                else T.QUEUE_POSITION.render(locale, position=entry.position)
            )
            request = getattr(entry.job, "request", None) or {}
            prompt = limits.clip(" ".join(str(request.get("prompt", "")).split()), 80)
            checkpoint = request.get("checkpoint")
            line = f"**{where}** · {safe(prompt)}"
            if checkpoint:
                line += f" · {code(str(checkpoint))}"
            lines.append(line)
        embed.description = limits.join_lines(lines, limits.EMBED_DESCRIPTION, _more(locale))
    footer = T.QUEUE_FOOTER_PAUSED if paused else T.QUEUE_FOOTER
    embed.set_footer(text=footer.render(locale, size=size))
    return limits.fit_embed(embed)


def help_embed(locale: str = EN) -> discord.Embed:
    embed = discord.Embed(title=T.HELP_TITLE.render(locale), description=T.HELP_BODY.render(locale), colour=DRAW_COLOUR)
    embed.add_field(name=T.HELP_VERDICTS_TITLE.render(locale), value=T.HELP_VERDICTS.render(locale), inline=False)
    return limits.fit_embed(embed)
