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
from enum import StrEnum
from typing import Any

from engine.families import BaseModelInfo, Family, FamilyTable, default_table, file_stem
from engine.i18n import EN, Text, normalize_locale
from engine.kinds import Architecture


class Verdict(StrEnum):
    EXACT = "exact"
    SAME_FAMILY = "same_family"
    OTHER_FAMILY = "other_family"
    INCOMPATIBLE = "incompatible"
    UNKNOWN = "unknown"


class Source(StrEnum):
    ADMIN = "admin"
    CIVITAI = "civitai"
    METADATA = "metadata"
    FILENAME = "filename"
    TENSORS = "tensors"

    @property
    def rank(self) -> int:
        """0 for the most trusted (admin) to 4 for the least (tensors)."""
        return _TRUST.index(self)


_TRUST = (Source.ADMIN, Source.CIVITAI, Source.METADATA, Source.FILENAME, Source.TENSORS)

# How each source is named inside a sentence ("... but {an admin's setting} is trusted more").
_SOURCE_WORDS = {
    Source.ADMIN: ("an admin's setting", "管理員的設定"),
    Source.CIVITAI: ("CivitAI", " CivitAI 的資料"),
    Source.METADATA: ("the file's metadata", "檔案的中繼資料"),
    Source.FILENAME: ("the file name", "檔名"),
    Source.TENSORS: ("the file's layers", "檔案的網路層"),
}


# ... when the winner is as trusted a source, but speaks for the training checkpoint, or
# for the file itself while the outranked claim speaks for its training checkpoint.
_TRAINING_CHECKPOINT_WORDS = ("the checkpoint it was trained on", "它的訓練用模型")
_OWN_LABEL_WORDS = ("the label of “{name}” itself", "「{name}」本身的標示")


@dataclass(frozen=True)
class Evidence:
    """One fact behind a verdict, with where it came from."""

    source: Source
    text: Text
    params: dict[str, Any] = field(default_factory=dict)

    def render(self, locale: str | None = EN) -> str:
        return self.text.render(locale, **self.params)

    def __str__(self) -> str:
        return f"{self.source}: {self.render(EN)}"


@dataclass(frozen=True)
class BaseModelClaim:
    """A base model stated by one source, kept when a more trusted one overrides it
    (e.g. CivitAI's answer after an admin set another), so the verdict can show both."""

    source: Source
    base_model: str


@dataclass
class ModelFacts:
    """What is known about ONE file, built elsewhere (engine.knowledge)."""

    name: str
    category: str  # "checkpoint" | "lora"
    sha256: str | None  # upper-case hex
    autov1: str | None  # legacy A1111 8-hex hash
    architecture: Architecture
    architecture_source: Source  # usually TENSORS
    base_model: str | None  # CivitAI-style string, e.g. "Illustrious"
    base_model_source: Source | None
    civitai_model_id: int | None = None
    civitai_version_id: int | None = None
    # LoRA only: what the training metadata says about the training checkpoint
    trained_on_sha256: str | None = None  # ss_new_sd_model_hash
    trained_on_autov1: str | None = None  # ss_sd_model_hash
    trained_on_name: str | None = None  # ss_sd_model_name
    trained_on_base_model: str | None = None  # base model of that checkpoint, found on CivitAI by hash
    trained_on_civitai_model_id: int | None = None
    trained_on_civitai_version_id: int | None = None
    # the training checkpoint is in the local library (same SHA-256): its base model then
    # arrives in trained_on_base_model, as file-metadata evidence
    trained_on_library_checkpoint: str | None = None
    notes: list[Evidence] = field(default_factory=list)  # extra evidence gathered upstream
    base_model_claims: list[BaseModelClaim] = field(default_factory=list)  # outranked claims


