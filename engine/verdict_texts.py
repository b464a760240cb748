"""The words of verdicts: claims, architecture facts, explanations and warnings, in
English and Traditional Chinese. `engine.verdicts` picks and fills them.

What an admin can do about an `unknown` verdict is not worded here: the verdict carries
a `Fix` (code `SET_BASE_MODEL`), and each front end says how in its own commands.
"""

from __future__ import annotations

from engine.i18n import Text
from engine.verdict_types import Source

# Fix code on an `unknown` verdict; params: {"name": the file whose family is unknown}.
SET_BASE_MODEL = "set_base_model"

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
    " An admin can set the base model of “{fix_name}”.",
    "管理員可以設定「{fix_name}」的基礎模型。",
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


