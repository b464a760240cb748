"""`loracle library ...`."""

from __future__ import annotations

import json
from pathlib import Path


def test_library_scan_twice_hashes_nothing(cli) -> None:
    data = json.loads(cli("library", "scan", "--json").stdout)
    # two checkpoints (the demo merge and its parent in the library), five LoRAs, an upscaler
    assert data["hashed"] == 0 and data["unchanged"] == 8 and data["problems"] == []


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


def test_a_file_copied_in_is_known_without_a_scan(cli, demo_dir: Path) -> None:
    import shutil

    shutil.copy(demo_dir / "loras" / "demo_pony_style.safetensors", demo_dir / "loras" / "fresh_copy.safetensors")
    data = json.loads(cli("lora", "info", "fresh_copy", "--json").stdout)
    assert data["base_model"] == "Pony"


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


def test_names_with_control_characters_are_escaped_not_obeyed(cli, demo_dir: Path) -> None:
    # A file name may hold an ANSI escape or a newline; printed raw, it would recolour the
    # terminal or forge a row of the table.
    (demo_dir / "loras" / "evil\x1b[31mred\nforged_row.safetensors").write_bytes(b"x")
    cli("library", "scan", ok=False)
    for columns in ("80", "200"):
        result = cli("library", "list", env={"COLUMNS": columns})
        output = result.stdout + result.stderr
        assert "\x1b" not in output
        assert "evil\\x1b[31mred\\nforged_row" in output
        assert not any(line.startswith("forged_row") for line in output.splitlines())


def test_library_set_refuses_a_display_name_that_looks_like_another_file(cli) -> None:
    result = cli("library", "set", "demo_mystery", "--name", "DEMO_PONY_STYLE", ok=False)
    assert result.exit_code == 1 and "looks the same as “demo_pony_style”" in result.stderr
    result = cli("library", "set", "demo_mystery", "--name", "demo_pony_ѕtyle", ok=False)  # Cyrillic ѕ
    assert result.exit_code == 1
    cli("library", "set", "demo_mystery", "--name", "Ink Pony")
    result = cli("library", "set", "demo_pony_style", "--name", "In\u200dk Pony", ok=False)
    assert result.exit_code == 1
    result = cli("library", "set", "demo_pony_style", "--name", "ink pony", ok=False)
    assert result.exit_code == 1 and "“Ink Pony”" in result.stderr
