from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from urllib.parse import quote

import pytest

from engine.civitai.download import disposition_name, download_version, pick_file, safe_file_name
from engine.civitai.models import ModelVersion, parse_model, parse_version
from engine.errors import CivitaiError, CorruptFileError, LimitError, UnsafeFileError
from tests.engine.civitai.conftest import SECRET
from tests.fakes.civitai import FakeCivitai, load_sample

CONTENT = b"safetensors-ish payload " * 2000  # ~48 KB


def _version(fake: FakeCivitai, content: bytes = CONTENT, **kw) -> ModelVersion:
    kw.setdefault("base_url", fake.base_url)
    return parse_version(fake.register_hash(content=content, **kw))


def _listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


async def test_download_streams_verifies_and_lands_under_a_safe_name(
    fake: FakeCivitai, make_client, tmp_path
):
    version = _version(fake, file_name="my_lora.safetensors", base_model="Pony")
    client = await make_client(civitai_api_key=SECRET)
    seen: list[tuple[int, int | None]] = []
    path = await download_version(
        client, version, tmp_path / "loras", max_bytes=10**6, progress=lambda d, t: seen.append((d, t))
    )
    assert path == tmp_path / "loras" / "my_lora.safetensors"
    assert path.read_bytes() == CONTENT
    assert _listing(tmp_path / "loras") == ["my_lora.safetensors"]
    assert seen[0] == (0, len(CONTENT)) and seen[-1] == (len(CONTENT), len(CONTENT))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


async def test_the_key_goes_to_civitai_but_not_across_the_redirect(
    fake: FakeCivitai, make_client, tmp_path
):
    version = _version(fake)
    client = await make_client(civitai_api_key=SECRET)
    await download_version(client, version, tmp_path, max_bytes=10**6)
    (asked,) = fake.requests_for("download")
    (fetched,) = fake.requests_for("storage")
    assert asked.authorization == f"Bearer {SECRET}"
    assert fetched.server == "storage" and fetched.authorization is None
    assert fetched.query["X-Amz-Signature"] == "fake-signature"
    assert all(SECRET not in v for v in fetched.headers.values())


async def test_the_key_stays_off_once_a_redirect_has_left_civitai(
    fake: FakeCivitai, make_client, tmp_path
):
    version = _version(fake)
    back = f"{fake.base_url}/api/download/models/{version.id}"
    fake.add_fault(
        "download", status=307, headers={"Location": f"{fake.storage_url}/bounce?to={quote(back, safe='')}"}
    )
    client = await make_client(civitai_api_key=SECRET)
    assert (await download_version(client, version, tmp_path, max_bytes=10**6)).read_bytes() == CONTENT
    hops = [(r.route, r.authorization) for r in fake.requests]
    assert hops == [
        ("download", f"Bearer {SECRET}"),
        ("bounce", None),
        ("download", None),
        ("storage", None),
    ]


async def test_no_authorization_anywhere_without_a_key(fake: FakeCivitai, make_client, tmp_path):
    client = await make_client()
    await download_version(client, _version(fake), tmp_path, max_bytes=10**6)
    assert [r.authorization for r in fake.requests] == [None, None]


async def test_a_sha256_mismatch_deletes_the_download(fake: FakeCivitai, make_client, tmp_path):
    # The real sample body's hash cannot match the fake's stand-in bytes.
    body = load_sample("flux1d-lora-model-version-1387174")
    body["files"][0]["downloadUrl"] = f"{fake.base_url}/api/download/models/1387174"
    client = await make_client()
    with pytest.raises(CorruptFileError) as info:
        await download_version(client, parse_version(body), tmp_path, max_bytes=10**8)
    assert "does not match the SHA256" in str(info.value)
    assert _listing(tmp_path) == []


async def test_tampered_bytes_are_caught(fake: FakeCivitai, make_client, tmp_path):
    version = _version(fake)
    fake.add_fault("storage", status=200, body=CONTENT[:-1] + b"!")
    client = await make_client()
    with pytest.raises(CorruptFileError):
        await download_version(client, version, tmp_path, max_bytes=10**6)
    assert _listing(tmp_path) == []


async def test_pickled_files_are_refused_before_any_request(fake: FakeCivitai, make_client, tmp_path):
    client = await make_client()
    version = parse_version(load_sample("sd15-checkpoint-model-version-1318"))
    with pytest.raises(UnsafeFileError) as info:
        await download_version(client, version, tmp_path, max_bytes=10**12)
    assert "froggyStyle_toad.ckpt" in str(info.value) and "PickleTensor" in str(info.value)
    assert fake.requests == []


