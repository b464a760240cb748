from __future__ import annotations

import json
import pathlib
import pickle
import struct
import tarfile

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from engine.errors import CorruptFileError, UnsafeFileError
from engine.files.header import (
    MAX_HEADER_BYTES,
    decode_scalar,
    read_header,
    read_scalars,
    read_tensor_bytes,
)
from engine.files.sniff import REFUSED_SUFFIXES, check_not_pickle, is_pickle_file
from tests.factories import model_files as mf


def test_reads_what_the_reference_library_wrote(tmp_path):
    path = tmp_path / "ref.safetensors"
    tensors = {
        "b.weight": np.arange(12, dtype=np.float16).reshape(3, 4),
        "a.alpha": np.array(8.0, dtype=np.float32),
        "c.empty": np.zeros((0,), dtype=np.float32),
    }
    save_file(tensors, path, metadata={"ss_network_dim": "4", "format": "pt"})

    header = read_header(path)

    assert header.metadata == {"ss_network_dim": "4", "format": "pt"}
    assert header.tensors["b.weight"].dtype == "F16"
    assert header.tensors["b.weight"].shape == (3, 4)
    assert header.tensors["b.weight"].nbytes == 24
    assert header.tensors["a.alpha"].shape == ()
    assert header.tensors["c.empty"].shape == (0,)
    assert header.data_offset == 8 + header.header_size
    assert header.file_size == path.stat().st_size
    assert read_scalars(header, ["a.alpha"]) == {"a.alpha": 8.0}


def test_factory_files_read_identically_by_the_reference_library(tmp_path):
    path = mf.write_kohya_lora(tmp_path / "l.safetensors", "sdxl", seed=1)
    header = read_header(path)
    with safe_open(path, framework="numpy") as f:
        assert set(f.keys()) == set(header.tensors)
        assert f.metadata() == header.metadata
        name = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight"
        assert tuple(f.get_slice(name).get_shape()) == header.tensors[name].shape
        assert f.get_tensor(name).dtype == np.float16
        assert float(f.get_tensor(name.replace("lora_down.weight", "alpha"))) == 2.0


def test_metadata_values_that_are_not_strings_are_kept_as_json_text(tmp_path):
    header = {
        "__metadata__": {"n": 1, "nested": {"x": [1, 2]}, "s": "text", "none": None, "flag": True},
        "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
    }
    parsed = read_header(mf.write_raw(tmp_path / "m.safetensors", header, b"\0" * 4))
    assert parsed.metadata == {"n": "1", "nested": '{"x": [1, 2]}', "s": "text", "none": "null", "flag": "true"}


def test_missing_or_odd_metadata_gives_empty_metadata(tmp_path):
    w = {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    assert read_header(mf.write_raw(tmp_path / "a.safetensors", w, b"\0" * 4)).metadata == {}
    odd = {"__metadata__": "not a dict", **w}
    assert read_header(mf.write_raw(tmp_path / "b.safetensors", odd, b"\0" * 4)).metadata == {}


def test_trailing_space_padding_is_allowed(tmp_path):
    raw = json.dumps({"w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}).encode() + b" " * 13
    header = read_header(mf.write_raw(tmp_path / "p.safetensors", raw, b"\1\2"))
    assert header.header_size == len(raw)
    assert header.tensors["w"].end == 2


def test_sub_byte_and_fp8_dtypes_are_understood(tmp_path):
    header = {
        "f8": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]},
        "f4": {"dtype": "F4", "shape": [4], "data_offsets": [4, 6]},
    }
    parsed = read_header(mf.write_raw(tmp_path / "q.safetensors", header, b"\0" * 6))
    assert parsed.tensors["f4"].nbytes == 2


@pytest.mark.parametrize("case", sorted(mf.CORRUPT_WRITERS))
def test_hostile_files_are_refused_as_corrupt_with_a_useful_message(tmp_path, case):
    path = mf.CORRUPT_WRITERS[case](tmp_path / f"{case}.safetensors")
    with pytest.raises(CorruptFileError) as info:
        read_header(path)
    err = info.value
    assert path.name in str(err)
    zh = err.localized("zh-TW")
    assert path.name in zh and zh != str(err)
    assert "{" not in str(err).replace(path.name, "")  # every placeholder was filled


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("empty", "empty"),
        ("short", "too short"),
        ("truncated", "cut short"),
        ("header_beyond_file", "cut short"),
        ("gigantic_header", "more than"),
        ("not_json", "not valid JSON"),
        ("not_object", "array"),
        ("bad_utf8", "UTF-8"),
        ("deeply_nested", "nested"),
        ("offsets_out_of_range", "beyond"),
        ("bad_dtype", "unknown data type 'F128'"),
        ("bad_shape", "shape"),
        ("size_mismatch", "needs 16 bytes"),
        ("overlapping", "overlap"),
        ("gap", "belong to no tensor"),
        ("trailing_bytes", "after its last tensor"),
        ("duplicate_tensor", "belong to no tensor"),
        ("gguf", "GGUF"),
        ("html", "web page"),
    ],
)
def test_each_refusal_says_what_is_wrong(tmp_path, case, words):
    path = mf.CORRUPT_WRITERS[case](tmp_path / f"{case}.safetensors")
    with pytest.raises(CorruptFileError, match=words):
        read_header(path)


