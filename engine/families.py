"""The family table: which base model belongs to which lineage and architecture.

A *family* is a lineage of checkpoints trained one from another (Illustrious and every
merge of it, NoobAI included). CivitAI names a file's *base model* ("Illustrious",
"SDXL 1.0", "Pony V7", ...); the table maps each such string to an architecture and a
family, and keeps each family's prompt conventions and well-known file-name patterns.

The table is data: `engine/data/families.toml` ships with Loracle and an admin extends it
with `<data dir>/families.toml` (same format; see the header of the shipped file). CivitAI
keeps adding base models, so anything unknown degrades to `Architecture.UNKNOWN` and no
family, never an exception.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

from engine.errors import SettingsError
from engine.i18n import Text
from engine.kinds import Architecture

log = logging.getLogger(__name__)

ADMIN_FILE_NAME = "families.toml"
SHIPPED = "engine/data/families.toml"

# Model file extensions stripped from names; anything else is part of the name
# ("sd_xl_base_1.0" must keep its ".0").
_MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")

_FAMILY_FIELDS = {
    "label",
    "architecture",
    "parent",
    "base_model",
    "description",
    "quality_tags",
    "negative_tags",
    "vocabulary",
    "names",
    "note",
    "conventions",
}
_EXTENDED_FIELDS = ("names", "vocabulary")  # admin entries are added, not replacing
_TOP_LEVEL = {"schema", "ss_base_model_version", "aliases", "base_models", "families"}


class FamilyTableError(SettingsError):
    """A family file (usually the admin's) cannot be used; names the file and why."""


_BROKEN_FILE = Text(
    "The family file {path} could not be used: {reason}. The built-in family table is used instead.",
    "無法使用家族設定檔 {path}：{reason}。目前改用內建的家族表。",
)


_BROKEN_SHIPPED = Text(
    "The built-in family table is broken: {reason}.",
    "內建的家族表有錯誤：{reason}。",
)


@dataclass(frozen=True)
class NamePattern:
    """A regex recognising file names of one lineage; weak ones are hints only."""

    pattern: str
    base_model: str | None
    strong: bool


@dataclass(frozen=True)
class PromptConvention:
    """A way a family's checkpoints were trained to be prompted (quality, aesthetic,
    source, rating or date tags), with where that comes from (a model card)."""

    kind: str  # quality | negative | aesthetic | source | rating | date
    tags: tuple[str, ...]
    text: Text  # what the tags do, in both languages
    source: str  # where it is written down
    base_model: str | None = None  # only for checkpoints of this base model (NoobAI)


@dataclass(frozen=True)
class Family:
    id: str
    label: str
    architecture: Architecture
    parent: str | None
    description: Text = field(repr=False)
    quality_tags: tuple[str, ...] = field(default=(), repr=False)
    negative_tags: tuple[str, ...] = field(default=(), repr=False)
    vocabulary: tuple[str, ...] = field(default=(), repr=False)
    name_patterns: tuple[NamePattern, ...] = field(default=(), repr=False)
    base_model: str | None = None  # what its name patterns suggest by default
    note: str | None = field(default=None, repr=False)
    conventions: tuple[PromptConvention, ...] = field(default=(), repr=False)

    def prompt_conventions(self, base_model: str | None = None) -> tuple[PromptConvention, ...]:
        """The conventions for a checkpoint of this family: the family's own, plus those
        of its exact base model (NoobAI's date tags mean nothing to other Illustrious
        checkpoints)."""
        wanted = normalize_name(base_model) if base_model else None
        return tuple(c for c in self.conventions if c.base_model is None or normalize_name(c.base_model) == wanted)


@dataclass(frozen=True)
class BaseModelInfo:
    name: str | None  # canonical CivitAI spelling when known, else as given
    architecture: Architecture
    family: Family | None
    known: bool
    note: str | None = None


@dataclass(frozen=True)
class NameGuess:
    base_model: str | None
    family: Family
    strong: bool
    pattern: str = ""


@dataclass(frozen=True)
class _BaseModel:
    name: str
    architecture: Architecture
    family: str | None
    note: str | None


def normalize_name(value: str) -> str:
    """How base-model strings are compared: case, spaces, '_' and '-' do not matter."""
    return re.sub(r"[\s_\-]+", "", value.strip().casefold())


def file_stem(filename: str) -> str:
    """The file name without folders (either slash) and without a model-file extension."""
    name = re.split(r"[\\/]", filename.strip())[-1]
    lower = name.lower()
    for suffix in _MODEL_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


class FamilyTable:
    """Lookups over the merged family table. Build it with `FamilyTable.load()`."""

    def __init__(self, raw: Mapping[str, Any], *, sources: Iterable[str] = (), problems: Iterable[FamilyTableError] = ()):
        self.sources: tuple[str, ...] = tuple(sources)
        self.problems: tuple[FamilyTableError, ...] = tuple(problems)
        self._families: dict[str, Family] = {}
        self._base_models: dict[str, _BaseModel] = {}
        self._index: dict[str, str] = {}
        self._ss_rules: list[tuple[re.Pattern[str], Architecture]] = []
        self._name_rules: list[tuple[re.Pattern[str], NamePattern, str]] = []
        self._build(raw)

    # -- construction ----------------------------------------------------------------
    @classmethod
    def load(cls, extra: Path | None = None, *, strict: bool = False) -> FamilyTable:
        """The shipped table merged with an admin file, if `extra` exists.

        A broken admin file never takes the bot down: the shipped table is returned and
        the error (naming the file) is kept in `.problems` and logged. `strict=True`
        raises it instead, for `loracle family validate`-style checks.
        """
        shipped = _shipped_raw()
        if extra is None or not Path(extra).is_file():
            try:
                return cls(shipped, sources=[SHIPPED])
            except FamilyTableError as err:
                # Only a bad edit of the shipped file gets here; tests load it every run.
                raise FamilyTableError(_BROKEN_SHIPPED, reason=err.params.get("reason", str(err))) from None
        path = Path(extra)
        try:
            admin = _read_toml(path)
            merged = merge_raw(shipped, admin)
            return cls(merged, sources=[SHIPPED, str(path)])
        except FamilyTableError as err:
            problem = FamilyTableError(_BROKEN_FILE, path=str(path), reason=err.params.get("reason", str(err)))
            if strict:
                raise problem from None
            log.warning("%s", problem)
            return cls(shipped, sources=[SHIPPED], problems=[problem])

    def _build(self, raw: Mapping[str, Any]) -> None:
        unknown = set(raw) - _TOP_LEVEL
        if unknown:
            _fail(f"unknown section(s) {', '.join(sorted(unknown))}")
        families = _table(raw.get("families", {}), "families")
        for fid, entry in families.items():
            self._families[fid] = _parse_family(fid, _table(entry, f"families.{fid}"))
        for fam in self._families.values():
            if fam.parent is not None and fam.parent not in self._families:
                _fail(f"family “{fam.id}” names an unknown parent “{fam.parent}”")
            seen = {fam.id}
            cur = fam
            while cur.parent is not None:
                if cur.parent in seen:
                    _fail(f"family “{fam.id}” is its own ancestor")
                seen.add(cur.parent)
                cur = self._families[cur.parent]
            for np in fam.name_patterns:
                self._name_rules.append((_compile(np.pattern, f"families.{fam.id}.names"), np, fam.id))
            for voc in fam.vocabulary:
                _compile(voc, f"families.{fam.id}.vocabulary")

        for name, entry in _table(raw.get("base_models", {}), "base_models").items():
            entry = _table(entry, f"base_models.{name}")
            extra_keys = set(entry) - {"family", "architecture", "note"}
            if extra_keys:
                _fail(f"base model “{name}” has unknown field(s) {', '.join(sorted(extra_keys))}")
            family_id = entry.get("family")
            if family_id is not None and family_id not in self._families:
                _fail(f"base model “{name}” names an unknown family “{family_id}”")
            arch_value = entry.get("architecture")
            if arch_value is not None:
                arch = _arch(arch_value, f"base model “{name}”")
            elif family_id is not None:
                arch = self._families[family_id].architecture
            else:
                _fail(f"base model “{name}” needs a family or an architecture")
            if family_id is not None and arch != self._families[family_id].architecture:
                _fail(f"base model “{name}” is {arch} but its family “{family_id}” is {self._families[family_id].architecture}")
            self._base_models[name] = _BaseModel(name, arch, family_id, _opt_str(entry.get("note"), name))
            self._register(name, name)

        for alias, target in _table(raw.get("aliases", {}), "aliases").items():
            if not isinstance(target, str) or target not in self._base_models:
                _fail(f"alias “{alias}” points to an unknown base model “{target}”")
            self._register(alias, target)

        for fam in self._families.values():
            if fam.base_model is not None and fam.base_model not in self._base_models:
                _fail(f"family “{fam.id}” names an unknown base model “{fam.base_model}”")
            for np in fam.name_patterns:
                if np.base_model is not None and np.base_model not in self._base_models:
                    _fail(f"a name pattern of “{fam.id}” names an unknown base model “{np.base_model}”")
            for convention in fam.conventions:
                if convention.base_model is not None and convention.base_model not in self._base_models:
                    _fail(f"a convention of “{fam.id}” names an unknown base model “{convention.base_model}”")

        for pattern, arch in _table(raw.get("ss_base_model_version", {}), "ss_base_model_version").items():
            self._ss_rules.append((_compile(pattern, "ss_base_model_version"), _arch(arch, f"ss_base_model_version “{pattern}”")))

    def _register(self, spelling: str, canonical: str) -> None:
        key = normalize_name(spelling)
        if not key:
            _fail("an empty base-model name")
        existing = self._index.get(key)
        if existing is not None and existing != canonical:
            _fail(f"“{spelling}” would mean both “{existing}” and “{canonical}”")
        self._index[key] = canonical

    # -- lookups ---------------------------------------------------------------------
    def families(self) -> list[Family]:
        return list(self._families.values())

    def family(self, family_id: str | None) -> Family | None:
        return self._families.get(family_id) if family_id else None

    def base_model_names(self) -> list[str]:
        """Every canonical base-model string, e.g. for autocomplete of an admin command."""
        return list(self._base_models)

    def lookup(self, base_model: str | None) -> BaseModelInfo:
        """What a CivitAI-style base-model string means; unknown strings are not errors."""
        if base_model is None or not isinstance(base_model, str) or not base_model.strip():
            return BaseModelInfo(None, Architecture.UNKNOWN, None, False, None)
        canonical = self._index.get(normalize_name(base_model))
        if canonical is None:
            return BaseModelInfo(base_model.strip(), Architecture.UNKNOWN, None, False, None)
        entry = self._base_models[canonical]
        return BaseModelInfo(entry.name, entry.architecture, self.family(entry.family), True, entry.note)

    def lineage(self, family_id: str | None) -> list[Family]:
        """The family itself first, then its parent, grandparent, ...; [] when unknown."""
        chain: list[Family] = []
        fam = self.family(family_id)
        while fam is not None:
            chain.append(fam)
            fam = self.family(fam.parent)
        return chain

    def related(self, a: str, b: str) -> bool:
        """True when one family is the other or one of its ancestors."""
        return a in {f.id for f in self.lineage(b)} or b in {f.id for f in self.lineage(a)}

    def common_ancestor(self, a: str, b: str) -> Family | None:
        """The nearest family both descend from (either may be it), or None."""
        ancestors_b = {f.id for f in self.lineage(b)}
        for fam in self.lineage(a):
            if fam.id in ancestors_b:
                return fam
        return None

    def guess_from_name(self, filename: str | None) -> NameGuess | None:
        """Guess the lineage from a file name like `ponyDiffusionV6XL_v6StartWithThisOne`.

        Strong patterns outrank weak ones. When the matching patterns point at families
        on one line of descent (weak "xl" and strong "autismmix"), the most specific
        family wins; when they disagree ("IL+Pony"), there is no guess.
        """
        if not filename:
            return None
        stem = file_stem(filename)
        if not stem:
            return None
        matches: list[tuple[NamePattern, str, int]] = []
        for regex, np, fid in self._name_rules:
            m = regex.search(stem)
            if m:
                matches.append((np, fid, m.end() - m.start()))
        if not matches:
            return None
        strong = [m for m in matches if m[0].strong]
        tier = strong or matches
        fids = list(dict.fromkeys(fid for _, fid, _ in tier))
        deepest = max(fids, key=lambda fid: len(self.lineage(fid)))
        chain = {f.id for f in self.lineage(deepest)}
        if any(fid not in chain for fid in fids):
            return None
        np, fid, _ = max((m for m in tier if m[1] == deepest), key=lambda m: m[2])
        fam = self._families[fid]
        return NameGuess(np.base_model or fam.base_model, fam, bool(strong), np.pattern)

    def arch_from_ss_base_model_version(self, value: str | None) -> Architecture:
        """Architecture named by kohya's `ss_base_model_version` ("sdxl_base_v1-0", ...)."""
        if not value or not isinstance(value, str):
            return Architecture.UNKNOWN
        text = value.strip()
        for regex, arch in self._ss_rules:
            if regex.search(text):
                return arch
        return Architecture.UNKNOWN


@lru_cache(maxsize=8)
def default_table(extra: Path | None = None) -> FamilyTable:
    """The table, loaded once per admin file path (None: shipped only)."""
    return FamilyTable.load(extra)


# -- raw data ------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _shipped_text() -> str:
    return resources.files("engine.data").joinpath("families.toml").read_text(encoding="utf-8")


def _shipped_raw() -> dict[str, Any]:
    # Parsed fresh each time so that merging can never mutate a shared copy.
    return tomllib.loads(_shipped_text())


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        _fail(f"it is not valid TOML ({exc})")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"it cannot be read ({exc})")


