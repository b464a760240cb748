"""What the bot says, in English and Traditional Chinese, and whose language it uses.

Engine errors bring their own `Text`; these are the bot's own words: progress, embed
labels, buttons, admin replies. Replies follow the *user's* Discord locale (a server's
locale says nothing about the person reading an ephemeral reply).
"""

from __future__ import annotations

from typing import Any

from engine.i18n import Text, normalize_locale


def locale_of(interaction: Any) -> str:
    """The locale we answer this interaction in ("en" or "zh-TW")."""
    locale = getattr(interaction, "locale", None)
    return normalize_locale(getattr(locale, "value", None) or (str(locale) if locale else None))


# -- general -------------------------------------------------------------------------
SOMETHING_WRONG = Text(
    "Something went wrong on our side (reference {ref}). Please try again; if it keeps "
    "happening, tell an admin and mention the reference.",
    "我們這邊出了點問題（參考編號 {ref}）。請再試一次；如果一直發生，請把參考編號告訴管理員。",
)
ADMIN_ONLY = Text(
    "Only Loracle's admins can use /admin. Managing this server is not enough: ask the "
    "person who runs the bot to add your user ID or one of your roles to its admin list.",
    "只有 Loracle 的管理員可以使用 /admin。光是管理這個伺服器還不夠：請請架設機器人的人把您的"
    "使用者 ID 或您的某個身分組加入管理員名單。",
)

# -- /draw input ------------------------------------------------------------------------
BAD_SIZE = Text(
    "“{value}” is not a size. Write it as width x height, for example 1024x1024 or 832x1216.",
    "「{value}」不是有效的尺寸。請寫成「寬x高」，例如 1024x1024 或 832x1216。",
)
LORA_NAME_MISSING = Text(
    "Give the name of a LoRA, for example: detail_slider",
    "請提供 LoRA 的名稱，例如：detail_slider",
)

# -- job progress ------------------------------------------------------------------------
QUEUED_NEXT = Text("⏳ Queued: you are next.", "⏳ 排隊中：下一個就是您。")
QUEUED_AT = Text("⏳ Queued: position {position}.", "⏳ 排隊中：第 {position} 位。")
STARTING = Text("🎨 Starting…", "🎨 準備中…")
LOADING_CHECKPOINT = Text("📦 Loading checkpoint {name}…", "📦 正在載入主模型 {name}…")
DRAWING = Text("🎨 Drawing… step {i}/{n}", "🎨 繪製中… 第 {i}/{n} 步")
DONE = Text("✅ Done.", "✅ 完成。")
CANCELLED = Text("✖️ Cancelled.", "✖️ 已取消。")
FAILED = Text("❌ {error}", "❌ {error}")
CANCEL_REQUESTED = Text(
    "Cancelling. A picture already being drawn stops at its next step.",
    "正在取消。已在繪製中的圖會在下一步停止。",
)
ALREADY_FINISHED = Text("This job has already finished.", "這個工作已經結束了。")
DELETE_NOT_YOURS = Text(
    "Only the person who asked for this image (or an admin) can delete it.",
    "只有提出這張圖的人（或管理員）可以刪除它。",
)
CANCEL_NOT_YOURS = Text(
    "Only the person who asked for this picture (or an admin) can cancel it.",
    "只有提出這張圖的人（或管理員）可以取消它。",
)
REROLL_UNKNOWN = Text(
    "The settings of this image are no longer known, so it cannot be redrawn. Please use /draw again.",
    "已找不到這張圖的設定，無法重畫。請再用一次 /draw。",
)
LATE_DELIVERY = Text(
    "{mention} your picture is ready (the original reply had expired while it waited).",
    "{mention} 您的圖畫好了（原本的回覆在等待時已失效）。",
)
RECOVERED_DELIVERY = Text(
    "{mention} your picture from before the bot restarted is ready.",
    "{mention} 機器人重新啟動前您要的圖畫好了。",
)

