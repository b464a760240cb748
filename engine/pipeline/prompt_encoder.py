"""Prompt text to SDXL's text conditioning, as A1111 builds it.

A1111 (modules/sd_hijack_clip.py, sd_models_xl.py) encodes each 75-token chunk of a prompt
on its own with both SDXL text encoders, takes each one's penultimate hidden states,
scales every token's vector by its attention weight and then rescales the chunk so its mean
is what it was before ("Original" emphasis), and lays the chunks side by side: the UNet
cross-attends to 77 x chunks tokens of CLIP-L and OpenCLIP-G features, concatenated. The
pooled vector comes from OpenCLIP-G's first chunk, unweighted.

A prompt without any A1111 syntax that fits one chunk is passed to diffusers as the string
it is: diffusers encodes it to the very same tensors (the tests check it bit for bit), and
today's images stay as they are. Everything else is encoded here, once per job, before
denoising, and diffusers repeats the result for each image of a batch.

Runs on whatever device and dtype the text encoders are on; the weighting itself is done
in float32 and cast back once (A1111 does it in the model's half precision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from engine.pipeline.prompt_weights import CHUNK_LENGTH, MAX_CHUNKS, Chunk, Vocabulary, chunk_prompt, is_plain

if TYPE_CHECKING:
    from diffusers import StableDiffusionXLPipeline

# A ceiling on chunks per prompt, far above any tag list: 2,400 tokens. Only a prompt of
# thousands of emoji or CJK characters (several byte tokens each) reaches it; each chunk
# lengthens every cross-attention of every step, so past it the tail is dropped, and named.
MAX_TOKENS = MAX_CHUNKS * CHUNK_LENGTH


@dataclass(frozen=True)
class DroppedTokens:
    """Prompt tokens past MAX_CHUNKS, which the text encoders never see: how many, and the
    text they spell (as the tokenizer reads it back), so the user learns what was lost."""

    prompt: int = 0
    negative: int = 0
    prompt_text: str = ""
    negative_text: str = ""

    @property
    def any(self) -> bool:
        return bool(self.prompt or self.negative)


@dataclass(frozen=True)
class TokenizedPrompt:
    """One prompt in chunks, one chunk list per text encoder (all of the same length)."""

    text: str
    chunks: tuple[tuple[Chunk, ...], ...]
    plain: bool  # no weights, escapes or BREAK: A1111 reads it as written
    dropped: int = 0
    dropped_text: str = ""

    @property
    def count(self) -> int:
        return len(self.chunks[0])

    @property
    def fits_diffusers(self) -> bool:
        """diffusers' own string encoding gives exactly what A1111 would."""
        return self.plain and self.count == 1


@dataclass(frozen=True)
class PromptPlan:
    """What a job's two prompts become, decided before any tensor is made."""

    prompt: TokenizedPrompt
    negative: TokenizedPrompt | None  # None where it is never encoded: CFG <= 1, or zeros
    negative_text: str
    guided: bool  # CFG > 1: diffusers reads the negative prompt only then
    zero_negative: bool

    @property
    def as_strings(self) -> bool:
        if not self.prompt.fits_diffusers:
            return False
        if not self.guided:
            return True
        return not self.zero_negative and self.negative is not None and self.negative.fits_diffusers

    @property
    def dropped(self) -> DroppedTokens:
        negative = self.negative
        return DroppedTokens(
            prompt=self.prompt.dropped,
            negative=negative.dropped if negative else 0,
            prompt_text=self.prompt.dropped_text,
            negative_text=negative.dropped_text if negative else "",
        )


def plan_prompts(pipe: StableDiffusionXLPipeline, prompt: str, negative: str, *, guided: bool) -> PromptPlan:
    """Tokenize and chunk both prompts (no tensors yet): what `prompt_inputs` will encode."""
    # A1111 and Forge give SDXL an all-zero negative (cross-attention features and pooled
    # vector) when the negative prompt is empty: force_zero_negative_prompt in
    # sd_models_xl.py. diffusers does the same for negative_prompt=None with the SDXL
    # checkpoints' force_zeros_for_empty_prompt; here it is zeros whatever that flag says.
    zero_negative = guided and negative == ""
    return PromptPlan(
        prompt=tokenize_prompt(pipe, prompt),
        negative=tokenize_prompt(pipe, negative) if guided and not zero_negative else None,
        negative_text=negative,
        guided=guided,
        zero_negative=zero_negative,
    )