def test_pick_file_prefers_the_safetensors_of_a_version_with_both():
    version = parse_model(load_sample("sd15-checkpoint-model-1102")).version(1292)
    assert pick_file(version).name == "synthwavepunk_v3Alpha.safetensors"
    body = load_sample("sd15-checkpoint-model-1102")["modelVersions"][1]
    body["files"][0]["primary"], body["files"][1]["primary"] = True, False  # pickle primary
    assert pick_file(parse_version(body)).name == "synthwavepunk_v3Alpha.safetensors"
    with pytest.raises(CivitaiError):
        pick_file(parse_version({"id": 1, "files": [{"name": "notes.zip", "type": "Training Data"}]}))
    disguised = {"id": 2, "files": [{"name": "x.ckpt", "metadata": {"format": "SafeTensor"}}]}
    with pytest.raises(UnsafeFileError):
        pick_file(parse_version(disguised))


async def test_a_file_listed_bigger_than_the_limit_is_refused_before_any_request(
    fake: FakeCivitai, make_client, tmp_path
):
    client = await make_client()
    version = _version(fake, size_bytes=5 * 1024**3)
    with pytest.raises(LimitError) as info:
        await download_version(client, version, tmp_path, max_bytes=1024**3)
    assert "5.0 GiB" in str(info.value) and "1.0 GiB" in str(info.value)
    assert fake.requests == []


async def test_a_file_bigger_than_it_claimed_is_cut_off(fake: FakeCivitai, make_client, tmp_path):
    client = await make_client()
    version = _version(fake, size_bytes=100)  # the listing lies; the body is ~48 KB
    with pytest.raises(LimitError):
        await download_version(client, version, tmp_path, max_bytes=10_000)
    assert _listing(tmp_path) == []


async def test_a_connection_cut_mid_body_leaves_nothing(fake: FakeCivitai, make_client, tmp_path):
    version = _version(fake)
    fake.add_fault("storage", truncate_at=1000)
    client = await make_client(civitai_timeout_s=1.0)
    with pytest.raises(CivitaiError) as info:
        await download_version(client, version, tmp_path, max_bytes=10**6)
    assert "broke off" in str(info.value)
    assert _listing(tmp_path) == []


async def test_a_creator_requiring_login_needs_a_key(fake: FakeCivitai, make_client, tmp_path):
    fake.download_requires_key = True
    version = _version(fake)
    client = await make_client()
    with pytest.raises(CivitaiError) as info:
        await download_version(client, version, tmp_path, max_bytes=10**6)
    assert "LORACLE_CIVITAI_API_KEY" in str(info.value)
    # CivitAI answers API clients with 401 JSON and browsers with its login page; our
    # User-Agent must not look like a browser's.
    assert fake.count("login") == 0
    keyed = await make_client(civitai_api_key=SECRET)
    assert (await download_version(keyed, version, tmp_path, max_bytes=10**6)).read_bytes() == CONTENT


async def test_a_refused_key_error_does_not_contain_the_key(fake: FakeCivitai, make_client, tmp_path):
    fake.api_key = "another"
    client = await make_client(civitai_api_key=SECRET)
    with pytest.raises(CivitaiError) as info:
        await download_version(client, _version(fake), tmp_path, max_bytes=10**6)
    assert "refused our API key" in str(info.value)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert SECRET not in info.value.localized("zh-TW")


async def test_storage_errors_are_retried_before_the_body_starts(
    fake: FakeCivitai, make_client, tmp_path, sleeps
):
    version = _version(fake)
    fake.add_fault("storage", status=503)
    client = await make_client()
    path = await download_version(client, version, tmp_path, max_bytes=10**6)
    assert path.read_bytes() == CONTENT and sleeps == [0.5] and fake.count("download") == 2


async def test_a_missing_download_is_a_clear_error(fake: FakeCivitai, make_client, tmp_path):
    body = fake.register_hash(content=CONTENT, base_url=fake.base_url)
    body["files"][0]["downloadUrl"] = f"{fake.base_url}/api/download/models/1"
    client = await make_client()
    with pytest.raises(CivitaiError) as info:
        await download_version(client, parse_version(body), tmp_path, max_bytes=10**6)
    assert "no such file" in str(info.value)


async def test_offline_downloads_nothing(fake: FakeCivitai, make_client, tmp_path):
    client = await make_client(offline=True)
    with pytest.raises(CivitaiError) as info:
        await download_version(client, _version(fake), tmp_path, max_bytes=10**6)
    assert "Offline" in str(info.value) and fake.requests == []


async def test_a_hostile_name_stays_inside_the_destination(fake: FakeCivitai, make_client, tmp_path):
    dest = tmp_path / "loras"
    version = _version(fake, file_name="../../evil/..\\..\\x.safetensors")
    client = await make_client()
    path = await download_version(client, version, dest, max_bytes=10**6)
    assert path == dest / "x.safetensors" and path.read_bytes() == CONTENT
    assert _listing(dest) == ["x.safetensors"] and "evil" not in _listing(tmp_path)


