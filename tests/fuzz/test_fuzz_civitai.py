"""Fuzzing what CivitAI sends (model and model-version bodies, mutated from real ones and
made up) and what users paste as a CivitAI reference."""

from __future__ import annotations

import copy
import typing
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from engine.civitai.models import (
    Image,
    Model,
    ModelFile,
    ModelVersion,
    VersionModel,
    parse_model,
    parse_version,
)
from engine.civitai.refs import CivitaiRef, parse_civitai_ref
from engine.errors import RequestError
from engine.kinds import Architecture
from tests.fakes.civitai import load_sample
from tests.fuzz._support import json_values, own_errors_only

_VERSIONS = [
    load_sample(name)
    for name in (
        "flux1d-lora-model-version-1387174",
        "illustrious-lora-civitai-info-1421739",
        "sd15-checkpoint-model-version-1318",
    )
]
_MODELS = [load_sample(name) for name in ("flux1d-lora-model-1231067", "sd15-checkpoint-model-1102")]

# Values an API gets wrong: wrong types, out-of-range numbers, odd strings.
_odd = (
    json_values
    | st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, -1, 2**64, "", " ", "1e999", "null"])
    | st.integers(1, 60).map(lambda d: _nest(d))
)

_numbers = (
    st.sampled_from([0, -1, 1.5, 2**31, 2**63, 2**64, 1e308, -1e308, float("inf"), float("nan")])
    | st.floats()
)


def _nest(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth):
        value = {"a": [value]}
    return value


def _paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [here]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*here, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*here, i))
    return found


def _replace(body: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    body = copy.deepcopy(body)
    parent = body
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = new
    return body


@st.composite
def mutated(draw: st.DrawFn, samples: list[Any]) -> Any:
    body = draw(st.sampled_from(samples))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(body)))
        body = _replace(body, path, draw(_odd))
    return body


def _exercise_version(v: ModelVersion) -> None:
    # Everything the bot reads off a version must work on whatever parsed.
    assert isinstance(v.id, int)
    v.early_access, v.is_nsfw, v.all_hashes(), v.page_url(), v.preview_image(), v.preview_image(None)
    assert isinstance(v.air_architecture, Architecture)
    primary = v.primary_file
    for f in [*v.files, *([primary] if primary else [])]:
        size = f.size_bytes
        assert size is None or isinstance(size, int)
        f.is_safetensors, f.is_pickle, f.hashes.values()
        v.file_by_hash(next(iter(f.hashes.values()), "x"))
    for image in v.images:
        image.thumbnail_url()
    if v.model is not None:
        assert isinstance(v.model.archived, bool)


def _round_trip(v: ModelVersion) -> None:
    # A parsed body, written out as CivitAI spells it, reads back the same.
    assert parse_version(v.model_dump(mode="json", by_alias=True)) == v


@given(body=mutated(_VERSIONS))
def test_mutated_version_bodies(body):
    try:
        v = parse_version(body)
    except ValidationError:
        # only a body without a plain integer id may be refused (the client turns that
        # into a CivitaiError); pydantic's lax ids ("12", 12.0) may go either way
        ident = body.get("id") if isinstance(body, dict) else None
        assert not isinstance(body, dict) or not isinstance(ident, int) or isinstance(ident, bool)
        return
    _exercise_version(v)
    _round_trip(v)


def bodies(cls: type[BaseModel], depth: int = 2) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies shaped like `cls` (its own key names, nested models and lists of them),
    each value either of a fitting kind or odd."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, info in cls.model_fields.items():
        inner = [a for a in typing.get_args(info.annotation) or (info.annotation,) if a is not type(None)]
        nested = [a for a in _flatten(inner) if isinstance(a, type) and issubclass(a, BaseModel)]
        fitting: st.SearchStrategy[Any] = _odd
        if float in inner or int in inner:
            fitting = _numbers | _odd
        elif str in inner:
            fitting = st.text(max_size=30) | _odd
        if nested and depth > 0:
            sub = bodies(nested[0], depth - 1)
            fitting = sub | st.lists(sub, max_size=3) | _odd
        fields[info.alias or name] = fitting
    return st.fixed_dictionaries({}, optional=fields)


