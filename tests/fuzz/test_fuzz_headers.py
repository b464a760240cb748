"""Fuzzing what a model file says about itself: the safetensors header, kohya/LyCORIS
`ss_*` metadata, and the tensor names that tell a LoRA's kind and architecture."""

from __future__ import annotations

import json
import math
import struct
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import LoracleError
from engine.files.header import DTYPE_BITS, MAX_HEADER_BYTES, TensorInfo, read_header
from engine.files.lora_classify import lora_modules
from engine.files.modelfile import ModelFileInfo, detect_architecture, detect_kind, inspect_path
from engine.files.training import TrainingMetadata, parse_training_metadata
from engine.kinds import Architecture, FileKind
from engine.lora.formats import split_key
from tests.fuzz._support import json_values, own_errors_only

# --- writing files --------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One file rewritten per example: Hypothesis refuses function-scoped fixtures.
    return tmp_path_factory.mktemp("fuzz-headers") / "model.safetensors"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _file(header: bytes, data: bytes = b"", declared: int | None = None) -> bytes:
    n = len(header) if declared is None else declared
    return n.to_bytes(8, "little") + header + data


# --- tensors that tile the data section -----------------------------------------------

_dtypes = st.sampled_from(sorted(DTYPE_BITS))
_small_shapes = st.lists(st.integers(0, 6), max_size=4)


@st.composite
def valid_tensor_maps(
    draw: st.DrawFn, names: st.SearchStrategy[str] | None = None
) -> dict[str, tuple[str, list[int]]]:
    names = names or st.text(min_size=1, max_size=30).filter(lambda n: n != "__metadata__")
    entries = draw(st.dictionaries(names, st.tuples(_dtypes, _small_shapes), max_size=8))
    # sub-byte dtypes must fill whole bytes, as the spec (and we) require
    return {n: (d, s) for n, (d, s) in entries.items() if (math.prod(s) * DTYPE_BITS[d]) % 8 == 0}


def _layout(tensors: dict[str, tuple[str, list[int]]]) -> tuple[dict[str, dict[str, object]], int]:
    entries, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * DTYPE_BITS[dtype] // 8
        entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    return entries, offset


_string_metadata = st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=6)


def _encode(header: dict[str, object], pad: int = 0) -> bytes:
    # surrogatepass: generated text may hold lone surrogates; a real file would then hold
    # invalid UTF-8, which the reader must refuse cleanly too
    return json.dumps(header, ensure_ascii=False).encode("utf-8", "surrogatepass") + b" " * pad


# --- read_header ----------------------------------------------------------------------


@given(data=st.binary(max_size=600))
def test_random_bytes_are_refused_with_our_errors(scratch, data):
    result = own_errors_only(read_header, _write(scratch, data))
    if not isinstance(result, LoracleError):
        # only a well-formed file passes: the header JSON fits the declared length
        assert 8 + result.header_size + sum(t.nbytes for t in result.tensors.values()) == len(data)


@given(prefix=st.binary(min_size=8, max_size=8), rest=st.binary(max_size=300))
def test_random_length_prefixes(scratch, prefix, rest):
    own_errors_only(read_header, _write(scratch, prefix + rest))


@given(
    declared=st.integers(0, 2**64 - 1)
    | st.sampled_from([MAX_HEADER_BYTES, MAX_HEADER_BYTES + 1, 2**63, 2**64 - 1]),
    body=st.binary(max_size=64),
)
def test_declared_length_never_drives_memory(scratch, declared, body):
    path = _write(scratch, _file(b"{" + body, declared=declared))
    tracemalloc.start()
    try:
        own_errors_only(read_header, path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # bounded by the file, never by what it claims


@given(header=st.dictionaries(st.text(max_size=12), json_values, max_size=6), data=st.binary(max_size=64))
def test_random_json_headers(scratch, header, data):
    own_errors_only(read_header, _write(scratch, _file(_encode(header), data)))


_junk_entry = st.fixed_dictionaries(
    {},
    optional={
        "dtype": _dtypes | json_values,
        "shape": st.lists(st.integers(-3, 2**65) | json_values, max_size=20) | json_values,
        "data_offsets": st.lists(st.integers(-(2**65), 2**65) | json_values, max_size=3) | json_values,
    },
)


@given(
    entries=st.dictionaries(st.text(max_size=12), _junk_entry | json_values, max_size=5),
    metadata=json_values,
    data=st.binary(max_size=64),
)
def test_random_dtypes_shapes_offsets(scratch, entries, metadata, data):
    header = {**entries, "__metadata__": metadata}
    result = own_errors_only(read_header, _write(scratch, _file(_encode(header), data)))
    if not isinstance(result, LoracleError):
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in result.metadata.items())
        for info in result.tensors.values():
            assert info.dtype in DTYPE_BITS
            assert 0 <= info.start <= info.end <= result.data_size