def test_headers_above_the_bound_are_refused(tmp_path):
    path = mf.write_kohya_lora(tmp_path / "l.safetensors", "sd1")
    assert MAX_HEADER_BYTES == 100 * 1024 * 1024
    with pytest.raises(CorruptFileError, match="more than the 256 bytes"):
        read_header(path, max_header_bytes=256)


def test_git_lfs_pointer_is_named(tmp_path):
    path = tmp_path / "lfs.safetensors"
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
    with pytest.raises(CorruptFileError, match="Git LFS"):
        read_header(path)


@pytest.mark.parametrize("case", sorted(mf.UNSAFE_WRITERS))
def test_pickles_named_safetensors_are_refused_as_unsafe(tmp_path, case):
    path = mf.UNSAFE_WRITERS[case](tmp_path / "model.safetensors")
    with pytest.raises(UnsafeFileError) as info:
        read_header(path)
    message = str(info.value)
    assert "model.safetensors" in message
    assert "run any code" in message and ".safetensors version" in message
    assert "model.safetensors" in info.value.localized("zh-TW")


class _Tripwire:
    """Unpickling this creates a marker file: proof that nothing unpickled the file."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_a_pickle_is_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(_Tripwire(marker), protocol=4))
    with pytest.raises(UnsafeFileError):
        read_header(path)
    assert is_pickle_file(path)
    assert not marker.exists()


def test_is_pickle_file_sniffs_content_not_names(tmp_path):
    assert is_pickle_file(mf.write_pickle_file(tmp_path / "a.safetensors"))
    assert is_pickle_file(mf.write_zip_file(tmp_path / "b.bin"))
    tar_path = tmp_path / "c.pt"
    with tarfile.open(tar_path, "w") as tf:
        src = tmp_path / "storages"
        src.write_bytes(b"\0" * 10)
        tf.add(src, arcname="storages")
    assert is_pickle_file(tar_path)
    assert not is_pickle_file(mf.write_kohya_lora(tmp_path / "ok.ckpt", "sd1"))
    assert not is_pickle_file(mf.write_empty_file(tmp_path / "empty.pt"))


def test_a_header_length_starting_with_the_pickle_byte_is_not_a_pickle(tmp_path):
    # 0x0280 = 640: the first two bytes of the length are 0x80 0x02, like pickle protocol 2
    raw = json.dumps({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}).encode()
    raw += b" " * (0x0280 - len(raw))
    path = mf.write_raw(tmp_path / "tricky.safetensors", raw, b"\1")
    assert path.read_bytes()[:2] == b"\x80\x02"
    assert not is_pickle_file(path)
    assert read_header(path).tensors["w"].shape == (1,)


def test_check_not_pickle_refuses_by_suffix_and_by_content(tmp_path):
    assert set(REFUSED_SUFFIXES) == {".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"}
    with pytest.raises(UnsafeFileError, match=r"\.ckpt"):
        check_not_pickle(mf.write_kohya_lora(tmp_path / "x.ckpt", "sd1"))
    with pytest.raises(UnsafeFileError, match="zip"):
        check_not_pickle(mf.write_zip_file(tmp_path / "x.model"))
    check_not_pickle(mf.write_kohya_lora(tmp_path / "fine.safetensors", "sd1"))


@pytest.mark.parametrize(("dtype", "value"), [("F16", 0.5), ("BF16", -3.0), ("F32", 16.0), ("F64", 0.125)])
def test_alpha_scalars_are_read_without_loading_tensors(tmp_path, dtype, value):
    path = mf.write_safetensors(
        tmp_path / "s.safetensors",
        {"m.alpha": mf.scalar(value, dtype), "m.lora_down.weight": mf.T("F16", (4, 768))},
    )
    header = read_header(path)
    raw = read_tensor_bytes(header, "m.alpha")
    assert decode_scalar(dtype, raw) == value
    assert read_scalars(header, ["m.alpha", "m.lora_down.weight", "missing"]) == {"m.alpha": value}


def test_read_tensor_bytes_refuses_big_tensors_and_notices_truncation(tmp_path):
    path = mf.write_safetensors(
        tmp_path / "s.safetensors",
        {"a.alpha": mf.scalar(1.0), "z.weight": mf.T("F32", (256,))},
    )
    header = read_header(path)
    with pytest.raises(ValueError, match="max_bytes"):
        read_tensor_bytes(header, "z.weight")
    assert len(read_tensor_bytes(header, "z.weight", max_bytes=1024)) == 1024
    with open(path, "r+b") as f:
        f.truncate(header.data_offset + 2)  # the file shrank after the header was read
    with pytest.raises(CorruptFileError, match="cut short"):
        read_tensor_bytes(header, "a.alpha")


def test_decode_scalar_rejects_unknown_dtypes_and_sizes():
    with pytest.raises(ValueError):
        decode_scalar("F8_E4M3", b"\0")
    with pytest.raises(ValueError):
        decode_scalar("BOOL", b"\1")
    with pytest.raises(ValueError):
        decode_scalar("F32", b"\0\0")
    with pytest.raises(ValueError):
        decode_scalar("I64", b"\0\0\0\0")


@pytest.mark.parametrize(("dtype", "value"), [("I64", 8), ("I32", 16), ("U8", 4), ("I16", -2)])
def test_integer_alpha_scalars_are_read(tmp_path, dtype, value):
    # kohya's svd_merge_lora.py writes `.alpha` as torch.tensor(rank): an I64 scalar
    fmt = {"I64": "<q", "I32": "<i", "U8": "<B", "I16": "<h"}[dtype]
    path = mf.write_safetensors(
        tmp_path / "s.safetensors",
        {"m.alpha": mf.T(dtype, (), struct.pack(fmt, value)), "m.lora_down.weight": mf.T("F16", (4, 768))},
    )
    assert read_scalars(read_header(path), ["m.alpha"]) == {"m.alpha": float(value)}


def test_lone_surrogates_in_metadata_become_encodable_text(tmp_path):
    raw = b'{"__metadata__":{"name":"bad \\ud800 text"},"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    header = read_header(mf.write_raw(tmp_path / "s.safetensors", raw, b"\0"))
    assert header.metadata["name"] == "bad ? text"
    header.metadata["name"].encode("utf-8")


def test_random_damage_only_ever_raises_our_errors(tmp_path):
    import random

    from engine.files.modelfile import inspect_header

    good = mf.write_kohya_lora(tmp_path / "good.safetensors", "sd1", rank=2).read_bytes()
    n = int.from_bytes(good[:8], "little")
    rng = random.Random(1234)
    path = tmp_path / "damaged.safetensors"
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(400):
        data = bytearray(good[: rng.randint(0, len(good))] if rng.random() < 0.2 else good)
        for _ in range(rng.randint(1, 4)):
            if data:
                data[rng.randrange(min(len(data), 8 + n))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        try:
            inspect_header(read_header(path))
        except (CorruptFileError, UnsafeFileError):
            outcomes["refused"] += 1
        else:
            outcomes["ok"] += 1
    assert outcomes["refused"] > 100


def test_factory_random_fill_is_deterministic_small_and_finite(tmp_path):
    tensors = {"w": mf.T("BF16", (1,)), "h": mf.T("F16", (1,))}
    a = read_header(mf.write_safetensors(tmp_path / "a.safetensors", tensors, seed=9))
    b = read_header(mf.write_safetensors(tmp_path / "b.safetensors", tensors, seed=9))
    for name, dtype in (("w", "BF16"), ("h", "F16")):
        value = decode_scalar(dtype, read_tensor_bytes(a, name))
        assert value == decode_scalar(dtype, read_tensor_bytes(b, name))
        assert 0 < abs(value) < 1


@pytest.mark.parametrize("case", ["gap", "trailing_bytes", "duplicate_tensor", "overlapping"])
def test_data_the_tensors_do_not_tile_exactly_is_refused_like_the_reference_loader(tmp_path, case):
    # diffusers and ComfyUI open files with safe_open: a file it refuses must not pass the
    # scan as usable and fail only when someone draws with it
    path = mf.CORRUPT_WRITERS[case](tmp_path / f"{case}.safetensors")
    with pytest.raises(Exception, match=r"offset|covered"), safe_open(path, framework="numpy"):
        pass
    with pytest.raises(CorruptFileError):
        read_header(path)


def test_empty_marker_tensors_and_identical_duplicates_are_fine_as_for_the_reference(tmp_path):
    # NoobAI v-pred checkpoints carry empty `v_pred` / `ztsnr` tensors
    path = mf.write_safetensors(
        tmp_path / "v.safetensors",
        {"w": mf.T("F16", (2, 2)), "v_pred": mf.T("F32", (0,)), "ztsnr": mf.T("F32", (0,))},
    )
    assert set(read_header(path).tensors) == {"w", "v_pred", "ztsnr"}
    raw = b'{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    same = mf.write_raw(tmp_path / "same.safetensors", raw, b"\1")
    with safe_open(same, framework="numpy") as f:
        assert list(f.keys()) == ["w"]
    assert list(read_header(same).tensors) == ["w"]
