"""/lora info, /family check, /queue and /help through SimCord."""

from __future__ import annotations

from tests.bot.helpers import button_ids, field, private_text, public


async def test_lora_info_card(world):
    result = await world.alice.slash(world.channel, "lora info", name="nova_style")
    embed = public(result).embeds[0]
    assert embed.title == "nova_style"
    assert embed.url == "https://civitai.com/models/1?modelVersionId=10"
    assert embed.thumbnail.url == "https://image.civitai.com/preview.jpeg"
    assert field(embed, "Base model") == "Illustrious (from CivitAI)"
    assert field(embed, "Family") == "Illustrious"
    assert field(embed, "Architecture") == "SDXL · lora"
    assert field(embed, "Trigger words") == "`nova style` (from CivitAI)"
    assert field(embed, "Recommended weight") == "1 (default)"
    assert "nova\\_orange" in field(embed, "Trained on")
    assert "`loras/nova_style.safetensors` · 144.0 MB" in field(embed, "File")
    assert "rank 32 · alpha 16" in field(embed, "File")
    suits = field(embed, "Checkpoints in the library").splitlines()
    assert suits[0] == "✅ exact match · **nova\\_orange** (Illustrious)"
    assert suits[-1].startswith("⛔ incompatible · **dreamshaper8**")
    assert "CivitAI says the base model is Illustrious." in field(embed, "Evidence")
    assert result.response is None  # the private "thinking…" reply made way for the card


async def test_lora_info_refusals_are_private(world):
    result = await world.alice.slash(world.channel, "lora info", name="nova_styl")
    assert private_text(result) == "No lora named “nova_styl” in the library. Did you mean: nova_style?"
    assert result.followups == []
    result = await world.alice.slash(world.channel, "lora info", name="spicy")
    assert "marked NSFW" in private_text(result)
    allowed = await world.alice.slash(world.nsfw_channel, "lora info", name="spicy")
    assert public(allowed).embeds[0].title == "spicy"


async def test_family_check_verdict_evidence_and_explanation(world):
    result = await world.alice.slash(world.channel, "family check", checkpoint="nova_orange", lora="pony_eyes, sd15_lineart")
    embed = public(result).embeds[0]
    assert embed.title == "Does it suit nova_orange?"
    assert embed.description == "Illustrious family · SDXL"
    pony = field(embed, "🟡 other family · pony_eyes")
    assert pony.startswith("Same architecture, different lineage: it runs, results may differ.")
    assert "• CivitAI says the base model is Pony." in pony
    assert field(embed, "⛔ incompatible · sd15_lineart").startswith("Different architectures")
    assert embed.colour.value == 0xE74C3C  # red: the worst verdict decides


async def test_family_check_in_chinese(world, interaction_payload):
    interaction_payload["locale"] = "zh-TW"
    result = await world.alice.slash(world.channel, "family check", checkpoint="nova_orange", lora="detail_slider")
    embed = public(result).embeds[0]
    assert embed.title == "適合 nova_orange 嗎？"
    assert field(embed, "🟢 同一系列 · detail_slider").startswith("同一血統")


async def test_family_check_unknown_names(world):
    result = await world.alice.slash(world.channel, "family check", checkpoint="nova_orange", lora="\u200b , ")
    assert private_text(result) == "Give the name of a LoRA, for example: detail_slider"
    result = await world.alice.slash(world.channel, "family check", checkpoint="nope", lora="pony_eyes")
    assert private_text(result).startswith("No checkpoint named “nope”")


async def test_unexpected_error_in_lora_info(world, caplog):
    world.engine.failures["lora_info"] = KeyError("boom")
    result = await world.alice.slash(world.channel, "lora info", name="nova_style")
    assert private_text(result).startswith("Something went wrong on our side (reference ")
    assert "KeyError" in caplog.text


