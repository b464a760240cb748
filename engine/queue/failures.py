"""What a job's end tells its submitter when the queue, not the runner, decides it: the
queue is paused or stopping, the process shuts down, or the runner raised something that
is not a LoracleError (out of memory included), which becomes a plain-language
JobFailedError with the original exception as its `__cause__`. Also the JSON summary of a
result that the job store keeps."""

from __future__ import annotations

import json
from typing import Any

from engine.errors import JobFailedError
from engine.i18n import Text

PAUSED = Text(
    "The queue is paused by an admin right now, so no new jobs are accepted. "
    "Please try again a little later.",
    "管理員目前暫停了排隊，暫時不接受新工作。請稍後再試。",
)
STOPPING = Text(
    "The bot is shutting down, so no new jobs are accepted. Please try again after it restarts.",
    "機器人正在關閉，暫不接受新工作。請在它重新啟動後再試。",
)
SHUTDOWN_KEPT = Text(
    "The bot is restarting. Your job is saved and will run when it is back.",
    "機器人正在重新啟動。您的工作已保存，重新啟動後會繼續執行。",
)
SHUTDOWN_DROPPED = Text(
    "The bot is shutting down, so your job could not run. Please send it again later.",
    "機器人正在關閉，您的工作無法執行。請稍後再送出一次。",
)
OUT_OF_MEMORY = Text(
    "The graphics card ran out of memory while drawing. "
    "Try a smaller size or fewer images at once.",
    "繪圖時顯示卡的記憶體不足。請試著縮小圖片尺寸，或一次少畫幾張。",
)
UNEXPECTED = Text(
    "Drawing failed because of an unexpected problem ({kind}). "
    "Please try again; if it keeps happening, tell an admin.",
    "繪圖時發生意外問題（{kind}），工作失敗。請再試一次；如果一直發生，請告訴管理員。",
)


def as_job_failure(exc: BaseException) -> JobFailedError:
    """A plain-language JobFailedError for an exception that is not a LoracleError."""
    if _is_out_of_memory(exc):
        error = JobFailedError(OUT_OF_MEMORY)
    else:
        error = JobFailedError(UNEXPECTED, kind=type(exc).__name__)
    error.__cause__ = exc
    return error


def _is_out_of_memory(exc: BaseException) -> bool:
    # torch.cuda.OutOfMemoryError subclasses RuntimeError; MPS and older torch raise a
    # bare RuntimeError whose text says "out of memory".
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def default_summary(result: Any) -> Any:
    """What of a result is stored in the `jobs` table: a JSON value, never pixels."""
    if result is None:
        return None
    for method in ("summary", "to_json"):
        summarise = getattr(result, method, None)
        if callable(summarise):
            return summarise()
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        return {"type": type(result).__name__}
    return result
