"""The `loracle` command tree as a whole: errors, languages, and the README naming every command."""

from __future__ import annotations

import json
import re

import pytest

from bot.cli import app
from tests.bot.cli.readme import README, assert_documented_keys


def test_bad_setting_stops_with_one_line(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORACLE_LORA_WEIGHT_MAX", "lots")
    result = cli("library", "list", ok=False)
    assert result.exit_code == 1
    assert "LORACLE_LORA_WEIGHT_MAX" in result.stderr


def test_errors_follow_the_chosen_language(cli) -> None:
    result = cli("draw", "1girl", "--negative", "x" * 10_000, "--lang", "zh-TW", ok=False)
    assert result.exit_code == 1 and "負面提示詞" in result.stderr




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
    json_note = "The `library`, `lora`, `checkpoint`, `family`, `draw`, `info`, `upscale`, `vary` and `cluster` commands take `--json`"
    assert json_note in README.read_text()
    for command, options in real.items():
        spellings = set().union(*options) if options else set()
        takes_json = command.split()[1] in ("library", "lora", "checkpoint", "family", "draw", "info", "upscale", "vary", "cluster")
        assert ("--json" in spellings) == takes_json, command
        assert documented[command] <= spellings, (command, documented[command] - spellings)
        # --json is stated once for all of them, above the table
        missing = [o for o in options if o != {"--json"} and not o & documented[command]]
        assert missing == [], (command, missing)


def test_readme_json_keys_are_what_the_commands_print(cli) -> None:
    cli("library", "set", "loracleDemoXL_v10", "--base-model", "Illustrious")
    outputs = {
        "family check": json.loads(
            cli("family", "check", "-c", "loracleDemoXL_v10", "-l", "demo_pony_style", "--json").stdout
        ),
        "lora info": json.loads(cli("lora", "info", "demo_pony_style", "--json").stdout),
    }
    for command, data in outputs.items():
        assert_documented_keys(command, data)
