"""The `loracle` command line, run in-process as a user would type it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app


@pytest.fixture
def cli(demo_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("LORACLE_DATA_DIR", str(demo_dir))
    monkeypatch.setenv("LORACLE_OFFLINE", "1")
    runner = CliRunner()

    def run(*args: str, ok: bool = True, env: dict[str, str] | None = None, input: str | None = None):
        result = runner.invoke(app, list(args), env=env, input=input)
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    run("library", "scan")
    return run


def test_library_scan_twice_hashes_nothing(cli) -> None:
    data = json.loads(cli("library", "scan", "--json").stdout)
    assert data["hashed"] == 0 and data["unchanged"] == 6 and data["problems"] == []


def test_library_list_json(cli) -> None:
    rows = json.loads(cli("library", "list", "--json").stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["loracleDemoXL_v10"]["category"] == "checkpoint"
    assert by_name["demo_noob_character"]["kind"] == "locon"
    assert by_name["demo_sd15_detail"]["architecture"] == "sd1"
    assert by_name["demo_pony_style"]["family"] == "pony"


def test_library_list_shows_names_whole_and_as_written(cli, demo_dir: Path) -> None:
    # Square brackets are common in CivitAI file names; they must not be read as markup.
    (demo_dir / "loras" / "style[red]v2.safetensors").write_bytes(b"x")
    cli("library", "scan", ok=False)
    out = cli("library", "list", env={"COLUMNS": "80"}).stdout
    assert "loracleDemoXL_v10" in out and "demo_noob_character" in out  # not "loracleDe…"
    assert "style[red]v2" in out
    assert "cannot use style[red]v2 (loras/style[red]v2.safetensors): " in out


def test_family_check_json_contract(cli) -> None:
    cli("library", "set", "loracleDemoXL_v10", "--base-model", "Illustrious")
    result = cli(
        "family", "check", "--checkpoint", "loracleDemoXL_v10",
        "--lora", "demo_exact_style", "--lora", "demo_noob_character", "--lora", "demo_pony_style",
        "--lora", "demo_sd15_detail", "--lora", "demo_mystery", "--json",
    )
    data = json.loads(result.stdout)
    assert data["checkpoint"] == {
        **data["checkpoint"],
        "name": "loracleDemoXL_v10",
        "architecture": "sdxl",
        "base_model": "Illustrious",
        "family": "illustrious",
    }
    verdicts = {item["name"]: item["verdict"] for item in data["loras"]}
    assert verdicts == {
        "demo_exact_style": "exact",
        "demo_noob_character": "same_family",
        "demo_pony_style": "other_family",
        "demo_sd15_detail": "incompatible",
        "demo_mystery": "unknown",
    }
    for item in data["loras"]:
        assert {"name", "architecture", "base_model", "family", "verdict", "evidence", "explanation"} <= set(item)
        assert isinstance(item["evidence"], list) and all(isinstance(e, str) for e in item["evidence"])


def test_family_check_in_chinese(cli) -> None:
    cli("library", "set", "loracleDemoXL_v10", "--base-model", "Illustrious")
    data = json.loads(
        cli("family", "check", "-c", "loracleDemoXL_v10", "-l", "demo_sd15_detail", "--json", "--lang", "zh-TW").stdout
    )
    assert "無法套用" in data["loras"][0]["explanation"]


def test_lora_info_json_contract(cli) -> None:
    data = json.loads(cli("lora", "info", "demo_pony_style", "--json").stdout)
    for key in ("name", "sha256", "autov2", "autov3", "architecture", "base_model", "family", "trigger_words", "recommended_weight", "civitai_url"):
        assert key in data
    assert data["autov2"] == data["sha256"][:10] and len(data["autov3"]) == 12
    assert data["base_model"] == "Pony" and data["recommended_weight"] == 1.0
    assert data["civitai_url"] is None  # offline demo: not on CivitAI


def test_library_set_weight_changes_recommended_weight(cli) -> None:
    cli("library", "set", "demo_pony_style", "--weight", "0.6", "--name", "Ink Pony")
    data = json.loads(cli("lora", "info", "Ink Pony", "--json").stdout)
    assert data["recommended_weight"] == 0.6 and data["name"] == "demo_pony_style"


def test_unknown_name_exits_nonzero_with_suggestions(cli) -> None:
    result = cli("lora", "info", "demo_pony_styel", ok=False)
    assert result.exit_code == 1
    assert "demo_pony_style" in result.stderr
    result = cli("family", "check", "-c", "nope", "-l", "demo_mystery", "--json", ok=False)
    assert result.exit_code == 1
    assert json.loads(result.stderr)["type"] == "UnknownNameError"


def test_absurd_weight_for_library_set_is_refused(cli) -> None:
    result = cli("library", "set", "demo_pony_style", "--weight", "1e9", ok=False)
    assert result.exit_code == 1 and "weight" in result.stderr


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
    _assert_documented_keys("draw", data)


def test_bad_setting_stops_with_one_line(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORACLE_LORA_WEIGHT_MAX", "lots")
    result = cli("library", "list", ok=False)
    assert result.exit_code == 1
    assert "LORACLE_LORA_WEIGHT_MAX" in result.stderr


def test_a_file_copied_in_is_known_without_a_scan(cli, demo_dir: Path) -> None:
    import shutil

    shutil.copy(demo_dir / "loras" / "demo_pony_style.safetensors", demo_dir / "loras" / "fresh_copy.safetensors")
    data = json.loads(cli("lora", "info", "fresh_copy", "--json").stdout)
    assert data["base_model"] == "Pony"


@pytest.mark.slow
def test_demo_command_builds_checks_and_draws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LORACLE_DATA_DIR", str(tmp_path / "demo-data"))
    monkeypatch.setenv("LORACLE_OFFLINE", "1")
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    for verdict in ("exact", "same_family", "other_family", "incompatible", "unknown"):
        assert verdict in result.stdout
    drawn = list((tmp_path / "demo-data" / "outputs").rglob("*.png"))
    assert len(drawn) == 1 and str(drawn[0]) in result.stdout.replace("\n", "")
    assert "demo_exact_style: requested 0.8 → applied 0.8 (applied, exact)" in result.stdout
    # README's quick start shows this output, abridged: every line it shows is printed so.
    printed = result.stdout.splitlines()
    text = README.read_text()
    block = text[text.index("Its output, abridged:") :].split("```")[1].strip("\n").splitlines()
    for line in block:
        if line == "...":
            continue
        if line.endswith(" ..."):
            assert any(p.startswith(line[:-4]) for p in printed), line
        elif line.startswith("drew "):
            assert re.fullmatch(r"drew /\S+/demo-data/outputs/[0-9-]{10}/[0-9a-f]{32}-0\.png", line), line
            assert f"drew {drawn[0]}" in printed
        else:
            assert line in printed, line


@pytest.mark.slow
def test_draw_leaves_the_bots_queued_jobs_alone(cli, demo_dir: Path) -> None:
    # `docker compose exec ... loracle draw` next to a running bot shares its database:
    # the bot's waiting job must stay the bot's, not be run (again) by the CLI.
    from engine.db import ThreadLocalDB
    from engine.queue.job import QueuedJob
    from engine.queue.store import JobStore

    store = JobStore(ThreadLocalDB(demo_dir / "loracle.db"))
    job = QueuedJob(user_id="1234", checkpoint="x", request={"prompt": "a bot job", "steps": 1}, channel_id="99")
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


def test_errors_follow_the_chosen_language(cli) -> None:
    result = cli("draw", "1girl", "--negative", "x" * 10_000, "--lang", "zh-TW", ok=False)
    assert result.exit_code == 1 and "負面提示詞" in result.stderr


def test_library_list_refuses_an_unknown_category(cli) -> None:
    result = cli("library", "list", "--category", "loras", ok=False)
    assert result.exit_code == 2 and "checkpoint" in result.output


def test_library_remove_json_asks_on_stderr(cli, demo_dir: Path, tmp_path: Path) -> None:
    # A real process, as a script would run it (CliRunner echoes the typed answer to stdout).
    import os
    import subprocess
    import sys

    env = {**os.environ, "LORACLE_DATA_DIR": str(demo_dir), "LORACLE_OFFLINE": "1"}
    command = [sys.executable, "-m", "bot.cli", "library", "remove", "demo_mystery", "--json"]
    done = subprocess.run(command, input="y\n", capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"removed": "demo_mystery", "category": "lora", "path": "loras/demo_mystery.safetensors"}
    assert "Delete demo_mystery" in done.stderr
    assert not (demo_dir / "loras" / "demo_mystery.safetensors").exists()
    kept = cli("library", "remove", "demo_pony_style", input="n\n", ok=False)
    assert kept.exit_code == 1 and (demo_dir / "loras" / "demo_pony_style.safetensors").exists()


def test_library_refresh_json(cli) -> None:
    assert json.loads(cli("library", "refresh", "demo_pony_style", "--json").stdout) == {
        "refreshed": "demo_pony_style", "notes": []
    }
    missing = cli("library", "refresh", "demo_pony", "--json", ok=False)
    assert missing.exit_code == 1 and "demo_pony_style" in json.loads(missing.stderr)["suggestions"]


# -- README's "Command line" table is the command line ---------------------------------
README = Path(__file__).resolve().parents[2] / "README.md"


def _real_commands() -> dict[str, list[set[str]]]:
    """Each command's options, one set of spellings per option (`--nsfw`, `--sfw`)."""
    import typer

    def walk(command, path: str) -> dict[str, list[set[str]]]:  # click's or typer's own copy
        if hasattr(command, "commands"):
            found: dict[str, list[set[str]]] = {}
            for name, sub in command.commands.items():
                found.update(walk(sub, f"{path} {name}"))
            return found
        options = []
        for param in command.params:
            if param.param_type_name == "option" and "--help" not in param.opts:
                options.append({o for o in (*param.opts, *param.secondary_opts) if o.startswith("--")})
        return {path: options}

    return walk(typer.main.get_command(app), "loracle")