@given(tensors=valid_tensor_maps(), metadata=_string_metadata, pad=st.integers(0, 8))
def test_valid_files_read_back_exactly(scratch, tensors, metadata, pad):
    entries, size = _layout(tensors)
    header = {"__metadata__": metadata, **entries} if metadata else entries
    path = _write(scratch, _file(_encode(header, pad), bytes(size)))
    parsed = read_header(path)
    assert parsed.metadata == metadata
    assert {n: (t.dtype, list(t.shape)) for n, t in parsed.tensors.items()} == tensors
    assert parsed.data_size == size


@given(tensors=valid_tensor_maps(), metadata=_string_metadata, data=st.data())
def test_the_reference_loader_accepts_what_we_accept(scratch, tensors, metadata, data):
    # We refuse early what diffusers' loader (safetensors) would refuse mid-generation;
    # the converse matters too: a file we accept must open there.
    from safetensors import safe_open

    entries, size = _layout(tensors)
    header = {"__metadata__": metadata, **entries} if metadata else entries
    raw = _file(_encode(header), bytes(size))
    cut = data.draw(st.integers(0, len(raw)), label="length kept")
    path = _write(scratch, raw[:cut])
    result = own_errors_only(read_header, path)
    if isinstance(result, LoracleError):
        return
    with safe_open(str(path), framework="numpy") as handle:
        assert set(handle.keys()) == set(tensors)


@given(tensors=valid_tensor_maps(), data=st.data())
def test_truncated_files_are_corrupt(scratch, tensors, data):
    entries, size = _layout(tensors)
    raw = _file(_encode(entries), bytes(size))
    cut = data.draw(st.integers(0, len(raw) - 1), label="length kept")
    result = own_errors_only(read_header, _write(scratch, raw[:cut]))
    assert isinstance(result, LoracleError)


# --- kohya / LyCORIS training metadata --------------------------------------------------

_SS_KEYS = [
    "ss_base_model_version", "ss_sd_model_name", "ss_new_sd_model_hash", "ss_sd_model_hash",
    "ss_output_name", "ss_network_module", "ss_network_dim", "ss_network_alpha", "ss_network_args",
    "ss_training_comment", "ss_tag_frequency", "ss_resolution", "ss_datasets", "ss_v2",
    "ss_v_parameterization", "ss_zero_terminal_snr", "ss_clip_skip", "modelspec.architecture",
    "modelspec.resolution", "modelspec.prediction_type", "modelspec.trigger_phrase",
    "modelspec.encoder_layer", "software",
]  # fmt: skip
_JUNK = [
    "", "None", "null", "NaN", "nan", "inf", "-inf", "1e300", "-1e300", "1e999", "9" * 5000, "0x",
    "True", "False", "(1024, 1024)", "1024,1024", "[", "{", "{}", "[]", '"x"', "٣٢", "Dynamic",
    "sdxl_base_v1-0", "sd_1.5", "flux1", "stable-diffusion-xl-v1-base/lora", "\x00", "\ud800",
]  # fmt: skip
_junk_value = (
    st.sampled_from(_JUNK)
    | st.text(max_size=30)
    | json_values.map(lambda v: json.dumps(v))
    | st.integers(1, 200).map(lambda depth: "[" * depth + "]" * depth)
    | st.integers(1, 200).map(lambda depth: '{"a":' * depth + "1" + "}" * depth)
    | st.integers(1, 100_000).map(lambda depth: "[" * depth)  # deep nesting, unterminated
)
_tag_frequency = st.dictionaries(
    st.text(max_size=8),
    st.dictionaries(st.text(max_size=8), json_values, max_size=4) | json_values,
    max_size=3,
).map(json.dumps)


@given(
    metadata=st.dictionaries(
        st.sampled_from(_SS_KEYS) | st.text(max_size=12),
        _junk_value | _tag_frequency,
        max_size=12,
    )
)
def test_training_metadata_never_raises(metadata):
    meta = parse_training_metadata(metadata)
    assert isinstance(meta, TrainingMetadata)
    if meta.network_alpha is not None:
        assert math.isfinite(meta.network_alpha)
    if meta.resolution is not None:
        assert all(64 <= n <= 16384 for n in meta.resolution)
    assert len(meta.tag_frequency) <= 500
    assert all(n > 0 for n in meta.tag_frequency.values())
    # what the library caches must come back the same from its JSON
    assert TrainingMetadata.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta


