from __future__ import annotations

import hashlib
import json
import random

import pytest

from engine.errors import LibraryError
from engine.files.hashing import AUTOV1_LENGTH, AUTOV1_OFFSET, autov2_from_sha256, hash_file, hash_folder
from engine.files.header import read_header
from tests.factories import model_files as mf
from tests.samples import civitai_samples

# (SHA256, AutoV2, AutoV1, AutoV3) of real files as CivitAI reports them, copied from
# the captured API bodies in shared/civitai-samples/ (file named in each comment).
CIVITAI_HASHES = [
    # flux1d-lora-model-version-1387174.json: pp-storybook_rank2_bf16.safetensors
    ("9753338AB693CA82BF89ED77A5D1912879E40051463EC6E330FB9866CE798668", "9753338AB6", "F414C813", "34A22376739D"),
    # illustrious-lora-civitai-info-1421739.json: choke_hold_rnc_ilxl.safetensors
    ("B76A1FC247DB893BC8C1290420F0E96B6F86129576A9FB885C20CB7EDBEFEEA5", "B76A1FC247", "28DFF7EC", "8C0FD69AF3D1"),
    # illustrious-lora-model-1580878.json: Semi_realistic.safetensors
    ("7C0B4B21DAD60CE4E5A3F78D33261F4E556F94042E7FD19FBC8C734A80EC5A81", "7C0B4B21DA", "C8EC7566", "6F5F908A07F3"),
    # sd15-checkpoint-model-1102.json: synthwavepunk_v3Alpha.safetensors
    ("EE2AB6D8723611D9A2FA9B0C8CE5A3770A84189A92B53D5E6CF44B02B9F8E033", "EE2AB6D872", "5D83B27C", None),
]


def _bytes(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.mark.parametrize("chunk_size", [4096, 65_537, 8 * 1024 * 1024])
def test_hashes_match_independent_digests_at_any_chunk_size(tmp_path, chunk_size):
    data = _bytes(AUTOV1_OFFSET + AUTOV1_LENGTH + 12_345)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    data_offset = 1000  # not a multiple of any chunk size: the split falls inside a chunk

    hashes = hash_file(path, data_offset, chunk_size=chunk_size)

    sha = hashlib.sha256(data).hexdigest().upper()
    assert hashes.sha256 == sha
    assert hashes.autov2 == sha[:10]
    assert hashes.autov1 == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8].upper()
    assert hashes.autov3 == hashlib.sha256(data[data_offset:]).hexdigest()[:12].upper()


def test_autov3_is_the_a1111_addnet_hash_of_a_safetensors_file(tmp_path):
    path = mf.write_kohya_lora(tmp_path / "l.safetensors", "sdxl", seed=3)
    raw = path.read_bytes()
    # A1111's addnet_hash_safetensors: skip 8 + the little-endian header length
    n = int.from_bytes(raw[:8], "little")
    expected = hashlib.sha256(raw[8 + n :]).hexdigest()[:12].upper()

    hashes = hash_file(path, read_header(path).data_offset, chunk_size=1000)

    assert hashes.autov3 == expected
    assert hashes.sha256 == hashlib.sha256(raw).hexdigest().upper()


def test_editing_only_the_metadata_keeps_autov3_but_changes_sha256(tmp_path):
    tensors = {"a.lora_down.weight": mf.T("F16", (4, 64)), "a.alpha": mf.scalar(2.0)}
    one = mf.write_safetensors(tmp_path / "1.safetensors", tensors, {"ss_output_name": "one"}, seed=5)
    two = mf.write_safetensors(tmp_path / "2.safetensors", tensors, {"ss_output_name": "renamed"}, seed=5)
    h1 = hash_file(one, read_header(one).data_offset)
    h2 = hash_file(two, read_header(two).data_offset)
    assert h1.autov3 == h2.autov3
    assert h1.sha256 != h2.sha256


def test_small_files_have_no_autov1_and_partial_windows_hash_like_a1111(tmp_path):
    small = tmp_path / "small.bin"
    small.write_bytes(_bytes(AUTOV1_OFFSET))
    assert hash_file(small, None).autov1 is None
    assert hash_file(small, None).autov3 is None

    partial = tmp_path / "partial.bin"
    data = _bytes(AUTOV1_OFFSET + 100, seed=1)
    partial.write_bytes(data)
    # A1111's model_hash: seek(0x100000); sha256(read(0x10000)) — a short read hashes what is there
    assert hash_file(partial, None).autov1 == hashlib.sha256(data[AUTOV1_OFFSET:]).hexdigest()[:8].upper()


def test_data_offset_at_or_past_the_end(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    empty = hashlib.sha256(b"").hexdigest()[:12].upper()
    assert hash_file(path, 3).autov3 == empty
    assert hash_file(path, 0).autov3 == hashlib.sha256(b"abc").hexdigest()[:12].upper()


def test_progress_reports_bytes_read(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(_bytes(10_000))
    seen: list[int] = []
    hash_file(path, None, chunk_size=4096, progress=seen.append)
    assert seen == [4096, 8192, 10_000]


def test_hash_folder_is_stable_and_sensitive_to_weights_only(tmp_path):
    root = mf.write_diffusers_folder(tmp_path / "pipe", "sdxl")
    first = hash_folder(root)
    assert first.autov1 is None and first.autov3 is None
    assert first.autov2 == first.sha256[:10]
    assert len(first.sha256) == 64 and first.sha256 == first.sha256.upper()

    moved = root.rename(tmp_path / "renamed")
    assert hash_folder(moved) == first  # the folder's own name does not matter

    (moved / "model_index.json").write_text(json.dumps({"_class_name": "Other"}))
    assert hash_folder(moved) == first  # only weight files count

    weight = moved / "vae" / "diffusion_pytorch_model.safetensors"
    weight.rename(moved / "vae" / "renamed.safetensors")
    renamed = hash_folder(moved)
    assert renamed != first

    with open(moved / "vae" / "renamed.safetensors", "r+b") as f:
        f.seek(-1, 2)
        f.write(b"\x01")
    assert hash_folder(moved) != renamed


def test_hash_folder_without_weights_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LibraryError, match=r"no \.safetensors"):
        hash_folder(tmp_path / "empty")


@pytest.mark.parametrize(("sha", "autov2", "autov1", "autov3"), CIVITAI_HASHES)
def test_civitai_autov2_is_the_first_ten_hex_of_sha256(sha, autov2, autov1, autov3):
    assert autov2_from_sha256(sha) == autov2
    assert autov2_from_sha256(sha.lower()) == autov2
    # the other short hashes have the lengths we produce
    assert len(autov1) == 8 and autov1 == autov1.upper()
    assert autov3 is None or (len(autov3) == 12 and autov3 == autov3.upper())


def test_every_captured_civitai_file_obeys_autov2_equals_sha256_prefix():
    found = 0
    for sample in civitai_samples().glob("*.json"):
        stack = [json.loads(sample.read_text(encoding="utf-8"))]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                hashes = node.get("hashes")
                if isinstance(hashes, dict) and "SHA256" in hashes and "AutoV2" in hashes:
                    assert autov2_from_sha256(hashes["SHA256"]) == hashes["AutoV2"], sample.name
                    found += 1
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    assert found >= 5