@dataclass
class VerdictResult:
    verdict: Verdict
    evidence: list[Evidence]
    explanation: dict[str, str]  # {"en": ..., "zh-TW": ...}
    lora_family: Family | None
    checkpoint_family: Family | None
    lora_architecture: Architecture
    checkpoint_architecture: Architecture
    lora_base_model: str | None = None
    checkpoint_base_model: str | None = None
    warning_text: Text | None = field(default=None, repr=False)
    params: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def applies(self) -> bool:
        """Whether the LoRA may be applied at all: False only for incompatible."""
        return self.verdict != Verdict.INCOMPATIBLE

    def warning(self, locale: str | None = EN) -> str | None:
        """A one-liner for other_family / unknown, None for the other verdicts."""
        return self.warning_text.render(locale, **self.params) if self.warning_text else None

    def explain(self, locale: str | None = EN) -> str:
        return self.explanation[normalize_locale(locale)]

    def as_dict(self, locale: str | None = EN) -> dict[str, Any]:
        """A JSON-ready summary (the CLI's `--json` output)."""
        return {
            "verdict": str(self.verdict),
            "applies": self.applies,
            "explanation": self.explain(locale),
            "explanations": dict(self.explanation),
            "warning": self.warning(locale),
            "evidence": [{"source": str(e.source), "text": e.render(locale)} for e in self.evidence],
            "lora": {
                "family": self.lora_family.id if self.lora_family else None,
                "base_model": self.lora_base_model,
                "architecture": str(self.lora_architecture),
            },
            "checkpoint": {
                "family": self.checkpoint_family.id if self.checkpoint_family else None,
                "base_model": self.checkpoint_base_model,
                "architecture": str(self.checkpoint_architecture),
            },
        }


# =====================================================================================
# Messages
# =====================================================================================

_ROLE = {"lora": ("the LoRA", "這個 LoRA"), "checkpoint": ("the checkpoint", "這個模型")}

# -- claims: who said which base model -----------------------------------------------
_CLAIM = {
    ("own", Source.ADMIN): ("An admin set the base model of “{name}” to “{base_model}”.", "管理員將「{name}」的基礎模型設為「{base_model}」。"),
    ("own", Source.CIVITAI): ("CivitAI lists the base model of “{name}” as “{base_model}”.", "CivitAI 標示「{name}」的基礎模型為「{base_model}」。"),
    ("own", Source.METADATA): ("The metadata of “{name}” gives its base model as “{base_model}”.", "「{name}」的中繼資料註明基礎模型為「{base_model}」。"),
    ("own", Source.FILENAME): ("The name “{name}” suggests the base model “{base_model}”.", "從名稱看來，「{name}」的基礎模型是「{base_model}」。"),
    ("own", Source.TENSORS): ("The layers of “{name}” point to “{base_model}”.", "「{name}」的網路層指向「{base_model}」。"),
    ("trained_on", Source.CIVITAI): (
        "“{name}” was trained on a checkpoint that CivitAI lists as “{base_model}”.",
        "「{name}」訓練時使用的模型，在 CivitAI 上標示為「{base_model}」。",
    ),
    ("trained_on_library", Source.METADATA): (
        "The training metadata of “{name}” shows it was trained on “{library_checkpoint}” (same SHA-256), a checkpoint in this library whose base model is “{base_model}”.",
        "「{name}」的訓練紀錄顯示它是用本模型庫中的「{library_checkpoint}」訓練的（SHA-256 相同），該模型的基礎模型是「{base_model}」。",
    ),
    ("trained_on_name", Source.FILENAME): (
        "The training metadata of “{name}” names the checkpoint “{trained_on_name}”, whose name suggests the base model “{base_model}”.",
        "「{name}」的訓練紀錄寫著訓練模型為「{trained_on_name}」，從名稱看來其基礎模型是「{base_model}」。",
    ),
    ("name", Source.FILENAME): ("The file name “{name}” suggests the base model “{base_model}”.", "從檔名看來，「{name}」的基礎模型是「{base_model}」。"),
}
_CLAIM_FAMILY = (" That is the {family} family.", "屬於 {family} 家族。")
_CLAIM_NOT_IN_TABLE = (" Loracle's family table does not know that base model.", "Loracle 的家族表不認得這個基礎模型。")
_CLAIM_SAYS_NOTHING = (" That says nothing about which family it belongs to.", "這無法看出它屬於哪個家族。")
_CLAIM_OUTRANKED = (" That would be the {family} family, but {winner} is trusted more.", "這會是 {family} 家族，但{winner}較可信。")
_CLAIM_REFINES = (
    " That is the {family} family, a lineage within {parent_family}: more specific, so it is the one used.",
    "屬於 {family} 家族，是 {parent_family} 之下的分支：資訊更具體，因此採用它。",
)
_CLAIM_CONTRADICTS = (
    " But {family} models are {family_arch} and the file's layers are {arch}, so this label is ignored.",
    "但 {family} 是 {family_arch_zh} 模型，而檔案的網路層是 {arch_zh}，因此忽略這個標示。",
)
_CLAIM_ADMIN_OVER_LAYERS = (
    " The file's layers look like {arch}, but an admin's setting is trusted more.",
    "檔案的網路層看起來是 {arch_zh}，但管理員的設定較可信。",
)

