"""Library scan: the first scan of 200 model files hashes them all; a rescan hashes none.

A library of 190 LoRAs (kohya SDXL / SD 1.5, LoCon, peft, ranks 4 to 64, each with its own
kohya metadata) and 10 SDXL checkpoints is written with the test factories
(tests/factories/model_files.py: real key names and shapes, sparse zero-filled tensors).
Engine.scan (without CivitAI, as `loracle library scan --no-civitai`) runs once on the
new library, then repeatedly on the unchanged one, then offline with the CivitAI step,
then once after one file was touched. Target: a rescan takes well under a second and
hashes nothing.

    .venv/bin/python benchmarks/bench_library_scan.py [--files 200] [--rescans 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c

TARGET_SECONDS = 1.0


def write_library(root: Path, files: int) -> int:
    """`files` model files under root/models and root/loras; returns their total size."""
    from tests.factories.model_files import (
        kohya_metadata,
        write_checkpoint,
        write_kohya_lora,
        write_peft_lora,
    )

    checkpoints = max(1, files // 20)
    for i in range(checkpoints):
        write_checkpoint(root / "models" / f"checkpoint_{i:03d}.safetensors", "sdxl",
                         metadata={"modelspec.title": f"bench checkpoint {i}"})
    for i in range(files - checkpoints):
        folder = root / "loras" / ("styles" if i % 3 else "characters")
        rank = (4, 8, 16, 32, 64)[i % 5]
        path = folder / f"lora_{i:03d}.safetensors"
        if i % 19 == 0:
            write_peft_lora(path, "sdxl", rank=rank)
        else:
            arch = "sd1" if i % 7 == 0 else "sdxl"
            variant = "locon" if i % 4 == 0 else "lora"
            module = "networks.lora" if variant == "lora" else "lycoris.kohya"
            write_kohya_lora(path, arch, variant=variant, rank=rank, metadata=kohya_metadata(
                arch, output_name=f"lora_{i:03d}", network_dim=rank, network_alpha=rank / 2,
                network_module=module, tags={"1girl": 10 + i, f"tag{i}": 5}))
    return sum(p.stat().st_size for p in root.rglob("*.safetensors"))


def _know_every_file(engine: Any) -> int:
    """Cache a CivitAI answer for every file, as a library looked up online would have:
    the real body of an Illustrious LoRA (tests/data/civitai), one per file's SHA-256."""
    import json

    sample = json.loads((c.ROOT / "tests/data/civitai/illustrious-lora-civitai-info-1421739.json").read_text("utf-8"))
    known = 0
    for version_id, entry in enumerate(engine.entries(), start=1):
        if not entry.sha256:
            continue
        body = {**sample, "id": version_id, "files": [{**sample["files"][0], "hashes": {"SHA256": entry.sha256}}]}
        engine.civitai.cache.put_version(version_id, {entry.sha256.upper()}, json.dumps(body), 3600.0)
        known += 1
    return known


def _lookups(engine: Any, reps: int) -> list[tuple[str, float]]:
    from engine.planning.lora_weights import LoraRequest
    from engine.requests import DrawRequest

    engine.admin.set_default_checkpoint("checkpoint_000")
    request = DrawRequest(prompt="1girl, smile", steps=20, width=1024, height=1024, user_id="bench",
                          loras=[LoraRequest(f"lora_{i:03d}", 0.8) for i in (1, 2, 3)])

    def median_of(fn: Any) -> float:
        return c.median([c.timed(fn)[0] for _ in range(reps)])

    return [
        ("Engine.plan (checkpoint + 3 LoRAs)", median_of(lambda: engine.plan(request))),
        ("Engine.find (one name)", median_of(lambda: engine.find("lora_150"))),
        ("Engine.suggest_loras (autocomplete, all match)", median_of(lambda: engine.suggest_loras(None, "lora"))),
        # what a channel that is not age-restricted asks: every LoRA's NSFW rating too
        (
            "  ... outside age-restricted channels",
            median_of(lambda: engine.suggest_loras(None, "lora", allow_nsfw=False)),
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rescans", type=int, default=5)
    args = parser.parse_args(argv)
    c.print_header("bench_library_scan.py", argv,
                   f"{args.files} model files, first scan then {args.rescans} rescans of the unchanged library", 1)
    with tempfile.TemporaryDirectory(prefix="loracle-bench-") as tmp:
        root = Path(tmp)
        size = write_library(root, args.files)
        asyncio.run(_run(args, root, size))
    return 0


async def _run(args: argparse.Namespace, root: Path, size: int) -> None:
    from engine.api import Engine

    engine = Engine(c.make_settings(root))
    try:
        first = await engine.scan(civitai=False)
        rescans = [await engine.scan(civitai=False) for _ in range(args.rescans)]
        with_civitai = []
        for _ in range(max(1, args.rescans // 2)):
            started = time.perf_counter()
            report = await engine.scan(civitai=True)  # offline: cached answers only
            with_civitai.append((time.perf_counter() - started, report))
        touched = next(iter(sorted((root / "loras").rglob("*.safetensors"))))
        stat = touched.stat()
        os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        after_touch = await engine.scan(civitai=False)
        lookups = _lookups(engine, args.rescans)
        known = _know_every_file(engine)
        known_lookups = _lookups(engine, args.rescans)
    finally:
        await engine.close()

    total = len(first.added) + first.unchanged
    print(f"library: {total} files, {size / 2**20:.1f} MiB (sparse files), "
          f"{len(first.problems)} with problems")
    w = 48

    def row(label: str, seconds: float, reports: list) -> None:
        changed = max(len(r.added) + len(r.updated) for r in reports)
        print(f"{label:<{w}}{seconds:>9.3f}{max(r.hashed for r in reports):>8}{changed:>9}"
              f"{min(r.unchanged for r in reports):>11}")

    print(f"{'scan':<{w}}{'seconds':>9}{'hashed':>8}{'changed':>9}{'unchanged':>11}")
    row("first scan (new library)", first.seconds, [first])
    rescan_seconds = [r.seconds for r in rescans]
    hashed = max(r.hashed for r in rescans)
    row(f"rescan, unchanged (median of {len(rescans)})", c.median(rescan_seconds), rescans)
    row(f"rescan + CivitAI step, offline (median of {len(with_civitai)})",
        c.median([s for s, _ in with_civitai]), [r for _, r in with_civitai])
    row("rescan after touching one file", after_touch.seconds, [after_touch])
    print("per-request lookups on this library (median ms, warm: the library snapshot and verdict memo are reused until something changes):")
    print(f"  {'':<46}{'offline':>8}{'CivitAI knows all ' + str(known):>24}")
    for (label, seconds), (_, known_seconds) in zip(lookups, known_lookups, strict=True):
        print(f"  {label:<46}{1000 * seconds:>8.1f}{1000 * known_seconds:>24.1f}")
    met = c.median(rescan_seconds) < TARGET_SECONDS and hashed == 0
    print(f"rescan / first scan = {c.median(rescan_seconds) / first.seconds:.2f}x; target: rescan < "
          f"{TARGET_SECONDS:.0f} s and 0 files hashed: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    raise SystemExit(main())
