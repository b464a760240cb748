"""A fake CivitAI served on loopback, answering the real routes with real bodies.

    fake = FakeCivitai()                  # knows the sample bodies in tests/data/civitai/
    async with fake.serve() as base_url:  # two servers: the API, and "storage" on another
        ...                               # port that download redirects point to

or, in a test, the `fake_civitai` fixture, which yields `(fake, base_url)`. Other test
folders use it by importing the fixture into their conftest.py:

    from tests.fakes.civitai import fake_civitai  # noqa: F401

Programmable faults per route and per hash/id (`add_fault`): any status (404, 401, 429
with Retry-After, 5xx), slow answers (to hit client timeouts), raw bodies (malformed
JSON, Cloudflare-style HTML pages via `content_type`), truncated downloads. Every request
is recorded (`requests`, `count`) with its headers and body. `register_hash` makes CivitAI
"know" any file under a chosen base model.

CivitAI's own refusals are reproduced as its handlers write them: `archive(version_id)`
(the API then serves the version without files, as it does for archived models, and the
download answers 410), `early_access` (403 "Early Access" with a deadline),
`downloads_disabled`, and `download_requires_key` (401 JSON for API clients, a redirect to
the HTML login page for browsers).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from engine.settings import Settings

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "civitai"
REAL_ORIGIN = "https://civitai.com"

# Routes faults and recordings are keyed by.
ROUTES = ("by-hash", "by-hash-batch", "version", "model", "download", "login", "storage", "image", "bounce")

# baseModel -> the AIR ecosystem CivitAI writes (its root ecosystem, lower-cased).
_ECOSYSTEMS = {
    "SD 1.4": "sd1",
    "SD 1.5": "sd1",
    "SD 1.5 LCM": "sd1",
    "SD 1.5 Hyper": "sd1",
    "SD 2.0": "sd2",
    "SD 2.1": "sd2",
    "SDXL 1.0": "sdxl",
    "SDXL Lightning": "sdxl",
    "SDXL Hyper": "sdxl",
    "SDXL Turbo": "sdxl",
    "Pony": "sdxl",
    "Illustrious": "sdxl",
    "NoobAI": "sdxl",
    "Flux.1 D": "flux1",
    "Flux.1 S": "flux1",
    "SD 3": "sd3",
    "SD 3.5": "sd3",
    "AuraFlow": "auraflow",
    "Pony V7": "auraflow",
}
_AIR_TYPES = {"LORA": "lora", "Checkpoint": "checkpoint", "LoCon": "lycoris", "DoRA": "dora"}

_ids = itertools.count(9_100_000)


def air_for(base_model: str | None, model_type: str | None, model_id: int, version_id: int) -> str:
    ecosystem = _ECOSYSTEMS.get(base_model or "", (base_model or "other").lower().replace(" ", ""))
    kind = _AIR_TYPES.get(model_type or "", (model_type or "unknown").lower())
    return f"urn:air:{ecosystem}:{kind}:civitai:{model_id}@{version_id}"


def version_body(
    sha256: str,
    *,
    base_model: str | None = "Illustrious",
    version_id: int | None = None,
    model_id: int | None = None,
    name: str = "v1.0",
    model_name: str | None = None,
    model_type: str = "LORA",
    file_name: str | None = None,
    size_bytes: int | None = None,
    file_format: str = "SafeTensor",
    nsfw: bool = False,
    trained_words: list[str] | tuple[str, ...] = (),
    base_url: str = REAL_ORIGIN,
) -> dict[str, Any]:
    """A model-version body shaped like CivitAI's, for a file with this SHA256."""
    sha = sha256.upper()
    vid = version_id if version_id is not None else next(_ids)
    mid = model_id if model_id is not None else next(_ids)
    download = f"{base_url}/api/download/models/{vid}"
    return {
        "id": vid,
        "modelId": mid,
        "name": name,
        "createdAt": "2025-03-01T10:00:00.000Z",
        "updatedAt": "2025-03-01T10:05:00.000Z",
        "status": "Published",
        "publishedAt": "2025-03-01T10:05:00.000Z",
        "trainedWords": list(trained_words),
        "trainingStatus": None,
        "trainingDetails": None,
        "baseModel": base_model,
        "baseModelType": "Standard",
        "earlyAccessEndsAt": None,
        "earlyAccessConfig": None,
        "description": None,
        "uploadType": "Created",
        "usageControl": "Download",
        "air": air_for(base_model, model_type, mid, vid),
        "stats": {"downloadCount": 0, "ratingCount": 0, "rating": 0, "thumbsUpCount": 0},
        "model": {"name": model_name or f"Test {model_type} {mid}", "type": model_type, "nsfw": nsfw, "poi": False},
        "files": [
            {
                "id": next(_ids),
                "sizeKB": (size_bytes if size_bytes is not None else 1024) / 1024,
                "name": file_name or f"test_{vid}.safetensors",
                "type": "Model",
                "pickleScanResult": "Success",
                "pickleScanMessage": "No Pickle imports",
                "virusScanResult": "Success",
                "virusScanMessage": None,
                "scannedAt": "2025-03-01T10:04:00.000Z",
                "metadata": {"format": file_format, "size": None, "fp": None},
                # AutoV2 is by definition the first 10 hex digits of the SHA256.
                "hashes": {"AutoV2": sha[:10], "SHA256": sha},
                "primary": True,
                "downloadUrl": download,
            }
        ],
        "images": [],
        "downloadUrl": download,
    }


