"""What README says about the command line, read back for the tests."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[3] / "README.md"


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


def assert_documented_keys(command: str, data: dict) -> None:
    documented = _documented_json(command)
    assert documented, command
    for key, inner in documented.items():
        assert key in data, (command, key)
        items = data[key] if isinstance(data[key], list) else [data[key]]
        for item in items if inner else []:
            assert inner <= set(item), (command, key, inner - set(item))
