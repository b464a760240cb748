"""Generation parameters in A1111's `parameters` PNG text, so CivitAI recognises them.

CivitAI reads an uploaded PNG's `parameters` chunk with its parser for AUTOMATIC1111
infotext (civitai src/utils/metadata/automatic.metadata.ts): the last line must start with
`Steps: `; `Model hash` (AutoV2) names the checkpoint; `Lora hashes` ("name: AutoV3, ...")
names each LoRA, and the `<lora:name:weight>` tags in the prompt give their weights,
matched by name. So the layout below copies A1111's `create_infotext`:

    {prompt} <lora:NAME:WEIGHT> ...
    Negative prompt: {negative}                      (left out when empty)
    Steps: 28, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6, Seed: 1, Size:
    1024x1024, Model hash: 1a2b3c4d5e, Model: name, Lora hashes: "a: 0123456789ab",
    Version: loracle 0.1.0                           (one line in the file)

Values containing a comma, colon or newline are written with json.dumps, as A1111's
`infotext_utils.quote` does; A1111 strips `:` and `,` from names inside `Lora hashes`.
CivitAI's tag pattern accepts only names of letters, digits, `_`, `.`, `-` and weights
without a sign, so a LoRA with a negative weight or a spaced name is still linked through
its hash, only its weight is not shown there.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine import __version__
from engine.planning.lora_weights import lora_tags_in

PARAMETERS_KEY = "parameters"
DEFAULT_VERSION = f"loracle {__version__}"

# A1111's own pattern (modules/infotext_utils.py) for `Key: value` pairs on the last line.
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_HEX = re.compile(r"^[0-9a-fA-F]+$")


@dataclass(frozen=True)
class LoraUse:
    """A LoRA applied to the image. `hash` is its AutoV3 (12 hex digits, or longer)."""

    name: str
    weight: float
    hash: str | None = None


def quote(value: Any) -> Any:
    """A1111's quoting: JSON-quote a value that holds a comma, colon or newline; also one
    that the reader would change: it unquotes a leading `"` and drops edge whitespace."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text and text == text.strip() and text[:1] != '"':
        return value
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def format_number(value: float) -> str:
    """6.0 -> "6", 0.75 -> "0.75", 0.1 + 0.2 -> "0.3": how people write weights and CFG."""
    if isinstance(value, bool):
        raise TypeError("expected a number, got a bool")
    if isinstance(value, int):
        return str(value)
    number = round(float(value), 4)
    if number == 0:
        return "0"
    if number.is_integer():
        return str(int(number))
    return format(number, "f").rstrip("0").rstrip(".")


def lora_alias(name: str) -> str:
    """The name as written in tags and `Lora hashes` (A1111 drops `:` and `,` there; we
    also drop characters that would end a tag or a quoted value early)."""
    cleaned = re.sub(r'[:,<>"\r\n]', "", name).strip()
    return cleaned or "lora"


def short_hash(value: str, length: int) -> str:
    """AutoV2 (10) or AutoV3 (12): the first hex digits, lower-case, as A1111 writes."""
    text = value.strip()
    if not _HEX.match(text) or len(text) < length:
        raise ValueError(f"not a hash of at least {length} hex digits: {value!r}")
    return text[:length].lower()


def prompt_with_loras(prompt: str, loras: Sequence[LoraUse]) -> str:
    """Append a `<lora:NAME:WEIGHT>` tag for each LoRA the prompt does not already name."""
    present = {lora_alias(name) for name, _ in lora_tags_in(prompt)}
    tags = [
        f"<lora:{lora_alias(lora.name)}:{format_number(lora.weight)}>"
        for lora in loras
        if lora_alias(lora.name) not in present
    ]
    return " ".join([prompt.rstrip(), *tags]).strip() if tags else prompt


