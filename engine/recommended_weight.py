"""The weight a LoRA's author recommends, read from what CivitAI tells us about it.

Three sources, best first:
  1. "civitai": the version's structured `settings.strength` (with `minStrength` and
     `maxStrength`), which CivitAI's generator uses and its public REST bodies may carry;
  2. "description": the author's own words in the version's and then the model's HTML
     description ("Recommended weight 0.6-0.8", "Strength: 0.8", "建議權重 0.6～0.8",
     "推奨ウェイト 0.7", "권장 가중치 0.7"), or a usage example such as `<lora:name:0.7>`;
  3. "examples": the weights the author used in the version's own example images
     (`<lora:…:w>` in `images[].meta.prompt`, `images[].meta.resources[].weight`,
     `images[].meta.civitaiResources[].weight`), their median.
The caller adds the "admin" source (an override) and the "default" (`default_weight`).

A number counts only when it follows a weight word closely, joined by nothing but
punctuation and a few connecting words, so "SD 1.5", "v2.0", "1024x1024", "CFG 7",
"denoising strength 0.4", "clip skip 2", "30 steps", dates and "hires 1.5x" are never read
as weights. HTML becomes text through html.parser; every regular expression here is
linear and runs on input of bounded length; only weights within -5..5 are believed.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Literal

from engine.planning.lora_weights import lora_tags_in

Source = Literal["civitai", "description", "examples", "admin", "default"]

MIN_WEIGHT = -5.0
MAX_WEIGHT = 5.0
DEFAULT_WEIGHT = 1.0
MAX_HTML_CHARS = 100_000  # CivitAI descriptions run to tens of KB
MAX_TEXT_CHARS = 50_000
MAX_PROMPT_CHARS = 10_000
MAX_IMAGES = 50


@dataclass(frozen=True)
class RecommendedWeight:
    value: float
    low: float | None
    high: float | None
    source: Source


@dataclass(frozen=True)
class LoraIdentity:
    """What a LoRA is known by; any field may be missing."""

    sha256: str | None = None
    autov2: str | None = None
    file_name: str | None = None
    name: str | None = None
    version_id: int | None = None


def default_weight(value: float = DEFAULT_WEIGHT) -> RecommendedWeight:
    """The weight used when nobody recommends one."""
    return RecommendedWeight(_clamp(value), None, None, "default")


def recommended_weight(
    version: Any,
    model: Any = None,
    identity: LoraIdentity | None = None,
) -> RecommendedWeight | None:
    """The author's recommended weight from a model-version body (and its model body),
    as parsed JSON dicts or engine.civitai.models objects; None when nothing says."""
    identity = identity or LoraIdentity()
    version_body = _as_mapping(version)
    if identity.version_id is None and isinstance(version_body.get("id"), int):
        identity = LoraIdentity(
            identity.sha256, identity.autov2, identity.file_name, identity.name, version_body["id"]
        )
    names = _identity_names(identity, version_body)
    return (
        from_settings(version_body)
        or from_description(_field(version, "description"), names)
        or from_description(_field(model, "description"), names)
        or from_examples(version_body, identity, names)
    )


# -- 1. CivitAI's structured value --------------------------------------------------------


def from_settings(version: Mapping[str, Any]) -> RecommendedWeight | None:
    settings = version.get("settings")
    if not isinstance(settings, Mapping):
        return None
    strength = _number(settings.get("strength"))
    low = _number(settings.get("minStrength"))
    high = _number(settings.get("maxStrength"))
    if low is not None and high is not None and low > high:
        low, high = None, None
    if strength is None:
        if low is None or high is None:
            return None
        strength = _midpoint(low, high)
    return RecommendedWeight(_round(strength), low, high, "civitai")


# -- 2. the author's text -----------------------------------------------------------------


class _TextOf(HTMLParser):
    """Text of an HTML fragment, a line per block, with `<lora:…>` kept as text."""

    _BLOCKS = frozenset(
        {"p", "br", "div", "li", "ul", "ol", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6",
         "blockquote", "pre", "hr", "table", "section"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.size = 0

    def _add(self, text: str) -> None:
        if self.size < MAX_TEXT_CHARS:
            self.parts.append(text)
            self.size += len(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag.startswith(("lora:", "lyco:")):
            # An unescaped usage example, which the parser takes for a tag.
            rest = "".join(f" {k}" + (f"={v}" if v else "") for k, v in attrs)
            self._add(f"<{tag}{rest}>")
        elif tag in self._BLOCKS:
            self._add("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._BLOCKS:
            self._add("\n")

    def handle_data(self, data: str) -> None:
        self._add(data)


def html_to_text(html: str) -> str:
    """The readable text of a description, bounded in length."""
    parser = _TextOf()
    try:
        parser.feed(_defang(html[:MAX_HTML_CHARS]))
        parser.close()
    except (AssertionError, ValueError):  # html.parser's complaints about broken markup
        pass
    return "".join(parser.parts)[:MAX_TEXT_CHARS]


_CDATA_TAGS = ("script", "style")


def _defang(html: str) -> str:
    """The same HTML with every construct html.parser could rescan removed.

    Python 3.11's parser goes quadratic on unterminated comments, markup declarations
    and `<` without `>` (a 200 KB description of "<!--" took minutes). What is left after
    this linear pass is text and complete `<tag ...>` / `</tag>` pieces with balanced
    quotes and no `<` inside; comments, declarations and script/style tags are dropped,
    and any other `<` becomes `&lt;`.
    """
    out: list[str] = []
    i = 0
    n = len(html)
    gt = -1  # the next ">" at or after the current "<", found once and reused
    while i < n:
        j = html.find("<", i)
        if j < 0:
            out.append(html[i:])
            break
        out.append(html[i:j])
        if html.startswith("<!--", j):
            end = html.find("-->", j + 4)
            if end < 0:
                break  # an unterminated comment hides the rest of the page
            i = end + 3
            continue
        if gt < j:
            gt = html.find(">", j + 1)
            if gt < 0:
                gt = n
        nxt = html.find("<", j + 1, gt)
        if gt >= n or nxt >= 0:
            out.append("&lt;")
            i = j + 1
            continue
        piece = html[j : gt + 1]
        name = piece[1:].lstrip("/").split(None, 1)[0].rstrip(">").lower() if len(piece) > 2 else ""
        if name.startswith(_CDATA_TAGS) and not piece.startswith("</"):
            close = _find_close(html, name, gt + 1)
            if close < 0:
                break  # an unclosed script hides the rest, as in a browser
            i = close
            continue
        if piece[1:2] in ("!", "?") or name.startswith(_CDATA_TAGS):
            pass  # declarations, processing instructions, stray script and style ends
        elif piece.count('"') % 2 or piece.count("'") % 2:
            out.append("&lt;" + piece[1:])
        else:
            out.append(piece)
        i = gt + 1
    return "".join(out)


def _find_close(html: str, name: str, start: int) -> int:
    """Where the end tag of a script or style element starting at `start` begins."""
    for tag in _CDATA_TAGS:
        if name.startswith(tag):
            at = html.find("</" + tag, start)
            if at < 0:
                at = html.find("</" + tag.upper(), start)
            return at
    return -1


def from_description(html: Any, names: Iterable[str] = ()) -> RecommendedWeight | None:
    if not isinstance(html, str) or not html.strip():
        return None
    text = html_to_text(html)
    found = weight_in_text(text) or _usage_example(text, list(names))
    if found is None:
        return None
    value, low, high = found
    return RecommendedWeight(value, low, high, "description")


_KEYWORD = re.compile(
    r"(?<![a-z])(?:weights?|strengths?|wt)(?![a-z])|權重|权重|強度|强度|ウェイト|ウエイト|重み|가중치|강도|웨이트",
    re.IGNORECASE,
)
# Words that make a weight word right after them something other than the LoRA's weight.
_NOT_OURS_BEFORE = re.compile(
    r"(?:denois|hires|hi-res|high-res|upscal|adetailer|detailer|cfg|guidance|controlnet|ip-?adapter"
    r"|inpaint|img2img|i2i|refiner|clip|prompt|token|trigger|learning|decay|noise|face|restore|fidelity)"
    r"[a-z]*(?:\s+(?:fix|word|words|tag|tags|model))?[\s:_\-.]{0,3}$"
    r"|(?:重绘|重繪|降噪|提示词|提示詞|触发词|觸發詞)\s?$",
    re.IGNORECASE,
)
# What may stand between the weight word and the number: punctuation, spaces and a few
# connecting words. Anything else ("for SD", "decay of") breaks the link.
_GAP = re.compile(
    r"(?:[\s:：=＝,，、(（)）\[\]\"'“”*_#|/~～]"
    r"|(?<![a-z])(?:is|of|at|around|about|approx\.?|approximately|roughly|between|from|in|the|a|range|ranging"
    r"|recommended|recommend|suggested|suggest|should|be|set|to|use|using|value|values|best|works|well|lora"
    r"|locon|model|this|for|it|i|we|most|cases|usually|typically|anywhere|somewhere|ideal|ideally|optimal"
    r"|sweet|spot|good|fine|scale|default)(?![a-z])"
    r"|[为為是约約大概建议建議推荐推薦设为設為使用在范围範圍于於はをでがの約推奨値程度권장은는이가을를약정도]"
    r")*",
    re.IGNORECASE,
)
_NUM = r"[-+]?(?:\d{1,2}(?:\.\d{1,3})?|\.\d{1,3})"
_VALUE = re.compile(
    rf"(?P<a>{_NUM})(?:\s{{0,3}}(?:-|–|—|~|～|〜|to|至|到|and|through)\s{{0,3}}(?P<b>{_NUM}))?",
    re.IGNORECASE,
)
# What may not follow the number: more digits or a dot-number (a date, a version, a
# resolution), a multiplier, a percentage, or a word naming another setting.
_NOT_A_WEIGHT_AFTER = re.compile(
    r"[\d.,]\d|[x×*%:/]|\s{0,2}(?:steps?|denois|cfg|clip|hires|upscal|px|pixels?|seconds?|sec|mb|gb|kb|epochs?"
    r"|x\b|倍|步)",
    re.IGNORECASE,
)
# A whole number of 2 or more followed by a word is usually a count ("2 styles",
# "3 versions"), unless the word is one that goes with a weight.
_COUNTED = re.compile(
    r"\s{1,2}(?!(?:recommended|recommend|works?|is|for|or|and|with|to|max|maximum|min|minimum|best|if|when|on|as"
    r"|but|should|seems?|gives?|default|ideal|good|fine|at|in|then|also|will|may|might|can|tops?)(?![a-z]))[a-z]",
    re.IGNORECASE,
)
_LOOK_AHEAD = 80
_LOOK_BEHIND = 24


def weight_in_text(text: str) -> tuple[float, float | None, float | None] | None:
    """The first weight (value, low, high) a weight word in `text` announces."""
    text = text[:MAX_TEXT_CHARS]
    for keyword in _KEYWORD.finditer(text):
        before = text[max(0, keyword.start() - _LOOK_BEHIND) : keyword.start()]
        if _NOT_OURS_BEFORE.search(before):
            continue
        after = text[keyword.end() : keyword.end() + _LOOK_AHEAD]
        gap = _GAP.match(after)
        start = gap.end() if gap else 0
        found = _VALUE.match(after, start)
        if found is None:
            continue
        tail = after[found.end() :]
        if _NOT_A_WEIGHT_AFTER.match(tail) or _is_unit_prefixed(after, found.start()):
            continue
        if "." not in found.group() and abs(float(found.group("a"))) >= 2 and _COUNTED.match(tail):
            continue  # "strength of this LoRA is 2 styles": a count, not a weight
        parsed = _range(found.group("a"), found.group("b"))
        if parsed is not None:
            return parsed
    return None


def _is_unit_prefixed(after: str, start: int) -> bool:
    # "weight v1.5", "strength SD 1.5": a version or base-model name, not a weight.
    head = after[max(0, start - 5) : start].lower()
    return bool(re.search(r"(?:v|ver|sd|xl|sdxl)\s?$", head))


def _range(a: str, b: str | None) -> tuple[float, float | None, float | None] | None:
    first = _plausible(a)
    if first is None:
        return None
    if b is None:
        return (_round(first), None, None)
    second = _plausible(b)
    if second is None:
        return (_round(first), None, None)
    low, high = min(first, second), max(first, second)
    return (_round(_midpoint(low, high)), low, high)


def _usage_example(text: str, names: list[str]) -> tuple[float, float | None, float | None] | None:
    weights = lora_tag_weights(text, names, strict=False)
    if not weights:
        return None
    return (_round(weights[0]), None, None)


def lora_tag_weights(text: str, names: list[str], *, strict: bool = True) -> list[float]:
    """Weights in `<lora:name:w>` tags naming this LoRA. Not strict (the LoRA's own
    description): with no matching tag, a text whose tags all name one LoRA counts."""
    names = [n for n in (_normal(n) for n in names) if n]
    matching: list[float] = []
    others: dict[str, list[float]] = {}
    for name, text_weight in lora_tags_in(text[:MAX_TEXT_CHARS]):
        weight = _plausible(text_weight or "")
        if weight is None:
            continue
        if _name_matches(name, names):
            matching.append(weight)
        else:
            others.setdefault(_normal(name), []).append(weight)
    if matching or strict:
        return matching
    return next(iter(others.values())) if len(others) == 1 and not names else []


# -- 3. the author's example images -------------------------------------------------------


def from_examples(
    version: Mapping[str, Any], identity: LoraIdentity, names: Iterable[str] = ()
) -> RecommendedWeight | None:
    """The median weight the author used for this LoRA in the version's example images;
    `names` defaults to those the identity and the version's files give."""
    images = version.get("images")
    if not isinstance(images, list):
        return None
    name_list = [n for n in (_normal(n) for n in names) if n] or _identity_names(identity, version)
    hashes = {h.upper() for h in (identity.sha256, identity.autov2) if isinstance(h, str) and h}
    if identity.sha256:
        hashes.add(identity.sha256.upper()[:10])  # AutoV2 is the SHA256's first ten digits
    weights: list[float] = []
    for image in images[:MAX_IMAGES]:
        meta = image.get("meta") if isinstance(image, Mapping) else None
        if not isinstance(meta, Mapping):
            continue
        weight = _resource_weight(meta, hashes, name_list, identity.version_id)
        if weight is None:
            prompt = meta.get("prompt")
            if isinstance(prompt, str):
                found = lora_tag_weights(prompt[:MAX_PROMPT_CHARS], name_list)
                weight = found[0] if found else None
        if weight is not None:
            weights.append(weight)
    if not weights:
        return None
    low, high = min(weights), max(weights)
    return RecommendedWeight(
        _round(statistics.median(weights)), low if low != high else None, high if low != high else None, "examples"
    )