# -- uploads -------------------------------------------------------------------------------
FIT_JPEG = Text(
    "The PNGs were larger than the upload limit here ({limit}), so they were sent as JPEG; "
    "the PNGs with their generation data stay on the server.",
    "PNG 檔超過這裡的上傳上限（{limit}），因此改以 JPEG 傳送；含生成資訊的 PNG 保留在伺服器上。",
)
FIT_SCALED = Text(
    "The PNGs were larger than the upload limit here ({limit}), so smaller JPEGs "
    "({width}×{height}) were sent; the full-size PNGs stay on the server.",
    "PNG 檔超過這裡的上傳上限（{limit}），因此改傳較小的 JPEG（{width}×{height}）；"
    "原尺寸的 PNG 保留在伺服器上。",
)
TOO_BIG = Text(
    "The pictures are too large to upload here even after compressing them (limit {limit}).",
    "即使壓縮後，圖片仍超過這裡的上傳上限（{limit}），無法上傳。",
)
NOT_DELIVERED = Text(
    "It is ready, but Discord would not let me post it here. Please try again in another "
    "channel, or ask an admin to check the bot's permissions in this one.",
    "已經完成，但 Discord 不讓我在這裡張貼。請到其他頻道再試一次，或請管理員檢查機器人在這個頻道的權限。",
)

# -- buttons ----------------------------------------------------------------------------
BUTTON_REROLL = Text("Reroll", "重畫")
BUTTON_DELETE = Text("Delete", "刪除")
BUTTON_CANCEL = Text("Cancel", "取消")
BUTTON_CONFIRM_DELETE = Text("Delete the file", "刪除檔案")
BUTTON_KEEP = Text("Keep it", "保留")

# -- embeds -----------------------------------------------------------------------------
F_CHECKPOINT = Text("Checkpoint", "模型")
F_LORAS = Text("LoRAs", "LoRA")
F_WARNINGS = Text("Warnings", "提醒")
F_SEED = Text("Seed", "種子")
F_STEPS = Text("Steps", "步數")
F_CFG = Text("CFG", "CFG")
F_SIZE = Text("Size", "尺寸")
F_SAMPLER = Text("Sampler", "取樣器")
F_TIME = Text("Time", "耗時")
F_BASE_MODEL = Text("Base model", "基礎模型")
F_FAMILY = Text("Family", "系列")
F_ARCH = Text("Architecture", "架構")
F_TRIGGERS = Text("Trigger words", "觸發詞")
F_WEIGHT = Text("Recommended weight", "建議權重")
WEIGHT_RANGE = Text("range {low:g}–{high:g}", "範圍 {low:g}–{high:g}")
F_TRAINED_ON = Text("Trained on", "訓練用模型")
F_FILE = Text("File", "檔案")
F_SUITS = Text("Checkpoints in the library", "模型庫中的模型")
F_EVIDENCE = Text("Evidence", "依據")
F_NOTES = Text("Notes", "備註")
F_TAGS = Text("Most used training tags", "最常用的訓練標籤")
SECONDS = Text("{seconds:.1f} s", "{seconds:.1f} 秒")
SECONDS_QUEUED = Text("{seconds:.1f} s (waited {queued:.0f} s)", "{seconds:.1f} 秒（排隊 {queued:.0f} 秒）")
FAMILY_LINE = Text("{family} family · {arch}", "{family} 系列 · {arch}")
FAMILY_UNKNOWN_LINE = Text("family unknown · {arch}", "系列未知 · {arch}")
DEFAULT_WEIGHT = Text("default", "預設")
AND_MORE = Text("…and {count} more", "…另外還有 {count} 項")
NONE = Text("none", "無")
UNKNOWN = Text("unknown", "未知")
LORA_ON = Text("{lora} on {checkpoint}", "{lora} 用在 {checkpoint}")
FAMILY_CHECK_TITLE = Text("Does it suit {checkpoint}?", "適合 {checkpoint} 嗎？")
FILE_LINE = Text("{file} · {size}", "{file} · {size}")
TRAINED_ON_LINE = Text("{name} ({base_model})", "{name}（{base_model}）")
IN_LIBRARY = Text("in the library as {names}", "模型庫中的 {names}")

