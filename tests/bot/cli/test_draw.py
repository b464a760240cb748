"""`loracle draw`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bot.cli.readme import assert_documented_keys


@pytest.mark.slow
def test_draw_json_reports_applied_weights(cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli(
        "draw", "1girl, smile", "-l", "demo_exact_style:0.7", "-l", "demo_pony_style:-9",
        "-l", "demo_sd15_detail:0", "-l", "demo_mystery:0", "--seed", "5", "--steps", "2",
        "--width", "64", "--height", "64", "--out", str(out), "--json",
    )
    data = json.loads(result.stdout)
    assert data["seed"] == 5 and len(data["images"]) == 1
    assert Path(data["images"][0]).parent == out and Path(data["images"][0]).exists()
    loras = {l["name"]: l for l in data["loras"]}
    assert loras["demo_exact_style"] == {**loras["demo_exact_style"], "requested_weight": 0.7, "applied_weight": 0.7, "status": "applied", "verdict": "exact"}
    assert loras["demo_pony_style"]["status"] == "clamped" and loras["demo_pony_style"]["applied_weight"] == -2.0
    assert loras["demo_sd15_detail"]["status"] == "not_applied" and loras["demo_sd15_detail"]["applied_weight"] == 0
    assert loras["demo_mystery"]["status"] == "not_applied"
    assert_documented_keys("draw", data)


@pytest.mark.slow
def test_draw_leaves_the_bots_queued_jobs_alone(cli, demo_dir: Path) -> None:
    # `docker compose exec ... loracle draw` next to a running bot shares its database:
    # the bot's waiting job must stay the bot's, not be run (again) by the CLI.
    from engine.db import ThreadLocalDB
    from engine.queue.job import QueuedJob
    from engine.queue.store import JobStore

    store = JobStore(ThreadLocalDB(demo_dir / "loracle.db"))
    job = QueuedJob(user_id="1234", checkpoint="x", request={"prompt": "a bot job", "steps": 1}, origin={"guild_id": None, "channel_id": "99"})
    store.insert(job)
    data = json.loads(cli("draw", "1girl", "--steps", "1", "--width", "64", "--height", "64", "--json").stdout)
    assert len(data["images"]) == 1
    assert store.get(job.id).status == "queued"
    assert len(list((demo_dir / "outputs").rglob("*.png"))) == 1


def test_unwritable_out_dir_is_refused_before_drawing(cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = cli("draw", "1girl", "--out", str(blocker / "images"), "--json", ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Cannot write the images" in json.loads(result.stderr)["error"]


def test_draw_with_an_incompatible_lora_exits_1_naming_both_architectures(cli) -> None:
    result = cli("draw", "1girl", "-l", "demo_sd15_detail:0.8", "--json", ok=False)
    assert result.exit_code == 1
    error = json.loads(result.stderr)
    assert error["type"] == "IncompatibleError" and "SD 1.x LoRA" in error["error"] and "SDXL checkpoint" in error["error"]


async def test_the_progress_bar_says_when_a_checkpoint_is_loaded(monkeypatch) -> None:
    import io

    from rich.console import Console

    import bot.cli.draw as draw_module
    from engine.queue.handle import Done, Loading, Queued, Started, Step

    class Handle:
        async def events(self):
            for event in (Queued(1), Started(), Loading("ponyDiffusionV6XL"), Step(1, 2), Done("result")):
                yield event

        async def result(self):
            return "result"

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    monkeypatch.setattr(draw_module, "err", console)
    shown: list[str] = []

    from rich.progress import Progress

    real_update = Progress.update

    def update(self, task, **kwargs):
        if "description" in kwargs:
            shown.append(kwargs["description"])
        return real_update(self, task, **kwargs)

    monkeypatch.setattr(Progress, "update", update)
    assert await draw_module._follow(Handle(), quiet=False) == "result"
    assert shown == ["queued (position 1)", "starting", "loading checkpoint ponyDiffusionV6XL", "drawing"]


@pytest.mark.slow
def test_draw_warns_when_a_loras_trigger_word_is_missing(cli, demo_dir: Path) -> None:
    import hashlib

    from tests.fakes.civitai import version_body

    # CivitAI's answer kept next to the file (a `.civitai.info`), read offline.
    [path] = demo_dir.rglob("demo_exact_style.safetensors")
    body = version_body(hashlib.sha256(path.read_bytes()).hexdigest(), trained_words=["inkwash style"])
    path.with_name("demo_exact_style.civitai.info").write_text(json.dumps(body), encoding="utf-8")
    cli("library", "scan")
    args = ("-l", "demo_exact_style:0.7", "--steps", "1", "--width", "64", "--height", "64")
    data = json.loads(cli("draw", "1girl, smile", *args, "--json").stdout)
    [warning] = [w for w in data["warnings"] if "trigger words" in w]
    assert warning.startswith("demo_exact_style: none of its trigger words") and "inkwash style" in warning
    result = cli("draw", "1girl, smile", *args)
    assert "none of its trigger words" in result.stderr
    data = json.loads(cli("draw", "1girl, (inkwash_style:1.1)", *args, "--json").stdout)
    assert not [w for w in data["warnings"] if "trigger words" in w]