def load_sample(name: str) -> Any:
    """A real CivitAI body from tests/data/civitai/ (file name without .json)."""
    return json.loads((DATA_DIR / f"{name}.json").read_text(encoding="utf-8"))


@dataclass
class Fault:
    route: str  # one of ROUTES, or "*"
    key: str | None = None  # an upper-case hash or an id; None: every request on the route
    status: int | None = None  # None: the normal status (after any delay)
    retry_after: str | None = None
    headers: dict[str, str] | None = None  # extra response headers (e.g. a Location)
    delay_s: float = 0.0
    body: str | bytes | None = None  # sent instead of the real body
    truncate_at: int | None = None  # storage only: send this many bytes, then drop the line
    content_type: str = "application/json"  # e.g. "text/html" for a Cloudflare page
    times: int | None = 1  # how many requests it applies to; None: forever
    hits: int = 0

    def matches(self, route: str, key: str | None) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.route not in ("*", route):
            return False
        return self.key is None or (key is not None and self.key.upper() == key.upper())


@dataclass(frozen=True)
class RecordedRequest:
    server: str  # "api" | "storage"
    route: str
    key: str | None
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeCivitai:
    versions: dict[int, dict[str, Any]] = field(default_factory=dict)
    models: dict[int, dict[str, Any]] = field(default_factory=dict)
    file_bytes: dict[int, bytes] = field(default_factory=dict)  # file id -> content
    images: dict[str, bytes] = field(default_factory=dict)  # name -> bytes under /images/
    faults: list[Fault] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    api_key: str | None = None  # when set, any other bearer token is answered 401
    download_requires_key: bool = False  # like a creator who requires a login to download
    archived: set[int] = field(default_factory=set)  # version ids of archived models
    early_access: dict[int, str] = field(default_factory=dict)  # version id -> deadline
    downloads_disabled: set[int] = field(default_factory=set)  # version ids
    base_url: str = ""
    storage_url: str = ""
    load_samples: bool = True

    def __post_init__(self) -> None:
        self._closing: asyncio.Event | None = None
        if self.load_samples:
            self._load_samples()

    # -- serving --------------------------------------------------------------------

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        self._closing = asyncio.Event()
        storage = TestServer(self._storage_app(), host="127.0.0.1")
        api = TestServer(self._api_app(), host="127.0.0.1")
        await storage.start_server()
        await api.start_server()
        self.storage_url = str(storage.make_url("/")).rstrip("/")
        self.base_url = str(api.make_url("/")).rstrip("/")
        try:
            yield self.base_url
        finally:
            self._closing.set()  # frees handlers that are "slow" on purpose
            await api.close()
            await storage.close()

    # -- programming it -------------------------------------------------------------

    def add_fault(
        self,
        route: str,
        *,
        key: str | int | None = None,
        status: int | None = None,
        retry_after: str | int | None = None,
        headers: dict[str, str] | None = None,
        delay_s: float = 0.0,
        body: str | bytes | None = None,
        truncate_at: int | None = None,
        content_type: str = "application/json",
        times: int | None = 1,
    ) -> Fault:
        if route != "*" and route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; one of {ROUTES}")
        fault = Fault(
            route=route,
            key=None if key is None else str(key).upper(),
            status=status,
            retry_after=None if retry_after is None else str(retry_after),
            headers=headers,
            delay_s=delay_s,
            body=body,
            truncate_at=truncate_at,
            content_type=content_type,
            times=times,
        )
        self.faults.append(fault)
        return fault

    def add_version(self, body: dict[str, Any], content: bytes | None = None) -> dict[str, Any]:
        """Serve this model-version body (and `content` as its primary file's bytes)."""
        self.versions[int(body["id"])] = body
        if content is not None:
            primary = next((f for f in body.get("files", []) if f.get("primary")), body["files"][0])
            self.file_bytes[int(primary["id"])] = content
        return body

    def register_hash(
        self, sha256: str | None = None, *, content: bytes | None = None, **body_args: Any
    ) -> dict[str, Any]:
        """Make CivitAI know a file: by its SHA256, or by its content (hashed here).

        `body_args` go to `version_body` (base_model, version_id, model_type, file_name...).
        Returns the body, as CivitAI would serve it.
        """
        if sha256 is None:
            if content is None:
                raise ValueError("give sha256 or content")
            sha256 = hashlib.sha256(content).hexdigest()
        if content is not None:
            body_args.setdefault("size_bytes", len(content))
        body = version_body(sha256, **body_args)
        return self.add_version(body, content)

    def archive(self, version_id: int) -> None:
        """Archive the model of this version: CivitAI keeps answering lookups (the hashes
        still match) but strips the files and the download link, and refuses downloads."""
        self.archived.add(int(version_id))

    def add_image(self, name: str, data: bytes) -> str:
        """Serve `data` on the storage server; returns its URL (valid once serving)."""
        self.images[name] = data
        return f"{self.storage_url}/images/{quote(name, safe='')}"

    def count(self, route: str, key: str | int | None = None) -> int:
        return len(self.requests_for(route, key))

    def requests_for(self, route: str, key: str | int | None = None) -> list[RecordedRequest]:
        wanted = None if key is None else str(key).upper()
        return [
            r for r in self.requests if r.route == route and (wanted is None or (r.key or "").upper() == wanted)
        ]

    # -- the real routes ------------------------------------------------------------

    def _api_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/model-versions/by-hash/{hash}", self._by_hash)
        app.router.add_post("/api/v1/model-versions/by-hash", self._by_hash_batch)
        app.router.add_get("/api/v1/model-versions/{id}", self._version)
        app.router.add_get("/api/v1/models/{id}", self._model)
        app.router.add_get("/api/download/models/{id}", self._download)
        app.router.add_get("/login", self._login_page)
        return app

    def _storage_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/files/{file_id}/{name:.*}", self._storage)
        app.router.add_get("/images/{name}", self._image)
        app.router.add_get("/bounce", self._bounce)
        return app

    async def _by_hash(self, request: web.Request) -> web.StreamResponse:
        h = request.match_info["hash"].upper()
        early = await self._begin(request, "api", "by-hash", h)
        if early is not None:
            return early
        version = self._version_for_hash(h, sha256_only=False)
        if version is None:
            return _json({"error": "Model not found"}, status=404)
        return self._json_text(version)

    async def _by_hash_batch(self, request: web.Request) -> web.StreamResponse:
        early = await self._begin(request, "api", "by-hash-batch", None)
        if early is not None:
            return early
        # Same checks as CivitAI's handler: a JSON array of at most 100 SHA256 strings.
        try:
            hashes = json.loads(await request.read())
        except ValueError:
            hashes = None
        valid = (
            isinstance(hashes, list)
            and len(hashes) <= 100
            and all(isinstance(h, str) and len(h) == 64 for h in hashes)
        )
        if not valid:
            return _json({"error": "Request must include an array of SHA256 Hashes."}, status=400)
        wanted = {h.upper() for h in hashes}
        found = []
        # One entry per matching *file*, as CivitAI does (a version can come twice).
        for body in self._all_versions():
            for file in body.get("files") or []:
                if ((file.get("hashes") or {}).get("SHA256") or "").upper() in wanted:
                    found.append(body)
        served = [self._served(b) for b in found]
        return web.Response(text=self._rewrite(json.dumps(served)), content_type="application/json")

    async def _version(self, request: web.Request) -> web.StreamResponse:
        vid = request.match_info["id"]
        early = await self._begin(request, "api", "version", vid)
        if early is not None:
            return early
        body = self._all_versions_by_id().get(int(vid)) if vid.isdigit() else None
        if body is None:
            return _json({"error": "Model not found"}, status=404)
        return self._json_text(body)

    async def _model(self, request: web.Request) -> web.StreamResponse:
        mid = request.match_info["id"]
        early = await self._begin(request, "api", "model", mid)
        if early is not None:
            return early
        body = self.models.get(int(mid)) if mid.isdigit() else None
        if body is None:
            return _json({"error": "No model with id " + mid}, status=404)
        return self._json_text(body)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        vid = request.match_info["id"]
        early = await self._begin(request, "api", "download", vid)
        if early is not None:
            return early
        body = self._all_versions_by_id().get(int(vid)) if vid.isdigit() else None
        if body is None:
            return _json({"error": "File not found"}, status=404)
        # The order of CivitAI's checks (src/pages/api/download/models/[modelVersionId].ts).
        if int(vid) in self.archived:
            return _json({"error": "Model archived, not available for download"}, status=410)
        if int(vid) in self.early_access:
            return _json(
                {
                    "error": "Early Access",
                    "deadline": self.early_access[int(vid)],
                    "message": "This asset is in Early Access. You can use Buzz access it now!",
                },
                status=403,
            )
        if self.download_requires_key and "Authorization" not in request.headers:
            if _is_browser(request):
                raise web.HTTPTemporaryRedirect(f"/login?returnUrl=/model-versions/{vid}&reason=download-auth")
            return _json(
                {
                    "error": "Unauthorized",
                    "message": "The creator of this asset requires you to be logged in to download it",
                },
                status=401,
            )
        if int(vid) in self.downloads_disabled:
            return _json(
                {"error": "Unauthorized", "message": "The creator of this asset has disabled downloads on this file"},
                status=401,
            )
        files = body.get("files") or []
        fmt = request.query.get("format")
        chosen = next(
            (f for f in files if fmt and (f.get("metadata") or {}).get("format") == fmt),
            next((f for f in files if f.get("primary")), files[0] if files else None),
        )
        if chosen is None:
            return _json({"error": "Missing model file"}, status=404)
        # CivitAI answers with a redirect to a signed URL on its storage host.
        target = f"{self.storage_url}/files/{chosen['id']}/{quote(chosen.get('name') or 'file', safe='')}"
        raise web.HTTPTemporaryRedirect(target + "?X-Amz-Signature=fake-signature&X-Amz-Expires=86400")

    async def _login_page(self, request: web.Request) -> web.StreamResponse:
        self._record(request, "api", "login", None, b"")
        return web.Response(text=_LOGIN_HTML, content_type="text/html")

    async def _storage(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        fault = self._take_fault("storage", file_id)
        self._record(request, "storage", "storage", file_id, await request.read())
        if fault is not None:
            early = await self._fault_response(fault)
            if early is not None:
                return early
        data = self.file_bytes.get(int(file_id)) if file_id.isdigit() else None
        if data is None:
            data = f"fake bytes for file {file_id}\n".encode()
        headers = {"Content-Disposition": _disposition(request.match_info["name"])}
        if fault is not None and fault.truncate_at is not None:
            resp = web.StreamResponse(headers=headers)
            resp.content_length = len(data)
            await resp.prepare(request)
            await resp.write(data[: fault.truncate_at])
            # Drop the line mid-body, like a storage node going away.
            if request.transport is not None:
                request.transport.close()
            return resp
        return web.Response(body=data, headers=headers, content_type="application/octet-stream")

    async def _image(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        early = await self._begin(request, "storage", "image", name)
        if early is not None:
            return early
        data = self.images.get(name)
        if data is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=data, content_type="image/png")

    async def _bounce(self, request: web.Request) -> web.StreamResponse:
        """Redirect to `?to=`: builds redirect chains that hop between hosts."""
        early = await self._begin(request, "storage", "bounce", None)
        if early is not None:
            return early
        raise web.HTTPFound(request.query["to"])

    # -- helpers --------------------------------------------------------------------

    async def _begin(
        self, request: web.Request, server: str, route: str, key: str | None
    ) -> web.StreamResponse | None:
        """Record the request; answer 401 for a wrong key; play a fault if one matches."""
        self._record(request, server, route, key, await request.read())
        auth = request.headers.get("Authorization")
        if self.api_key is not None and auth is not None and auth != f"Bearer {self.api_key}":
            return _json({"error": "Unauthorized"}, status=401)
        fault = self._take_fault(route, key)
        return await self._fault_response(fault) if fault is not None else None

    def _take_fault(self, route: str, key: str | None) -> Fault | None:
        for fault in self.faults:
            if fault.matches(route, key):
                fault.hits += 1
                return fault
        return None

    async def _fault_response(self, fault: Fault) -> web.StreamResponse | None:
        if fault.delay_s:
            assert self._closing is not None
            with suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), fault.delay_s)
        if fault.status is None and fault.body is None:
            return None  # only slow: go on with the real answer
        if fault.truncate_at is not None:
            return None
        status = fault.status or 200
        headers = dict(fault.headers or {})
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        if fault.body is not None:
            body = fault.body if isinstance(fault.body, bytes) else fault.body.encode()
        else:
            body = json.dumps({"error": f"fake fault {status}"}).encode()
        return web.Response(status=status, body=body, headers=headers, content_type=fault.content_type)

    def _record(
        self, request: web.Request, server: str, route: str, key: str | None, body: bytes
    ) -> None:
        self.requests.append(
            RecordedRequest(
                server=server,
                route=route,
                key=key,
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=body,
            )
        )

    def _json_text(self, body: Any) -> web.Response:
        return web.Response(text=self._rewrite(json.dumps(self._served(body))), content_type="application/json")

    def _served(self, body: Any) -> Any:
        """A version body as the API serves it: archived models lose files and link."""
        if isinstance(body, dict) and int(body.get("id", -1)) in self.archived:
            body = {**body, "files": [], "model": {**(body.get("model") or {}), "mode": "Archived"}}
            body.pop("downloadUrl", None)
        return body

    def _rewrite(self, text: str) -> str:
        # CivitAI builds download links from the host that was asked; so does the fake.
        return text.replace(f"{REAL_ORIGIN}/api/download/", f"{self.base_url}/api/download/")

    def _all_versions(self) -> list[dict[str, Any]]:
        return list(self._all_versions_by_id().values())

    def _all_versions_by_id(self) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for model in self.models.values():
            for version in model.get("modelVersions") or []:
                out[int(version["id"])] = _version_from_model(model, version)
        out.update(self.versions)  # a real version body beats one rebuilt from a model
        return out

    def _version_for_hash(self, h: str, *, sha256_only: bool) -> dict[str, Any] | None:
        for body in self._all_versions():
            for file in body.get("files") or []:
                hashes = {k: str(v).upper() for k, v in (file.get("hashes") or {}).items() if v}
                if (hashes.get("SHA256") == h) if sha256_only else (h in hashes.values()):
                    return body
        return None

    def _load_samples(self) -> None:
        for name in (
            "flux1d-lora-model-version-1387174",
            "illustrious-lora-civitai-info-1421739",
            "sd15-checkpoint-model-version-1318",
        ):
            body = load_sample(name)
            self.versions[int(body["id"])] = body
        for name in (
            "flux1d-lora-model-1231067",
            "illustrious-lora-model-1580878",
            "sd15-checkpoint-model-1102",
        ):
            body = load_sample(name)
            self.models[int(body["id"])] = body


