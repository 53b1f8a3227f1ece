"""A throwaway TimescaleDB for tests, served by PGlite (PostgreSQL + TimescaleDB in WASM) under Node.

TimescaleDB is not packaged for Debian here, so tests that need hypertables,
compression or continuous aggregates run against ``devtools/timescaledb/server.mjs``,
which speaks the PostgreSQL wire protocol on a loopback port::

    with start_timescale() as dsn:
        conn = await asyncpg.connect(dsn, statement_cache_size=0)

The engine differs from a real server in ways a test must respect:

* one client connection at a time: a second connection waits (up to 60 s) until
  the first closes, so a pool must have ``min_size=1, max_size=1`` and a test must
  not hold two connections at once;
* one backend session, reset whenever a client disconnects; pass
  ``statement_cache_size=0`` to asyncpg all the same;
* the database name and user in the DSN are ignored (always ``template1`` as
  ``postgres``): isolate tests by schema, not by database;
* no COPY FROM STDIN (refused with ``FeatureNotSupportedError``); background jobs
  (compression, retention, aggregate refresh policies) never run on their own.

The full list of observed quirks is in ``devtools/timescaledb/README.md``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = [
    "DEFAULT_WORKDIR",
    "NodeNotFoundError",
    "TimescaleEngine",
    "TimescaleEngineError",
    "ensure_node_modules",
    "start_timescale",
]

#: ``devtools/timescaledb`` of this checkout.
DEFAULT_WORKDIR = Path(__file__).resolve().parents[2] / "devtools" / "timescaledb"

_MIN_NODE_MAJOR = 20
_READY = re.compile(rb"^READY port=(\d+) host=(\S+) startup_ms=(\d+)\s*$")
_STDERR_TAIL_BYTES = 4000


class TimescaleEngineError(RuntimeError):
    """The engine could not be installed, started or stopped.

    ``stderr`` holds the tail of the server's (or npm's) standard error, if any.
    """

    def __init__(self, message: str, *, stderr: str = "") -> None:
        self.stderr = stderr
        super().__init__(f"{message}\n--- stderr ---\n{stderr}" if stderr else message)


class NodeNotFoundError(TimescaleEngineError):
    """``node`` or ``npm`` is missing or too old; tests may catch this to skip."""


def _find_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise NodeNotFoundError(
            f"{name!r} is not on PATH: the TimescaleDB test engine needs Node.js >= {_MIN_NODE_MAJOR} "
            "and npm (Debian: apt-get install nodejs npm)"
        )
    return path


def _check_node(node: str) -> None:
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if match is None or int(match.group(1)) < _MIN_NODE_MAJOR:
        raise NodeNotFoundError(f"{node} is version {version or 'unknown'}; need Node.js >= {_MIN_NODE_MAJOR}")


def _installed(workdir: Path) -> bool:
    modules = workdir / "node_modules"
    return (modules / "@unni-craftsman" / "pglite" / "package.json").is_file() and (
        modules / "@electric-sql" / "pglite-socket" / "package.json"
    ).is_file()


def ensure_node_modules(workdir: Path = DEFAULT_WORKDIR) -> None:
    """Run ``npm ci`` in ``workdir`` unless its node_modules is already installed.

    Safe to call from several test processes at once: they serialise on a lock
    file in the temporary directory, and only the first one installs.
    """
    workdir = workdir.resolve()
    if _installed(workdir):
        return
    npm = _find_tool("npm")
    if not (workdir / "package-lock.json").is_file():
        raise TimescaleEngineError(f"{workdir} has no package-lock.json: is this the devtools/timescaledb folder?")
    digest = hashlib.sha256(str(workdir).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"slopewatch-timescaledb-npm-ci-{digest}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed(workdir):
            return
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=workdir,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not _installed(workdir):
            raise TimescaleEngineError(
                f"npm ci in {workdir} failed with exit status {result.returncode}",
                stderr=result.stderr[-_STDERR_TAIL_BYTES:],
            )


class TimescaleEngine:
    """One server process; ``start()`` returns its DSN, ``stop()`` ends it.

    Also a context manager. ``port=None`` lets the server bind a free port itself
    (no race with other processes); ``data_dir=None`` keeps the database in memory.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        port: int | None = None,
        *,
        data_dir: Path | None = None,
        startup_timeout_s: float = 60.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.workdir = (workdir or DEFAULT_WORKDIR).resolve()
        self.requested_port = port
        self.data_dir = data_dir
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.port: int | None = None
        self.host = "127.0.0.1"
        #: Wall time from spawning node to the ready line, in seconds.
        self.startup_s: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._last_stderr = ""

    @property
    def dsn(self) -> str:
        if self.port is None:
            raise TimescaleEngineError("the engine is not running")
        # PGlite asks for an MD5 password and accepts any; libpq clients need one to answer with.
        return f"postgresql://postgres:postgres@{self.host}:{self.port}/postgres"

    def start(self) -> str:
        """Install if needed, spawn the server, wait for its ready line; return the DSN."""
        if self._process is not None:
            raise TimescaleEngineError("the engine is already running")
        node = _find_tool("node")
        _check_node(node)
        ensure_node_modules(self.workdir)
        command = [
            node,
            str(self.workdir / "server.mjs"),
            "--port",
            str(self.requested_port or 0),
            "--host",
            self.host,
            "--stop-on-stdin-eof",
        ]
        if self.data_dir is not None:
            command += ["--data-dir", str(self.data_dir)]
        # A file, not a pipe: nobody reads stderr while the server runs, and a full
        # pipe would block it. Closed in _terminate, after its tail is kept.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        began = time.monotonic()
        self._process = subprocess.Popen(
            command,
            cwd=self.workdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        try:
            self.port = self._wait_ready(began)
        except BaseException:
            self._terminate()
            raise
        self.startup_s = time.monotonic() - began
        return self.dsn

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``stop_timeout_s``). Idempotent."""
        if self._process is None:
            return
        returncode = self._terminate()
        if returncode not in (0, -signal.SIGTERM):
            raise TimescaleEngineError(f"the engine exited with status {returncode}", stderr=self.stderr_tail())

    def stderr_tail(self) -> str:
        """The last few kilobytes the server wrote to stderr (also after it stopped)."""
        if self._stderr is None:
            return self._last_stderr
        size = self._stderr.seek(0, os.SEEK_END)
        self._stderr.seek(max(0, size - _STDERR_TAIL_BYTES))
        return self._stderr.read().decode(errors="replace")

    def _wait_ready(self, began: float) -> int:
        assert self._process is not None
        assert self._process.stdout is not None
        stdout = self._process.stdout
        deadline = began + self.startup_timeout_s
        line = b""
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimescaleEngineError(
                        f"the engine did not print its ready line within {self.startup_timeout_s:.0f} s",
                        stderr=self.stderr_tail(),
                    )
                if not selector.select(remaining):
                    continue
                byte = os.read(stdout.fileno(), 1)
                if not byte:
                    status = self._process.wait()
                    raise TimescaleEngineError(
                        f"the engine exited with status {status} before it was ready", stderr=self.stderr_tail()
                    )
                line += byte
        match = _READY.match(line)
        if match is None:
            raise TimescaleEngineError(f"unexpected line from the engine: {line!r}", stderr=self.stderr_tail())
        return int(match.group(1))

    def _terminate(self) -> int:
        process, self._process = self._process, None
        self.port = None
        assert process is not None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
        self._last_stderr = self.stderr_tail()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return process.returncode

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def start_timescale(
    workdir: Path | None = None,
    port: int | None = None,
    *,
    startup_timeout_s: float = 60.0,
) -> Iterator[str]:
    """Run a throwaway in-memory TimescaleDB for the block; yield its DSN.

    ``workdir`` defaults to this checkout's ``devtools/timescaledb``; ``port=None``
    binds a free loopback port. Raises ``NodeNotFoundError`` without Node.js/npm and
    ``TimescaleEngineError`` (with the server's stderr) when it fails to start.
    """
    engine = TimescaleEngine(workdir, port, startup_timeout_s=startup_timeout_s)
    engine.start()
    try:
        yield engine.dsn
    finally:
        engine.stop()
