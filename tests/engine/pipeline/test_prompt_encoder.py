"""A1111 prompt weighting and chunking on the tiny SDXL: tensors, then whole pictures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import engine.pipeline.prompt_encoder as prompt_encoder
from engine.lora.cache import LoraCache
from engine.lora.patcher import LoraPatcher, LoraSpec
from engine.pipeline.prompt_encoder import plan_prompts, prompt_inputs, tokenize_prompt
from engine.pipeline.samplers import make_scheduler
from engine.testing.lora_files import write_tiny_lora
from engine.testing.tiny_sdxl import build_tiny_pipeline

LONG = ", ".join(["masterpiece"] * 45)  # 89 tokens: two chunks
HIDDEN_L = 32  # the tiny CLIP-L's width; CLIP-G's features follow it


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def same(a, b) -> bool:
    return np.array_equal(pixels(a), pixels(b))


def differ(a, b) -> bool:
    return float(np.abs(pixels(a) - pixels(b)).mean()) > 5


def inputs(pipe, prompt, negative="lowres, bad anatomy", *, guided=True, clip_skip=None):
    with torch.inference_mode():
        return prompt_inputs(pipe, plan_prompts(pipe, prompt, negative, guided=guided), clip_skip=clip_skip)


def embeds(pipe, prompt, negative="lowres, bad anatomy", **kw):
    """Always the tensors, even for a prompt that would go to diffusers as a string."""
    plan = plan_prompts(pipe, prompt, negative, guided=True)
    plan = dataclasses.replace(plan, prompt=dataclasses.replace(plan.prompt, plain=False))
    with torch.inference_mode():
        return prompt_inputs(pipe, plan, **kw)


def direct(generator, params, **prompt_kwargs):
    """The image diffusers draws when called directly, as the benchmark calls it."""
    pipe = generator.pipe
    pipe.scheduler = make_scheduler(params.sampler, generator._base_scheduler_config)
    with torch.inference_mode():
        return pipe(
            **prompt_kwargs,
            num_inference_steps=params.steps,
            guidance_scale=params.cfg,
            width=params.width,
            height=params.height,
            generator=[torch.Generator(device="cpu").manual_seed(params.seed)],
            output_type="pil",
        ).images[0]


@pytest.fixture(scope="module")
def own_pipe():
    """A tiny pipeline of this module's own, for LoRAs and casts the shared one must not see."""
    return build_tiny_pipeline(seed=0)


# -- which prompts go to diffusers as strings ------------------------------------------


def test_plain_short_prompts_stay_strings(tiny_pipe):
    assert plan_prompts(tiny_pipe, "1girl, solo", "lowres", guided=True).as_strings
    for prompt, negative in [
        ("(1girl:1.2), solo", "lowres"),
        ("1girl, solo", "[lowres]"),
        ("1girl BREAK solo", "lowres"),
        ("1girl \\(cosplay\\)", "lowres"),
        (LONG, "lowres"),
        ("1girl", LONG),
        ("1girl", ""),  # an empty negative is zeros: see below
    ]:
        assert not plan_prompts(tiny_pipe, prompt, negative, guided=True).as_strings, (prompt, negative)
    # CFG <= 1 never reads the negative prompt, so it cannot force the tensors
    assert plan_prompts(tiny_pipe, "1girl", "[lowres]", guided=False).as_strings
    assert plan_prompts(tiny_pipe, "1girl", "", guided=False).negative is None


def test_encoding_equals_diffusers_bit_for_bit(tiny_pipe):
    # What makes `(tag:1.0)` draw exactly like `tag`: without weights, the tensors are
    # diffusers' own, clip skip included (diffusers reads the negative at the
    # penultimate layer whatever clip_skip says, and so does the encoder).
    for clip_skip in (None, 3):
        with torch.inference_mode():
            expected = tiny_pipe.encode_prompt(
                "1girl, solo, blue hair", device="cpu", negative_prompt="lowres, bad anatomy",
                clip_skip=prompt_encoder._diffusers_clip_skip(clip_skip),
            )
        got = embeds(tiny_pipe, "1girl, solo, blue hair", clip_skip=clip_skip)
        names = ["prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"]
        for name, tensor in zip(names, expected, strict=True):
            assert torch.equal(got[name], tensor), (name, clip_skip)


# -- weights ---------------------------------------------------------------------------