async def test_queue_lists_your_jobs_with_cancel_buttons(world):
    await world.bob.slash(world.channel, "draw", prompt="bob first")
    await world.alice.slash(world.channel, "draw", prompt="my castle", checkpoint="autismmix")
    await world.alice.slash(world.channel, "draw", prompt="my dragon")
    world.engine.jobs[0].start()
    await world.env.settle()
    result = await world.alice.slash(world.channel, "queue")
    assert result.ephemeral
    embed = result.response.embeds[0]
    assert embed.description.splitlines() == ["**#1** · my castle · `autismmix`", "**#2** · my dragon"]
    assert embed.footer.text == "2 waiting in total"
    ids = button_ids(result.response.message)
    assert ids == [f"loracle:cancel:{job.id}:{world.alice.id}" for job in world.engine.jobs[1:]]
    await world.alice.click(result.response.message, label="Cancel 2")
    assert world.engine.jobs[2].state == "cancelled"

    empty = await world.admin.slash(world.channel, "queue")
    assert empty.response.embeds[0].description == "Nothing of yours is queued."


async def test_queue_when_the_engine_has_no_worker(world):
    world.engine.queue = None
    result = await world.alice.slash(world.channel, "queue")
    assert private_text(result) == "The drawing queue is not running right now."


async def test_help_in_both_languages(world, interaction_payload):
    result = await world.alice.slash(world.channel, "help")
    embed = result.response.embeds[0]
    assert result.ephemeral and "/draw" in embed.description and "other family" in embed.fields[0].value
    interaction_payload["locale"] = "zh-TW"
    result = await world.alice.slash(world.channel, "help")
    assert "不同系列" in result.response.embeds[0].fields[0].value


# -- /checkpoint info ----------------------------------------------------------------------
async def test_checkpoint_info_card(world):
    result = await world.alice.slash(world.nsfw_channel, "checkpoint info", name="nova_orange")
    embed = public(result).embeds[0]
    assert embed.title == "nova_orange"
    assert field(embed, "Type") == "🧪 Checkpoint Merge (from CivitAI)"
    assert field(embed, "Base model") == "Illustrious (from CivitAI)"
    assert field(embed, "Family") == "Illustrious"
    parents = field(embed, "Merged from").splitlines()
    assert parents[0] == "*A1111 checkpoint merger · Weighted sum · 0.4*"
    assert parents[1].startswith("**A** `illustriousXL_v01.safetensors` — not in the library (Illustrious, [CivitAI](")
    assert parents[2] == "**B** `autismmix.safetensors` — in the library as **autismmix** (Pony)"
    assert field(embed, "Same family in the library") == "**secret\\_mix**"
    loras = field(embed, "LoRAs that suit it").splitlines()
    assert loras[0] == "✅ exact match: **nova\\_style**"
    assert "**spicy**" in loras[1]  # an age-restricted channel lists NSFW LoRAs too
    assert loras[-1] == "2 LoRA(s) of another architecture left out."
    assert "`masterpiece`, `best quality`" in field(embed, "Prompt conventions")
    assert "v-prediction: no · VAE baked in: yes" in field(embed, "Model")
    assert result.response is None


async def test_checkpoint_info_in_chinese_and_outside_age_restricted_channels(world, interaction_payload):
    interaction_payload["locale"] = "zh-TW"
    result = await world.alice.slash(world.channel, "checkpoint info", name="autismmix")
    embed = public(result).embeds[0]
    assert field(embed, "類型") == "❔ 未知：融合或訓練"
    assert "`score_9`, `score_8_up`, `score_7_up`" in field(embed, "提示詞慣例")
    refused = await world.alice.slash(world.channel, "checkpoint info", name="secret_mix")
    assert "年齡限制頻道" in private_text(refused)
    sfw = public(await world.alice.slash(world.channel, "checkpoint info", name="nova_orange")).embeds[0]
    assert "spicy" not in field(sfw, "適合的 LoRA") and "secret" not in str(sfw.to_dict())
    assert "模型庫中同系列的模型" not in [f.name for f in sfw.fields]  # its only sibling is NSFW


async def test_checkpoint_info_unknown_names_and_autocomplete(world):
    result = await world.alice.slash(world.channel, "checkpoint info", name="nova_orang")
    assert private_text(result) == "No checkpoint named “nova_orang” in the library. Did you mean: nova_orange?"
    result = await world.alice.slash(world.channel, "checkpoint info", name="nova_style")
    assert private_text(result).startswith("No checkpoint named “nova_style”")  # a LoRA is no checkpoint
    choices = await world.alice.autocomplete(world.channel, "checkpoint info", "name", "nova")
    assert [c["value"] for c in choices] == ["nova_orange"]
