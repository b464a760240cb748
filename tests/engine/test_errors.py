"""User-facing error messages render in both locales, whatever the names contain."""

from __future__ import annotations

from engine.errors import LoracleError, UnknownNameError
from engine.i18n import ZH_TW


def test_unknown_name_with_braces_in_names_and_suggestions():
    err = UnknownNameError("lora", "style{v2}", ["style{v1}", "{odd}"])
    assert str(err) == "No lora named “style{v2}” in the library. Did you mean: style{v1}, {odd}?"
    zh = err.localized(ZH_TW)
    assert "「style{v2}」" in zh and "style{v1}、{odd}" in zh


def test_unknown_name_without_suggestions_has_no_hint():
    err = UnknownNameError("checkpoint", "nova")
    assert str(err) == "No checkpoint named “nova” in the library."
    assert "您是不是要找" not in err.localized(ZH_TW)


def test_plain_string_message_is_used_in_every_locale():
    err = LoracleError("Disk full {not a placeholder}")
    assert str(err) == err.localized(ZH_TW) == "Disk full {not a placeholder}"
