"""Localised command descriptions for Discord's command picker.

Command and option *names* stay English (people share them as `/draw`); descriptions and
choice names are shown in the user's client language. Discord has two Chinese locales;
both get Traditional Chinese, as `engine.i18n.normalize_locale` does for replies.
"""

from __future__ import annotations

from discord import Locale, app_commands

# English description -> Traditional Chinese. Every string passed to `desc()` must be here;
# a test walks the command tree to make sure none is missing or over Discord's 100 chars.
DESCRIPTIONS: dict[str, str] = {
    # /draw
    "Draw a picture with an SDXL checkpoint and LoRAs": "用 SDXL 模型和 LoRA 畫一張圖",
    "What to draw": "要畫的內容",
    "What to keep out of the picture": "不想出現在圖中的內容",
    "Checkpoint to draw with (default: the server's default)": "要使用的模型（預設：伺服器的預設模型）",
    "LoRAs as name:weight, e.g. detail:0.8, style:-0.5": "LoRA，寫成 名稱:權重，例如 detail:0.8, style:-0.5",
    "Size as width x height, e.g. 832x1216": "尺寸，寫成 寬x高，例如 832x1216",
    "Denoising steps (more is slower)": "去噪步數（越多越慢）",
    "How closely to follow the prompt (CFG scale)": "遵循提示詞的程度（CFG）",
    "Seed for a repeatable picture (empty: random)": "種子，可重現同一張圖（留空：隨機）",
    "How many pictures": "要畫幾張",
    # /lora, /family, /queue, /help
    "What Loracle knows about LoRAs": "Loracle 對 LoRA 的了解",
    "Base model, family, trigger words and where a LoRA fits": "基礎模型、系列、觸發詞，以及 LoRA 適合哪些模型",
    "LoRA name": "LoRA 名稱",
    "Which LoRAs suit which checkpoints": "哪些 LoRA 適合哪些模型",
    "Does a LoRA suit a checkpoint? Verdict, evidence and explanation": "LoRA 適合這個模型嗎？判定、依據和說明",
    "Checkpoint name": "模型名稱",
    "LoRA name (several: separate with commas)": "LoRA 名稱（多個請用逗號分隔）",
    "Your pictures waiting in the queue": "您排隊中的圖",
    "How to use Loracle": "Loracle 使用說明",
    # /checkpoint
    "What Loracle knows about checkpoints": "Loracle 對模型（checkpoint）的了解",
    "Merged or trained, base model, parents, and the LoRAs that suit a checkpoint": "融合或訓練、基礎模型、來源模型，以及適合它的 LoRA",
    # /admin
    "Manage Loracle's library, limits and queue (bot admins)": "管理 Loracle 的模型庫、限制和佇列（機器人管理員）",
    "Find new, changed and removed model files": "尋找新增、變更和移除的模型檔",
    "Add a model from a CivitAI link or version id, or a file in the data folder": "從 CivitAI 連結或版本 ID，或資料夾中的檔案加入模型",
    "CivitAI URL, model-version id, or a path inside the data folder": "CivitAI 網址、模型版本 ID，或資料夾內的路徑",
    "Delete a model file from the library and the disk": "從模型庫和磁碟刪除模型檔",
    "Checkpoint or LoRA name": "模型或 LoRA 名稱",
    "Ask CivitAI again, ignoring cached answers": "忽略快取，重新向 CivitAI 查詢",
    "One file (empty: every file)": "單一檔案（留空：全部檔案）",
    "Override what CivitAI and the file say about a model": "覆寫 CivitAI 和檔案本身提供的模型資訊",
    'Base model, e.g. "Illustrious" or "Pony" ("-" clears)': "基礎模型，例如「Illustrious」或「Pony」（「-」清除）",
    "Recommended LoRA weight": "建議的 LoRA 權重",
    "Only in age-restricted channels": "只能在年齡限制頻道使用",
    "Can be used at all": "是否可以使用",
    'Name shown to users ("-" clears)': "顯示給使用者的名稱（「-」清除）",
    "Set the checkpoint /draw uses when none is given": "設定 /draw 未指定模型時使用的模型",
    'Checkpoint name ("-" clears)': "模型名稱（「-」清除）",
    "Show or change the drawing limits": "顯示或變更繪圖限制",
    "Most denoising steps per picture": "每張圖最多的去噪步數",
    "Largest width or height in pixels": "最大寬度或高度（像素）",
    "Most pictures per request": "每次最多張數",
    "Most waiting jobs per person": "每人最多排隊工作數",
    "Pause, resume or clear the drawing queue": "暫停、恢復或清空繪圖佇列",
    "Stop starting and accepting new jobs": "停止開始和接受新工作",
    "Start and accept jobs again": "重新開始並接受工作",
    "Cancel every waiting job": "取消所有排隊中的工作",
    "Words prompts may not contain on this server": "此伺服器提示詞中不可出現的詞",
    "Block words (comma separated)": "封鎖詞（以逗號分隔）",
    "Allow words again (comma separated)": "重新允許的詞（以逗號分隔）",
    "Show the blocked words": "顯示封鎖的詞",
    "Words, separated by commas": "詞，以逗號分隔",
    "Show the GPU workers: node, GPU, loaded checkpoint, jobs, load": "顯示 GPU 工作程序：節點、GPU、已載入的模型、工作數、負載",
}

