"""`/admin cluster`: the GPU workers as `loracle cluster status` shows them, in the
admin's language."""

from __future__ import annotations

from engine.i18n import Text
from engine.queue.lanes import ClusterStatus

_HEAD = Text(
    "**GPU workers** ({mode}) · {drawing} · {queued} job(s) waiting",
    "**GPU 工作程序**（{mode}）· {drawing} · {queued} 個工作排隊中",
)
_AVAILABLE = Text("drawing available", "可以繪圖")
_UNAVAILABLE = Text("⚠️ drawing unavailable", "⚠️ 目前無法繪圖")
_NONE = Text("No worker is connected.", "沒有已連線的工作程序。")
_WORKER = Text(
    "`{id}` {state} · node {node} · GPU {gpu} · loaded {loaded} · {jobs} job(s) · busy {busy}%",
    "`{id}` {state} · 節點 {node} · GPU {gpu} · 已載入 {loaded} · {jobs} 個工作 · 忙碌 {busy}%",
)
_CPU = Text("none (CPU)", "無（CPU）")
_LACKS = Text("  ↳ lacks: {files}", "  ↳ 缺少：{files}")
_ERROR = Text("  ↳ last error: {error}", "  ↳ 最近的錯誤：{error}")


def render_cluster(status: ClusterStatus, locale: str) -> str:
    lines = [
        _HEAD.render(
            locale,
            mode=status.mode,
            drawing=(_AVAILABLE if status.available else _UNAVAILABLE).render(locale),
            queued=status.queued,
        )
    ]
    if status.note:
        lines.append(status.note)
    if not status.workers:
        lines.append(_NONE.render(locale))
    for w in status.workers:
        lines.append(
            _WORKER.render(
                locale,
                id=w.id,
                state=w.state,
                node=w.node,
                gpu=w.gpu or _CPU.render(locale),
                loaded=(w.loaded or "-")[:16],
                jobs=w.jobs_done,
                busy=round(100 * w.busy_share),
            )
        )
        if w.missing:
            lines.append(_LACKS.render(locale, files=", ".join(w.missing)))
        if w.last_error:
            lines.append(_ERROR.render(locale, error=w.last_error[:300]))
    return "\n".join(lines)
