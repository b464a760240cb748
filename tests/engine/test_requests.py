"""Request dataclasses: importing them has no side effects, and they survive JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from engine.planning.lora_weights import LoraRequest
from engine.requests import DrawRequest


def test_importing_requests_leaves_the_environment_alone() -> None:
    # In a fresh interpreter: this test process has long imported everything.
    script = (
        "import json, os, sys\n"
        "before = dict(os.environ)\n"
        "import engine.requests, engine.api\n"
        "after = dict(os.environ)\n"
        "print(json.dumps({k: after.get(k) for k in set(before) ^ set(after) | "
        "{k for k in before if before[k] != after.get(k)}}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_VERBOSITY")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert json.loads(done.stdout) == {}


def test_the_origin_goes_through_json_untouched() -> None:
    request = DrawRequest(
        prompt="a cat", loras=[LoraRequest("detail", 0.5)], scope="guild-1",
        origin={"channel_id": "2", "message": {"id": 3}},
    )
    again = DrawRequest.from_json(json.loads(json.dumps(request.to_json())))
    assert again == request
