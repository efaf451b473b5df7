"""The compiled hot path and the switch back to its Python source
(geredis/speedups.py, setup.py): which one runs, that both serve commands,
and that an edited module is noticed before tests run stale code."""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict
from unittest import mock

import pytest

import geredis
from geredis import speedups

from .conftest import RedisServer

PACKAGE = Path(geredis.__file__).parent
#: Runs in a fresh process: which files the hot path came from, and a few
#: commands through it from many greenlets.
PROBE = r"""
import json, sys
from gevent import monkey; monkey.patch_all()
import gevent, geredis
from geredis import speedups
r = geredis.Redis(port=int(sys.argv[1]))
def work(i):
    r.set(f"speedups:{i}", i)
    return r.get(f"speedups:{i}")
replies = [g.value for g in gevent.joinall([gevent.spawn(work, i) for i in range(200)])]
print(json.dumps({
    "compiled": geredis.COMPILED,
    "running": speedups.compiled_modules(),
    "files": [sys.modules[name].__file__ for name in speedups.COMPILED_MODULES],
    "ok": replies == [str(i).encode() for i in range(200)],
}))
r.close()
"""


def built() -> bool:
    """Whether every compiled module sits beside its .py in this checkout."""
    return all(
        any((PACKAGE / (name.rpartition(".")[2] + suffix)).exists()
            for suffix in importlib.machinery.EXTENSION_SUFFIXES)
        for name in speedups.COMPILED_MODULES
    )


def probe(port: int, **env: str) -> Dict[str, Any]:
    environ = {k: v for k, v in os.environ.items() if k != speedups.PURE_PYTHON}
    environ["PYTHONPATH"] = str(PACKAGE.parent)
    done = subprocess.run([sys.executable, "-c", PROBE, str(port)], env={**environ, **env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_this_process_runs_what_was_built() -> None:
    expected = built() and not speedups.pure_python_requested()
    assert geredis.COMPILED is expected
    assert speedups.compiled_modules() == (speedups.COMPILED_MODULES if expected else ())


def test_pure_python_switch_loads_the_sources(redis_server: RedisServer) -> None:
    interpreted = probe(redis_server.port, GEREDIS_PURE_PYTHON="1")
    assert interpreted["ok"] and interpreted["compiled"] is False
    assert interpreted["running"] == []
    assert all(f.endswith(".py") for f in interpreted["files"]), interpreted["files"]

    default = probe(redis_server.port)
    assert default["ok"]
    if not built():
        pytest.skip("not compiled here (./dev build): only the Python path was checked")
    assert default["compiled"] is True
    assert default["running"] == list(speedups.COMPILED_MODULES)
    assert not any(f.endswith(".py") for f in default["files"]), default["files"]


def test_an_edited_module_is_reported_stale(tmp_path: Path) -> None:
    if not built() or not (PACKAGE / "caller.c").exists():
        pytest.skip("needs the in-place build of a checkout (./dev build)")
    copy = tmp_path / "geredis"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    check = ("from geredis import speedups; assert speedups.__file__.startswith(sys.argv[1]);"
             " print(','.join(speedups.stale_modules()))")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), speedups.PURE_PYTHON: "1"}

    def stale() -> str:
        return subprocess.run([sys.executable, "-c", "import sys;" + check, str(tmp_path)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60,
                              check=True).stdout.strip()

    for name in speedups.COMPILED_MODULES:  # copied in any order: built after the sources
        base = copy / name.rpartition(".")[2]
        built_at = os.path.getmtime(base.with_suffix(".py")) + 10
        for compiled in copy.glob(base.name + ".*.so"):
            os.utime(compiled, (built_at, built_at))
    assert stale() == ""
    later = os.path.getmtime(copy / "caller.py") + 20
    os.utime(copy / "caller.py", (later, later))  # edited after the build
    assert stale() == "geredis.caller"


def test_mocks_of_get_and_execute_command_as_documented() -> None:
    # docs/redis-py.md, "Mocks of get and set": an autospec mock of a compiled
    # method is not passed self; execute_command stays Python either way.
    r = geredis.Redis(port=1)  # nothing is sent: every command is mocked
    with mock.patch.object(geredis.Redis, "get", autospec=True, return_value=b"v") as get:
        assert r.get("k") == b"v"
    assert get.call_args == (mock.call("k") if geredis.COMPILED else mock.call(r, "k"))
    with mock.patch.object(geredis.Redis, "execute_command", autospec=True,
                           return_value=b"v") as execute:
        assert r.get("k") == b"v"
    assert execute.call_args == mock.call(r, "GET", "k")
    r.close()


def test_an_instance_submit_still_wins(r: geredis.Redis) -> None:
    # connection.pxd makes submit a cpdef method, called in C by the round
    # trip; an instance attribute of that name must still be what runs.
    r.set("k", "v")
    conn = r._connection
    assert conn is not None
    seen: list = []

    def submit(packed: bytes, slot: Any, raw: bool = False) -> None:
        seen.append(packed)
        slot.switch(b"from the instance")

    conn.submit = submit  # type: ignore[method-assign]
    try:
        assert r.get("k") == b"from the instance"
        assert r.execute_command("GET", "k") == b"from the instance"
    finally:
        del conn.submit
    assert seen == [b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"] * 2
    assert r.get("k") == b"v"
