"""engine.queue.owner: recognising the front-end process that submitted a job."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

from engine.queue.owner import Owner


def test_this_process_is_alive_and_survives_a_json_round_trip():
    me = Owner.current("bot")
    assert me.is_alive()
    assert Owner.from_json(me.to_json()) == me


def test_a_finished_process_is_dead():
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    gone = dataclasses.replace(Owner.current("cli"), pid=int(child.stdout))
    assert not gone.is_alive()


def test_a_reused_pid_or_a_reboot_is_not_the_same_process():
    me = Owner.current("cli")
    if me.started is not None:
        assert not dataclasses.replace(me, started=me.started - 1).is_alive()
    if me.boot is not None:
        assert not dataclasses.replace(me, boot="another-boot").is_alive()


def test_a_process_on_another_host_is_not_judged():
    assert dataclasses.replace(Owner.current("cli"), host="elsewhere", pid=2**22 + os.getpid()).is_alive()


def test_garbage_in_the_owner_column_is_no_owner():
    assert Owner.from_json(None) is None
    assert Owner.from_json({"kind": "cli"}) is None
    assert Owner.from_json("cli") is None


HOLDER = """
import json, sys, threading
from engine.queue.owner import Owner
print(json.dumps(Owner.current("cli", sys.argv[1]).to_json()), flush=True)
threading.Event().wait()
"""


def test_a_killed_process_in_another_container_is_told_by_its_lock(tmp_path):
    """Another container: another hostname and pid namespace, the same data dir."""
    import json
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "locks")], stdout=subprocess.PIPE, env=env)
    try:
        data = json.loads(child.stdout.readline())
        elsewhere = dataclasses.replace(Owner.from_json(data), host="other-container", pid=1)
        assert elsewhere.lock is not None and elsewhere.is_alive()
    finally:
        child.kill()
        child.wait()
    assert not elsewhere.is_alive()
    assert list((tmp_path / "locks").iterdir()) == []  # the lock file it left is gone too


def test_this_processs_own_lock_says_alive(tmp_path):
    me = Owner.current("bot", tmp_path / "locks")
    assert me.lock is not None and me.is_alive()
    assert Owner.current("bot", tmp_path / "locks") == me  # one lock per kind and folder


def test_lock_files_of_finished_processes_do_not_pile_up(tmp_path):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    quick = "import sys; from engine.queue.owner import Owner; Owner.current('cli', sys.argv[1])"
    for _ in range(3):  # three `loracle draw` runs that ended normally
        subprocess.run([sys.executable, "-c", quick, str(tmp_path / "locks")], env=env, check=True)
    assert len(list((tmp_path / "locks").iterdir())) == 1  # the last one's; the next start sweeps it
    Owner.current("bot", tmp_path / "locks")
    assert [p.name.split("-")[0] for p in (tmp_path / "locks").iterdir()] == ["bot"]
