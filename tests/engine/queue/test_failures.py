"""How the queue words a failure that is not a LoracleError, and what it stores of a result."""

from __future__ import annotations

from dataclasses import dataclass

from engine.i18n import EN
from engine.queue.failures import as_job_failure, default_summary


class OutOfMemoryError(RuntimeError):  # the name torch.cuda gives it
    pass


def test_out_of_memory_in_any_form_says_so_and_keeps_the_cause() -> None:
    for exc in (MemoryError(), OutOfMemoryError("CUDA"), RuntimeError("MPS backend out of memory")):
        error = as_job_failure(exc)
        assert "ran out of memory" in error.localized(EN) and error.__cause__ is exc


def test_anything_else_names_only_its_kind() -> None:
    error = as_job_failure(KeyError("secret/path/to/file"))
    text = error.localized(EN)
    assert "KeyError" in text and "secret" not in text


@dataclass
class _Result:
    def to_json(self) -> dict[str, int]:
        return {"images": 2}


def test_summary_is_json_never_pixels() -> None:
    assert default_summary(None) is None
    assert default_summary(_Result()) == {"images": 2}
    assert default_summary({"a": [1, 2]}) == {"a": [1, 2]}
    assert default_summary(object()) == {"type": "object"}