# -- architecture --------------------------------------------------------------------
_ARCH_FACT = {
    Source.TENSORS: ("The layers inside “{name}” are shaped for {arch}.", "「{name}」內部網路層的形狀屬於 {arch_zh}。"),
    Source.ADMIN: ("An admin set the architecture of “{name}” to {arch}.", "管理員將「{name}」的架構設為 {arch_zh}。"),
    Source.CIVITAI: ("CivitAI says “{name}” is built for {arch}.", "CivitAI 表示「{name}」屬於 {arch_zh}。"),
    Source.METADATA: ("The metadata of “{name}” says it is built for {arch}.", "「{name}」的中繼資料表示它屬於 {arch_zh}。"),
    Source.FILENAME: ("The name “{name}” suggests it is built for {arch}.", "從名稱看來，「{name}」屬於 {arch_zh}。"),
}
_ARCH_UNKNOWN = Text("Loracle could not tell the architecture of “{name}”.", "Loracle 無法判斷「{name}」的架構。")

# -- training checkpoint -------------------------------------------------------------
_EXACT_SHA = Text(
    "The training metadata of “{lora}” records the SHA-256 of the checkpoint it was trained on, and it is the SHA-256 of “{checkpoint}”.",
    "「{lora}」的訓練紀錄保存了訓練用模型的 SHA-256，與「{checkpoint}」的 SHA-256 相同。",
)
_EXACT_CIVITAI = Text(
    "CivitAI identifies the checkpoint “{lora}” was trained on as version {version_id}, which is “{checkpoint}”.",
    "CivitAI 查出「{lora}」訓練用的模型是版本 {version_id}，也就是「{checkpoint}」。",
)
_EXACT_AUTOV1 = Text(
    "The training metadata of “{lora}” records the short legacy hash {autov1} of its checkpoint, the same as that of “{checkpoint}”.",
    "「{lora}」的訓練紀錄保存了訓練用模型的舊式短雜湊 {autov1}，與「{checkpoint}」相同。",
)
_EXACT_NAME = Text(
    "The training metadata of “{lora}” names the checkpoint file “{trained_on_name}”, the same name as “{checkpoint}”.",
    "「{lora}」的訓練紀錄寫著訓練模型檔名為「{trained_on_name}」，與「{checkpoint}」同名。",
)
_TRAINED_ON_OTHER_FILE = Text(
    "“{lora}” was trained on a different file (its recorded SHA-256 is not that of “{checkpoint}”).",
    "「{lora}」訓練時用的是另一個檔案（紀錄中的 SHA-256 與「{checkpoint}」不同）。",
)
_TRAINED_ON_NAME = Text(
    "The training metadata of “{lora}” names the checkpoint “{trained_on_name}”.",
    "「{lora}」的訓練紀錄寫著訓練模型為「{trained_on_name}」。",
)
_SAME_NAME_OTHER_HASH = Text(
    "The training metadata of “{lora}” names a checkpoint called “{trained_on_name}”, like “{checkpoint}”, but its SHA-256 differs: probably another version of it.",
    "「{lora}」的訓練紀錄寫著同名的「{trained_on_name}」，但 SHA-256 不同：可能是它的另一個版本。",
)