def tokenize_prompt(pipe: StableDiffusionXLPipeline, text: str) -> TokenizedPrompt:
    """`text` in A1111's chunks for each text encoder, cut at MAX_CHUNKS."""
    per_encoder: list[list[Chunk]] = []
    vocabs: list[Vocabulary] = []
    dropped, dropped_text = 0, ""
    for tokenizer in _tokenizers(pipe):
        chunks = chunk_prompt(text, tokenizer)
        lost = [token for chunk in chunks[MAX_CHUNKS:] for token in chunk.prompt_tokens]
        if len(lost) > dropped:
            dropped = len(lost)
            dropped_text = tokenizer.decode(lost, skip_special_tokens=True).strip(" ,\n\t")
        per_encoder.append(chunks[:MAX_CHUNKS])
        vocabs.append(Vocabulary.of(tokenizer))
    # SDXL's two tokenizers share one vocabulary and chunk alike; should a checkpoint's not,
    # the shorter list gets empty chunks, as A1111 pads the shorter prompts of a batch.
    count = max(len(chunks) for chunks in per_encoder)
    padded = tuple(
        tuple(chunks) + (Chunk.empty(vocab),) * (count - len(chunks))
        for chunks, vocab in zip(per_encoder, vocabs, strict=True)
    )
    return TokenizedPrompt(text, padded, plain=is_plain(text), dropped=dropped, dropped_text=dropped_text)


def prompt_inputs(
    pipe: StableDiffusionXLPipeline, plan: PromptPlan, *, clip_skip: int | None = None
) -> dict[str, Any]:
    """The prompt arguments for `pipe(...)`: the strings, or the encoded tensors. Call it
    under torch.inference_mode(); it runs the text encoders."""
    if plan.as_strings:
        # Always a string negative here, even unguided: the images of today, bit for bit.
        return {
            "prompt": plan.prompt.text,
            "negative_prompt": plan.negative_text,
            "clip_skip": _diffusers_clip_skip(clip_skip),
        }
    positive = list(zip(*plan.prompt.chunks, strict=True))  # per chunk: one Chunk per encoder
    negative = list(zip(*plan.negative.chunks, strict=True)) if plan.negative is not None else None
    repeat = (1, 1)
    if negative is not None and len(negative) != len(positive):
        positive, negative, repeat = _same_length(pipe, positive, negative)
    embeds, pooled = _encode(pipe, positive, _hidden_layer(clip_skip))
    inputs: dict[str, Any] = {"prompt_embeds": embeds.repeat(1, repeat[0], 1), "pooled_prompt_embeds": pooled}
    if plan.zero_negative:
        inputs["negative_prompt_embeds"] = torch.zeros_like(inputs["prompt_embeds"])
        inputs["negative_pooled_prompt_embeds"] = torch.zeros_like(pooled)
    elif negative is not None:
        # diffusers reads the negative prompt at the penultimate layer whatever clip_skip
        # says (StableDiffusionXLPipeline.encode_prompt); the string path draws that way,
        # so this does too, and `(tag:1.0)` keeps drawing like `tag` under clip skip.
        negative_embeds, negative_pooled = _encode(pipe, negative, _hidden_layer(None))
        inputs["negative_prompt_embeds"] = negative_embeds.repeat(1, repeat[1], 1)
        inputs["negative_pooled_prompt_embeds"] = negative_pooled
    return inputs


