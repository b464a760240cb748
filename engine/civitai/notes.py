"""What a CivitAI lookup answers (`Lookup`) and the notes that explain a second-hand one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from engine.errors import CivitaiError
from engine.i18n import Text

T = TypeVar("T")
Status = Literal["found", "not_found", "unavailable"]
Source = Literal["network", "cache", "stale_cache", "none"]

# -- messages ---------------------------------------------------------------------------
OFFLINE = Text("Offline mode: CivitAI was not asked.", "離線模式：沒有向 CivitAI 查詢。")
NOT_ASKED = Text("CivitAI has not been asked about this yet.", "尚未向 CivitAI 查詢過這個檔案。")
NOT_A_HASH = Text("“{value}” is not a file hash.", "「{value}」不是檔案雜湊值。")
TIMEOUT = Text(
    "CivitAI did not answer within {seconds} seconds.", "CivitAI 在 {seconds} 秒內沒有回應。"
)
UNREACHABLE = Text("Could not reach CivitAI.", "無法連線到 CivitAI。")
RATE_LIMITED = Text("CivitAI is rate-limiting us.", "CivitAI 暫時限制了我們的查詢次數。")
RATE_LIMITED_LONG = Text(
    "CivitAI is rate-limiting us and asked us to wait {seconds} seconds, so we gave up for now.",
    "CivitAI 暫時限制了查詢次數，要求等待 {seconds} 秒，所以這次先放棄。",
)
SERVER_ERROR = Text(
    "CivitAI had a problem on its side (HTTP {status}).", "CivitAI 伺服器出了問題（HTTP {status}）。"
)
KEY_REFUSED = Text(
    "CivitAI refused our API key (HTTP {status}); an admin should check LORACLE_CIVITAI_API_KEY.",
    "CivitAI 拒絕了我們的 API 金鑰（HTTP {status}）；請管理員檢查 LORACLE_CIVITAI_API_KEY。",
)
KEY_NEEDED = Text(
    "CivitAI wants an API key for this (HTTP {status}); an admin can set LORACLE_CIVITAI_API_KEY.",
    "CivitAI 需要 API 金鑰才能取得（HTTP {status}）；管理員可以設定 LORACLE_CIVITAI_API_KEY。",
)
REFUSED = Text(
    "CivitAI refused the request (HTTP {status}).", "CivitAI 拒絕了這個請求（HTTP {status}）。"
)
NO_SUCH_FILE = Text("CivitAI has no such file (HTTP 404).", "CivitAI 上沒有這個檔案（HTTP 404）。")
BLOCKED = Text(
    "CivitAI's firewall turned the request away (HTTP {status}, a web page instead of an answer); "
    "this is not about the API key. Try again later.",
    "CivitAI 的防火牆擋下了這個請求（HTTP {status}，回傳的是網頁而不是資料）；這與 API 金鑰無關，請稍後再試。",
)
EARLY_ACCESS = Text(
    "This CivitAI version is in early access: only those who unlocked it can download it{until}.",
    "這個 CivitAI 版本仍在搶先體驗期：只有已解鎖的使用者可以下載{until_zh}。",
)
DOWNLOADS_DISABLED = Text(
    "The creator has turned off downloads of this file on CivitAI.",
    "作者已關閉這個檔案在 CivitAI 上的下載。",
)
ARCHIVED = Text(
    "This model is archived on CivitAI: its files are no longer offered for download.",
    "這個模型在 CivitAI 上已封存：檔案不再提供下載。",
)
WEB_PAGE = Text(
    "CivitAI sent a web page instead of the file; download it by hand from the CivitAI page and add it with its path.",
    "CivitAI 回傳的是網頁而不是檔案；請從 CivitAI 頁面手動下載，再以路徑加入。",
)
BAD_ANSWER = Text(
    "CivitAI sent an answer we could not read.", "CivitAI 回傳了我們無法解讀的內容。"
)
STALE = Text("{reason} Using data cached {age} ago.", "{reason}改用 {age}前快取的資料。")


def fill(text: Text, **params: Any) -> Text:
    """A Text with its placeholders already filled, ready to hand to any renderer."""
    return Text(text.en.format(**params), text.zh_tw.format(**params)) if params else text


def age_words(seconds: float) -> tuple[str, str]:
    minutes = seconds / 60
    if minutes < 90:
        n = max(1, round(minutes))
        return (f"{n} minute{'s' if n != 1 else ''}", f"{n} 分鐘")
    hours = minutes / 60
    if hours < 36:
        n = round(hours)
        return (f"{n} hours", f"{n} 小時")
    n = round(hours / 24)
    return (f"{n} days", f"{n} 天")


def stale_note(reason: Text, age_s: float) -> Text:
    age_en, age_zh = age_words(age_s)
    return Text(
        STALE.en.format(reason=reason.en, age=age_en),
        STALE.zh_tw.format(reason=reason.zh_tw, age=age_zh),
    )


@dataclass(frozen=True)
class Lookup(Generic[T]):
    """One answer from CivitAI or its cache; `note` explains a second-hand answer."""

    value: T | None
    status: Status
    source: Source
    note: Text | None = None
    fetched_at: float | None = None  # when CivitAI gave this answer (None: never)

    @property
    def found(self) -> bool:
        return self.status == "found"


@dataclass(frozen=True)
class Trouble:
    text: Text
    params: dict[str, Any] = field(default_factory=dict)
    status: int | None = None

    @property
    def note(self) -> Text:
        return fill(self.text, **self.params)

    def error(self) -> CivitaiError:
        return CivitaiError(self.text, **self.params)


def num(value: float) -> str:
    return f"{value:g}" if value < 10 else f"{value:.0f}"
