"""Fixtures that run the real `sluice broker` binary for clients nobody here wrote.

`broker` is a fresh broker per test (its own data dir, a port the OS picks); use it for tests
that stop, kill or restart the broker. `module_broker` is shared by the tests of one module and
is cheaper; tests on it must not stop it and must use their own topic names (`unique_name`).

The binary is $SLUICE_BIN (scripts/test sets it), else target/debug/sluice. On a failed test the
tail of each broker's stderr is added to the report.

Run: `scripts/test`, or `SLUICE_TEST_ONLY=python scripts/test -k groups` for some tests; once
.venv exists, `.venv/bin/python -m pytest tests/e2e/python/test_groups.py` works as well.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SLUICE_BIN = os.environ.get("SLUICE_BIN") or str(REPO_ROOT / "target" / "debug" / "sluice")

# The one line `sluice broker` prints on stdout once its listener is bound.
LISTENING_RE = re.compile(
    r"^sluice broker listening on PLAINTEXT://(?P<address>[^\s:]+:\d+) \(data dir (?P<dir>.*)\)$"
)
START_TIMEOUT_SECS = 30.0
STOP_TIMEOUT_SECS = 30.0
STDERR_TAIL_LINES = 80


class BrokerStartError(RuntimeError):
    pass


class Broker:
    """One `sluice broker` process over one data dir, restartable on the same data dir."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = workdir / "broker.stderr"
        self.stdout_path = workdir / "broker.stdout"
        self.bootstrap: str | None = None
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self._stdout_lines: queue.Queue[str | None] = queue.Queue()

    def __repr__(self):
        return f"Broker(bootstrap={self.bootstrap!r}, data_dir={str(self.data_dir)!r})"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> "Broker":
        assert not self.running, f"broker already running at {self.bootstrap}"
        if not os.access(SLUICE_BIN, os.X_OK):
            raise BrokerStartError(
                f"no executable broker at {SLUICE_BIN}: run scripts/test, or "
                "`cargo build -p sluice-cli`, or set SLUICE_BIN"
            )
        self.starts += 1
        self.bootstrap = None
        self._stdout_lines = queue.Queue()
        command = [
            SLUICE_BIN, "broker",
            "--data-dir", str(self.data_dir),
            "--listeners", "PLAINTEXT://127.0.0.1:0",
        ]
        with open(self.stderr_path, "ab") as stderr:
            stderr.write(f"---- start {self.starts}: {' '.join(command)}\n".encode())
            stderr.flush()
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=self.workdir,
            )
        # Drain stdout for the life of the process so the broker never blocks on a full pipe.
        threading.Thread(
            target=self._drain_stdout, args=(self.process, self._stdout_lines), daemon=True
        ).start()
        self.bootstrap = self._await_listening()
        return self

    def _drain_stdout(self, process: subprocess.Popen, lines: queue.Queue):
        with open(self.stdout_path, "ab") as copy:
            for raw in process.stdout:
                copy.write(raw)
                copy.flush()
                lines.put(raw.decode(errors="replace").rstrip("\r\n"))
        lines.put(None)

    def _await_listening(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_SECS
        seen = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._abort()
                raise BrokerStartError(
                    f"no 'sluice broker listening on' line within {START_TIMEOUT_SECS}s; "
                    f"stdout so far: {seen!r}\n{self.stderr_tail()}"
                )
            try:
                line = self._stdout_lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:
                code = self.process.wait()
                raise BrokerStartError(
                    f"broker exited with {code} before listening; stdout: {seen!r}\n"
                    f"{self.stderr_tail()}"
                )
            seen.append(line)
            match = LISTENING_RE.match(line)
            if match:
                return match.group("address")

    def _abort(self):
        if self.running:
            self.process.kill()
        if self.process is not None:
            self.process.wait()

    def stop(self) -> int:
        """SIGTERM and wait for a clean exit; returns the exit status."""
        assert self.process is not None, "broker never started"
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(
                    f"broker ignored SIGTERM for {STOP_TIMEOUT_SECS}s; killed it\n"
                    f"{self.stderr_tail()}"
                ) from None
        return self.process.returncode

    def kill(self) -> int:
        """SIGKILL: no chance to flush or sync."""
        assert self.process is not None, "broker never started"
        if self.running:
            self.process.kill()
        return self.process.wait()

    def restart(self) -> "Broker":
        """Stops (SIGTERM) if running and starts again on the same data dir.

        The port may change: read `bootstrap` again afterwards.
        """
        if self.running:
            self.stop()
        return self.start()

    def stderr_tail(self, lines: int = STDERR_TAIL_LINES) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no stderr file at {self.stderr_path})"
        tail = text.splitlines()[-lines:]
        return f"---- last {len(tail)} lines of {self.stderr_path} ----\n" + "\n".join(tail)


def _close(broker: Broker):
    if broker.running:
        try:
            broker.stop()
        except AssertionError:
            pass  # Already killed; the teardown must not hide the test's own result.


@pytest.fixture
def broker(tmp_path):
    """A fresh broker for one test; it may stop, kill or restart it."""
    b = Broker(tmp_path / "broker").start()
    yield b
    _close(b)


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory):
    """A broker shared by one module's tests; they must not stop it."""
    b = Broker(tmp_path_factory.mktemp("module-broker")).start()
    yield b
    _close(b)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    for name, value in funcargs.items():
        if isinstance(value, Broker):
            report.sections.append((f"broker stderr ({name})", value.stderr_tail()))


def pytest_report_header(config):
    return f"sluice binary: {SLUICE_BIN}"
