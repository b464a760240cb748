"""Does this LoRA suit this checkpoint? A verdict, the evidence behind it, and why.

`judge(lora, checkpoint)` takes what is known about each file (`ModelFacts`, assembled
elsewhere from the library, CivitAI and the file itself) and decides, in this order:

1. **incompatible** — both architectures are known and differ (SD 1.x LoRA on SDXL, Flux
   LoRA on SDXL, a Pony V7 LoRA, which is AuraFlow, on SDXL): the layers have different
   shapes, so applying it is refused before touching the GPU. Two "other" architectures
   (models Loracle does not draw with) count as different unless their families are
   related.
2. **exact** — the LoRA was trained on this very checkpoint, strongest proof first:
   its `ss_new_sd_model_hash` equals the checkpoint's SHA-256; the training checkpoint's
   CivitAI version is the checkpoint's version ("CivitAI links them", which also covers
   another file of the same version, e.g. a pruned one); its `ss_sd_model_hash` equals the
   checkpoint's legacy AutoV1 hash (short, so weaker); its `ss_sd_model_name` is the
   checkpoint's file name (case and extension ignored; the weakest, names are reused).
   The two weak ones are ignored when both SHA-256s are known and differ.
3. **unknown** — either side's family is unknown (the architecture may still match): the
   explanation says what is unknown and how an admin fixes it.
4. **same_family** — same lineage (an Illustrious LoRA on an Illustrious merge; NoobAI and
   Illustrious are one lineage).
5. **other_family** — same architecture, different lineage (a Pony LoRA on Illustrious; a
   plain SDXL LoRA on Illustrious, which descends from SDXL so it may partly work).

Each side's family comes from base-model claims, most trusted first: an admin's setting,
CivitAI, the file's metadata, a file-name pattern (the tensors give the architecture,
never the family). For a LoRA, the base model of the checkpoint it was trained on
(`trained_on_base_model`, found on CivitAI by hash) counts as a CivitAI claim (or, when
that checkpoint is in the library, as file metadata that outranks what the LoRA's own
metadata suggests), and the training checkpoint's name (`ss_sd_model_name`) as a
file-name claim. The first claim the
family table knows wins, with one refinement: a later claim about the LoRA's training
checkpoint that names a *descendant* of the winning family takes over (a LoRA CivitAI
files under the generic "SDXL 1.0" but trained on an Illustrious checkpoint is an
Illustrious LoRA; "SDXL 1.0" said less, not something else), except over an admin's
setting. A claim whose family contradicts the file's own layers is set aside (unless it
is an admin's). Every claim, agreeing or not, is listed as evidence, and
the evidence is sorted in that order of trust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.families import BaseModelInfo, Family, FamilyTable, default_table, file_stem
from engine.i18n import Fix, Text
from engine.kinds import Architecture
from engine.verdict_texts import (  # the message constants, split out for size
    _ARCH_FACT,
    _ARCH_UNKNOWN,
    _CLAIM,
    _CLAIM_ADMIN_OVER_LAYERS,
    _CLAIM_CONTRADICTS,
    _CLAIM_FAMILY,
    _CLAIM_NOT_IN_TABLE,
    _CLAIM_OUTRANKED,
    _CLAIM_REFINES,
    _CLAIM_SAYS_NOTHING,
    _EXACT_AUTOV1,
    _EXACT_CIVITAI,
    _EXACT_NAME,
    _EXACT_SHA,
    _EXPLAIN_EXACT,
    _EXPLAIN_INCOMPATIBLE,
    _EXPLAIN_OTHER,
    _EXPLAIN_SAME_FAMILY,
    _EXPLAIN_SAME_FAMILY_BASES,
    _OWN_LABEL_WORDS,
    _REASON,
    _ROLE,
    _SAME_NAME_OTHER_HASH,
    _SOURCE_WORDS,
    _TRAINED_ON_NAME,
    _TRAINED_ON_OTHER_FILE,
    _TRAINING_CHECKPOINT_WORDS,
    _UNKNOWN_ARCH,
    _UNKNOWN_FIX,
    _UNKNOWN_FIX_TABLE,
    _UNKNOWN_INTRO,
    _UNKNOWN_SAME_ARCH,
    _UNKNOWN_SIDE,
    _WARN_OTHER,
    _WARN_UNKNOWN,
    SET_BASE_MODEL,
)
from engine.verdict_types import BaseModelClaim, Evidence, ModelFacts, Source, Verdict, VerdictResult

__all__ = ["BaseModelClaim", "Evidence", "Identity", "ModelFacts", "Source", "Verdict", "VerdictResult", "identify", "judge"]

# =====================================================================================
# Judging
# =====================================================================================


@dataclass
class _Claim:
    source: Source
    base_model: str
    kind: str  # own | trained_on | trained_on_name | name


@dataclass
class _Side:
    facts: ModelFacts
    role: str  # "lora" | "checkpoint", also the file's parameter name in messages
    family: Family | None = None
    base_model: str | None = None
    architecture: Architecture = Architecture.UNKNOWN
    evidence: list[Evidence] = field(default_factory=list)
    reason: str = "none"
    reason_value: str | None = None
    source: Source | None = None  # where the winning base-model claim came from


@dataclass(frozen=True)
class Identity:
    """What one file is, as the verdict logic sees it (the same resolution `judge` uses)."""

    base_model: str | None
    base_model_source: Source | None
    family: Family | None
    architecture: Architecture
    evidence: tuple[Evidence, ...]


def identify(facts: ModelFacts, table: FamilyTable | None = None) -> Identity:
    """Resolve one file's base model, family and architecture on its own (for listings
    and `/lora info`), weighing the claims exactly as `judge` does."""
    side = _resolve(facts, "lora" if facts.category == "lora" else "checkpoint", table or default_table())
    evidence = sorted(side.evidence + list(facts.notes), key=lambda e: Source(e.source).rank)
    return Identity(side.base_model, side.source, side.family, side.architecture, tuple(evidence))


def judge(lora: ModelFacts, checkpoint: ModelFacts, table: FamilyTable | None = None) -> VerdictResult:
    """The verdict for applying `lora` on `checkpoint`; never raises on missing facts."""
    table = table or default_table()
    lside = _resolve(lora, "lora", table)
    cside = _resolve(checkpoint, "checkpoint", table)
    exact, training_evidence = _exact_matches(lora, checkpoint)

    params: dict[str, Any] = {"lora": lora.name, "checkpoint": checkpoint.name}
    la, ca = lside.architecture, cside.architecture
    lf, cf = lside.family, cside.family
    warning: Text | None = None

    if _incompatible(la, ca, lf, cf, table):
        verdict = Verdict.INCOMPATIBLE
        for side, prefix in ((lside, "lora_arch"), (cside, "checkpoint_arch")):
            params[prefix], params[prefix + "_zh"] = _arch_phrase(side.architecture, side.family)
        text = _EXPLAIN_INCOMPATIBLE
    elif exact:
        verdict = Verdict.EXACT
        text = _EXPLAIN_EXACT[exact]
    elif lf is None or cf is None:
        verdict = Verdict.UNKNOWN
        text = _unknown_text(lside, cside, params)
        warning = _WARN_UNKNOWN
    elif lf.id == cf.id:
        verdict = Verdict.SAME_FAMILY
        params["family"] = lf.label
        params["lora_base"] = lside.base_model or lf.label
        params["checkpoint_base"] = cside.base_model or cf.label
        plain = {params["lora_base"], params["checkpoint_base"]} == {lf.label} or params["lora_base"] == params["checkpoint_base"]
        text = _EXPLAIN_SAME_FAMILY if plain else _EXPLAIN_SAME_FAMILY_BASES
    else:
        verdict = Verdict.OTHER_FAMILY
        params.update(lora_family=lf.label, checkpoint_family=cf.label)
        ancestor = table.common_ancestor(lf.id, cf.id)
        if ancestor is None:
            params["arch"], params["arch_zh"] = _arch_words(la)
            text = _EXPLAIN_OTHER["strangers"]
        elif ancestor.id == lf.id:
            text = _EXPLAIN_OTHER["checkpoint_descends"]
        elif ancestor.id == cf.id:
            text = _EXPLAIN_OTHER["lora_descends"]
        else:
            params["ancestor"] = ancestor.label
            text = _EXPLAIN_OTHER["cousins"]
        warning = _WARN_OTHER

    evidence = lside.evidence + cside.evidence + training_evidence + list(lora.notes) + list(checkpoint.notes)
    evidence.sort(key=lambda e: Source(e.source).rank)
    return VerdictResult(
        verdict=verdict,
        evidence=evidence,
        explanation=text.both(**params),
        lora_family=lf,
        checkpoint_family=cf,
        lora_architecture=la,
        checkpoint_architecture=ca,
        lora_base_model=lside.base_model,
        checkpoint_base_model=cside.base_model,
        warning_text=warning,
        fix=Fix(SET_BASE_MODEL, {"name": params["fix_name"]}) if verdict == Verdict.UNKNOWN else None,
        params=params,
    )


def _incompatible(la: Architecture, ca: Architecture, lf: Family | None, cf: Family | None, table: FamilyTable) -> bool:
    if Architecture.UNKNOWN in (la, ca):
        return False
    if la != ca:
        return True
    # "other" lumps together every model we do not draw with (Wan, Qwen, Anima, ...):
    # only their families can tell whether the layers match.
    if la == Architecture.OTHER and lf is not None and cf is not None:
        return not table.related(lf.id, cf.id)
    return False


# -- one side: family and architecture -------------------------------------------------
def _resolve(facts: ModelFacts, role: str, table: FamilyTable) -> _Side:
    side = _Side(facts=facts, role=role)
    try:
        arch = Architecture(facts.architecture)
    except ValueError:
        arch = Architecture.UNKNOWN
    arch_source = Source(facts.architecture_source) if facts.architecture_source else Source.TENSORS
    if arch != Architecture.UNKNOWN:
        side.evidence.append(_arch_evidence(facts.name, arch, arch_source))
    else:
        side.evidence.append(Evidence(arch_source, _ARCH_UNKNOWN, {"name": facts.name}))

    claims = _claims(facts, role)
    winner: _Claim | None = None
    chosen: Family | None = None
    for claim in claims:
        info = table.lookup(claim.base_model)
        chosen, winner, arch = _weigh(side, claim, info, chosen, winner, arch, arch_source, table)

    if chosen is None:
        # Names are only consulted when nothing better named a family.
        for claim in _name_claims(facts, role, table):
            info = table.lookup(claim.base_model)
            chosen, winner, arch = _weigh(side, claim, info, chosen, winner, arch, arch_source, table)
            if chosen is not None:
                break

    side.family = chosen
    if chosen is not None and winner is not None:
        side.base_model = table.lookup(winner.base_model).name
        side.source = winner.source
        if arch == Architecture.UNKNOWN:
            arch = chosen.architecture
    side.architecture = arch
    return side


def _claims(facts: ModelFacts, role: str) -> list[_Claim]:
    claims: list[_Claim] = []
    if facts.base_model:
        claims.append(_Claim(Source(facts.base_model_source or Source.METADATA), facts.base_model, "own"))
    for extra in facts.base_model_claims:
        if extra.base_model:
            claims.append(_Claim(Source(extra.source), extra.base_model, "own"))
    if role == "lora" and facts.trained_on_base_model:
        if facts.trained_on_library_checkpoint:
            claims.append(_Claim(Source.METADATA, facts.trained_on_base_model, "trained_on_library"))
        else:
            claims.append(_Claim(Source.CIVITAI, facts.trained_on_base_model, "trained_on"))
    claims.sort(key=lambda c: (c.source.rank, _KIND_ORDER.get(c.kind, 1)))
    return claims


# At equal trust a file's own claim comes before its training checkpoint's (stable sort),
# except that a library checkpoint found by the SHA-256 the LoRA recorded is firmer file
# metadata than anything inferred from the LoRA's own metadata (its captions' tags).
_KIND_ORDER = {"trained_on_library": 0}


def _name_claims(facts: ModelFacts, role: str, table: FamilyTable) -> list[_Claim]:
    claims: list[_Claim] = []
    if role == "lora" and facts.trained_on_name:
        guess = table.guess_from_name(facts.trained_on_name)
        if guess and guess.strong and guess.base_model:
            claims.append(_Claim(Source.FILENAME, guess.base_model, "trained_on_name"))
    guess = table.guess_from_name(facts.name)
    if guess and guess.strong and guess.base_model:
        claims.append(_Claim(Source.FILENAME, guess.base_model, "name"))
    return claims


def _weigh(
    side: _Side,
    claim: _Claim,
    info: BaseModelInfo,
    chosen: Family | None,
    winner: _Claim | None,
    arch: Architecture,
    arch_source: Source,
    table: FamilyTable,
) -> tuple[Family | None, _Claim | None, Architecture]:
    """Record one claim as evidence and decide whether it sets the family."""
    facts = side.facts
    en, zh = _CLAIM.get((claim.kind, claim.source)) or _CLAIM[("own", claim.source)]
    params: dict[str, Any] = {
        "name": facts.name,
        "base_model": info.name or claim.base_model,
        "trained_on_name": facts.trained_on_name or "",
        "library_checkpoint": facts.trained_on_library_checkpoint or "",
    }
    fam = info.family
    if not info.known:
        en2, zh2 = _CLAIM_NOT_IN_TABLE
        if chosen is None and side.reason in ("none", "says_nothing"):
            side.reason, side.reason_value = "not_in_table", claim.base_model
    elif fam is None:
        en2, zh2 = _CLAIM_SAYS_NOTHING
        if chosen is None and side.reason == "none":
            side.reason, side.reason_value = "says_nothing", info.name
    elif chosen is not None:
        params["family"] = fam.label
        assert winner is not None
        if fam.id == chosen.id:
            en2, zh2 = _CLAIM_FAMILY
        elif _refines(winner, claim, chosen, fam, table):
            params["parent_family"] = chosen.label
            en2, zh2 = _CLAIM_REFINES
            chosen, winner = fam, claim
        else:
            w_en, w_zh = _SOURCE_WORDS[winner.source]
            if winner.source == claim.source and winner.kind.startswith("trained_on"):
                w_en, w_zh = _TRAINING_CHECKPOINT_WORDS
            elif winner.source == claim.source and claim.kind.startswith("trained_on"):
                w_en, w_zh = _OWN_LABEL_WORDS
            en2, zh2 = _CLAIM_OUTRANKED[0].replace("{winner}", w_en), _CLAIM_OUTRANKED[1].replace("{winner}", w_zh)
    elif arch not in (Architecture.UNKNOWN, fam.architecture):
        params["family"] = fam.label
        params["family_arch"], params["family_arch_zh"] = _arch_words(fam.architecture)
        params["arch"], params["arch_zh"] = _arch_words(arch)
        if claim.source == Source.ADMIN and arch_source != Source.ADMIN:
            en2, zh2 = _CLAIM_FAMILY[0] + _CLAIM_ADMIN_OVER_LAYERS[0], _CLAIM_FAMILY[1] + _CLAIM_ADMIN_OVER_LAYERS[1]
            chosen, winner, arch = fam, claim, fam.architecture
        else:
            en2, zh2 = _CLAIM_CONTRADICTS
            if side.reason != "not_in_table":
                side.reason, side.reason_value = "contradicts", info.name
    else:
        params["family"] = fam.label
        en2, zh2 = _CLAIM_FAMILY
        chosen, winner = fam, claim
    side.evidence.append(Evidence(claim.source, Text(en + en2, zh + zh2), params))
    return chosen, winner, arch


def _refines(winner: _Claim, claim: _Claim, chosen: Family, fam: Family, table: FamilyTable) -> bool:
    """Whether a less trusted claim about the checkpoint a LoRA was trained on names a
    descendant of the family chosen so far: CivitAI's generic "SDXL 1.0" on a LoRA trained
    on an Illustrious checkpoint does not contradict it, it just says less (many Pony and
    Illustrious LoRAs were filed as "SDXL 1.0" before CivitAI had those base models).
    An admin's setting is never refined: it says exactly what the admin meant."""
    if winner.source == Source.ADMIN or not claim.kind.startswith("trained_on"):
        return False
    if fam.architecture != chosen.architecture:
        return False
    return chosen.id in {f.id for f in table.lineage(fam.id)[1:]}