async def test_an_existing_file_is_not_overwritten(fake: FakeCivitai, make_client, tmp_path):
    (tmp_path / "same.safetensors").write_bytes(b"someone else's file")
    version = _version(fake, file_name="same.safetensors")
    client = await make_client()
    path = await download_version(client, version, tmp_path, max_bytes=10**6)
    assert path.name == f"same-v{version.id}.safetensors" and path.read_bytes() == CONTENT
    assert (tmp_path / "same.safetensors").read_bytes() == b"someone else's file"


async def test_an_interrupted_download_leaves_no_partial_file(fake: FakeCivitai, make_client, tmp_path):
    class Stop(Exception):
        pass

    def progress(done: int, total: int | None) -> None:
        if done > 0:
            raise Stop

    client = await make_client()
    with pytest.raises(Stop):
        await download_version(client, _version(fake), tmp_path, max_bytes=10**6, progress=progress)
    assert _listing(tmp_path) == []


async def test_a_cancelled_download_leaves_no_partial_file(fake: FakeCivitai, make_client, tmp_path):
    version = _version(fake)
    fake.add_fault("storage", delay_s=2.0)
    client = await make_client()
    task = asyncio.create_task(download_version(client, version, tmp_path, max_bytes=10**6))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _listing(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("lora.safetensors", "lora.safetensors"),
        ("lora.SAFETENSORS", "lora.safetensors"),
        ("lora", "lora.safetensors"),
        ("lora.ckpt", "lora.ckpt.safetensors"),
        ("../../etc/passwd", "passwd.safetensors"),
        ("..\\..\\win.safetensors", "win.safetensors"),
        ("..", "civitai-1.safetensors"),
        (".safetensors", "civitai-1.safetensors"),
        (".hidden.safetensors", "hidden.safetensors"),
        ("a..b.safetensors", "a.b.safetensors"),
        ('a<b>:c"|?*.safetensors', "a_b__c.safetensors"),
        ("tab\tnew\nline.safetensors", "tab_new_line.safetensors"),
        ("裸絞め.safetensors", "裸絞め.safetensors"),
        (None, "civitai-1.safetensors"),
    ],
)
def test_safe_file_name(name, expected):
    assert safe_file_name(name, "civitai-1") == expected


def test_safe_file_name_bounds_the_length_in_bytes():
    name = safe_file_name("絞" * 300 + ".safetensors", "x")
    assert name.endswith(".safetensors") and len(name.encode()) <= 255


def test_content_hash_helper_matches_registration(fake: FakeCivitai):
    body = fake.register_hash(content=b"abc")
    assert body["files"][0]["hashes"]["SHA256"] == hashlib.sha256(b"abc").hexdigest().upper()


# -- CivitAI's refusals, as its download handler writes them ----------------------------


async def test_a_login_page_is_not_saved_as_the_file(fake: FakeCivitai, make_client, tmp_path):
    # Clients CivitAI takes for a browser are sent to its HTML login page (200) when the
    # creator requires a login; without a SHA256 to compare, that page used to be kept.
    body = fake.register_hash(content=CONTENT, base_url=fake.base_url)
    body["files"][0]["hashes"] = {}
    fake.add_fault("download", status=307, headers={"Location": "/login?returnUrl=/model-versions/1&reason=download-auth"})
    client = await make_client()
    with pytest.raises(CivitaiError) as info:
        await download_version(client, parse_version(body), tmp_path, max_bytes=10**6)
    assert "LORACLE_CIVITAI_API_KEY" in str(info.value)
    assert fake.count("login") == 1 and _listing(tmp_path) == []


async def test_a_web_page_from_storage_is_not_saved_as_the_file(fake: FakeCivitai, make_client, tmp_path):
    version = _version(fake)
    fake.add_fault("storage", status=200, body="<!DOCTYPE html><html>Just a moment...</html>", content_type="text/html")
    client = await make_client()
    with pytest.raises(CivitaiError) as info:
        await download_version(client, version, tmp_path, max_bytes=10**6)
    assert "web page instead of the file" in str(info.value) and "網頁" in info.value.localized("zh-TW")
    assert _listing(tmp_path) == []


async def test_a_refused_download_by_cloudflare_is_not_blamed_on_the_key(fake: FakeCivitai, make_client, tmp_path):
    fake.add_fault("download", status=403, body="<html><title>Attention Required! | Cloudflare</title></html>", content_type="text/html")
    client = await make_client(civitai_api_key=SECRET)
    with pytest.raises(CivitaiError) as info:
        await download_version(client, _version(fake), tmp_path, max_bytes=10**6)
    assert "firewall" in str(info.value) and "refused our API key" not in str(info.value)


