"""Parsing LoRA files and the ΔW maths of every supported algorithm."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.errors import CorruptFileError, LoraFormatError, UnsafeFileError
from engine.kinds import FileKind
from engine.lora.formats import dora_weight, load_lora, parse_state_dict, split_key
from engine.testing.lora_files import write_tiny_lora

ATTN_Q = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"
CONV3 = "lora_unet_input_blocks_1_0_in_layers_2"
CONV3_DIFFUSERS = "lora_unet_down_blocks_0_resnets_0_conv1"
Q_PATH = ("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q")
CONV_PATH = ("unet", "down_blocks.0.resnets.0.conv1")


def _weight(pipe, path):
    component, name = path
    return getattr(pipe, component).get_submodule(name).weight


def _apply_one(pipe, patcher_for, spec, path, weight):
    patcher = patcher_for(pipe)
    patcher.apply([spec(path, weight)])
    return patcher


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float64)


# -- kinds and parsing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("lora_sgm", FileKind.LORA),
        ("locon_diffusers", FileKind.LOCON),
        ("locon_cp", FileKind.LOCON),
        ("loha", FileKind.LOHA),
        ("loha_tucker", FileKind.LOHA),
        ("lokr", FileKind.LOKR),
        ("dora", FileKind.DORA),
        ("peft", FileKind.LOCON),
        ("peft_dora", FileKind.DORA),
        ("peft_base_model", FileKind.LORA),
    ],
)
def test_file_kind(lora_pool, name, kind):
    parsed = load_lora(lora_pool[name])
    assert parsed.kind is kind
    assert parsed.unparsed_keys == []
    assert parsed.name == name


def test_every_key_of_every_dialect_splits():
    keys = {
        "lora_unet_input_blocks_4_1_proj_in.lora_down.weight": ("lora_unet_input_blocks_4_1_proj_in", "down"),
        "unet.down_blocks.1.attentions.0.proj_in.lora_A.weight": ("unet.down_blocks.1.attentions.0.proj_in", "down"),
        "unet.down_blocks.1.attentions.0.proj_in.lora.up.weight": ("unet.down_blocks.1.attentions.0.proj_in", "up"),
        "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight": (
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", "down"),
        "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.up.weight": (
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0", "up"),
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.down.weight": (
            "text_encoder.text_model.encoder.layers.0.self_attn.q_proj", "down"),
        "base_model.model.mid_block.attentions.0.proj_out.lora_B.weight": ("mid_block.attentions.0.proj_out", "up"),
        "lora_te2_text_model_encoder_layers_0_mlp_fc1.alpha": ("lora_te2_text_model_encoder_layers_0_mlp_fc1", "alpha"),
        "x.hada_w1_a": ("x", "hada_w1_a"),
        "x.lokr_w2_b": ("x", "lokr_w2_b"),
        "x.diff_b": ("x", "diff_b"),
        "x.diff": ("x", "diff"),
        "x.lora_magnitude_vector": ("x", "magnitude"),
        "x.dora_scale": ("x", "dora_scale"),
    }
    for key, expected in keys.items():
        assert split_key(key) == expected, key
    assert split_key("bundle_emb.mytoken.string_to_param.*") is None


def test_legacy_diffusers_processor_format_parses_to_modules():
    base = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor"
    state = {
        f"{base}.to_q_lora.down.weight": torch.ones(2, 64),
        f"{base}.to_q_lora.up.weight": torch.ones(64, 2),
        f"{base}.to_out_lora.down.weight": torch.ones(2, 64),
        f"{base}.to_out_lora.up.weight": torch.ones(64, 2),
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.down.weight": torch.ones(2, 32),
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.up.weight": torch.ones(32, 2),
    }
    parsed = parse_state_dict(state, name="legacy")
    assert set(parsed.modules) == {
        "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
        "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0",
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj",
    }
    assert parsed.kind is FileKind.LORA


def test_incomplete_and_unknown_keys_are_reported_not_applied():
    state = {
        "lora_unet_a.lora_down.weight": torch.ones(2, 4),  # no lora_up
        "lora_unet_b.alpha": torch.tensor(2.0),  # alpha alone
        "bundle_emb.tok.string_to_param.*": torch.ones(1, 8),  # bundled embedding
        "lora_unet_c.lora_down.weight": torch.ones(2, 4),
        "lora_unet_c.lora_up.weight": torch.ones(4, 2),
    }
    parsed = parse_state_dict(state, name="partial")
    assert set(parsed.modules) == {"lora_unet_c"}
    assert parsed.unparsed_keys == sorted(
        ["lora_unet_a.lora_down.weight", "lora_unet_b.alpha", "bundle_emb.tok.string_to_param.*"]
    )


@pytest.mark.parametrize(
    ("key", "algorithm"),
    [("lora_unet_x.a1.weight", "GLoRA"), ("lora_unet_x.oft_blocks", "OFT"), ("lora_unet_x.on_input", "IA3")],
)
def test_unsupported_algorithms_are_refused(tmp_path, key, algorithm):
    path = tmp_path / "odd.safetensors"
    save_file({key: torch.ones(2, 2), "lora_unet_y.lora_down.weight": torch.ones(1, 2)}, str(path))
    with pytest.raises(LoraFormatError) as info:
        load_lora(path)
    assert "odd" in str(info.value) and algorithm in str(info.value)
    assert "odd" in info.value.localized("zh-TW")


def test_non_finite_tensors_are_refused(tmp_path):
    path = tmp_path / "nan.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.tensor([[float("nan"), 1.0]]),
               "lora_unet_x.lora_up.weight": torch.ones(2, 1)}, str(path))
    with pytest.raises(LoraFormatError, match="NaN"):
        load_lora(path)


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_float8_files_parse_and_their_nans_are_still_caught(tmp_path, dtype):
    # torch has no isfinite for float8: such a file used to fail with NotImplementedError.
    good = tmp_path / "fp8.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.ones(2, 4).to(dtype),
               "lora_unet_x.lora_up.weight": torch.full((4, 2), 0.5).to(dtype)}, str(good))
    module = load_lora(good).modules["lora_unet_x"]
    assert module.delta("weight", (4, 4)).eq(1.0).all()
    bad = tmp_path / "fp8-nan.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.tensor([[float("nan"), 1.0]]).to(dtype),
               "lora_unet_x.lora_up.weight": torch.ones(2, 1).to(dtype)}, str(bad))
    with pytest.raises(LoraFormatError, match="NaN"):
        load_lora(bad)


def test_pickles_and_broken_files_are_refused(tmp_path):
    pickled = tmp_path / "old.ckpt"
    pickled.write_bytes(b"\x80\x04not really")
    with pytest.raises(UnsafeFileError):
        load_lora(pickled)
    truncated = tmp_path / "cut.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.ones(64, 64)}, str(truncated))
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(CorruptFileError):
        load_lora(truncated)
    with pytest.raises(CorruptFileError):
        load_lora(tmp_path / "missing.safetensors")


# -- maths against direct reference computations --------------------------------------------


def test_lora_and_alpha_scale(pipe, patcher_for, spec, lora_pool):
    raw = load_file(str(lora_pool["lora_sgm"]))
    w0 = _f64(_weight(pipe, Q_PATH).detach().clone())
    _apply_one(pipe, patcher_for, spec, lora_pool["lora_sgm"], 0.6)
    scale = float(raw[f"{ATTN_Q}.alpha"]) / raw[f"{ATTN_Q}.lora_down.weight"].shape[0]
    assert scale == 0.5
    ref = _f64(raw[f"{ATTN_Q}.lora_up.weight"]) @ _f64(raw[f"{ATTN_Q}.lora_down.weight"]) * scale
    torch.testing.assert_close(_f64(_weight(pipe, Q_PATH)), w0 + 0.6 * ref, rtol=0, atol=1e-6)


def test_locon_cp_decomposition(pipe, patcher_for, spec, lora_pool):
    raw = load_file(str(lora_pool["locon_cp"]))
    up, mid, down = (_f64(raw[f"{CONV3}.lora_{r}.weight"]) for r in ("up", "mid", "down"))
    assert mid.shape[2:] == (3, 3) and down.shape[2:] == (1, 1)
    w0 = _f64(_weight(pipe, CONV_PATH).detach().clone())
    _apply_one(pipe, patcher_for, spec, lora_pool["locon_cp"], -0.8)
    ref = torch.zeros_like(w0)
    for h in range(3):
        for w in range(3):  # each kernel tap is a plain low-rank product
            ref[:, :, h, w] = up.flatten(1) @ mid[:, :, h, w] @ down.flatten(1)
    ref *= float(raw[f"{CONV3}.alpha"]) / down.shape[0]
    torch.testing.assert_close(_f64(_weight(pipe, CONV_PATH)), w0 - 0.8 * ref, rtol=0, atol=1e-6)


def test_loha_hadamard_product(pipe, patcher_for, spec, lora_pool):
    raw = load_file(str(lora_pool["loha"]))
    t = {k.rsplit(".", 1)[1]: _f64(v) for k, v in raw.items() if k.startswith(ATTN_Q + ".")}
    w0 = _f64(_weight(pipe, Q_PATH).detach().clone())
    _apply_one(pipe, patcher_for, spec, lora_pool["loha"], 0.9)
    rank = t["hada_w1_b"].shape[0]
    ref = (t["hada_w1_a"] @ t["hada_w1_b"]) * (t["hada_w2_a"] @ t["hada_w2_b"]) * (float(t["alpha"]) / rank)
    torch.testing.assert_close(_f64(_weight(pipe, Q_PATH)), w0 + 0.9 * ref, rtol=0, atol=1e-6)


def test_loha_tucker(pipe, patcher_for, spec, lora_pool):
    raw = load_file(str(lora_pool["loha_tucker"]))
    t = {k.rsplit(".", 1)[1]: _f64(v) for k, v in raw.items() if k.startswith(CONV3_DIFFUSERS + ".")}
    assert "hada_t1" in t and "alpha" not in t
    w0 = _f64(_weight(pipe, CONV_PATH).detach().clone())
    _apply_one(pipe, patcher_for, spec, lora_pool["loha_tucker"], 1.0)
    ref = torch.zeros_like(w0)
    for h in range(3):
        for w in range(3):
            m1 = t["hada_w1_a"].T @ t["hada_t1"][:, :, h, w] @ t["hada_w1_b"]
            m2 = t["hada_w2_a"].T @ t["hada_t2"][:, :, h, w] @ t["hada_w2_b"]
            ref[:, :, h, w] = m1 * m2
    torch.testing.assert_close(_f64(_weight(pipe, CONV_PATH)), w0 + ref, rtol=0, atol=1e-6)


def test_lokr_kronecker_linear_and_conv(pipe, patcher_for, spec, lora_pool):
    raw = load_file(str(lora_pool["lokr"]))
    q = {k.rsplit(".", 1)[1]: v.double().numpy() for k, v in raw.items() if k.startswith(ATTN_Q + ".")}
    c = {k.rsplit(".", 1)[1]: v.double().numpy() for k, v in raw.items() if k.startswith(CONV3 + ".")}
    wq0 = _weight(pipe, Q_PATH).detach().double().numpy().copy()
    wc0 = _weight(pipe, CONV_PATH).detach().double().numpy().copy()
    _apply_one(pipe, patcher_for, spec, lora_pool["lokr"], 0.5)

    # linear: full w1, decomposed w2 -> scale alpha / rank of w2
    assert "lokr_w1" in q and "lokr_w2_a" in q
    ref_q = np.kron(q["lokr_w1"], q["lokr_w2_a"] @ q["lokr_w2_b"]) * (q["alpha"] / q["lokr_w2_b"].shape[0])
    np.testing.assert_allclose(_weight(pipe, Q_PATH).detach().double().numpy(), wq0 + 0.5 * ref_q, rtol=0, atol=1e-6)

    # conv: decomposed w1 broadcast over the kernel, full 4-D w2 -> scale alpha / rank of w1
    w1 = c["lokr_w1_a"] @ c["lokr_w1_b"]
    w2 = c["lokr_w2"]
    ref_c = np.kron(w1[:, :, None, None], w2) * (c["alpha"] / c["lokr_w1_b"].shape[0])
    np.testing.assert_allclose(_weight(pipe, CONV_PATH).detach().double().numpy(), wc0 + 0.5 * ref_c, rtol=0, atol=1e-6)


def test_lokr_with_both_factors_full_ignores_alpha():
    w1, w2 = torch.randn(2, 2), torch.randn(3, 4)
    parsed = parse_state_dict({"m.lokr_w1": w1, "m.lokr_w2": w2, "m.alpha": torch.tensor(1.0)}, name="full")
    module = parsed.modules["m"]
    assert module.scale == 1.0
    torch.testing.assert_close(module.delta("weight", (6, 8)), torch.kron(w1, w2))


def _dora_reference(w0, delta, magnitude, weight, axis):
    v = w0 + delta
    if axis == "output":
        norm = v.reshape(v.shape[0], -1).norm(dim=1).reshape(-1, *[1] * (v.dim() - 1))
        m = magnitude.reshape(norm.shape)
    else:
        norm = v.transpose(0, 1).reshape(v.shape[1], -1).norm(dim=1).reshape(1, -1, *[1] * (v.dim() - 2))
        m = magnitude.reshape(norm.shape)
    return w0 + weight * (v * m / norm - w0)


@pytest.mark.parametrize(("name", "axis"), [("dora", "output"), ("dora_input_axis", "input")])
@pytest.mark.parametrize("weight", [1.0, 0.4, -0.7])
def test_dora_weight_decomposition(pipe, patcher_for, spec, lora_pool, name, axis, weight):
    raw = load_file(str(lora_pool[name]))
    paths = {ATTN_Q: Q_PATH, CONV3: CONV_PATH}
    before = {key: _f64(_weight(pipe, path).detach().clone()) for key, path in paths.items()}
    _apply_one(pipe, patcher_for, spec, lora_pool[name], weight)
    for key, path in paths.items():
        up, down = _f64(raw[f"{key}.lora_up.weight"]), _f64(raw[f"{key}.lora_down.weight"])
        w0 = before[key]
        delta = (up.flatten(1) @ down.flatten(1)).reshape(w0.shape)  # no alpha: scale 1
        scale = _f64(raw[f"{key}.dora_scale"])
        assert scale.shape[0 if axis == "output" else 1] == w0.shape[0 if axis == "output" else 1]
        ref = _dora_reference(w0, delta, scale, weight, axis)
        torch.testing.assert_close(_f64(_weight(pipe, path)), ref, rtol=0, atol=2e-6)


def test_peft_dora_matches_peft_merge():
    """A peft DoRA layer, merged by peft itself, equals our application at weight 1."""
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(6, 5)
            self.conv = torch.nn.Conv2d(3, 4, 3)

    net = Net()
    originals = {"lin": net.lin.weight.detach().clone(), "conv": net.conv.weight.detach().clone()}
    config = LoraConfig(r=2, lora_alpha=6, target_modules=["lin", "conv"], use_dora=True, init_lora_weights=False)
    net = inject_adapter_in_model(config, net)
    with torch.no_grad():
        for layer in (net.lin, net.conv):
            magnitude = layer.lora_magnitude_vector["default"].weight
            magnitude.mul_(1 + 0.3 * torch.randn_like(magnitude))
    state = {f"unet.{k}": v.detach().clone() for k, v in get_peft_model_state_dict(net).items()}
    header = {"lora_adapter_metadata": json.dumps({"unet.r": 2, "unet.lora_alpha": 6})}
    parsed = parse_state_dict(state, name="peft-dora", metadata=header)
    for layer_name, layer in (("lin", net.lin), ("conv", net.conv)):
        module = parsed.modules[f"unet.{layer_name}"]
        assert module.scale == 3.0
        ours = originals[layer_name] + dora_weight(module, originals[layer_name], multiplier=1.0)
        layer.merge(adapter_names=["default"])
        torch.testing.assert_close(ours, layer.base_layer.weight.detach(), rtol=1e-5, atol=1e-6)


# -- alpha from peft metadata -----------------------------------------------------------------


def _peft_state(rank=4):
    return {
        "unet.a.proj.lora_A.weight": torch.ones(rank, 3),
        "unet.a.proj.lora_B.weight": torch.ones(5, rank),
        "unet.b.to_q.lora_A.weight": torch.ones(rank, 3),
        "unet.b.to_q.lora_B.weight": torch.ones(5, rank),
        "text_encoder.text_model.q_proj.lora_A.weight": torch.ones(rank, 3),
        "text_encoder.text_model.q_proj.lora_B.weight": torch.ones(5, rank),
    }


def test_peft_alpha_defaults_to_rank_without_metadata():
    parsed = parse_state_dict(_peft_state(), name="p")
    assert {m.scale for m in parsed.modules.values()} == {1.0}


def test_peft_alpha_and_patterns_from_diffusers_metadata():
    config = {
        "unet.r": 4, "unet.lora_alpha": 8, "unet.alpha_pattern": {"to_q": 2},
        "text_encoder.r": 4, "text_encoder.lora_alpha": 4, "text_encoder.use_rslora": True,
    }
    parsed = parse_state_dict(_peft_state(), name="p", metadata={"lora_adapter_metadata": json.dumps(config)})
    assert parsed.modules["unet.a.proj"].scale == 2.0
    assert parsed.modules["unet.b.to_q"].scale == 0.5
    assert parsed.modules["text_encoder.text_model.q_proj"].scale == pytest.approx(4 / math.sqrt(4))


def test_a_hostile_alpha_pattern_cannot_make_the_match_backtrack():
    # A pattern from the file is a stranger's regex: "(a+)+$"-style nesting against a long
    # module name backtracks for ages. Only module paths ("down_blocks.1.to_q") are
    # patterns; anything else is matched as the literal text it is.
    import time

    long_name = {f"unet.{'a' * 40}_x.lora_A.weight": torch.ones(4, 3), f"unet.{'a' * 40}_x.lora_B.weight": torch.ones(5, 4)}
    config = {"unet.lora_alpha": 8, "unet.alpha_pattern": {"(a+)+$": 2, "(a|a)*b": 3}}
    started = time.perf_counter()
    parsed = parse_state_dict(long_name, name="p", metadata={"lora_adapter_metadata": json.dumps(config)})
    assert time.perf_counter() - started < 1.0
    assert {m.scale for m in parsed.modules.values()} == {2.0}  # alpha 8 / rank 4: no pattern matched


def test_conv_1x1_lora_fits_linear_projection():
    down, up = torch.randn(2, 64, 1, 1), torch.randn(64, 2, 1, 1)
    parsed = parse_state_dict({"m.lora_down.weight": down, "m.lora_up.weight": up}, name="sd15-style")
    module = parsed.modules["m"]
    assert module.fits("weight", (64, 64)) and module.fits("weight", (64, 64, 1, 1))
    assert not module.fits("weight", (64, 32)) and not module.fits("weight", (32, 128))
    torch.testing.assert_close(module.delta("weight", (64, 64)), up.flatten(1) @ down.flatten(1))


def test_full_weight_and_bias_diffs(pipe, patcher_for, tmp_path, spec):
    layer = pipe.unet.get_submodule("mid_block.attentions.0.proj_out")
    diff, diff_b = torch.randn(64, 64) * 0.01, torch.randn(64) * 0.01
    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    path = tmp_path / "diff.safetensors"
    save_file({"lora_unet_middle_block_1_proj_out.diff": diff, "lora_unet_middle_block_1_proj_out.diff_b": diff_b},
              str(path))
    _apply_one(pipe, patcher_for, spec, path, 2.0)
    torch.testing.assert_close(layer.weight.detach(), w0 + 2 * diff, rtol=0, atol=1e-7)
    torch.testing.assert_close(layer.bias.detach(), b0 + 2 * diff_b, rtol=0, atol=1e-7)


def test_alpha_zero_means_no_scaling(tmp_path, pipe):
    path = write_tiny_lora(tmp_path / "a0.safetensors", pipe, alpha=0.0, text_encoders=False)
    assert {m.scale for m in load_lora(path).modules.values()} == {1.0}


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps({"unet.lora_alpha": "abc"}),
        json.dumps({"unet.lora_alpha": [8]}),
        json.dumps({"unet.lora_alpha": 10**400}),
        '{"unet.lora_alpha": 1e999}',
        json.dumps({"unet.lora_alpha": 8, "unet.alpha_pattern": {"(": 2}}),
        "[" * 100_000,
        json.dumps({"unet.lora_alpha": 1e308, "unet.use_rslora": True}),  # overflows times sqrt(r)
    ],
)
def test_peft_metadata_that_is_not_peft_config_is_ignored(raw):
    # found by tests/fuzz: these raised ValueError, TypeError, OverflowError, re.error or
    # RecursionError out of parse_state_dict; alpha now falls back to the rank
    parsed = parse_state_dict(_peft_state(), name="p", metadata={"lora_adapter_metadata": raw})
    assert parsed.modules["unet.a.proj"].scale == (2.0 if "alpha_pattern" in raw else 1.0)