def _arch_evidence(name: str, arch: Architecture, source: Source) -> Evidence:
    en, zh = _ARCH_FACT.get(source, _ARCH_FACT[Source.TENSORS])
    words_en, words_zh = _arch_words(arch)
    return Evidence(source, Text(en, zh), {"name": name, "arch": words_en, "arch_zh": words_zh})


# -- training checkpoint ---------------------------------------------------------------
def _exact_matches(lora: ModelFacts, checkpoint: ModelFacts) -> tuple[str | None, list[Evidence]]:
    """The strongest 'trained on this very file' proof, and evidence about the training
    checkpoint (matching or not)."""
    evidence: list[Evidence] = []
    found: list[str] = []
    params = {
        "lora": lora.name,
        "checkpoint": checkpoint.name,
        "trained_on_name": lora.trained_on_name or "",
        "autov1": (lora.trained_on_autov1 or "").upper(),
        "version_id": lora.trained_on_civitai_version_id,
    }
    sha_known = bool(lora.trained_on_sha256 and checkpoint.sha256)
    sha_same = sha_known and _hex(lora.trained_on_sha256) == _hex(checkpoint.sha256)
    if sha_same:
        found.append("sha256")
        evidence.append(Evidence(Source.METADATA, _EXACT_SHA, params))
    if (
        lora.trained_on_civitai_version_id is not None
        and checkpoint.civitai_version_id is not None
        and lora.trained_on_civitai_version_id == checkpoint.civitai_version_id
    ):
        found.append("civitai")
        evidence.append(Evidence(Source.CIVITAI, _EXACT_CIVITAI, params))
    contradicted = sha_known and not sha_same
    if contradicted:
        evidence.append(Evidence(Source.METADATA, _TRAINED_ON_OTHER_FILE, params))
    if (
        lora.trained_on_autov1
        and checkpoint.autov1
        and not contradicted
        and _hex(lora.trained_on_autov1) == _hex(checkpoint.autov1)
    ):
        found.append("autov1")
        evidence.append(Evidence(Source.METADATA, _EXACT_AUTOV1, params))
    if lora.trained_on_name:
        same_name = _stem_key(lora.trained_on_name) == _stem_key(checkpoint.name)
        if same_name and not contradicted:
            found.append("name")
            evidence.append(Evidence(Source.METADATA, _EXACT_NAME, params))
        elif same_name:
            evidence.append(Evidence(Source.METADATA, _SAME_NAME_OTHER_HASH, params))
        else:
            evidence.append(Evidence(Source.METADATA, _TRAINED_ON_NAME, params))
    return (found[0] if found else None), evidence