# -- explanations ----------------------------------------------------------------------
_EXPLAIN_EXACT = {
    "sha256": Text(
        "“{lora}” was trained on this very checkpoint, “{checkpoint}”: the file fingerprints (SHA-256) match. This is the best possible pairing.",
        "「{lora}」正是用這個模型「{checkpoint}」訓練的：檔案指紋（SHA-256）完全相同，這是最理想的搭配。",
    ),
    "civitai": Text(
        "CivitAI links them: “{lora}” was trained on “{checkpoint}” (the same CivitAI version). This is the best possible pairing.",
        "CivitAI 確認兩者相關：「{lora}」是用「{checkpoint}」（同一個 CivitAI 版本）訓練的，這是最理想的搭配。",
    ),
    "autov1": Text(
        "“{lora}” was most likely trained on this very checkpoint, “{checkpoint}”: their short legacy hashes match. That hash is short, so a coincidence is possible but unlikely.",
        "「{lora}」很可能就是用這個模型「{checkpoint}」訓練的：兩者的舊式短雜湊相同。短雜湊可能巧合相同，但機率很低。",
    ),
    "name": Text(
        "“{lora}” was probably trained on “{checkpoint}”: its training metadata names a checkpoint file with the same name. Names can be reused, so this is the weakest kind of match.",
        "「{lora}」可能是用「{checkpoint}」訓練的：訓練紀錄中的模型檔名與它相同。不過檔名可能重複，這是最弱的一種比對。",
    ),
}
_EXPLAIN_SAME_FAMILY = Text(
    "“{lora}” and “{checkpoint}” both belong to the {family} family, so they are siblings: it should work well, close to what the author showed.",
    "「{lora}」和「{checkpoint}」同屬 {family} 家族，就像兄弟姊妹：效果應該不錯，接近作者展示的樣子。",
)
_EXPLAIN_SAME_FAMILY_BASES = Text(
    "“{lora}” was made for {lora_base} and “{checkpoint}” is built on {checkpoint_base}; both belong to the {family} family, so it should work well, close to what the author showed.",
    "「{lora}」是為 {lora_base} 製作的，「{checkpoint}」則是 {checkpoint_base} 模型；兩者同屬 {family} 家族，效果應該不錯，接近作者展示的樣子。",
)
_EXPLAIN_OTHER = {
    "checkpoint_descends": Text(
        "“{lora}” was made for plain {lora_family}; “{checkpoint}” belongs to the {checkpoint_family} family, which descends from {lora_family} but was trained much further. It will run and may partly work, but results can differ from the author's examples.",
        "「{lora}」是為原版 {lora_family} 製作的；「{checkpoint}」是 {checkpoint_family} 模型，雖然源自 {lora_family}，但又經過大量訓練。可以套用，也可能部分有效，但效果可能與作者的範例不同。",
    ),
    "lora_descends": Text(
        "“{lora}” was made for {lora_family}, which descends from {checkpoint_family}; “{checkpoint}” is plain {checkpoint_family}. It will run and may partly work, but results can differ from the author's examples.",
        "「{lora}」是為源自 {checkpoint_family} 的 {lora_family} 製作的；「{checkpoint}」則是原版 {checkpoint_family}。可以套用，也可能部分有效，但效果可能與作者的範例不同。",
    ),
    "cousins": Text(
        "“{lora}” was made for {lora_family}, but “{checkpoint}” belongs to the {checkpoint_family} family. Both descend from {ancestor}, so it will run, but it is like cooking brand B's curry with brand A's recipe: not what was promised, maybe still tasty.",
        "「{lora}」是為 {lora_family} 製作的，但「{checkpoint}」是 {checkpoint_family} 模型。兩者都源自 {ancestor}，所以可以套用，但就像用 A 牌的食譜煮 B 牌的咖哩：不是原本承諾的味道，但也許還是好吃。",
    ),
    "strangers": Text(
        "“{lora}” was made for {lora_family} and “{checkpoint}” belongs to the {checkpoint_family} family. Both are {arch} models, so it will run, but they were trained separately: the LoRA may do little or look different from the author's examples.",
        "「{lora}」是為 {lora_family} 製作的，「{checkpoint}」則是 {checkpoint_family} 模型。兩者都是 {arch_zh} 架構，所以可以套用，但它們是各自訓練的：這個 LoRA 可能效果不大，或與作者的範例不同。",
    ),
}
_EXPLAIN_INCOMPATIBLE = Text(
    "This LoRA (“{lora}”) is for {lora_arch}; the checkpoint “{checkpoint}” is {checkpoint_arch}. Their layers have different shapes, so it cannot be applied.",
    "這個 LoRA（「{lora}」）是給 {lora_arch_zh} 用的，而模型「{checkpoint}」是 {checkpoint_arch_zh}。兩者的網路層形狀不同，無法套用。",
)

