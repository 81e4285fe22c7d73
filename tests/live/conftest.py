"""Live-test helpers: the CLI and the ioctl client as real processes, and the host checks that gate them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT = Path(__file__).with_name("client.py")


def host_problem() -> str | None:
    """Why live capture cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root"
    if not Path("/sys/kernel/tracing/events").is_dir():
        return "tracefs is not mounted at /sys/kernel/tracing"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "bcc (python3-bpfcc) is not importable"
    return None


@pytest.fixture(scope="session")
def live_host() -> None:
    problem = host_problem()
    if problem:
        pytest.skip(f"live capture needs root, tracefs and bcc: {problem}")


def cli(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "explorer.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, **kw)  # type: ignore[call-overload]


class Client:
    """tests/live/client.py in its own process, waiting for `go()`."""

    def __init__(self, *mode: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(CLIENT), *mode], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 60) -> None:
        self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0


class Recorder:
    """`pasid-explorer record` as a subprocess, started and waited on until its probes are attached."""

    def __init__(self, output: Path, *args: str) -> None:
        self.output = output
        self.proc = subprocess.Popen([sys.executable, "-m", "explorer.cli.main", "record", "-o", str(output), *args],
                                     cwd=ROOT, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        if "hooks attached" not in line:
            self.proc.kill()
            raise AssertionError(f"record did not start: {line}{self.proc.stderr.read()}")

    def stop(self, sig: int, timeout: float = 30) -> str:
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=timeout)
        return err


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        if c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB filesystem (tmpfs, as root) that a recording fills."""
    where = tmp_path / "small"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def settle() -> None:
    """Long enough for the recorder to poll what the kernel has already written (it polls every 0.1 s and holds
    rows 20 ms for stragglers)."""
    time.sleep(0.5)