VERDICTS = {
    "exact": Text("✅ exact match", "✅ 完全相符"),
    "same_family": Text("🟢 same family", "🟢 同一系列"),
    "other_family": Text("🟡 other family", "🟡 不同系列"),
    "unknown": Text("❔ unknown", "❔ 未知"),
    "incompatible": Text("⛔ incompatible", "⛔ 不相容"),
}
STATUSES = {
    "applied": Text("applied", "已套用"),
    "clamped": Text("clamped", "已限制範圍"),
    "not_applied": Text("not applied", "未套用"),
    "refused": Text("refused", "已拒絕"),
}
SOURCES = {
    "admin": Text("set by an admin", "管理員設定"),
    "civitai": Text("from CivitAI", "來自 CivitAI"),
    "metadata": Text("from the file's metadata", "來自檔案的中繼資料"),
    "default": Text("default", "預設"),
    "description": Text("from the author's description", "來自作者的說明"),
    "examples": Text("from the author's example images", "來自作者的範例圖"),
    "tensors": Text("from the file's layers", "來自檔案的網路層"),
}


def verdict_label(verdict: str | None, locale: str) -> str:
    if verdict is None:
        return VERDICTS["unknown"].render(locale)
    text = VERDICTS.get(str(verdict))
    return text.render(locale) if text else str(verdict)


def status_label(status: Any, locale: str) -> str:
    text = STATUSES.get(str(status))
    return text.render(locale) if text else str(status)


def source_label(source: str | None, locale: str) -> str | None:
    if not source:
        return None
    text = SOURCES.get(source)
    return text.render(locale) if text else source


# -- /queue and /help ----------------------------------------------------------------------
QUEUE_TITLE = Text("Your pictures in the queue", "您在排隊中的圖")
QUEUE_EMPTY = Text("Nothing of yours is queued.", "您目前沒有排隊中的工作。")
QUEUE_RUNNING = Text("▶️ drawing now", "▶️ 正在繪製")
QUEUE_POSITION = Text("#{position}", "第 {position} 位")
QUEUE_FOOTER = Text("{size} waiting in total", "總共 {size} 個在排隊")
QUEUE_FOOTER_PAUSED = Text("{size} waiting in total · paused by an admin", "總共 {size} 個在排隊 · 管理員已暫停")
QUEUE_OFF = Text(
    "The drawing queue is not running right now.",
    "繪圖佇列目前沒有在運作。",
)
HELP_TITLE = Text("Loracle: draw with SDXL checkpoints and LoRAs", "Loracle：用 SDXL 模型和 LoRA 畫圖")
HELP_BODY = Text(
    "**/draw** `prompt` draws a picture. Add LoRAs as `name:0.8, other:-0.5` "
    "(no weight = the recommended one, 0 = off, negative = away from the style).\n"
    "**/lora info** tells what a LoRA was trained on and which checkpoints suit it.\n"
    "**/family check** says whether a LoRA suits a checkpoint, and why.\n"
    "**/checkpoint info** tells whether a checkpoint is a merge or trained, what it descends "
    "from, which LoRAs suit it and how to prompt it.\n"
    "**/queue** shows your waiting pictures. Buttons under a picture reroll it (new seed), "
    "delete it, or cancel it while it waits; upscale it, vary it (subtle or strong) or remix "
    "its prompt with the same seed.\n"
    "**/draw** `image` starts from your picture, `like` draws like one; right-click a message "
    "with a picture → Apps → **Draw like this** or **Image info**.\n"
    "**/settings** keeps your own defaults (checkpoint, size, steps, LoRAs…).",
    "**/draw** `prompt` 畫一張圖。LoRA 寫成 `name:0.8, other:-0.5`"
    "（不寫權重 = 用建議值，0 = 不套用，負數 = 遠離該風格）。\n"
    "**/lora info** 說明 LoRA 是用哪個模型訓練的、適合哪些模型。\n"
    "**/family check** 判斷 LoRA 是否適合某個模型，並說明原因。\n"
    "**/checkpoint info** 說明模型是融合還是訓練而來、源自哪些模型、適合哪些 LoRA，以及提示詞慣例。\n"
    "**/queue** 顯示您排隊中的圖。圖下方的按鈕可以重畫（換種子）、刪除，或在排隊時取消；"
    "也可以放大、變化（微調或大幅），或用同一個種子改寫提示詞重畫。\n"
    "**/draw** 的 `image` 以您的圖為底，`like` 照一張圖畫；在有圖片的訊息上按右鍵 → 應用程式 → "
    "**照這張畫** 或 **圖片資訊**。\n"
    "**/settings** 保存您自己的預設值（模型、尺寸、步數、LoRA…）。",
)
HELP_VERDICTS_TITLE = Text("What the verdicts mean", "判定結果的意思")
HELP_VERDICTS = Text(
    "✅ **exact**: trained on this very checkpoint.\n"
    "🟢 **same family**: trained on a relative (e.g. Illustrious LoRA on an Illustrious merge); works well.\n"
    "🟡 **other family**: same architecture, different lineage (Pony LoRA on Illustrious); it runs, "
    "but may not look like the author's examples.\n"
    "⛔ **incompatible**: a different architecture (SD 1.5 or Flux LoRA on SDXL); refused.\n"
    "❔ **unknown**: not enough information; an admin can set the base model.",
    "✅ **完全相符**：就是用這個模型訓練的。\n"
    "🟢 **同一系列**：用同系列的模型訓練（例如 Illustrious 的 LoRA 用在 Illustrious 融合模型），效果好。\n"
    "🟡 **不同系列**：架構相同但血統不同（Pony 的 LoRA 用在 Illustrious），可以跑，但效果可能和作者範例不同。\n"
    "⛔ **不相容**：架構不同（SD 1.5 或 Flux 的 LoRA 用在 SDXL），會被拒絕。\n"
    "❔ **未知**：資訊不足；管理員可以設定基礎模型。",
)

