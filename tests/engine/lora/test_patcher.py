"""LoraPatcher: exact weights, exact restores, no work for an unchanged set."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from engine.errors import LoraFormatError, WeightError
from engine.lora import LoraCache, LoraPatcher, LoraSpec
from engine.lora.formats import LoraModule, load_lora
from engine.lora.patcher import contribution_delta
from engine.testing.lora_files import (
    assert_bit_identical,
    changed_weights,
    snapshot_weights,
    write_mismatched_lora,
    write_tiny_lora,
)
from engine.testing.tiny_sdxl import build_tiny_pipeline


def test_weight_zero_is_bit_identical_to_no_lora(pipe, patcher_for, spec, lora_pool, render):
    baseline_image = render(pipe)
    before = snapshot_weights(pipe)
    patcher = patcher_for(pipe)
    reports = patcher.apply([spec(lora_pool["locon_cp"], 0.0), spec(lora_pool["loha"], 0)])
    assert [r.applied for r in reports] == [False, False]
    assert patcher.active == ()
    assert patcher.stats.params_written == 0
    assert_bit_identical(before, snapshot_weights(pipe))
    assert np.array_equal(render(pipe), baseline_image)


def test_positive_negative_and_none_differ_and_deltas_mirror(pipe, patcher_for, spec, lora_pool, render):
    path = lora_pool["locon_cp"]
    patcher = patcher_for(pipe)
    none = render(pipe)
    w0 = snapshot_weights(pipe)
    patcher.apply([spec(path, 0.8)])
    plus, w_plus = render(pipe), snapshot_weights(pipe)
    patcher.apply([spec(path, -0.8)])
    minus, w_minus = render(pipe), snapshot_weights(pipe)

    for a, b in ((none, plus), (none, minus), (plus, minus)):
        assert np.abs(a - b).mean() > 1e-3  # visibly different images
    # fp32 deltas, before any cast: -w gives exactly minus what +w gives
    for name in ("locon_cp", "loha", "lokr", "dora", "peft_dora"):
        for module in load_lora(lora_pool[name]).modules.values():
            base = torch.randn(module.natural_shape("weight"))
            pos = contribution_delta(module, "weight", base, 0.8)
            neg = contribution_delta(module, "weight", base, -0.8)
            assert pos.abs().max() > 0 and torch.equal(pos, -neg), module.alias
    # and in the model, up to the rounding of W0 + d
    changed = changed_weights(w0, w_plus)
    assert changed and changed == changed_weights(w0, w_minus)
    for name in changed:
        torch.testing.assert_close(w_plus[name] - w0[name], -(w_minus[name] - w0[name]), rtol=0, atol=1e-6)


def test_applied_weights_match_reference_sum_of_two_loras(pipe, patcher_for, spec, lora_pool):
    a, b = load_lora(lora_pool["lora_sgm"]), load_lora(lora_pool["locon_diffusers"])
    layer = pipe.unet.get_submodule("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q")
    w0 = layer.weight.detach().clone()
    patcher_for(pipe).apply([spec(lora_pool["lora_sgm"], 0.7), spec(lora_pool["locon_diffusers"], -1.3)])
    shape = tuple(w0.shape)
    da = a.modules["lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"].delta("weight", shape)
    db = b.modules["lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"].delta("weight", shape)
    assert torch.equal(layer.weight.detach(), w0 + 0.7 * da + -1.3 * db)


POOL_FOR_JOBS = (
    "lora_sgm", "locon_diffusers", "locon_cp", "loha", "loha_tucker", "lokr", "lokr_tucker",
    "dora", "dora_input_axis", "peft", "peft_dora", "peft_base_model",
)
WEIGHTS = (-1.5, -1.0, -0.35, 0.0, 0.0, 0.25, 0.6, 1.0, 1.2)


def _random_jobs(count: int, seed: int):
    rng = random.Random(seed)
    jobs, previous = [], []
    for _ in range(count):
        if previous and rng.random() < 0.15:
            jobs.append(previous)  # the same set again: must be free
            continue
        names = rng.sample(POOL_FOR_JOBS, rng.randint(0, 3))
        job = [(name, rng.choice(WEIGHTS) if rng.random() < 0.6 else round(rng.uniform(-2, 2), 3)) for name in names]
        jobs.append(job)
        previous = job
    return jobs


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_fifty_random_jobs_then_restore_is_bit_identical(lora_pool, spec, dtype):
    pipe = build_tiny_pipeline(0).to(dtype=dtype)
    fresh = snapshot_weights(build_tiny_pipeline(0).to(dtype=dtype))
    patcher = LoraPatcher(pipe, LoraCache(32))
    checked = 0
    for index, job in enumerate(_random_jobs(50, seed=1234)):
        specs = [spec(lora_pool[name], weight) for name, weight in job]
        reports = patcher.apply(specs)
        assert len(reports) == len(specs)
        assert all(r.matched_modules > 0 for r in reports if r.applied)
        if index % 10 == 9:
            # History independence: the same set on a never-touched pipeline gives the same bits.
            other = build_tiny_pipeline(0).to(dtype=dtype)
            LoraPatcher(other, LoraCache(4)).apply(specs)
            assert_bit_identical(snapshot_weights(other), snapshot_weights(pipe))
            checked += 1
    assert checked == 5
    assert patcher.stats.unchanged_applies > 0
    patcher.restore()
    assert patcher.active == () and patcher.touched_params == 0
    assert_bit_identical(fresh, snapshot_weights(pipe))


def test_naive_add_subtract_in_bf16_would_drift(lora_pool):
    """Why pristine copies: fuse/unfuse-style W += d; W -= d in bf16 does not come back."""
    pipe = build_tiny_pipeline(0).to(dtype=torch.bfloat16)
    layer = pipe.unet.get_submodule("down_blocks.1.attentions.0.proj_in")
    w0 = layer.weight.detach().clone()
    module = load_lora(lora_pool["lora_sgm"]).modules["lora_unet_input_blocks_4_1_proj_in"]
    delta = module.delta("weight", tuple(w0.shape)).to(torch.bfloat16)
    with torch.no_grad():
        for _ in range(5):
            layer.weight += delta
            layer.weight -= delta
    assert not torch.equal(layer.weight, w0)


@pytest.mark.parametrize(
    "namings",
    [("kohya_sgm", "kohya_diffusers", "peft"), ("kohya_sgm", "peft_base_model")],
    ids=["with-text-encoders", "unet-only"],
)
@pytest.mark.parametrize("variant", ["lora", "locon"])
def test_same_lora_in_every_naming_gives_same_weights(tmp_path, spec, namings, variant):
    source = build_tiny_pipeline(0)
    text_encoders = "peft_base_model" not in namings
    results = []
    for naming in namings:
        path = write_tiny_lora(
            tmp_path / f"{naming}.safetensors", source, variant=variant, naming=naming, alpha=2.0, seed=42,
            text_encoders=text_encoders,
        )
        pipe = build_tiny_pipeline(0)
        reports = LoraPatcher(pipe, LoraCache(2)).apply([spec(path, 0.9)])
        assert reports[0].unmatched_keys == []
        results.append((reports[0], snapshot_weights(pipe)))
    first_report, first_weights = results[0]
    assert first_report.targets["unet"] > 0
    assert (first_report.targets["text_encoder"] > 0) == text_encoders
    assert changed_weights(snapshot_weights(source), first_weights)
    for report, weights in results[1:]:
        assert report.targets == first_report.targets
        assert_bit_identical(first_weights, weights)


def test_unmatched_keys_are_counted_per_lora(pipe, patcher_for, spec, tmp_path):
    extra = write_tiny_lora(tmp_path / "extra.safetensors", pipe, extra_unmatched_keys=5, seed=3)
    clean = write_tiny_lora(tmp_path / "clean.safetensors", pipe, naming="peft", seed=4)
    expected_modules = len(load_lora(clean).modules)
    reports = patcher_for(pipe).apply([spec(extra, 1.0), spec(clean, 0.5)])
    assert len(reports[0].unmatched_keys) == 5
    assert all("input_blocks_99" in k for k in reports[0].unmatched_keys)
    assert reports[0].matched_modules == expected_modules
    assert reports[1].unmatched_keys == []
    assert reports[1].matched_modules == expected_modules
    assert sum(reports[1].targets.values()) == expected_modules


def test_sd15_shaped_lora_raises_before_touching_any_weight(pipe, patcher_for, spec, tmp_path, lora_pool):
    misfit = write_mismatched_lora(tmp_path / "sd15_style.safetensors", pipe)
    patcher = patcher_for(pipe)
    patcher.apply([spec(lora_pool["loha"], 0.7)])
    applied = snapshot_weights(pipe)
    with pytest.raises(LoraFormatError) as info:
        patcher.apply([spec(lora_pool["lora_sgm"], 1.0), spec(misfit, 1.0)])
    message = str(info.value)
    assert "sd15_style" in message and "768" in message
    assert "sd15_style" in info.value.localized("zh-TW")
    assert_bit_identical(applied, snapshot_weights(pipe))  # not even the fitting modules
    assert patcher.active == (("hash-loha", 0.7),)
    patcher.restore()
    assert_bit_identical(snapshot_weights(build_tiny_pipeline(0)), snapshot_weights(pipe))


def test_a_failure_halfway_through_writing_leaves_pristine_weights(pipe, patcher_for, spec, lora_pool, monkeypatch):
    # Out of memory on the 50th parameter of a new set: nothing half-applied survives, and
    # the next apply starts from the pristine copies as if the failed one never happened.
    from engine.lora import patcher as patcher_module

    fresh = snapshot_weights(pipe)
    patcher = patcher_for(pipe)
    patcher.apply([spec(lora_pool["locon_diffusers"], 0.8)])
    with_locon = snapshot_weights(pipe)
    real, calls = patcher_module.contribution_delta, []

    def out_of_memory_on_the_50th(*args, **kwargs):
        calls.append(1)
        if len(calls) == 50:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(patcher_module, "contribution_delta", out_of_memory_on_the_50th)
    with pytest.raises(RuntimeError, match="out of memory"):
        patcher.apply([spec(lora_pool["locon_diffusers"], 0.8), spec(lora_pool["dora"], -0.5)])
    monkeypatch.undo()
    assert len(calls) == 50
    assert_bit_identical(fresh, snapshot_weights(pipe))
    assert patcher.active == () and patcher.touched_params == 0
    patcher.apply([spec(lora_pool["locon_diffusers"], 0.8)])
    assert_bit_identical(with_locon, snapshot_weights(pipe))


def test_unchanged_set_costs_nothing(pipe, patcher_for, spec, lora_pool, monkeypatch):
    patcher = patcher_for(pipe)
    specs = [spec(lora_pool["lokr"], 0.8), spec(lora_pool["dora"], -0.4)]
    first = patcher.apply(specs)
    written, cache_stats = patcher.stats.params_written, vars(patcher.cache.stats).copy()

    def forbidden(*args, **kwargs):
        raise AssertionError("tensor work for an unchanged set")

    monkeypatch.setattr(LoraModule, "delta", forbidden)
    monkeypatch.setattr(torch.Tensor, "copy_", forbidden)
    with pytest.raises(AssertionError):  # the hook is live
        torch.zeros(1).copy_(torch.ones(1))
    again = patcher.apply([*list(specs), spec(lora_pool["loha"], 0.0)])
    monkeypatch.undo()
    assert patcher.stats.unchanged_applies == 1
    assert patcher.stats.params_written == written
    assert vars(patcher.cache.stats) == cache_stats
    assert [r.matched_modules for r in again[:2]] == [r.matched_modules for r in first]
    assert again[2].applied is False


def test_changing_the_set_rewrites_only_what_changed(pipe, patcher_for, spec, lora_pool):
    pristine = snapshot_weights(pipe)
    patcher = patcher_for(pipe)
    patcher.apply([spec(lora_pool["locon_cp"], 1.0)])  # attention + resnet convs
    locon_params = patcher.touched_params
    patcher.apply([spec(lora_pool["lora_sgm"], 1.0)])  # attention only
    after = snapshot_weights(pipe)
    conv_names = [k for k in pristine if ".resnets." in k and k.endswith("conv1.weight")]
    assert conv_names and not changed_weights({k: pristine[k] for k in conv_names}, {k: after[k] for k in conv_names})
    assert patcher.stats.params_restored == locon_params - patcher.touched_params
    written = patcher.stats.params_written
    patcher.apply([spec(lora_pool["lora_sgm"], 1.0), spec(lora_pool["loha"], 0.0)])
    assert patcher.stats.params_written == written  # weight-0 addition: nothing to redo


def test_cache_hit_needs_no_file(pipe, patcher_for, spec, tmp_path):
    path = write_tiny_lora(tmp_path / "gone.safetensors", pipe, variant="loha", seed=8)
    other = write_tiny_lora(tmp_path / "other.safetensors", pipe, seed=9)
    patcher = patcher_for(pipe)
    patcher.apply([spec(path, 0.9)])
    expected = snapshot_weights(pipe)
    path.unlink()
    patcher.apply([spec(other, 1.0)])
    patcher.apply([spec(path, 0.9)])  # from the cache: the file is gone
    assert_bit_identical(expected, snapshot_weights(pipe))
    stats = patcher.cache.stats
    assert (stats.loads, stats.hits) == (2, 1)


def test_non_finite_weight_is_refused(pipe, patcher_for, spec, lora_pool):
    with pytest.raises(WeightError):
        patcher_for(pipe).apply([spec(lora_pool["lora_sgm"], float("nan"))])


def test_pristine_on_cpu_and_separate_compute_device(lora_pool, spec):
    pipe = build_tiny_pipeline(0).to(dtype=torch.float16)
    fresh = snapshot_weights(pipe)
    patcher = LoraPatcher(pipe, LoraCache(4), compute_device="cpu", pristine_on_cpu=True)
    patcher.apply([spec(lora_pool["dora"], 0.5)])
    assert patcher.pristine_bytes > 0
    assert changed_weights(fresh, snapshot_weights(pipe))
    patcher.restore()
    assert_bit_identical(fresh, snapshot_weights(pipe))


def test_file_identity_key_when_no_hash(pipe, patcher_for, tmp_path):
    path = write_tiny_lora(tmp_path / "nohash.safetensors", pipe, seed=5)
    patcher = patcher_for(pipe)
    assert patcher.pipe is pipe
    reports = patcher.apply([LoraSpec.from_file(path, 1.0)])
    assert reports[0].key.startswith("file:") and reports[0].name == "nohash"
    assert patcher.active == ((reports[0].key, 1.0),)


@pytest.mark.parametrize("use_dora", [False, True])
def test_lora_saved_by_diffusers_training_scripts_matches_peft_merge(tmp_path, use_dora):
    # What train_dreambooth_lora_sdxl.py writes: peft state dicts passed through
    # convert_state_dict_to_diffusers (text-encoder attention becomes `.lora_linear_layer.`,
    # the MLP stays `.lora_A`), CLIP-L named without `text_model.` under transformers 5,
    # every alpha only in `lora_adapter_metadata`. peft's own merge is the reference.
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
    from peft.tuners.tuners_utils import BaseTunerLayer

    source = build_tiny_pipeline(0)
    unet_config = LoraConfig(r=4, lora_alpha=8, use_dora=use_dora, init_lora_weights="gaussian",
                             target_modules=["to_q", "to_k", "to_v", "to_out.0", "proj_in", "conv1"],
                             alpha_pattern={"to_q": 2})
    text_config = LoraConfig(r=2, lora_alpha=6, use_dora=use_dora, init_lora_weights="gaussian",
                             target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc1"])
    source.unet.add_adapter(unet_config)
    inject_adapter_in_model(text_config, source.text_encoder)
    inject_adapter_in_model(text_config, source.text_encoder_2)
    components = ("unet", "text_encoder", "text_encoder_2")
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for component in components:
            for name, param in getattr(source, component).named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    layers = {c: convert_state_dict_to_diffusers(get_peft_model_state_dict(getattr(source, c))) for c in components}
    StableDiffusionXLPipeline.save_lora_weights(
        tmp_path, unet_lora_layers=layers["unet"], text_encoder_lora_layers=layers["text_encoder"],
        text_encoder_2_lora_layers=layers["text_encoder_2"], unet_lora_adapter_metadata=unet_config.to_dict(),
        text_encoder_lora_adapter_metadata=text_config.to_dict(),
        text_encoder_2_lora_adapter_metadata=text_config.to_dict(), safe_serialization=True,
    )
    path = tmp_path / "pytorch_lora_weights.safetensors"
    for component in components:
        for module in getattr(source, component).modules():
            if isinstance(module, BaseTunerLayer):
                module.merge()
    expected = {
        f"{c}.{n.replace('.base_layer', '')}": p.detach()
        for c in components
        for n, p in getattr(source, c).named_parameters()
        if "lora_" not in n
    }

    ours = build_tiny_pipeline(0)
    [report] = LoraPatcher(ours, LoraCache(2)).apply([LoraSpec.from_file(path, 1.0)])
    assert report.unmatched_keys == [] and report.targets["text_encoder"] > 0
    got, base = snapshot_weights(ours), snapshot_weights(build_tiny_pipeline(0))
    changed = [k for k, v in expected.items() if not torch.equal(v, base[k])]
    assert any(k.startswith("text_encoder.") for k in changed)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=key)
