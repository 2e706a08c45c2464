"""The allocator the `instill` command preloads (instill/allocator.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from instill import allocator
from instill.errors import InstillError

EXE = Path(sys.executable).with_name("instill")
LINUX_WHEEL = sys.platform.startswith("linux") and os.uname().machine in ("x86_64", "aarch64")


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.ENV_VAR)}
    base.pop("INSTILL_ALLOCATOR_REEXEC", None)
    return subprocess.run(
        [str(EXE), *args], capture_output=True, text=True, timeout=120, env={**base, **env}
    )


def test_unknown_setting_names_the_variable_and_the_choices():
    with pytest.raises(InstillError, match=r"INSTILL_ALLOCATOR='tcmalloc' .*auto, mimalloc"):
        allocator.choose("tcmalloc")
    assert allocator.choose("system") is None


def test_explicit_choice_that_is_missing_says_how_to_install(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(allocator.metadata, "distribution", missing)
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    with pytest.raises(InstillError, match="pip install cmeel-mimalloc"):
        allocator.choose("mimalloc")
    monkeypatch.setattr(allocator, "_jemalloc", lambda: None)
    with pytest.raises(InstillError, match="apt-get install libjemalloc2"):
        allocator.choose("jemalloc")
    assert allocator.choose("auto") is None  # auto falls back to the system's malloc


def test_environment_keeps_what_the_user_set(tmp_path):
    lib = tmp_path / "libmimalloc.so"
    a = allocator.Allocator("mimalloc", lib, {"MIMALLOC_PURGE_DELAY": "-1"})
    env = a.environ({"LD_PRELOAD": "/opt/libother.so", "MIMALLOC_PURGE_DELAY": "250"})
    assert env["LD_PRELOAD"] == f"{lib} /opt/libother.so"  # ours first, theirs kept
    assert env["MIMALLOC_PURGE_DELAY"] == "250"  # the user's setting wins
    assert a.environ({})["MIMALLOC_PURGE_DELAY"] == "-1"
    assert a.environ(env)["LD_PRELOAD"] == env["LD_PRELOAD"]  # not preloaded twice


@pytest.mark.skipif(not LINUX_WHEEL, reason="cmeel-mimalloc is a dependency on Linux x86_64/arm64")
def test_command_reexecutes_under_mimalloc_once():
    found = allocator.choose("mimalloc")
    assert found is not None and found.library.is_file()
    proc = _run("--version")
    assert proc.returncode == 0, proc.stderr
    assert "allocator: mimalloc (preloaded)" in proc.stdout
    # The module prints the environment for Python programs: `env $(python -m ...) python x.py`.
    line = subprocess.run(
        [sys.executable, "-m", "instill.allocator"], capture_output=True, text=True, check=True
    ).stdout.split()
    env = dict(kv.split("=", 1) for kv in line)
    assert env == {"LD_PRELOAD": str(found.library), "MIMALLOC_PURGE_DELAY": "-1"}
    script = "from instill.allocator import loaded; print(loaded())"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, **env}
    )
    assert proc.stdout.strip() == "mimalloc"


def test_command_runs_under_the_system_malloc_when_asked():
    proc = _run("--version", INSTILL_ALLOCATOR="system")
    assert proc.returncode == 0, proc.stderr
    assert "allocator: system" in proc.stdout
    bad = _run("--version", INSTILL_ALLOCATOR="bogus")
    assert bad.returncode == 2
    assert "INSTILL_ALLOCATOR='bogus' is not an allocator" in bad.stderr


def test_python_api_is_not_reexecuted(monkeypatch):
    """`main(argv)` from Python runs in this process, whatever the allocator setting."""
    from instill.cli import main

    def fail(argv):
        raise AssertionError("re-executed")

    monkeypatch.setattr(allocator, "reexec", fail)
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0


def test_jemalloc_is_found_where_distributions_put_it(tmp_path, monkeypatch):
    lib = tmp_path / "libjemalloc.so.2"
    lib.write_bytes(b"")
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(allocator, "_JEMALLOC_PATHS", (str(tmp_path / "nope.so"), str(lib)))
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    found = allocator.choose("jemalloc")
    assert found is not None and found.library == lib.resolve()
    assert found.environ({})["MALLOC_CONF"] == "dirty_decay_ms:-1,muzzy_decay_ms:-1"


def test_a_failed_reexec_warns_and_runs_on(monkeypatch, capsys, tmp_path):
    lib = tmp_path / "libmimalloc.so"
    monkeypatch.delenv("INSTILL_ALLOCATOR_REEXEC", raising=False)
    monkeypatch.setattr(allocator, "loaded", lambda: None)
    monkeypatch.setattr(allocator, "choose", lambda: allocator.Allocator("mimalloc", lib))

    def refuse(path, args, env):
        assert env["LD_PRELOAD"].split()[0] == str(lib)
        assert env["INSTILL_ALLOCATOR_REEXEC"] == "mimalloc"  # the child never re-executes
        assert args[1:4] == ["-m", "instill.cli", "train"]
        raise PermissionError("exec refused")

    monkeypatch.setattr(allocator.os, "execve", refuse)
    allocator.reexec(["train", "c.yaml"])  # returns: the command goes on under glibc
    assert "not re-executed under mimalloc (exec refused)" in capsys.readouterr().err