@given(metadata=st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_training_metadata_of_non_string_values(metadata):
    # safetensors says string -> string; exporters write numbers and objects anyway
    assert isinstance(parse_training_metadata(metadata), TrainingMetadata)


# --- LoRA key names ---------------------------------------------------------------------

_PREFIXES = [
    "", "lora_unet_", "lora_te1_", "lora_te2_", "lora_te_", "lora_transformer_", "lycoris_",
    "base_model.model.", "unet.", "text_encoder.", "text_encoder_2.", "transformer.",
    "model.diffusion_model.", "text_model.", "diffusion_model.", "unet.base_model.model.",
    "text_encoders.clip_l.transformer.",
]  # fmt: skip
_BODIES = [
    "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", "mid_block.attentions.0.proj_in",
    "input_blocks_4_1_proj_in", "output_blocks.2.1.conv", "text_model_encoder_layers_0_mlp_fc1",
    "double_blocks_0_img_attn_qkv", "single_transformer_blocks.3.attn.to_k", "conv_in",
    "down_blocks.1.resnets.0.conv1", "attn2.processor.to_k_lora", "processor.qkv_lora1",
    "joint_blocks_0_x_block_attn_qkv", "x", "",
]  # fmt: skip
_SUFFIXES = [
    ".lora_down.weight", ".lora_up.weight", ".lora_mid.weight", ".alpha", ".lora_A.weight",
    ".lora_B.weight", ".lora_A.default.weight", ".lora.down.weight", ".lora.up.weight",
    ".lora_linear_layer.down.weight", "_lora.up.weight", ".down.weight", ".hada_w1_a", ".hada_w1_b",
    ".hada_w2_a", ".hada_w2_b", ".hada_t1", ".lokr_w1", ".lokr_w2", ".lokr_w2_a", ".lokr_t2",
    ".dora_scale", ".lora_magnitude_vector", ".diff", ".diff_b", ".oft_blocks", ".on_input",
    ".a1.weight", ".weight", ".bias", "",
]  # fmt: skip
key_names = st.builds(
    lambda p, b, s: p + b + s,
    st.sampled_from(_PREFIXES) | st.text(max_size=8),
    st.sampled_from(_BODIES) | st.text(max_size=12),
    st.sampled_from(_SUFFIXES) | st.text(max_size=6),
) | st.sampled_from(["v_pred", "ztsnr", "__metadata__"])
_shapes = st.lists(st.integers(0, 5000), max_size=5).map(tuple)


@st.composite
def tensor_maps(draw: st.DrawFn) -> dict[str, TensorInfo]:
    names = draw(st.lists(key_names, max_size=24, unique=True))
    return {
        n: TensorInfo(dtype=draw(_dtypes), shape=draw(_shapes), start=0, end=draw(st.integers(0, 64)))
        for n in names
    }


@given(tensors=tensor_maps(), metadata=st.dictionaries(st.sampled_from(_SS_KEYS), _junk_value, max_size=4))
def test_lora_key_anatomy_never_raises(tensors, metadata):
    modules = lora_modules(tensors)
    assert set(modules) <= {n.rsplit(".", 1)[0] for n in tensors} | {n for n in modules}
    kind = detect_kind(tensors)
    assert isinstance(kind, FileKind)
    if modules:
        assert kind is not FileKind.UNKNOWN or not any(set(m.parts) - {"alpha"} for m in modules.values())
    arch, evidence = detect_architecture(tensors, parse_training_metadata(metadata))
    assert isinstance(arch, Architecture)
    assert isinstance(evidence, str) and evidence


@given(key=key_names | st.text(max_size=60))
def test_split_key(key):
    found = split_key(key)
    if found is not None:
        alias, role = found
        assert isinstance(alias, str) and isinstance(role, str) and role


# --- the whole inspection, end to end ---------------------------------------------------


@st.composite
def lora_files(draw: st.DrawFn) -> bytes:
    names = draw(
        st.lists(key_names, max_size=16, unique=True).map(lambda ns: [n for n in ns if n != "__metadata__"])
    )
    header: dict[str, object] = {}
    blobs: list[bytes] = []
    offset = 0
    for name in names:
        if name.endswith(".alpha") and draw(st.booleans()):
            dtype, fmt = draw(st.sampled_from([("F32", "<f"), ("F16", "<e"), ("I64", "<q"), ("BF16", None)]))
            raw = draw(
                st.binary(
                    min_size=struct.calcsize(fmt) if fmt else 2, max_size=struct.calcsize(fmt) if fmt else 2
                )
            )
            shape: list[int] = []
        else:
            dtype = draw(st.sampled_from(["F16", "F32", "BF16", "U8"]))
            shape = draw(st.lists(st.integers(0, 8), max_size=4))
            raw = bytes(math.prod(shape) * DTYPE_BITS[dtype] // 8)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    metadata = draw(
        st.dictionaries(st.sampled_from([*_SS_KEYS, "lora_adapter_metadata"]), _junk_value, max_size=5)
    )
    if metadata:
        header["__metadata__"] = metadata
    return _file(_encode(header), b"".join(blobs))


@given(raw=lora_files())
def test_inspection_end_to_end(scratch, raw):
    info = own_errors_only(inspect_path, _write(scratch, raw))
    if isinstance(info, ModelFileInfo):
        # the library caches this as JSON and reads it back on the next start
        again = ModelFileInfo.from_dict(json.loads(json.dumps(info.to_dict())))
        assert again.to_dict() == info.to_dict()