_UNKNOWN_INTRO = ("Loracle cannot tell how well “{lora}” suits “{checkpoint}”.", "Loracle 無法判斷「{lora}」是否適合「{checkpoint}」。")
_UNKNOWN_SIDE = (
    " It does not know which family {role_en} “{%s}” belongs to: %s.",
    "Loracle 不知道{role_zh}「{%s}」屬於哪個家族：%s。",
)
_REASON = {
    "none": ("neither CivitAI nor the file names a base model", "CivitAI 和檔案本身都沒有註明基礎模型"),
    "not_in_table": ("its base model “{%s}” is not in Loracle's family table", "它的基礎模型「{%s}」不在 Loracle 的家族表中"),
    "says_nothing": ("its base model is only given as “{%s}”", "它的基礎模型只標示為「{%s}」"),
    "contradicts": ("its label “{%s}” contradicts the file's own layers", "它的標示「{%s}」與檔案本身的網路層不符"),
}
_UNKNOWN_SAME_ARCH = (" Both are {arch} models, so it will run, but the result is uncertain.", "兩者都是 {arch_zh} 架構，所以可以套用，但效果難以預料。")
_UNKNOWN_ARCH = (
    " Loracle could not confirm that their layers even have the same shapes.",
    "Loracle 也無法確認兩者的網路層形狀是否相同。",
)
_UNKNOWN_FIX = (
    " An admin can set the base model with /admin set (option base_model), or from a shell: loracle library set \"{fix_name}\" --base-model \"Illustrious\" (use the real base model).",
    "管理員可以用 /admin set（選項 base_model）設定基礎模型，或在命令列執行：loracle library set \"{fix_name}\" --base-model \"Illustrious\"（請填入實際的基礎模型）。",
)
_UNKNOWN_FIX_TABLE = (
    " A base model Loracle does not know yet can also be added to families.toml in the data folder.",
    "也可以把 Loracle 還不認得的基礎模型加到資料夾中的 families.toml。",
)

_WARN_OTHER = Text(
    "“{lora}” was made for {lora_family}, not {checkpoint_family}: results may differ from the author's examples.",
    "「{lora}」是為 {lora_family} 製作的，不是 {checkpoint_family}：效果可能與作者的範例不同。",
)
_WARN_UNKNOWN = Text(
    "Loracle cannot tell whether “{lora}” suits “{checkpoint}”; results may differ.",
    "Loracle 無法判斷「{lora}」是否適合「{checkpoint}」，效果可能有差異。",
)


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