def _flatten(args: list[Any]) -> list[Any]:
    out = []
    for a in args:
        out.append(a)
        out += _flatten(list(typing.get_args(a)))
    return out


@given(body=bodies(ModelVersion), vid=st.integers(1, 2**53))
def test_any_version_with_an_id_parses(body, vid):
    v = parse_version({**body, "id": vid})
    assert v.id == vid
    _exercise_version(v)
    _round_trip(v)


@given(
    files=st.lists(bodies(ModelFile), min_size=1, max_size=3),
    images=st.lists(bodies(Image), max_size=3),
    model=bodies(VersionModel) | _odd,
)
def test_any_file_image_and_parent_entry(files, images, model):
    # the parts of a version the bot reads most closely, each fuzzed on its own
    v = parse_version({"id": 1, "files": files, "images": images, "model": model})
    _exercise_version(v)
    _round_trip(v)


@given(body=bodies(Model, depth=3), mid=st.integers(1, 2**53))
def test_any_model_with_an_id_parses(body, mid):
    m = parse_model({**body, "id": mid})
    for v in m.model_versions:
        _exercise_version(v)


@given(body=json_values | _odd)
def test_random_trees_as_versions(body):
    try:
        v = parse_version(body)
    except ValidationError:
        return
    _exercise_version(v)


@given(body=mutated(_MODELS) | json_values)
def test_mutated_model_bodies(body):
    try:
        m = parse_model(body)
    except ValidationError:
        return
    assert isinstance(m, Model)
    for v in m.model_versions:
        _exercise_version(v)
        m.version(v.id)
    assert parse_model(m.model_dump(mode="json", by_alias=True)) == m


# --- references users paste -------------------------------------------------------------

_ref_parts = st.sampled_from(
    [
        "https://",
        "http://",
        "civitai.com",
        "www.civitai.com",
        "civitai.red",
        "example.com",
        "/models/",
        "/api/download/models/",
        "/api/v1/model-versions/",
        "/model-versions/",
        "?modelVersionId=",
        "urn:air:sdxl:lora:civitai:",
        "@",
        "+",
        ".",
        "123",
        "456",
        "0",
        "9" * 20,
        "-1",
        "<",
        ">",
        " ",
        "//",
        ":",
        "[",
        "]",
        "%",
        "#",
        "?",
        "&",
        "\x00",
        "\u200b",
        "１２３",
        "::1",
        ":99999",
    ]
) | st.text(max_size=6)
refs = st.lists(_ref_parts, max_size=8).map("".join) | st.text(max_size=80)


@given(
    text=refs, base_url=st.none() | st.sampled_from(["http://mirror.local:8080/civitai", "http://localhost/"])
)
def test_civitai_refs(text, base_url):
    ref = own_errors_only(parse_civitai_ref, text, base_url=base_url)
    if isinstance(ref, CivitaiRef):
        assert ref.model_id is not None or ref.version_id is not None
        for value in (ref.model_id, ref.version_id):
            assert value is None or 0 < value < 2**53
    else:
        assert isinstance(ref, RequestError)


@given(
    model=st.integers(1, 2**53 - 1),
    version=st.integers(1, 2**53 - 1),
    host=st.sampled_from(["civitai.com", "civitai.green"]),
)
def test_civitai_refs_read_back_what_links_say(model, version, host):
    assert parse_civitai_ref(f"https://{host}/models/{model}?modelVersionId={version}") == CivitaiRef(
        model, version
    )
    assert parse_civitai_ref(f"urn:air:sdxl:lora:civitai:{model}@{version}") == CivitaiRef(model, version)
    assert parse_civitai_ref(f"<{host}/api/download/models/{version}>") == CivitaiRef(None, version)