def _resource_weight(
    meta: Mapping[str, Any], hashes: set[str], names: list[str], version_id: int | None
) -> float | None:
    for key in ("resources", "civitaiResources", "additionalResources"):
        resources = meta.get(key)
        if not isinstance(resources, list):
            continue
        for resource in resources[:100]:
            if not isinstance(resource, Mapping):
                continue
            kind = resource.get("type")
            if isinstance(kind, str) and kind.lower() not in ("lora", "locon", "lycoris", "dora"):
                continue
            weight = _number(resource.get("weight"))
            if weight is None:
                weight = _number(resource.get("strength"))
            if weight is None:
                continue
            rhash = resource.get("hash")
            rname = resource.get("name")
            rversion = resource.get("modelVersionId")
            if (
                (isinstance(rhash, str) and rhash.strip().upper() in hashes)
                or (isinstance(rname, str) and _name_matches(rname, names))
                or (version_id is not None and rversion == version_id and not isinstance(rversion, bool))
            ):
                return weight
    return None


# -- helpers ------------------------------------------------------------------------------


def _identity_names(identity: LoraIdentity, version: Mapping[str, Any]) -> list[str]:
    """Normalised names the LoRA may go by: its file name, its name, and the name CivitAI
    gives its file (the one with its SHA256, or the only one)."""
    names = [identity.file_name, identity.name]
    files = version.get("files")
    if isinstance(files, list):
        wanted = identity.sha256.upper() if identity.sha256 else None
        for file in files[:20]:
            if not isinstance(file, Mapping):
                continue
            hashes = file.get("hashes")
            sha = hashes.get("SHA256") if isinstance(hashes, Mapping) else None
            if len(files) == 1 or (wanted and isinstance(sha, str) and sha.upper() == wanted):
                name = file.get("name")
                names.append(name if isinstance(name, str) else None)
    return [n for n in (_normal(n) for n in names if isinstance(n, str)) if len(n) >= 3]