# -- /admin ----------------------------------------------------------------------------
SCANNING = Text("🔎 Scanning… {item}", "🔎 掃描中… {item}")
SCAN_DONE = Text(
    "Scan finished: {added} added, {updated} updated, {removed} removed, {unchanged} unchanged.",
    "掃描完成：新增 {added} 個、更新 {updated} 個、移除 {removed} 個、未變動 {unchanged} 個。",
)
SCAN_PROBLEM = Text("⚠️ skipped {path}: {message}", "⚠️ 略過 {path}：{message}")
DOWNLOADING = Text("⬇️ Downloading… {done} of {total} ({percent}%)", "⬇️ 下載中… {done} / {total}（{percent}%）")
DOWNLOADING_UNKNOWN = Text("⬇️ Downloading… {done}", "⬇️ 下載中… {done}")
ADDING = Text("📦 Adding {source}…", "📦 正在加入 {source}…")
ADDED = Text("Added {category} **{name}** ({path}).", "已加入{category_zh} **{name}**（{path}）。")
REMOVE_CONFIRM = Text(
    "Delete **{name}** ({path}, {size}) from disk? This cannot be undone.",
    "要從磁碟刪除 **{name}**（{path}，{size}）嗎？刪除後無法復原。",
)
REMOVED = Text("Removed {path}.", "已刪除 {path}。")
REMOVE_KEPT = Text("Nothing was deleted.", "沒有刪除任何東西。")
REFRESHED_ONE = Text("Asked CivitAI again about **{name}**.", "已重新向 CivitAI 查詢 **{name}**。")
REFRESHED_ALL = Text("Asked CivitAI again about every file.", "已重新向 CivitAI 查詢所有檔案。")
SET_NOTHING = Text(
    "Nothing to change: give at least one of base_model, weight, nsfw, enabled or display_name.",
    "沒有要變更的項目：請至少提供 base_model、weight、nsfw、enabled 或 display_name 其中之一。",
)
SET_DONE = Text(
    "**{name}**: base model {base_model} ({family}); recommended weight {weight}; NSFW {nsfw}; enabled {enabled}.",
    "**{name}**：基礎模型 {base_model}（{family}）；建議權重 {weight}；成人內容 {nsfw}；啟用 {enabled}。",
)
YES = Text("yes", "是")
NO = Text("no", "否")
DEFAULT_SET = Text("The default checkpoint is now **{name}**.", "預設模型現在是 **{name}**。")
DEFAULT_CLEARED = Text(
    "No default checkpoint is set now; the first usable one is used.",
    "目前沒有設定預設模型；會使用第一個可用的模型。",
)
LIMITS = Text(
    "Limits: up to {max_steps} steps, {max_size} px per side, {max_images} pictures per request, "
    "{queue_per_user} waiting jobs per person.",
    "限制：最多 {max_steps} 步、每邊 {max_size} 像素、每次 {max_images} 張、每人最多 {queue_per_user} 個排隊工作。",
)
QUEUE_PAUSED = Text(
    "The queue is paused: the running picture finishes, nothing new starts or is accepted.",
    "佇列已暫停：正在畫的圖會畫完，但不會開始或接受新的工作。",
)
QUEUE_RESUMED = Text("The queue runs again.", "佇列已恢復運作。")
QUEUE_CLEARED = Text(
    "Removed {count} waiting job(s); the running one continues.",
    "已移除 {count} 個排隊中的工作；正在執行的會繼續。",
)
BLOCKLIST_SHOW = Text("Blocked words on this server: {words}", "此伺服器封鎖的詞：{words}")
BLOCKLIST_EMPTY = Text("No words are blocked on this server.", "此伺服器沒有封鎖任何詞。")
CATEGORY_ZH = {"checkpoint": "模型", "lora": "LoRA"}


