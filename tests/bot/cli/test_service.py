"""`loracle demo` (run and health: tests/bot/discord_app/test_launch.py, tests/bot/test_health.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from tests.bot.cli.readme import README


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
    # the unknown verdict's fix is worded for a shell, not as a slash command
    flat = " ".join(result.stdout.split())
    assert 'loracle library set "demo_mystery" --base-model' in flat and "/admin" not in flat
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
