"""The /checkpoint info card: escaped, clipped to Discord's limits, in both languages."""

from __future__ import annotations

from bot.discord_app.render_checkpoint import checkpoint_info_embed
from engine.answers import ModelSummary
from engine.checkpoint_types import CheckpointInfo, ParentInfo, SuitedLora
from tests.bot.helpers import field


def info(**changes) -> CheckpointInfo:
    values = dict(
        summary=ModelSummary("mix", "mix", "checkpoint", "checkpoint", "sdxl", None, None, None, None),
        checkpoint_type="unknown", checkpoint_type_source=None, sha256=None, autov2=None, file="models/mix.safetensors",
        size=6_900_000_000, evidence=[], parents=[], siblings=[], loras=[], prompt_conventions=[], civitai_url=None,
        civitai_name=None, v_prediction=True, zero_terminal_snr=True, has_vae=False, nsfw=False,
    )
    values.update(changes)
    return CheckpointInfo(**values)


def test_a_huge_library_and_hostile_names_fit_and_stay_inert() -> None:
    loras = [SuitedLora(f"style_{i}_" + "x" * 80, f"style_{i}_" + "x" * 80, "same_family", "Illustrious", "Illustrious") for i in range(500)]
    parents = [ParentInfo("@everyone **bold** `tick`" + "y" * 300, "A" * 64, None, role, None, None) for role in "ABC"]
    embed = checkpoint_info_embed(info(loras=loras, parents=parents, incompatible_loras=3, merge_tool="webui"))
    assert len(embed) <= 6000 and all(len(f.value or "") <= 1024 for f in embed.fields)
    # a stranger's name stays inside one code span: its backticks cannot close it early
    assert field(embed, "Merged from").splitlines()[1].startswith("**A** `@everyone **bold** ˋtickˋ")
    suited = field(embed, "LoRAs that suit it")
    assert "more" in suited  # 500 names: the first dozen, then a count
    assert "v-prediction: yes · VAE baked in: no" in field(embed, "Model")


def test_nothing_known_in_chinese() -> None:
    embed = checkpoint_info_embed(info(), "zh-TW")
    assert field(embed, "類型") == "❔ 未知：融合或訓練"
    assert field(embed, "基礎模型") == "未知" and field(embed, "適合的 LoRA") == "模型庫中沒有。"