def test_weights_reach_both_encoders_and_keep_the_mean(tiny_pipe):
    plain = embeds(tiny_pipe, "1girl, blue hair")
    weighted = inputs(tiny_pipe, "1girl, (blue hair:1.5)")
    a, b = plain["prompt_embeds"], weighted["prompt_embeds"]
    assert a.shape == b.shape == (1, 77, 64)
    assert not torch.allclose(a[..., :HIDDEN_L], b[..., :HIDDEN_L])  # CLIP-L
    assert not torch.allclose(a[..., HIDDEN_L:], b[..., HIDDEN_L:])  # OpenCLIP-G
    # A1111 restores each encoder's chunk mean after weighting ...
    assert b[..., :HIDDEN_L].mean() == pytest.approx(a[..., :HIDDEN_L].mean().item(), rel=1e-5)
    assert b[..., HIDDEN_L:].mean() == pytest.approx(a[..., HIDDEN_L:].mean().item(), rel=1e-5)
    # ... and takes the pooled vector unweighted
    assert torch.equal(plain["pooled_prompt_embeds"], weighted["pooled_prompt_embeds"])
    # weighted tokens moved by 1.5 relative to the rest (one scale restores the mean)
    chunk = plan_prompts(tiny_pipe, "1girl, (blue hair:1.5)", "", guided=True).prompt.chunks[0][0]
    blue = chunk.weights.index(1.5)
    ratio = (b / a)[0, :, :HIDDEN_L].median(dim=-1).values
    assert ratio[blue].item() == pytest.approx(1.5 * ratio[1].item(), rel=1e-4)


def test_weights_work_in_the_negative_prompt_too(tiny_pipe):
    plain = embeds(tiny_pipe, "1girl", "lowres, bad anatomy")
    weighted = inputs(tiny_pipe, "1girl", "(lowres:1.4), bad anatomy")
    assert torch.equal(plain["prompt_embeds"], weighted["prompt_embeds"])
    assert not torch.allclose(plain["negative_prompt_embeds"], weighted["negative_prompt_embeds"])


def test_weight_one_draws_the_same_image_as_no_weight(generator, params):
    p = dataclasses.replace(params, prompt="1girl, solo, blue hair")
    plain = generator.generate(p)[0]
    assert same(plain, generator.generate(dataclasses.replace(p, prompt="(1girl:1.0), solo, blue hair"))[0])
    # (The random tiny model hardly listens to its prompt: any change of pixels is the signal.)
    assert not same(plain, generator.generate(dataclasses.replace(p, prompt="(1girl:1.5), solo, blue hair"))[0])
    assert not same(plain, generator.generate(dataclasses.replace(p, prompt="((1girl)), solo, [blue hair]"))[0])


def test_weight_one_draws_like_no_weight_under_clip_skip(generator, params):
    p = dataclasses.replace(params, prompt="1girl, solo", clip_skip=3)
    assert same(generator.generate(p)[0], generator.generate(dataclasses.replace(p, prompt="(1girl:1.0), solo"))[0])


def test_plain_prompts_draw_what_diffusers_draws(generator, params):
    expected = direct(generator, params, prompt=params.prompt, negative_prompt=params.negative)
    assert same(generator.generate(params)[0], expected)


def test_an_empty_negative_prompt_is_zeros_as_in_a1111(generator, params):
    # diffusers draws zeros for negative_prompt=None (SDXL's force_zeros_for_empty_prompt),
    # A1111 and Forge for an empty negative prompt: the same picture.
    p = dataclasses.replace(params, negative="")
    image = generator.generate(p)[0]
    assert same(image, direct(generator, p, prompt=p.prompt, negative_prompt=None))
    assert differ(image, direct(generator, p, prompt=p.prompt, negative_prompt=""))
    zeros = inputs(generator.pipe, "(1girl:1.2)", "")
    assert not zeros["negative_prompt_embeds"].any() and not zeros["negative_pooled_prompt_embeds"].any()


# -- chunks ----------------------------------------------------------------------------


def test_a_long_prompt_is_read_to_the_end(generator, params):
    # Before chunking, CLIP's 77-token window dropped everything after token 75 and the
    # two pictures were the same to the bit.
    p = dataclasses.replace(params, prompt=f"{LONG}, cat")
    assert generator.dropped_tokens(p).any is False
    assert embeds(generator.pipe, p.prompt)["prompt_embeds"].shape == (1, 2 * 77, 64)
    assert not same(generator.generate(p)[0], generator.generate(dataclasses.replace(p, prompt=f"{LONG}, dog"))[0])


def test_break_changes_the_picture(generator, params):
    a = generator.generate(dataclasses.replace(params, prompt="1girl, solo, blue hair, looking at viewer"))[0]
    b = generator.generate(dataclasses.replace(params, prompt="1girl, solo BREAK blue hair, looking at viewer"))[0]
    assert not same(a, b)


@pytest.mark.parametrize(
    "prompt_chunks, negative_chunks, length",
    [(2, 1, 2), (1, 3, 3), (2, 3, 6), (1, 1, 1)],
)
def test_prompts_of_different_chunk_counts_are_repeated_to_one_length(
    tiny_pipe, prompt_chunks, negative_chunks, length
):
    prompt = " BREAK ".join(["1girl"] * prompt_chunks)
    negative = " BREAK ".join(["lowres"] * negative_chunks)
    got = embeds(tiny_pipe, prompt, negative)
    assert got["prompt_embeds"].shape == got["negative_prompt_embeds"].shape == (1, 77 * length, 64)
    # repeated, not padded: the 1-chunk "lowres" twice over is still "lowres"
    single = embeds(tiny_pipe, "1girl", "lowres")
    if negative_chunks == 1:
        assert torch.equal(got["negative_prompt_embeds"], single["negative_prompt_embeds"].repeat(1, length, 1))


