"""A user's defaults filling what /draw left out, and the note that says so."""

from __future__ import annotations

from bot.discord_app.defaults import apply_defaults, lora_text, shown_values, used_text
from bot.discord_app.parsing import DrawOptions
from engine.planning.lora_weights import LoraRequest
from engine.requests import DrawRequest
from engine.user_defaults import UserDefaults

FULL = UserDefaults(
    checkpoint="nova_orange", width=832, height=1216, steps=30, cfg=4.5, sampler="Euler",
    negative="lowres", loras=[LoraRequest("a", 0.5), LoraRequest("b")], hires=1.0,
)


def test_defaults_fill_only_what_the_options_left_out():
    options = DrawOptions("cat", negative="", steps=12, size="512x512")
    request = DrawRequest(prompt="cat", negative="", steps=12, width=512, height=512)
    used = apply_defaults(request, options, FULL)
    assert used == ["checkpoint", "cfg", "sampler", "loras", "hires"]
    assert (request.steps, request.width, request.negative) == (12, 512, "")  # given options win, even empty
    assert (request.checkpoint, request.cfg, request.sampler, request.hires) == ("nova_orange", 4.5, "Euler", 1.0)
    assert request.loras == FULL.loras and request.loras is not FULL.loras


def test_an_image_to_image_draw_keeps_the_pictures_size():
    request = DrawRequest(prompt="cat", init_image="abc")
    assert "size" not in apply_defaults(request, DrawOptions("cat"), FULL)
    assert request.width is None


def test_nothing_set_changes_nothing():
    request = DrawRequest(prompt="cat")
    assert apply_defaults(request, DrawOptions("cat"), UserDefaults()) == []
    assert request == DrawRequest(prompt="cat")
    assert used_text(UserDefaults(), [], "en") is None


def test_the_note_names_each_default_used_in_the_users_language():
    assert used_text(FULL, ["steps", "size", "hires"], "en") == (
        "Using your default: steps 30, size 832×1216, hires off. /settings changes them."
    )
    assert used_text(FULL, ["steps"], "zh-TW") == "使用您的預設值：步數 30。可用 /settings 變更。"


def test_shown_values_and_lora_text():
    assert lora_text([LoraRequest("a", 0.5), LoraRequest("b"), LoraRequest("c", -1.0)]) == "a:0.5, b, c:-1"
    keys = [key for key, _ in shown_values(FULL, "en")]
    assert keys == ["checkpoint", "size", "steps", "cfg", "sampler", "negative", "loras", "hires"]
    assert dict(shown_values(UserDefaults(hires=1.75), "en")) == {"hires": "1.75×"}