def _normal(name: str) -> str:
    stem = name.strip().rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    stem = re.sub(r"\.(?:safetensors|ckpt|pt|bin)$", "", stem[:300], flags=re.IGNORECASE)
    return re.sub(r"[^0-9a-z\u00c0-\uffff]+", "", stem.lower())


def _name_matches(candidate: str, names: list[str]) -> bool:
    normal = _normal(candidate)
    return bool(normal) and any(normal == n or (len(normal) >= 4 and (normal in n or n in normal)) for n in names)


def _plausible(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if MIN_WEIGHT <= value <= MAX_WEIGHT else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if MIN_WEIGHT <= number <= MAX_WEIGHT else None  # NaN fails both


def _midpoint(low: float, high: float) -> float:
    return (low + high) / 2


def _round(value: float) -> float:
    """To the nearest 0.05, without float noise (0.7000000001)."""
    return _clamp(round(round(value * 20) / 20, 2))


def _clamp(value: float) -> float:
    return max(MIN_WEIGHT, min(MAX_WEIGHT, float(value)))


def _as_mapping(body: Any) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        return body
    if body is not None and hasattr(body, "model_dump"):
        dumped = body.model_dump(by_alias=True)
        return dumped if isinstance(dumped, Mapping) else {}
    return {}


def _field(body: Any, name: str) -> Any:
    if isinstance(body, Mapping):
        return body.get(name)
    return getattr(body, name, None)