def test_a_repeated_sequence_draws_the_same_picture(generator, params):
    # Why repeating is right: cross-attention averages over the tokens, so a prompt twice
    # over attends exactly like the prompt once. (A batch of another shape may round the
    # last bit differently on the CPU, nothing more.)
    got = embeds(generator.pipe, params.prompt, params.negative)
    twice = {k: v.repeat(1, 2, 1) if v.ndim == 3 else v for k, v in got.items()}
    a = pixels(direct(generator, params, **got))
    b = pixels(direct(generator, params, **twice))
    assert int(np.abs(a - b).max()) <= 2


def test_past_the_ceiling_the_shorter_prompt_gets_empty_chunks(tiny_pipe, monkeypatch):
    monkeypatch.setattr(prompt_encoder, "MAX_CHUNKS", 4)  # lcm(2, 3) = 6 chunks would pass it
    got = embeds(tiny_pipe, "1girl BREAK solo", "lowres BREAK bad BREAK anatomy")
    assert got["prompt_embeds"].shape == got["negative_prompt_embeds"].shape == (1, 3 * 77, 64)
    empty = embeds(tiny_pipe, "", "lowres")["prompt_embeds"]  # A1111's pad_cond_uncond
    assert torch.allclose(got["prompt_embeds"][:, 2 * 77 :], empty, atol=1e-5)  # another batch size


def test_prompt_and_negative_of_different_lengths_draw(generator, params):
    image = generator.generate(dataclasses.replace(params, prompt=f"{LONG}, cat", negative="lowres"))[0]
    other = generator.generate(dataclasses.replace(params, prompt="cat", negative=f"{LONG}, lowres"))[0]
    assert pixels(image).std() > 1 and not same(image, other)


def test_only_tokens_past_the_ceiling_are_dropped(tiny_pipe):
    prompt = "masterpiece BREAK " * prompt_encoder.MAX_CHUNKS + "blue hair, school"
    tokenized = tokenize_prompt(tiny_pipe, prompt)
    assert tokenized.count == prompt_encoder.MAX_CHUNKS
    assert (tokenized.dropped, tokenized.dropped_text) == (4, "blue hair , school")
    assert tokenize_prompt(tiny_pipe, ", ".join(["masterpiece"] * 1000)).dropped == 0  # 1,999 tokens


# -- one encoding per job, on the encoders' device and dtype ------------------------------


def test_the_text_encoders_run_once_per_job_whatever_the_count(generator, params):
    calls = []
    hooks = [
        encoder.register_forward_hook(lambda module, args, out: calls.append(module))
        for encoder in (generator.pipe.text_encoder, generator.pipe.text_encoder_2)
    ]
    try:
        images = generator.generate(dataclasses.replace(params, prompt="(1girl:1.3), solo", count=2, steps=4))
    finally:
        for hook in hooks:
            hook.remove()
    assert len(images) == 2 and differ(images[0], images[1])
    assert len(calls) == 4  # prompt and negative prompt, each through both encoders, once


def test_encodes_in_the_text_encoders_dtype(own_pipe):
    own_pipe.text_encoder.to(torch.bfloat16)
    own_pipe.text_encoder_2.to(torch.bfloat16)
    try:
        got = inputs(own_pipe, f"(1girl:1.3), {LONG}", "[lowres]")
    finally:
        own_pipe.text_encoder.to(torch.float32)
        own_pipe.text_encoder_2.to(torch.float32)
    for tensor in got.values():
        assert tensor.dtype == torch.bfloat16 and torch.isfinite(tensor).all()
    full = inputs(own_pipe, f"(1girl:1.3), {LONG}", "[lowres]")
    assert torch.allclose(got["prompt_embeds"].float(), full["prompt_embeds"], atol=0.1, rtol=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_encodes_on_the_gpu(dtype):
    pipe = build_tiny_pipeline(seed=0).to("cuda", dtype)
    got = inputs(pipe, f"(1girl:1.3), {LONG}", "[lowres]")
    for tensor in got.values():
        assert tensor.device.type == "cuda" and tensor.dtype == dtype and torch.isfinite(tensor).all()


def test_text_encoder_loras_merged_in_place_still_count(own_pipe, tmp_path):
    prompt = "(1girl:1.3), solo, blue hair"
    before = inputs(own_pipe, prompt)
    path = write_tiny_lora(tmp_path / "te.safetensors", own_pipe, text_encoders=True, seed=3)
    patcher = LoraPatcher(own_pipe, LoraCache(2))
    patcher.apply([LoraSpec(key="", path=path, weight=1.0, name="te")])
    try:
        after = inputs(own_pipe, prompt)
    finally:
        patcher.apply([])
    for part in (slice(0, HIDDEN_L), slice(HIDDEN_L, None)):  # CLIP-L and OpenCLIP-G
        assert not torch.allclose(before["prompt_embeds"][..., part], after["prompt_embeds"][..., part])
    assert not torch.allclose(before["pooled_prompt_embeds"], after["pooled_prompt_embeds"])
    assert torch.equal(inputs(own_pipe, prompt)["prompt_embeds"], before["prompt_embeds"])
