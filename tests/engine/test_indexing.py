"""Requests while the library is being indexed: names known after the header pass, answers
that wait for hashes or for the scan's end, a bounded wait (engine/indexing.py)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from engine.api import Engine
from engine.errors import LibraryError, UnknownNameError
from engine.indexing import Indexing
from engine.library import Library
from tests.factories.model_files import write_kohya_lora


@pytest.fixture
def settings(tmp_path: Path):
    from engine.settings import load_settings

    return load_settings(_env_file=None, data_dir=tmp_path, offline=True)


class HeldScan:
    """Holds a scan in its hashing pass until released: a slow disk, deterministically."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.release = threading.Event()
        self.holding = threading.Event()

    def __call__(self, rel_path: str) -> None:
        if self.engine.indexing.progress().listed:
            self.holding.set()
            assert self.release.wait(20)

    async def start(self) -> asyncio.Task:
        task = asyncio.create_task(self.engine.scan(civitai=False, progress=self))
        for _ in range(500):
            if self.holding.is_set():
                return task
            await asyncio.sleep(0.01)
        raise AssertionError("the scan never reached its hashing pass")


def test_names_are_stored_before_the_hashes(settings) -> None:
    from engine.db import ThreadLocalDB

    for seed in (1, 2):
        write_kohya_lora(settings.root / "loras" / f"l{seed}.safetensors", "sdxl", seed=seed)
    library = Library(settings.root, ThreadLocalDB(settings.db_path))
    seen = []

    class Watcher:
        def headers_stored(self, to_hash: int) -> None:
            seen.append((to_hash, [(e.name, e.architecture.value, e.sha256, e.hash_pending) for e in library.entries()]))

        def file_hashed(self) -> None:
            seen.append(("hashed", [e.hash_pending for e in library.entries()]))

    report = library.scan(watcher=Watcher())
    assert seen[0] == (2, [("l1", "sdxl", None, True), ("l2", "sdxl", None, True)])
    assert seen[1:] == [("hashed", [False, True]), ("hashed", [False, False])]
    assert report.hashed == 2 and all(e.sha256 for e in library.entries())
    assert library.scan().unchanged == 2  # nothing pending is left for the next scan


async def test_a_name_not_hashed_yet_waits_for_its_hash(settings) -> None:
    write_kohya_lora(settings.root / "loras" / "old.safetensors", "sdxl", seed=1)
    async with Engine(settings) as engine:
        await engine.scan(civitai=False)
        write_kohya_lora(settings.root / "loras" / "fresh.safetensors", "sdxl", seed=2)
        held = HeldScan(engine)
        scan = await held.start()
        assert engine.indexing.running and engine.find("fresh").hash_pending  # known by name already

        # a file indexed before does not wait
        info = await asyncio.wait_for(engine.lora_info("old"), 5)
        assert info.sha256

        asking = asyncio.create_task(engine.lora_info("fresh"))
        await asyncio.sleep(0.3)
        assert not asking.done()  # an answer without the hash would miss admin settings and CivitAI
        held.release.set()
        info = await asyncio.wait_for(asking, 10)
        assert info.sha256 and info.file == "loras/fresh.safetensors"
        await scan


async def test_a_name_never_found_is_refused_when_the_scan_ends(settings) -> None:
    write_kohya_lora(settings.root / "loras" / "fresh.safetensors", "sdxl", seed=2)
    async with Engine(settings) as engine:
        held = HeldScan(engine)
        scan = await held.start()
        asking = asyncio.create_task(engine.lora_info("nowhere"))
        await asyncio.sleep(0.3)
        assert not asking.done()  # could still be a display name, known once hashed
        held.release.set()
        with pytest.raises(UnknownNameError):
            await asyncio.wait_for(asking, 5)
        await scan
        # after the scan, at once
        with pytest.raises(UnknownNameError):
            await asyncio.wait_for(engine.lora_info("nowhere"), 1)


async def test_the_wait_is_bounded(settings) -> None:
    write_kohya_lora(settings.root / "loras" / "fresh.safetensors", "sdxl", seed=2)
    async with Engine(settings) as engine:
        engine.indexing.wait_limit_s = 0.3
        held = HeldScan(engine)
        scan = await held.start()
        try:
            with pytest.raises(LibraryError, match=r"still being indexed \(0 of 1 new file\(s\) hashed\)"):
                await asyncio.wait_for(engine.family_check("nowhere", []), 5)
        finally:
            held.release.set()
            await scan


async def test_refusals_about_files_already_read_do_not_wait(settings) -> None:
    write_kohya_lora(settings.root / "loras" / "fresh.safetensors", "sdxl", seed=2)
    async with Engine(settings) as engine:
        held = HeldScan(engine)
        scan = await held.start()
        try:
            with pytest.raises(LibraryError, match="is a lora, not a checkpoint"):
                await asyncio.wait_for(engine.family_check("fresh", []), 1)
        finally:
            held.release.set()
            await scan


def test_progress_words() -> None:
    indexing = Indexing()
    assert indexing.progress().describe() == "done"
    indexing.begin()
    assert indexing.progress().describe() == "reading file headers"
    indexing.headers_stored(3)
    indexing.file_hashed()
    assert indexing.progress().describe() == "1 of 3 new file(s) hashed"
    indexing.end()
    assert not indexing.running
