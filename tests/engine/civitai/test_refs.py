from __future__ import annotations

import pytest

from engine.civitai.refs import CivitaiRef, parse_civitai_ref
from engine.errors import RequestError
from engine.i18n import ZH_TW


@pytest.mark.parametrize(
    ("text", "model_id", "version_id"),
    [
        ("https://civitai.com/models/123/some-slug?modelVersionId=456", 123, 456),
        ("https://civitai.com/models/123?modelVersionId=456", 123, 456),
        ("https://civitai.com/models/123", 123, None),
        ("https://civitai.com/models/123/", 123, None),
        ("https://www.civitai.com/models/123/slug", 123, None),
        ("https://civitai.green/models/123?modelVersionId=456", 123, 456),
        # civitai.red: CivitAI's 18+ domain since April 2026, same paths and ids
        ("https://civitai.red/models/123/some-slug?modelVersionId=456", 123, 456),
        ("civitai.red/models/123", 123, None),
        ("https://www.civitai.red/api/download/models/456", None, 456),
        ("https://civitai.com/model-versions/456", None, 456),
        ("civitai.com/models/123?modelVersionId=456", 123, 456),
        ("<https://civitai.com/models/123>", 123, None),
        ("https://civitai.com/api/download/models/456", None, 456),
        ("https://civitai.com/api/download/models/456?type=Model&format=SafeTensor", None, 456),
        ("https://civitai.com/api/v1/model-versions/456", None, 456),
        ("https://civitai.com/api/v1/models/123", 123, None),
        ("urn:air:sdxl:lora:civitai:123@456", 123, 456),
        ("urn:air:flux1:checkpoint:civitai:1231067@1387174", 1231067, 1387174),
        ("urn:air:sdxl:lora:civitai:123", 123, None),
        ("urn:air:sdxl:lora:civitai:123@456.safetensors", 123, 456),
        ("  456  ", None, 456),
        ("456", None, 456),
    ],
)
def test_accepted_references(text, model_id, version_id):
    assert parse_civitai_ref(text) == CivitaiRef(model_id, version_id)


def test_the_configured_mirror_is_accepted():
    base = "http://127.0.0.1:8080"
    assert parse_civitai_ref("http://127.0.0.1:8080/models/1?modelVersionId=2", base_url=base) == CivitaiRef(1, 2)
    assert parse_civitai_ref("http://127.0.0.1:8080/api/download/models/9", base_url=base) == CivitaiRef(None, 9)
    with pytest.raises(RequestError):
        parse_civitai_ref("http://127.0.0.1:9999/models/1")  # not configured: not CivitAI


def test_a_mirror_under_a_path_prefix():
    base = "https://mirror.example/civitai/"
    assert parse_civitai_ref("https://mirror.example/civitai/models/7", base_url=base) == CivitaiRef(7, None)
    with pytest.raises(RequestError):
        parse_civitai_ref("https://mirror.example/models/7", base_url=base)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "abc",
        "-5",
        "0",
        "1.5",
        "٤٥٦",  # Arabic-Indic digits are digits to str.isdigit, not to us
        "https://example.com/models/123",
        "https://civitai.com.evil.example/models/123",
        "https://civitai.com/user/someone",
        "https://civitai.com/images/123",
        "https://civitai.com/models/abc",
        "ftp://civitai.com/models/123",
        "urn:air:sdxl:lora:huggingface:123@456",
        "urn:air:sdxl:lora:civitai:abc@456",
        "javascript:alert(1)",
        "99999999999999999999",
    ],
)
def test_everything_else_is_a_clear_request_error(text):
    with pytest.raises(RequestError) as info:
        parse_civitai_ref(text)
    assert "is not a CivitAI link" in str(info.value)
    assert "不是 CivitAI 連結" in info.value.localized(ZH_TW)


def test_the_error_quotes_a_long_input_shortened():
    with pytest.raises(RequestError) as info:
        parse_civitai_ref("x" * 500)
    assert "x" * 117 + "…" in str(info.value) and "x" * 200 not in str(info.value)