async def test_an_early_access_version_says_so(fake: FakeCivitai, make_client, tmp_path):
    version = _version(fake)
    fake.early_access[version.id] = "2026-08-14T17:00:00.000Z"
    client = await make_client(civitai_api_key=SECRET)
    with pytest.raises(CivitaiError) as info:
        await download_version(client, version, tmp_path, max_bytes=10**6)
    assert "early access" in str(info.value) and "2026-08-14" in str(info.value)
    assert "API key" not in str(info.value) and "2026-08-14" in info.value.localized("zh-TW")
    assert _listing(tmp_path) == [] and fake.count("download") == 1


async def test_disabled_downloads_say_so(fake: FakeCivitai, make_client, tmp_path):
    version = _version(fake)
    fake.downloads_disabled.add(version.id)
    client = await make_client(civitai_api_key=SECRET)
    with pytest.raises(CivitaiError) as info:
        await download_version(client, version, tmp_path, max_bytes=10**6)
    assert "turned off downloads" in str(info.value) and "API key" not in str(info.value)


async def test_an_archived_model_is_refused_with_a_clear_reason(fake: FakeCivitai, make_client, tmp_path):
    version = _version(fake)
    fake.archive(version.id)
    client = await make_client()
    # A version fetched before the model was archived: CivitAI answers the download 410.
    with pytest.raises(CivitaiError) as info:
        await download_version(client, version, tmp_path, max_bytes=10**6)
    assert "archived" in str(info.value) and "封存" in info.value.localized("zh-TW")
    # A version fetched now has no files at all: refused before any request.
    fresh = (await client.model_version(version.id, refresh=True)).value
    asked = len(fake.requests)
    with pytest.raises(CivitaiError) as info:
        await download_version(client, fresh, tmp_path, max_bytes=10**6)
    assert "archived" in str(info.value) and len(fake.requests) == asked
    assert _listing(tmp_path) == []


async def test_the_served_name_is_used_when_the_body_has_none(fake: FakeCivitai, make_client, tmp_path):
    body = fake.register_hash(content=CONTENT, base_url=fake.base_url, file_name="裸絞め_IL.safetensors")
    body = {**body, "files": [{**body["files"][0], "name": None}]}
    client = await make_client()
    path = await download_version(client, parse_version(body), tmp_path, max_bytes=10**6)
    assert path.name == "裸絞め_IL.safetensors" and path.read_bytes() == CONTENT


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('attachment; filename="Rear_Naked_Choke_IL_v1.0.safetensors"', "Rear_Naked_Choke_IL_v1.0.safetensors"),
        ("attachment; filename=plain.safetensors", "plain.safetensors"),
        ("attachment; filename*=UTF-8''%E8%A3%B8%E7%B5%9E%E3%82%81.safetensors", "裸絞め.safetensors"),
        ('attachment; filename="fallback.safetensors"; filename*=UTF-8\'\'r%C3%A9al.safetensors', "réal.safetensors"),
        ('attachment; filename="a \\"quoted\\" name.safetensors"', 'a "quoted" name.safetensors'),
        ("attachment; filename*=x-unknown''abc.safetensors; filename=\"ok.safetensors\"", "ok.safetensors"),
        ("attachment", None),
        (None, None),
    ],
)
def test_disposition_name(header, expected):
    assert disposition_name(header) == expected
    if expected:
        assert "/" not in safe_file_name("../../" + expected, "x")


async def test_storage_refusing_the_signed_link_is_not_blamed_on_the_key(fake: FakeCivitai, make_client, tmp_path):
    fake.add_fault(
        "storage", status=403, content_type="application/xml",
        body="<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
    )
    client = await make_client(civitai_api_key=SECRET)
    with pytest.raises(CivitaiError) as info:
        await download_version(client, _version(fake), tmp_path, max_bytes=10**6)
    assert "refused the request (HTTP 403)" in str(info.value) and "API key" not in str(info.value)
    assert _listing(tmp_path) == []


async def test_part_files_a_killed_download_left_are_removed_by_the_next_one(
    fake: FakeCivitai, make_client, tmp_path
):
    import os
    import time

    loras = tmp_path / "loras"
    loras.mkdir()
    stale = loras / ".loracle-abc123.part"  # what SIGKILL mid-download leaves behind
    stale.write_bytes(b"x" * 1000)
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    live = loras / ".loracle-def456.part"  # another process's download, still being written
    live.write_bytes(b"y")
    unrelated = loras / ".hidden-notes.part"
    unrelated.write_bytes(b"z")
    os.utime(unrelated, (two_hours_ago, two_hours_ago))

    version = _version(fake, file_name="my_lora.safetensors")
    await download_version(await make_client(), version, loras, max_bytes=10**6)
    assert _listing(loras) == [".hidden-notes.part", ".loracle-def456.part", "my_lora.safetensors"]