DESCRIPTIONS.update(
    {
        # /draw with pictures (issue 10)
        "Draw from this picture (image-to-image)": "以這張圖為底來畫（圖生圖）",
        "How far to move away from the image (0.05 subtle - 1 new picture)": "離原圖多遠（0.05 微調 - 1 全新的圖）",
        "Hires fix: draw, upscale by this factor and refine (1 = off)": "高解析修復：先畫，再放大這個倍數並細修（1 = 關閉）",
        "Draw like this picture (its parameters; your other options override them)": "照這張圖畫（用它的參數；您的其他選項會覆蓋）",
        # /settings
        "Your drawing defaults (checkpoint, size, steps, LoRAs...)": "您的繪圖預設值（模型、尺寸、步數、LoRA…）",
        "Show your defaults": "顯示您的預設值",
        "Change your defaults; /draw options still override them": "變更您的預設值；/draw 的選項仍會覆蓋它們",
        "Clear your defaults (all, or one)": "清除您的預設值（全部或其中一項）",
        "Which default to clear (empty: all)": "要清除哪一項（留空：全部）",
        "Checkpoint to draw with": "要使用的模型",
        "Sampler": "取樣器",
        "Hires fix scale (1 = off)": "高解析修復倍率（1 = 關閉）",
    }
)

# Context-menu commands have no description: their names are what people see, so these
# names are translated (slash command names stay English).
MENU_NAMES: dict[str, str] = {
    "Draw like this": "照這張畫",
    "Image info": "圖片資訊",
}

_CHINESE = (Locale.taiwan_chinese, Locale.chinese)


def desc(english: str) -> app_commands.locale_str:
    """A command/option description that the translator can localise."""
    return app_commands.locale_str(english)


def menu_name(english: str) -> app_commands.locale_str:
    """A context menu's name, which the translator localises (it must be in MENU_NAMES)."""
    return app_commands.locale_str(english)


class LoracleTranslator(app_commands.Translator):
    async def translate(
        self,
        string: app_commands.locale_str,
        locale: Locale,
        context: app_commands.TranslationContext,  # type: ignore[type-arg]
    ) -> str | None:
        if locale not in _CHINESE:
            return None
        if context.location is app_commands.TranslationContextLocation.command_name and isinstance(
            context.data, app_commands.ContextMenu
        ):
            return MENU_NAMES.get(string.message)
        if context.location in (
            app_commands.TranslationContextLocation.command_name,
            app_commands.TranslationContextLocation.group_name,
            app_commands.TranslationContextLocation.parameter_name,
        ):
            return None
        return DESCRIPTIONS.get(string.message)
