"""Errors the engine raises, each with a message meant for the person who caused it.

    LoracleError
    ├── SettingsError            a setting has a bad value (start-up)
    ├── LibraryError
    │   ├── UnknownNameError     no checkpoint/LoRA by that name (carries suggestions)
    │   ├── UnsafeFileError      pickled formats (.ckpt/.pt/.bin) are refused, never loaded
    │   └── CorruptFileError     unreadable, truncated or hostile safetensors
    ├── CivitaiError             CivitAI unreachable, rate-limiting or answering nonsense
    ├── RequestError
    │   ├── WeightError          NaN/inf or unparsable LoRA weights
    │   ├── IncompatibleError    LoRA and checkpoint of different architectures
    │   ├── LimitError           steps/size/count/prompt beyond the configured limits
    │   └── ImageInputError      a picture that cannot be used (bomb, truncated, animated, no parameters)
    ├── LoraFormatError          a LoRA format we cannot apply correctly
    └── JobError
        ├── QueueFullError       per-user cap reached, or queue paused
        ├── JobCancelledError
        └── JobFailedError       the GPU job failed (OOM, exception); wraps the cause

`str(err)` is English; `err.localized("zh-TW")` renders the same message in Chinese.
`err.fix` (an `engine.i18n.Fix`, or None) is what the reader can do about it, as a code:
each front end adds its own wording (bot/discord_app/hints.py, bot/cli/hints.py).
"""

from __future__ import annotations

from typing import Any

from engine.i18n import EN, Fix, Text


class LoracleError(Exception):
    """Base class. `text` is the localisable message, `params` fill its placeholders."""

    default_text = Text("Something went wrong.", "發生錯誤。")

    def __init__(self, text: Text | str | None = None, /, *, fix: Fix | None = None, **params: Any) -> None:
        if isinstance(text, str):
            text = Text(text, text)
        self.text: Text = text or self.default_text
        self.params = params
        self.fix = fix
        super().__init__(self.localized(EN))

    def localized(self, locale: str | None = EN) -> str:
        return self.text.render(locale, **self.params)


class SettingsError(LoracleError):
    pass


class LibraryError(LoracleError):
    pass


class UnknownNameError(LibraryError):
    """No library entry by that name; `suggestions` are the closest names."""

    def __init__(self, category: str, name: str, suggestions: list[str] | None = None) -> None:
        self.category = category
        self.name = name
        self.suggestions = list(suggestions or [])
        # Names go in as parameters, never into the template: a file called "style{v2}"
        # must not be read as a placeholder.
        hint_en = f" Did you mean: {', '.join(self.suggestions)}?" if self.suggestions else ""
        hint_zh = f" 您是不是要找：{'、'.join(self.suggestions)}？" if self.suggestions else ""
        cat_zh = {"checkpoint": "模型（checkpoint）", "lora": "LoRA"}.get(category, category)
        super().__init__(
            Text(
                "No {category} named “{name}” in the library.{hint_en}",
                "模型庫中找不到名為「{name}」的{category_zh}。{hint_zh}",
            ),
            category=category,
            name=name,
            category_zh=cat_zh,
            hint_en=hint_en,
            hint_zh=hint_zh,
        )


class UnsafeFileError(LibraryError):
    pass


class CorruptFileError(LibraryError):
    pass


class CivitaiError(LoracleError):
    pass


class RequestError(LoracleError):
    pass


class WeightError(RequestError):
    pass


class IncompatibleError(RequestError):
    pass


class LimitError(RequestError):
    pass


class ImageInputError(RequestError):
    default_text = Text("This picture cannot be used.", "無法使用這張圖片。")


class LoraFormatError(LoracleError):
    pass


class JobError(LoracleError):
    pass


class QueueFullError(JobError):
    pass


class JobCancelledError(JobError):
    default_text = Text("The job was cancelled.", "工作已取消。")


class JobFailedError(JobError):
    default_text = Text("The job failed.", "工作失敗。")


class DrawingUnavailableError(JobError):
    """The GPU workers cannot be reached (the Ray cluster is down): nothing is queued."""

    default_text = Text(
        "Drawing is unavailable right now: Loracle cannot reach its GPU workers. "
        "Questions about models still work; please try drawing again later.",
        "目前無法繪圖：Loracle 連不上 GPU 工作程序。查詢模型的指令仍可使用；請稍後再試著繪圖。",
    )
