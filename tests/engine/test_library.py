"""The library scanner: what it finds, what it skips, what a rescan costs."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest

from engine import library_scan
from engine.confusables import skeleton
from engine.db import ThreadLocalDB
from engine.errors import LibraryError, UnknownNameError
from engine.kinds import Architecture, Category, FileKind
from engine.library import Library
from engine.text_input import clean_name
from tests.factories.model_files import (
    CORRUPT_WRITERS,
    UNSAFE_WRITERS,
    kohya_metadata,
    write_checkpoint,
    write_diffusers_folder,
    write_kohya_lora,
    write_pickle_file,
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


# --- collisions, odd names, files that move under the scanner --------------------------


def test_a_broken_twin_never_hides_the_good_file(library: Library) -> None:
    # people keep the old .ckpt beside the .safetensors download of the same model
    write_checkpoint(library.models_dir / "dreamshaper.safetensors", "sdxl")
    write_pickle_file(library.models_dir / "dreamshaper.ckpt")
    library.scan()
    assert library.get_usable("dreamshaper", Category.CHECKPOINT).rel_path == "models/dreamshaper.safetensors"
    broken = library.find("dreamshaper.ckpt")
    assert broken.rel_path == "models/dreamshaper.ckpt" and broken.error
    names = [e.name for e in library.entries(Category.CHECKPOINT)]
    assert len(set(names)) == len(names)


def test_two_usable_files_with_one_stem_are_told_apart_by_extension(library: Library) -> None:
    write_kohya_lora(library.loras_dir / "style.safetensors", "sdxl")
    write_kohya_lora(library.loras_dir / "style.sft", "sdxl", rank=8)
    library.scan()
    assert sorted(e.name for e in library.entries(Category.LORA)) == ["style.safetensors", "style.sft"]
    assert library.find("style.sft").rank == 8
    assert library.find("style.safetensors").rank == 4
    with pytest.raises(UnknownNameError) as err:
        library.find("style")  # ambiguous: say so with both names rather than pick one
    assert set(err.value.suggestions) == {"style.safetensors", "style.sft"}


@pytest.mark.parametrize(
    ("file_name", "typed"),
    [
        (unicodedata.normalize("NFD", "café style"), "café style"),  # a name made on macOS
        ("可愛い（chibi）ＸＬ", "可愛い（chibi）ＸＬ"),  # full-width brackets, as CJK names have
        ("可愛い（chibi）ＸＬ", "可愛い(chibi)xl"),
        ("My Style v2", "my style V2.safetensors"),
    ],
)
def test_names_are_found_in_any_unicode_form(library: Library, file_name: str, typed: str) -> None:
    write_kohya_lora(library.loras_dir / f"{file_name}.safetensors", "sdxl")
    library.scan()
    # the engine front door normalises what users type (engine.text_input.clean_name)
    assert library.find(clean_name(typed)).rel_path == f"loras/{file_name}.safetensors"


def test_a_file_deleted_mid_scan_just_leaves(library: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    write_kohya_lora(library.loras_dir / "keep.safetensors", "sdxl")
    gone = write_kohya_lora(library.loras_dir / "gone.safetensors", "sdxl")
    library.scan()
    write_kohya_lora(gone, "sdxl", rank=8)
    os.utime(gone, (1, 1))
    real = library_scan.inspect_path

    def deleting(path):
        if Path(path).name == "gone.safetensors":
            Path(path).unlink()  # the user deletes it while we look at it
        return real(path)

    monkeypatch.setattr(library_scan, "inspect_path", deleting)
    report = library.scan()

    assert report.problems == [] and report.removed == ["loras/gone.safetensors"]
    assert [e.rel_path for e in library.entries()] == ["loras/keep.safetensors"]


def test_a_file_that_turns_into_a_broken_link_is_no_longer_usable(library: Library) -> None:
    elsewhere = library.root / "external"
    target = write_kohya_lora(elsewhere / "style.safetensors", "sdxl")
    (library.loras_dir / "style.safetensors").symlink_to(target)
    library.scan()
    assert library.get_usable("style", Category.LORA).sha256

    target.rename(elsewhere / "moved.safetensors")  # e.g. the drive it lives on is gone
    report = library.scan()
    assert [p.rel_path for p in report.problems] == ["loras/style.safetensors"]
    with pytest.raises(LibraryError, match="cannot be used"):
        library.get_usable("style", Category.LORA)
    assert library.scan().hashed == 0  # a rescan does not touch it again...

    (elsewhere / "moved.safetensors").rename(target)
    report = library.scan()  # ...until it is back
    assert report.hashed == 1 and library.get_usable("style", Category.LORA).rank == 4


def test_link_loops_are_reported_not_followed_forever(library: Library) -> None:
    loop = library.loras_dir / "loop.safetensors"
    loop.symlink_to(loop)
    (library.loras_dir / "again").symlink_to(library.loras_dir)
    write_kohya_lora(library.loras_dir / "fine.safetensors", "sdxl")
    report = library.scan()
    assert [p.rel_path for p in report.problems] == ["loras/loop.safetensors"]
    assert [e.rel_path for e in library.entries(include_broken=False)] == ["loras/fine.safetensors"]


def test_linked_folders_are_scanned_once(library: Library, tmp_path: Path) -> None:
    # admins link a ComfyUI / A1111 models folder into data/loras
    comfy = tmp_path / "ComfyUI" / "models" / "loras"
    write_kohya_lora(comfy / "comfy_style.safetensors", "sdxl")
    (library.loras_dir / "comfy").symlink_to(comfy)
    (library.loras_dir / "comfy_again").symlink_to(comfy)
    report = library.scan()
    assert report.added == ["loras/comfy/comfy_style.safetensors"]
    assert library.find("comfy_style").usable
    assert library.scan().hashed == 0


def test_removing_a_linked_model_removes_the_link_only(library: Library, tmp_path: Path) -> None:
    outside = write_diffusers_folder(tmp_path / "shared" / "animagine-xl-3.1", "sdxl")
    (library.models_dir / "animagine-xl-3.1").symlink_to(outside)
    library.scan()
    library.remove(library.find("animagine-xl-3.1"))
    assert not (library.models_dir / "animagine-xl-3.1").exists()
    assert (outside / "model_index.json").is_file()
    assert library.entries() == []


def test_a_named_pipe_does_not_stall_the_scan(library: Library) -> None:
    os.mkfifo(library.loras_dir / "pipe.safetensors")  # opening it for reading would block
    write_kohya_lora(library.loras_dir / "fine.safetensors", "sdxl")
    report = library.scan()
    assert [p.rel_path for p in report.problems] == ["loras/pipe.safetensors"]
    assert "not a regular file" in report.problems[0].message
    assert library.find("fine").usable


def test_scan_stores_the_facts_the_loader_trusts(library: Library) -> None:
    write_checkpoint(library.models_dir / "v.safetensors", "sdxl", v_pred=True)
    library.scan()
    facts = library.find("v").checkpoint_facts
    assert (facts.architecture, facts.kind, facts.v_prediction, facts.has_vae) == (
        Architecture.SDXL, FileKind.CHECKPOINT, True, True,
    )  # fmt: skip


def test_rows_from_an_older_scan_are_examined_again(library: Library) -> None:
    write_checkpoint(library.models_dir / "m.safetensors", "sdxl")
    library.scan()
    # a row as the scan before stored facts wrote it: no has_vae, no facts_version
    library.dbs.db["files"].update("models/m.safetensors", {"info": '{"v_prediction": false}'})
    report = library.scan()
    assert report.updated == ["models/m.safetensors"]
    assert library.find("m").checkpoint_facts.has_vae
    assert library.scan().unchanged == 1


# -- names that only look different ---------------------------------------------------


@pytest.mark.parametrize(
    "look_alike",
    [
        "Ink Style",  # the very name
        "ink style",  # another case
        "Ink Stуle",  # Cyrillic у
        "Іnk Style",  # Cyrillic І
        "Ｉｎｋ Ｓｔｙｌｅ",  # full-width
        "In\u200dk Style",  # zero-width joiner
        "Ink  Style",  # two spaces
        "Ιnk Styl\u0435",  # Greek Ι, Cyrillic е
    ],
)
def test_a_display_name_that_looks_like_another_files_name_is_refused(library: Library, look_alike: str) -> None:
    write_kohya_lora(library.loras_dir / "Ink Style.safetensors", "sdxl")
    write_kohya_lora(library.loras_dir / "other.safetensors", "sdxl", rank=8)
    library.scan()
    with pytest.raises(LibraryError) as err:
        library.set_override(library.find("other"), display_name=look_alike)
    assert "“Ink Style”" in str(err.value) and "looks the same" in str(err.value)
    assert library.find("other").display_name is None


def test_a_display_name_that_looks_like_another_display_name_is_refused(library: Library) -> None:
    write_kohya_lora(library.loras_dir / "one.safetensors", "sdxl")
    write_kohya_lora(library.loras_dir / "two.safetensors", "sdxl", rank=8)
    library.scan()
    library.set_override(library.find("one"), display_name="Watercolor")
    with pytest.raises(LibraryError, match="“Watercolor”"):
        library.set_override(library.find("two"), display_name="Wаtercolor")  # Cyrillic а
    # Its own name, or a new spelling of its own display name, is no clash.
    assert library.set_override(library.find("one"), display_name="WATERCOLOR").display_name == "WATERCOLOR"
    assert library.set_override(library.find("two"), display_name="Two").display_name == "Two"
    assert library.set_override(library.find("two"), display_name="two").display_name == "two"


def test_file_names_that_look_alike_are_shown_distinguishably(library: Library) -> None:
    write_kohya_lora(library.loras_dir / "style.safetensors", "sdxl")
    write_kohya_lora(library.loras_dir / "ѕtyle.safetensors", "sdxl", rank=8)  # Cyrillic ѕ
    (library.loras_dir / "sub").mkdir()
    write_kohya_lora(library.loras_dir / "sub" / "stylе.safetensors", "sdxl", rank=16)  # Cyrillic е
    library.scan()
    names = sorted(e.name for e in library.entries(Category.LORA))
    assert names == ["style", "sub/stylе", "ѕtyle (2)"]
    assert library.find("style").rank == 4  # plain ASCII keeps the bare name
    assert len({skeleton(n) for n in names}) == 3


def test_the_skeleton_keeps_apart_names_that_look_different() -> None:
    assert skeleton("style v2") != skeleton("style v3")
    assert skeleton("café") != skeleton("cafe")  # the accent shows
    assert skeleton("ＳＴＹＬＥ\u200b") == skeleton("style") == skeleton("ѕtуlе")


def test_a_file_added_later_with_a_name_like_a_display_name_is_numbered(library: Library) -> None:
    write_kohya_lora(library.loras_dir / "one.safetensors", "sdxl")
    library.scan()
    library.set_override(library.find("one"), display_name="Ink Style")
    write_kohya_lora(library.loras_dir / "ink_style.safetensors", "sdxl", rank=8)
    write_kohya_lora(library.loras_dir / "Ink Stуle.safetensors", "sdxl", rank=16)  # Cyrillic у
    library.scan()
    labels = {e.label for e in library.entries(Category.LORA)}
    assert labels == {"Ink Stуle (2)", "Ink Style", "ink_style"}
    assert library.find("Ink Stуle (2)").rank == 16