def human_size(size: int | float | None) -> str:
    """1536000 -> "1.5 MB" (decimal units, as Discord and browsers show file sizes)."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


# -- the image loop (issue 10): picture buttons, pictures in, context menus ------------------
BUTTON_UPSCALE = Text("Upscale", "放大")
BUTTON_VARY_SUBTLE = Text("Vary (subtle)", "微調變化")
BUTTON_VARY_STRONG = Text("Vary (strong)", "大幅變化")
BUTTON_REMIX = Text("Remix", "改寫重畫")
DRAW_YOUR_OWN = Text(
    "Only the person who asked for this picture can upscale, vary or remix it. Draw your own with "
    "/draw, or use Apps → Draw like this on the picture.",
    "只有提出這張圖的人可以放大、變化或改寫它。請用 /draw 畫您自己的，或在圖片上使用「應用程式 → 照這張畫」。",
)
PICTURE_GONE = Text(
    "This picture is no longer kept on the server, so it cannot be used again. Please draw it anew.",
    "伺服器上已經沒有這張圖了，無法再使用。請重新畫一張。",
)
REMIX_TITLE = Text("Remix: same seed, your changes", "改寫重畫：同一個種子，套用您的修改")
REMIX_PROMPT = Text("Prompt", "提示詞")
REMIX_NEGATIVE = Text("Negative prompt", "負面提示詞")
REMIX_LORAS = Text("LoRAs (name:weight, separated by commas)", "LoRA（名稱:權重，以逗號分隔）")
NO_PICTURE = Text(
    "That message has no picture I can read. Use it on a message with a PNG, JPEG or WEBP attachment.",
    "那則訊息沒有我能讀取的圖片。請用在附有 PNG、JPEG 或 WEBP 圖片的訊息上。",
)
NOT_A_PICTURE = Text(
    "“{name}” does not look like a picture. Attach a PNG, JPEG or WEBP file.",
    "「{name}」看起來不是圖片。請附上 PNG、JPEG 或 WEBP 檔。",
)
ATTACHMENT_TOO_LARGE = Text(
    "“{name}” is {size}; pictures up to {limit} are accepted.",
    "「{name}」大小為 {size}；只接受 {limit} 以內的圖片。",
)
ATTACHMENT_UNREADABLE = Text(
    "I could not download “{name}” from Discord. Please send it again.",
    "無法從 Discord 下載「{name}」。請重新傳送一次。",
)
STRENGTH_NEEDS_IMAGE = Text(
    "strength only applies with an image: attach one with the image option.",
    "strength 只在有圖片時有用：請用 image 選項附上一張圖。",
)
LIKE_NEEDS_PROMPT = Text(
    "Give a prompt, or a picture to draw like with the like option.",
    "請提供提示詞，或用 like 選項附上一張要模仿的圖片。",
)
F_FROM_PICTURE = Text("From the picture", "來自圖片")
F_YOUR_DEFAULTS = Text("Your defaults", "您的預設值")
USING_DEFAULTS = Text("Using your default: {items}. /settings changes them.", "使用您的預設值：{items}。可用 /settings 變更。")
MATCH_HASH = Text("✅ {kind} {name}: matched by hash", "✅ {kind} {name}：依雜湊值找到")
MATCH_NAME = Text("🟡 {kind} {name}: matched by name only (a different file may have that name)", "🟡 {kind} {name}：僅依名稱找到（可能是同名的不同檔案）")
MATCH_MISSING = Text("❌ {kind} {name}: not in the library", "❌ {kind} {name}：不在模型庫中")
MATCH_MISSING_LINK = Text(
    "❌ {kind} {name}: not in the library; an admin can /admin add {url}",
    "❌ {kind} {name}：不在模型庫中；管理員可以用 /admin add {url} 加入",
)
KIND_CHECKPOINT = Text("checkpoint", "模型")
KIND_LORA = Text("LoRA", "LoRA")
INFO_TITLE = Text("How this picture was made", "這張圖的生成方式")
INFO_SOURCE = Text("Read from {source} data.", "讀取自 {source} 的資料。")
F_PROMPT = Text("Prompt", "提示詞")
F_NEGATIVE = Text("Negative prompt", "負面提示詞")
F_RESOURCES = Text("Resources", "使用的資源")
F_HIRES = Text("Hires", "高解析")
F_STRENGTH = Text("Denoising strength", "重繪強度")
HIRES_LINE = Text("{scale:g}× · denoise {denoise} · {steps} steps · {upscaler}", "{scale:g} 倍 · 重繪 {denoise} · {steps} 步 · {upscaler}")

# -- /settings ---------------------------------------------------------------------------
SETTINGS_TITLE = Text("Your drawing defaults", "您的繪圖預設值")
SETTINGS_EMPTY = Text(
    "You have no defaults: /draw uses the server's. Set some with /settings set.",
    "您沒有設定預設值：/draw 會使用伺服器的設定。可用 /settings set 設定。",
)
SETTINGS_FOOTER = Text("/draw options override these; the admin's limits still apply.", "/draw 的選項會覆蓋這些值；管理員的限制依然適用。")
SETTINGS_SAVED = Text("Saved. Your defaults now:", "已儲存。您目前的預設值：")
SETTINGS_NOTHING = Text(
    "Nothing to change: give at least one option (checkpoint, size, steps, cfg, sampler, negative, loras, hires).",
    "沒有要變更的項目：請至少提供一個選項（checkpoint、size、steps、cfg、sampler、negative、loras、hires）。",
)
SETTINGS_RESET_ALL = Text("All your defaults are cleared.", "已清除您所有的預設值。")
SETTINGS_RESET_ONE = Text("Your default {name} is cleared.", "已清除您的預設值 {name}。")
HIRES_OFF = Text("off", "關閉")
DEFAULT_NAMES = {
    "checkpoint": Text("checkpoint", "模型"),
    "size": Text("size", "尺寸"),
    "steps": Text("steps", "步數"),
    "cfg": Text("CFG", "CFG"),
    "sampler": Text("sampler", "取樣器"),
    "negative": Text("negative prompt", "負面提示詞"),
    "loras": Text("LoRAs", "LoRA"),
    "hires": Text("hires", "高解析"),
}


def default_name(key: str, locale: str) -> str:
    text = DEFAULT_NAMES.get(key)
    return text.render(locale) if text else key