def format_parameters(
    *,
    prompt: str,
    negative: str = "",
    steps: int,
    sampler: str,
    cfg: float,
    seed: int,
    width: int,
    height: int,
    model_name: str | None = None,
    model_hash: str | None = None,
    loras: Sequence[LoraUse | tuple[str, float, str | None]] = (),
    schedule_type: str | None = "Automatic",
    extra: Mapping[str, Any] | None = None,
    version: str | None = DEFAULT_VERSION,
) -> str:
    """The A1111 infotext for one image. `model_hash` is the AutoV2 (or full SHA256);
    `sampler` an A1111 sampler name ("Euler a", "DPM++ 2M"); `loras` LoraUse or
    (name, weight, AutoV3 or None) tuples; `extra` more `Key: value` pairs (e.g.
    {"Clip skip": 2}), written before `Lora hashes`."""
    uses = [lora if isinstance(lora, LoraUse) else LoraUse(*lora) for lora in loras]
    lora_hashes = ", ".join(
        f"{lora_alias(lora.name)}: {short_hash(lora.hash, 12)}" for lora in uses if lora.hash
    )
    params: dict[str, Any] = {
        "Steps": steps,
        "Sampler": sampler,
        "Schedule type": schedule_type,
        "CFG scale": format_number(cfg),
        "Seed": seed,
        "Size": f"{width}x{height}",
        "Model hash": short_hash(model_hash, 10) if model_hash else None,
        "Model": model_name or None,
        **dict(extra or {}),
        "Lora hashes": lora_hashes or None,
        "Version": version or None,
    }
    line = ", ".join(
        key if key == value else f"{key}: {quote(value)}"
        for key, value in params.items()
        if value is not None
    )
    text = prompt_with_loras(prompt, uses)
    if negative:
        text += f"\nNegative prompt: {negative}"
    return f"{text}\n{line}".strip()


def parse_parameters(text: str) -> dict[str, str]:
    """Read an A1111 infotext back: "Prompt", "Negative prompt" and every `Key: value` of
    the last line, unquoted, as strings (A1111's own parsing rules)."""
    lines = text.replace("\r\n", "\n").strip().split("\n")
    *head, last = lines
    if len(RE_PARAM.findall(last)) < 3:
        head.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for raw in head:
        line = raw.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    result = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in RE_PARAM.findall(last):
        result[key] = unquote(value) if value[:1] == '"' else value
    return result


def parse_lora_hashes(value: str) -> dict[str, str]:
    """'a: 0123456789ab, b: ...' -> {"a": "0123456789ab", ...}."""
    pairs: dict[str, str] = {}
    for part in value.split(","):
        name, sep, digest = part.partition(":")
        if sep and name.strip():
            pairs[name.strip()] = digest.strip()
    return pairs


def lora_tags(prompt: str) -> list[tuple[str, float]]:
    """The `<lora:NAME:WEIGHT>` tags in a prompt, in order; unreadable weights skipped."""
    tags: list[tuple[str, float]] = []
    for name, weight in lora_tags_in(prompt):
        try:
            tags.append((name, float(weight or "")))
        except ValueError:
            continue
    return tags


def save_png(image: Image.Image, path: Path | str, parameters: str) -> Path:
    """Write `image` as PNG with a `parameters` text chunk, atomically: readers see the old
    file or the whole new one, never a half-written image."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    # tEXt when the text is Latin-1, else iTXt (UTF-8): Pillow picks, as A1111 relies on.
    info.add_text(PARAMETERS_KEY, parameters)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            image.save(handle, format="PNG", pnginfo=info)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes files private; outputs are shared
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return path


def read_parameters(path: Path | str) -> str | None:
    """The `parameters` text of a PNG (tEXt, zTXt or iTXt), or None; None too for an image
    Pillow cannot read (truncated, a damaged text chunk, not an image): it has none to give."""
    try:
        with Image.open(path) as image:
            value = getattr(image, "text", {}).get(PARAMETERS_KEY)
    except FileNotFoundError:
        raise
    except OSError:  # UnidentifiedImageError and "image file is truncated" among them
        return None
    return None if value is None else str(value)