def merge_raw(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Merge an admin table over the shipped one (rules in the shipped file's header)."""
    unknown = set(extra) - _TOP_LEVEL
    if unknown:
        _fail(f"unknown section(s) {', '.join(sorted(unknown))}")
    merged: dict[str, Any] = {k: v for k, v in base.items()}
    for section in ("aliases", "base_models"):
        merged[section] = {**_table(base.get(section, {}), section), **_table(extra.get(section, {}), section)}
    # Admin rules first: the first matching rule wins.
    ss_extra = _table(extra.get("ss_base_model_version", {}), "ss_base_model_version")
    ss_base = {k: v for k, v in _table(base.get("ss_base_model_version", {}), "ss_base_model_version").items() if k not in ss_extra}
    merged["ss_base_model_version"] = {**ss_extra, **ss_base}
    families = {fid: dict(entry) for fid, entry in _table(base.get("families", {}), "families").items()}
    for fid, entry in _table(extra.get("families", {}), "families").items():
        entry = _table(entry, f"families.{fid}")
        if fid not in families:
            families[fid] = dict(entry)
            continue
        target = families[fid]
        for key, value in entry.items():
            if key in _EXTENDED_FIELDS:
                if not isinstance(value, list):
                    _fail(f"families.{fid}.{key} must be a list")
                target[key] = list(value) + list(target.get(key, []))
            else:
                target[key] = value
    merged["families"] = families
    return merged


def _parse_family(fid: str, entry: Mapping[str, Any]) -> Family:
    where = f"family “{fid}”"
    extra_keys = set(entry) - _FAMILY_FIELDS
    if extra_keys:
        _fail(f"{where} has unknown field(s) {', '.join(sorted(extra_keys))}")
    label = entry.get("label")
    if not isinstance(label, str) or not label.strip():
        _fail(f"{where} needs a label")
    desc = entry.get("description")
    if not isinstance(desc, Mapping) or not all(isinstance(desc.get(k), str) and desc.get(k) for k in ("en", "zh-TW")):
        _fail(f"{where} needs a description with both “en” and “zh-TW”")
    parent = entry.get("parent")
    if parent is not None and not isinstance(parent, str):
        _fail(f"{where}: parent must be a family id")
    names: list[NamePattern] = []
    for item in entry.get("names", []) or []:
        if isinstance(item, str):
            item = {"pattern": item, "strong": False}
        if not isinstance(item, Mapping) or not isinstance(item.get("pattern"), str):
            _fail(f"{where}: every name pattern needs a “pattern” string")
        if set(item) - {"pattern", "base_model", "strong"}:
            _fail(f"{where}: a name pattern has unknown field(s)")
        strong = item.get("strong", False)
        if not isinstance(strong, bool):
            _fail(f"{where}: “strong” must be true or false")
        names.append(NamePattern(item["pattern"], _opt_str(item.get("base_model"), where), strong))
    return Family(
        id=fid,
        label=label.strip(),
        architecture=_arch(entry.get("architecture"), where),
        parent=parent or None,
        description=Text(desc["en"], desc["zh-TW"]),
        quality_tags=_str_tuple(entry.get("quality_tags"), f"{where} quality_tags"),
        negative_tags=_str_tuple(entry.get("negative_tags"), f"{where} negative_tags"),
        vocabulary=_str_tuple(entry.get("vocabulary"), f"{where} vocabulary"),
        name_patterns=tuple(names),
        base_model=_opt_str(entry.get("base_model"), where),
        note=_opt_str(entry.get("note"), where),
        conventions=_conventions(entry.get("conventions"), where),
    )


_CONVENTION_KINDS = {"quality", "negative", "aesthetic", "source", "rating", "date"}
_CONVENTION_FIELDS = {"kind", "tags", "en", "zh-TW", "source", "base_model"}


def _conventions(value: Any, where: str) -> tuple[PromptConvention, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        _fail(f"{where}: conventions must be a list of tables")
    found = []
    for item in value:
        if not isinstance(item, Mapping) or set(item) - _CONVENTION_FIELDS:
            _fail(f"{where}: a convention may only have {', '.join(sorted(_CONVENTION_FIELDS))}")
        kind = item.get("kind")
        if kind not in _CONVENTION_KINDS:
            _fail(f"{where}: a convention's kind must be one of {', '.join(sorted(_CONVENTION_KINDS))}")
        tags = _str_tuple(item.get("tags"), f"{where} convention tags")
        en, zh, source = item.get("en"), item.get("zh-TW"), item.get("source")
        if not tags or not all(isinstance(v, str) and v.strip() for v in (en, zh, source)):
            _fail(f"{where}: a convention needs tags, “en”, “zh-TW” and a “source”")
        found.append(
            PromptConvention(str(kind), tags, Text(str(en), str(zh)), str(source), _opt_str(item.get("base_model"), where))
        )
    return tuple(found)


def _fail(reason: str) -> NoReturn:
    raise FamilyTableError(Text("{reason}", "{reason}"), reason=reason)


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        _fail(f"“{where}” must be a table")
    return dict(value)


def _arch(value: Any, where: str) -> Architecture:
    try:
        arch = Architecture(str(value).strip().lower())
    except ValueError:
        arch = None
    if arch is None or arch == Architecture.UNKNOWN:
        choices = ", ".join(a.value for a in Architecture if a != Architecture.UNKNOWN)
        _fail(f"{where}: architecture “{value}” is not one of {choices}")
    return arch


def _str_tuple(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _fail(f"{where} must be a list of strings")
    return tuple(v.strip() for v in value if v.strip())


def _opt_str(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        _fail(f"{where}: expected text, got {type(value).__name__}")
    return value.strip() or None


def _compile(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        _fail(f"{where}: “{pattern}” is not a valid regular expression ({exc})")
