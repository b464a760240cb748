"""The scan (engine/library_scan.py): whatever one file contains, the walk finishes; changes are seen."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engine import library_scan
from engine.db import ThreadLocalDB
from engine.library import Library
from tests.factories.model_files import T, kohya_metadata, write_kohya_lora, write_safetensors

LORA_MODULE = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"


@pytest.fixture
def library(tmp_path: Path) -> Library:
    (tmp_path / "models").mkdir()
    (tmp_path / "loras").mkdir()
    return Library(tmp_path, ThreadLocalDB(tmp_path / "loracle.db"))


def _scan_with_good_neighbour(library: Library, name: str) -> list[str]:
    write_kohya_lora(library.loras_dir / "good.safetensors", "sdxl")
    report = library.scan()
    assert library.find("good").usable
    assert [p.rel_path for p in report.problems] == [f"loras/{name}"]
    return [p.message for p in report.problems]


def test_an_enormous_declared_rank_is_a_problem_not_a_crash(library: Library) -> None:
    write_safetensors(
        library.loras_dir / "huge.safetensors",
        {f"{LORA_MODULE}.lora_down.weight": T("F32", (2**70, 0)), f"{LORA_MODULE}.lora_up.weight": T("F32", (0, 2**70))},
    )
    [message] = _scan_with_good_neighbour(library, "huge.safetensors")
    assert "huge.safetensors" in message


def test_an_absurd_network_dim_in_metadata_is_bounded(library: Library) -> None:
    # a LoKr with undecomposed factors has no rank of its own: the metadata's is used
    md = {**kohya_metadata("sdxl"), "ss_network_dim": "1e300", "ss_network_alpha": "1e300"}
    write_safetensors(
        library.loras_dir / "lokr.safetensors",
        {f"{LORA_MODULE}.lokr_w1": T("F32", (4, 4)), f"{LORA_MODULE}.lokr_w2": T("F32", (320, 512))},
        md,
    )
    write_kohya_lora(library.loras_dir / "good.safetensors", "sdxl")
    library.scan()  # raised OverflowError inside the SQLite upsert
    assert library.find("good").usable
    entry = library.find("lokr")
    assert entry.rank is None and entry.alpha is None


def test_any_exception_while_examining_a_file_is_one_problem(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = library_scan.inspect_path

    def flaky(path: Path):  # type: ignore[no-untyped-def]
        if path.name == "bad.safetensors":
            raise RuntimeError("boom")
        return real(path)

    monkeypatch.setattr(library_scan, "inspect_path", flaky)
    write_kohya_lora(library.loras_dir / "bad.safetensors", "sdxl")
    [message] = _scan_with_good_neighbour(library, "bad.safetensors")
    assert "RuntimeError" in message


def test_a_shape_dimension_beyond_any_real_tensor_is_refused(tmp_path: Path) -> None:
    from engine.errors import CorruptFileError
    from engine.files.header import read_header

    path = write_safetensors(tmp_path / "x.safetensors", {"a": T("F32", (2**70, 0))})
    with pytest.raises(CorruptFileError, match="shape"):
        read_header(path)


def test_bounded_numbers_from_metadata() -> None:
    from engine.files.training import parse_training_metadata

    meta = parse_training_metadata(
        {"ss_network_dim": "1e300", "ss_network_alpha": "-1e300", "ss_clip_skip": "9" * 400}
    )
    assert meta.network_dim is None and meta.network_alpha is None and meta.clip_skip is None
    assert parse_training_metadata({"ss_tag_frequency": '{"d": {"tag": 1e300}}'}).tag_frequency["tag"] <= 2**31


def test_a_file_rewritten_with_its_size_and_mtime_restored_is_rehashed(library: Library) -> None:
    path = write_kohya_lora(library.loras_dir / "l.safetensors", "sdxl", seed=1)
    library.scan()
    before = library.find("l").sha256
    st = os.stat(path)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # same size, different content (a weight byte)
    time.sleep(0.01)  # a new ctime, which no user process can set back
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns

    report = library.scan()

    assert report.updated == ["loras/l.safetensors"]
    assert library.find("l").sha256 != before


def test_a_file_replaced_by_another_inode_is_rehashed(library: Library) -> None:
    path = write_kohya_lora(library.loras_dir / "l.safetensors", "sdxl", seed=1)
    library.scan()
    st = os.stat(path)
    other = write_kohya_lora(library.loras_dir / ".other.tmp", "sdxl", seed=2)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, path)
    assert library.scan().updated == ["loras/l.safetensors"]


def test_an_untouched_file_is_not_rehashed(library: Library) -> None:
    write_kohya_lora(library.loras_dir / "l.safetensors", "sdxl")
    library.scan()
    report = library.scan()
    assert (report.unchanged, report.hashed) == (1, 0)


def test_an_untouched_upscaler_is_not_rehashed(library: Library) -> None:
    from engine.testing.tiny_upscaler import write_tiny_esrgan

    write_tiny_esrgan(library.root / "upscalers" / "x2.safetensors")
    assert library.scan().hashed == 1
    report = library.scan()
    assert (report.unchanged, report.hashed, report.updated) == (1, 0, [])


def test_stale_partial_downloads_are_removed_and_reported(library: Library) -> None:
    old = library.loras_dir / ".loracle-abc123.part"
    fresh = library.loras_dir / ".loracle-def456.part"
    other = library.loras_dir / ".notes.part"  # not ours: never touched
    for p in (old, fresh, other):
        p.write_bytes(b"\0" * 100)
    two_hours_ago = time.time() - 2 * 3600
    for p in (old, other):
        os.utime(p, (two_hours_ago, two_hours_ago))

    report = library.scan()

    assert not old.exists() and fresh.exists() and other.exists()
    assert report.removed_partials == ["loras/.loracle-abc123.part"]
    assert "1 stale partial download" in report.summary()