def _version_from_model(model: dict[str, Any], version: dict[str, Any]) -> dict[str, Any]:
    """The /model-versions/{id} shape of a version found inside a /models/{id} body."""
    body = {k: v for k, v in copy.deepcopy(version).items() if k not in ("index", "covered", "availability")}
    body.setdefault("modelId", model["id"])
    body.setdefault(
        "model",
        {"name": model.get("name"), "type": model.get("type"), "nsfw": model.get("nsfw"), "poi": model.get("poi")},
    )
    body.setdefault("air", air_for(version.get("baseModel"), model.get("type"), model["id"], version["id"]))
    return body


_LOGIN_HTML = (
    "<!DOCTYPE html><html lang=\"en\"><head><title>Sign in to Civitai</title></head>"
    "<body><p>The creator of this asset requires you to be logged in to download it</p></body></html>"
)


def _disposition(name: str) -> str:
    # Like CivitAI's storage: an ASCII filename, plus RFC 5987 filename* for the real one.
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_")
    if ascii_name == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def _is_browser(request: web.Request) -> bool:
    # CivitAI's isRequestFromBrowser: a User-Agent naming a browser engine.
    agent = request.headers.get("User-Agent", "").lower()
    return any(b in agent for b in ("mozilla", "chrome", "safari", "firefox", "opera", "edge"))


def _json(data: Any, *, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def settings_for(base_url: str, data_dir: Path | None = None, **overrides: Any) -> Settings:
    """Settings pointing at the fake, with short timeouts; ignores .env and LORACLE_ vars
    for the CivitAI fields so a developer's environment cannot leak into tests."""
    values: dict[str, Any] = {
        "civitai_base_url": base_url,
        "civitai_api_key": None,
        "offline": False,
        "civitai_timeout_s": 2.0,
        "civitai_max_retries": 2,
        "civitai_cache_ttl_hours": 24.0 * 7,
        "civitai_miss_ttl_hours": 24.0,
    }
    if data_dir is not None:
        values["data_dir"] = data_dir
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest_asyncio.fixture
async def fake_civitai() -> AsyncIterator[tuple[FakeCivitai, str]]:
    """A running fake CivitAI: `(fake, base_url)`."""
    fake = FakeCivitai()
    async with fake.serve() as base_url:
        yield fake, base_url