def _documented_commands() -> dict[str, set[str]]:
    text = README.read_text()
    section = text[text.index("## Command line") :]
    section = section[: section.index("\n## ", 1)]
    found = {}
    for line in section.splitlines():
        match = re.match(r"\| `(loracle [^`]+)` \|", line)
        if match:
            usage = match.group(1)
            words = re.match(r"loracle(?: [a-z]+)*", usage).group(0)
            found[words] = set(re.findall(r"--[a-z][a-z-]*", usage))
    return found


def test_readme_lists_every_command_and_option_as_spelled() -> None:
    real = _real_commands()
    documented = _documented_commands()
    assert set(documented) == set(real)
    json_note = "The `library`, `lora`, `family` and `draw` commands take `--json`"
    assert json_note in README.read_text()
    for command, options in real.items():
        spellings = set().union(*options) if options else set()
        takes_json = command.split()[1] in ("library", "lora", "family", "draw")
        assert ("--json" in spellings) == takes_json, command
        assert documented[command] <= spellings, (command, documented[command] - spellings)
        # --json is stated once for all of them, above the table
        missing = [o for o in options if o != {"--json"} and not o & documented[command]]
        assert missing == [], (command, missing)


def _documented_json(command: str) -> dict[str, set[str]]:
    """`KEY` names README gives for `command --json`: top level, and inside (...) per key."""
    text = " ".join(README.read_text().split())
    start = text.index(f"`{command} --json` gives") + len(f"`{command} --json` gives")
    end = text.index(".", start)
    while text[end - 1] != ")" and text[end - 1] != "`":  # a "." inside a name
        end = text.index(".", end + 1)
    keys: dict[str, set[str]] = {}
    depth, last = 0, None
    for token in re.findall(r"\(|\)|`[a-z_]+`", text[start:end]):
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif depth == 0:
            last = token.strip("`")
            keys[last] = set()
        else:
            keys[last].add(token.strip("`"))
    return keys


def test_readme_json_keys_are_what_the_commands_print(cli) -> None:
    cli("library", "set", "loracleDemoXL_v10", "--base-model", "Illustrious")
    outputs = {
        "family check": json.loads(
            cli("family", "check", "-c", "loracleDemoXL_v10", "-l", "demo_pony_style", "--json").stdout
        ),
        "lora info": json.loads(cli("lora", "info", "demo_pony_style", "--json").stdout),
    }
    for command, data in outputs.items():
        _assert_documented_keys(command, data)


def _assert_documented_keys(command: str, data: dict) -> None:
    documented = _documented_json(command)
    assert documented, command
    for key, inner in documented.items():
        assert key in data, (command, key)
        items = data[key] if isinstance(data[key], list) else [data[key]]
        for item in items if inner else []:
            assert inner <= set(item), (command, key, inner - set(item))
