"""The `loracle` command line, run in-process as a user would type it."""

from __future__ import annotations

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

