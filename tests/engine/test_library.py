"""The library scanner: what it finds, what it skips, what a rescan costs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.db import ThreadLocalDB
from engine.errors import LibraryError, UnknownNameError
from engine.kinds import Architecture, Category, FileKind
from engine.library import Library
from tests.factories.model_files import (
    CORRUPT_WRITERS,
    UNSAFE_WRITERS,
    kohya_metadata,
    write_checkpoint,
    write_diffusers_folder,
    write_kohya_lora,
)


@pytest.fixture
def library(tmp_path: Path) -> Library:
    (tmp_path / "models").mkdir()
    (tmp_path / "loras").mkdir()
    return Library(tmp_path, ThreadLocalDB(tmp_path / "loracle.db"))


def test_scan_finds_checkpoints_and_loras(library: Library) -> None:
    write_checkpoint(library.models_dir / "illustriousXL_v01.safetensors", "sdxl")
    write_kohya_lora(library.loras_dir / "style.safetensors", "sdxl", metadata=kohya_metadata("sdxl"))
    write_kohya_lora(library.loras_dir / "old.safetensors", "sd1", variant="locon")

    report = library.scan()

    assert sorted(report.added) == ["loras/old.safetensors", "loras/style.safetensors", "models/illustriousXL_v01.safetensors"]
    assert report.hashed == 3 and not report.problems
    ckpt = library.find("illustriousXL_v01", Category.CHECKPOINT)
    assert ckpt.kind == FileKind.CHECKPOINT and ckpt.architecture == Architecture.SDXL
    assert ckpt.sha256 and len(ckpt.sha256) == 64 and ckpt.autov2 == ckpt.sha256[:10]
    style = library.find("style")
    assert style.category == Category.LORA and style.architecture == Architecture.SDXL
    assert style.rank == 4 and style.training.sd_model_name == "illustriousXL_v01.safetensors"
    assert library.find("old").kind == FileKind.LOCON
    assert library.find("old").architecture == Architecture.SD1


def test_rescan_of_unchanged_library_hashes_nothing(library: Library) -> None:
    for i in range(200):
        write_kohya_lora(library.loras_dir / f"lora_{i:03d}.safetensors", "sdxl", text_encoder=False)
    first = library.scan()
    assert first.hashed == 200

    second = library.scan()

    assert second.hashed == 0 and second.unchanged == 200
    assert not (second.added or second.updated or second.removed)


def test_changed_file_is_rehashed_and_vanished_file_leaves(library: Library) -> None:
    a = write_kohya_lora(library.loras_dir / "a.safetensors", "sdxl")
    b = write_kohya_lora(library.loras_dir / "b.safetensors", "sdxl")
    library.scan()
    old_hash = library.find("a").sha256
    write_kohya_lora(a, "sdxl", rank=8)
    os.utime(a, (1, 1))
    b.unlink()

    report = library.scan()

    assert report.updated == ["loras/a.safetensors"] and report.removed == ["loras/b.safetensors"]
    assert library.find("a").sha256 != old_hash and library.find("a").rank == 8
    with pytest.raises(UnknownNameError):
        library.find("b")


def test_renamed_file_keeps_admin_settings(library: Library) -> None:
    path = write_kohya_lora(library.loras_dir / "before.safetensors", "sdxl")
    library.scan()
    library.set_override(library.find("before"), base_model="Pony", weight=0.7, display_name="Nice style")
    path.rename(library.loras_dir / "after.safetensors")

    library.scan()

    entry = library.find("after")
    assert entry.base_model_override == "Pony" and entry.weight_override == 0.7
    assert entry.label == "Nice style"
    assert library.find("Nice style").name == "after"


@pytest.mark.parametrize("writer", sorted(CORRUPT_WRITERS) + sorted(UNSAFE_WRITERS))
def test_bad_files_are_reported_and_the_scan_goes_on(library: Library, writer: str) -> None:
    writers = {**CORRUPT_WRITERS, **UNSAFE_WRITERS}
    suffix = ".safetensors"
    writers[writer](library.loras_dir / f"bad{suffix}")
    write_kohya_lora(library.loras_dir / "good.safetensors", "sdxl")

    report = library.scan()

    assert [p.rel_path for p in report.problems] == [f"loras/bad{suffix}"]
    assert report.problems[0].message
    assert library.find("good").usable
    with pytest.raises(LibraryError) as err:
        library.get_usable("bad", Category.LORA)
    assert "cannot be used" in str(err.value)


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".bin"])
def test_pickled_formats_are_refused_without_loading(library: Library, suffix: str) -> None:
    marker = library.root / "unpickled"
    # If anything unpickled this file, it would create the marker file.
    payload = (
        b"\x80\x02cbuiltins\nexec\nq\x00X"
        + len(f"open({str(marker)!r}, 'w')".encode()).to_bytes(4, "little")
        + f"open({str(marker)!r}, 'w')".encode()
        + b"q\x01\x85q\x02Rq\x03."
    )
    (library.models_dir / f"evil{suffix}").write_bytes(payload)

    report = library.scan()

    assert report.problems and report.problems[0].rel_path == f"models/evil{suffix}"
    assert "safetensors" in report.problems[0].message.lower()
    assert not marker.exists()


def test_diffusers_folder_is_a_checkpoint(library: Library) -> None:
    write_diffusers_folder(library.models_dir / "animagine-xl-3.1", "sdxl")
    library.scan()
    entry = library.find("animagine-xl-3.1")
    assert entry.format == "diffusers" and entry.category == Category.CHECKPOINT
    assert entry.architecture == Architecture.SDXL


def test_unknown_name_suggests_close_names(library: Library) -> None:
    write_kohya_lora(library.loras_dir / "watercolor_style.safetensors", "sdxl")
    write_kohya_lora(library.loras_dir / "ink_style.safetensors", "sdxl")
    library.scan()
    with pytest.raises(UnknownNameError) as err:
        library.find("watercolour_style")
    assert err.value.suggestions[0] == "watercolor_style"
    assert "watercolor_style" in str(err.value)


def test_same_stem_in_two_folders_gets_distinct_names(library: Library) -> None:
    (library.loras_dir / "a").mkdir()
    (library.loras_dir / "b").mkdir()
    write_kohya_lora(library.loras_dir / "a" / "style.safetensors", "sdxl")
    write_kohya_lora(library.loras_dir / "b" / "style.safetensors", "sdxl", rank=8)
    library.scan()
    names = sorted(e.name for e in library.entries(Category.LORA))
    assert names == ["a/style", "b/style"]
    assert library.find("b/style").rank == 8


def test_disabled_entry_is_not_usable(library: Library) -> None:
    write_kohya_lora(library.loras_dir / "x.safetensors", "sdxl")
    library.scan()
    library.set_override(library.find("x"), enabled=False)
    with pytest.raises(LibraryError, match="disabled"):
        library.get_usable("x", Category.LORA)