def _same_length(
    pipe: StableDiffusionXLPipeline, positive: list[tuple[Chunk, ...]], negative: list[tuple[Chunk, ...]]
) -> tuple[list[tuple[Chunk, ...]], list[tuple[Chunk, ...]], tuple[int, int]]:
    """Give the two prompts one sequence length, as diffusers' batched guidance needs.

    A1111 runs the UNet apart for prompt and negative prompt of different chunk counts
    (sd_samplers_cfg_denoiser.py; its pad_cond_uncond option is off by default). Repeating
    each side up to the least common multiple of the two counts draws the same picture in
    one batch: cross-attention averages over the tokens, and a repeated sequence has the
    same average (ComfyUI's CONDCrossAttn.concat does this). Where that would pass
    MAX_CHUNKS, the shorter side gets empty-prompt chunks instead, A1111's pad_cond_uncond.
    Returns the chunk lists and how many times to repeat each side's embeddings.
    """
    n, m = len(positive), len(negative)
    common = math.lcm(n, m)
    if common <= MAX_CHUNKS:
        return positive, negative, (common // n, common // m)
    empty = tuple(Chunk.empty(Vocabulary.of(tokenizer)) for tokenizer in _tokenizers(pipe))
    longest = max(n, m)
    return positive + [empty] * (longest - n), negative + [empty] * (longest - m), (1, 1)


def _encode(
    pipe: StableDiffusionXLPipeline, chunks: list[tuple[Chunk, ...]], layer: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 77 x chunks, CLIP-L + CLIP-G features) and the (1, projection) pooled vector."""
    features, pooled = [], None
    for index, encoder in enumerate(_text_encoders(pipe)):
        own = [per_encoder[index] for per_encoder in chunks]
        ids = torch.tensor([chunk.tokens for chunk in own], dtype=torch.long, device=encoder.device)
        out = encoder(ids, output_hidden_states=True)
        if out[0].ndim == 2:  # CLIPTextModelWithProjection's text_embeds: SDXL's pooled vector
            pooled = out[0][:1]
        hidden = _emphasis(out.hidden_states[layer], own)
        features.append(hidden.reshape(1, -1, hidden.shape[-1]))
    if pooled is None:
        raise ValueError("this pipeline has no text encoder with a projection (SDXL's text_encoder_2)")
    return torch.cat(features, dim=-1), pooled


def _emphasis(hidden: torch.Tensor, chunks: list[Chunk]) -> torch.Tensor:
    """A1111's EmphasisOriginal (sd_emphasis.py), chunk by chunk: multiply each token's
    features by its weight, then scale the chunk back to its original mean. Chunks without
    weights are left untouched, bit for bit (A1111's arithmetic would return them as is)."""
    if not any(chunk.weighted for chunk in chunks):
        return hidden
    out = []
    for z, chunk in zip(hidden, chunks, strict=True):
        if chunk.weighted:
            z32 = z.float()
            weights = torch.tensor(chunk.weights, dtype=torch.float32, device=z.device).unsqueeze(-1)
            original_mean = z32.mean()
            weighted = z32 * weights
            new_mean = weighted.mean()
            # A mean of exactly 0 (every token weighted 0) would make A1111's NaN; keep it.
            scale = torch.where(new_mean != 0, original_mean / new_mean, torch.ones_like(new_mean))
            z = (weighted * scale).to(z.dtype)
        out.append(z)
    return torch.stack(out)


def _hidden_layer(clip_skip: int | None) -> int:
    # SDXL reads the penultimate layer, CivitAI's "clip skip 2"; each step above 2 skips one
    # more: the hidden_states[-(k + 2)] that diffusers reads for clip_skip=k = n - 2.
    return -max(2, clip_skip or 2)


def _diffusers_clip_skip(clip_skip: int | None) -> int | None:
    # diffusers' SDXL pipeline reads hidden_states[-(k + 2)], i.e. already the penultimate
    # layer at k = None; A1111's n maps to k = n - 2.
    if clip_skip is None or clip_skip <= 2:
        return None
    return clip_skip - 2


# diffusers registers pipeline components at run time, so mypy cannot see them: `pipe: Any`.
def _tokenizers(pipe: Any) -> list[Any]:
    # As diffusers' encode_prompt: CLIP-L then OpenCLIP-G, or G alone in a pipeline without L.
    return [pipe.tokenizer, pipe.tokenizer_2] if pipe.tokenizer is not None else [pipe.tokenizer_2]


def _text_encoders(pipe: Any) -> list[Any]:
    return [pipe.text_encoder, pipe.text_encoder_2] if pipe.text_encoder is not None else [pipe.text_encoder_2]
