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