def _hex(value: str | None) -> str:
    return (value or "").strip().upper().removeprefix("0X")


def _stem_key(name: str) -> str:
    return file_stem(name).strip().casefold()


# -- wording -----------------------------------------------------------------------------
def _arch_words(arch: Architecture) -> tuple[str, str]:
    if arch == Architecture.OTHER:
        return "another kind of model", "其他類型"
    if arch == Architecture.UNKNOWN:
        return "an unknown architecture", "未知架構"
    return arch.label, arch.label


def _arch_phrase(arch: Architecture, family: Family | None) -> tuple[str, str]:
    """'Illustrious (SDXL)', 'Wan 2.1 14B', 'SD 1.x', in both languages."""
    if family is None:
        if arch == Architecture.OTHER:
            return "a kind of model Loracle cannot draw with", "Loracle 無法使用的其他類型模型"
        return _arch_words(arch)
    if arch == Architecture.OTHER or arch.label.casefold() in family.label.casefold():
        return family.label, family.label
    phrase = f"{family.label} ({arch.label})"
    return phrase, phrase


def _unknown_text(lside: _Side, cside: _Side, params: dict[str, Any]) -> Text:
    en, zh = _UNKNOWN_INTRO
    unknown_sides = [s for s in (lside, cside) if s.family is None]
    for side in unknown_sides:
        r_en, r_zh = _REASON[side.reason]
        value_key = f"{side.role}_reason_value"
        if "%s" in r_en:
            r_en, r_zh = r_en % value_key, r_zh % value_key
            params[value_key] = side.reason_value or ""
        role_en, role_zh = _ROLE[side.role]
        en += (_UNKNOWN_SIDE[0] % (side.role, r_en)).replace("{role_en}", role_en)
        zh += (_UNKNOWN_SIDE[1] % (side.role, r_zh)).replace("{role_zh}", role_zh)
    la, ca = lside.architecture, cside.architecture
    if la == ca and la not in (Architecture.UNKNOWN, Architecture.OTHER):
        params["arch"], params["arch_zh"] = _arch_words(la)
        en += _UNKNOWN_SAME_ARCH[0]
        zh += _UNKNOWN_SAME_ARCH[1]
    elif Architecture.UNKNOWN in (la, ca):
        en += _UNKNOWN_ARCH[0]
        zh += _UNKNOWN_ARCH[1]
    params["fix_name"] = unknown_sides[0].facts.name
    en += _UNKNOWN_FIX[0]
    zh += _UNKNOWN_FIX[1]
    if any(s.reason == "not_in_table" for s in unknown_sides):
        en += _UNKNOWN_FIX_TABLE[0]
        zh += _UNKNOWN_FIX_TABLE[1]
    return Text(en, zh)

