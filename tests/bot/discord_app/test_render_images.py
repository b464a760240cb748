"""How a picture's resources and parameters are shown (pure functions)."""

from __future__ import annotations

from bot.discord_app.render_images import image_info_embed, match_line, picture_fields
from engine.i18n import Message, Text
from engine.images.types import ImageInfo, ImageParameters, ResourceMatch, ResourceRef
from tests.bot.helpers import field


def test_each_kind_of_match_reads_differently():
    lora = ResourceRef("lora", "ink@here", "0123456789ab", 0.7)
    assert match_line(ResourceMatch(lora, "hash", "ink", "same_family"), "en") == (
        "✅ LoRA `ink@here` 0.7: matched by hash → `ink` · 🟢 same family"
    )
    assert "matched by name only" in match_line(ResourceMatch(lora, "name", "ink@here"), "en")
    assert match_line(ResourceMatch(lora, "missing", civitai_url="https://civitai.com/models/1"), "en").endswith(
        "an admin can /admin add <https://civitai.com/models/1>"
    )
    checkpoint = ResourceRef("checkpoint", None, "abcdef0123")
    assert match_line(ResourceMatch(checkpoint, "missing"), "zh-TW") == "❌ 模型 `abcdef0123`：不在模型庫中"


def test_picture_fields_list_matches_and_warnings_or_nothing():
    warning = Message.of(Text("steps {n} refused", "步數 {n} 被拒"), n=999)
    [(name, value)] = picture_fields([], [warning], "en")
    assert name == "From the picture" and value == "• steps 999 refused"
    assert picture_fields([], [], "en") == []


def test_image_info_embed_shows_parameters_and_escapes_what_it_read():
    params = ImageParameters(
        source="comfyui", prompt="**bold** @everyone", negative="lowres", seed=7, steps=20, cfg=6.0,
        sampler="Euler a", width=832, height=1216, hires=1.5, hires_denoise=0.4, hires_steps=10, hires_upscaler="latent",
    )
    ref = ResourceRef("lora", "x", None, 1.0)
    embed = image_info_embed(ImageInfo(params, [ResourceMatch(ref, "name", "x", "other_family")]), "en")
    assert embed.description == "Read from ComfyUI data."
    assert "\\*\\*bold\\*\\*" in field(embed, "Prompt") and "@\u200beveryone" in field(embed, "Prompt")
    assert "🟡 other family" in field(embed, "Resources")
    assert field(embed, "Hires") == "1.5× · denoise 0.4 · 10 steps · latent"
    assert field(embed, "Size") == "832×1216" and field(embed, "CFG") == "6"
    many = ImageInfo(params, [ResourceMatch(ResourceRef("lora", f"l{i}" * 20, None, 1.0), "missing") for i in range(60)])
    assert len(image_info_embed(many, "en")) <= 6000
