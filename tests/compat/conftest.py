"""Compatibility suite: drives the real Prefect 3.8.8 client against a running server.

The server under test is selected by environment variables (see README.md):

* ``PREFECT_COMPAT_SERVER``  = ``rust`` (default) | ``python``
* ``PREFECT_COMPAT_BACKEND`` = ``sqlite`` (default) | ``postgres``

The client-side Prefect settings are environment variables that must be in place
*before* ``prefect`` is imported (Prefect builds its global settings context at
import time, and threads started by tests only ever see that global context).
pytest imports this conftest before any test module, so everything below that
touches ``os.environ`` runs first.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

if "prefect" in sys.modules:  # pragma: no cover - configuration error
    raise RuntimeError(
        "prefect was imported before tests/compat/conftest.py could configure it; "
        "run pytest from a clean interpreter"
    )

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_KIND = os.environ.get("PREFECT_COMPAT_SERVER", "rust").strip().lower()
BACKEND = os.environ.get("PREFECT_COMPAT_BACKEND", "sqlite").strip().lower()
PG_ADMIN_URL = os.environ.get(
    "PREFECT_COMPAT_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
STARTUP_TIMEOUT = float(os.environ.get("PREFECT_COMPAT_STARTUP_TIMEOUT", "60"))
HOST = "127.0.0.1"

if SERVER_KIND not in ("rust", "python"):
    raise RuntimeError(f"PREFECT_COMPAT_SERVER must be 'rust' or 'python', not {SERVER_KIND!r}")
if BACKEND not in ("sqlite", "postgres"):
    raise RuntimeError(
        f"PREFECT_COMPAT_BACKEND must be 'sqlite' or 'postgres', not {BACKEND!r}"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


PORT = int(os.environ.get("PREFECT_COMPAT_PORT") or _free_port())
BASE_URL = f"http://{HOST}:{PORT}"
API_URL = f"{BASE_URL}/api"

# One scratch directory per session: server home, server log, client home.
SESSION_TMP = Path(tempfile.mkdtemp(prefix="prefect-compat-"))
CLIENT_HOME = SESSION_TMP / "client-home"
CLIENT_HOME.mkdir()

# --- client configuration (must precede any `import prefect`) ----------------
# Drop any PREFECT_* inherited from the caller's shell/profile so runs are
# reproducible; then set exactly what the client needs.
for _key in [k for k in os.environ if k.startswith("PREFECT_") and not k.startswith("PREFECT_COMPAT_")]:
    if _key != "PREFECT_SERVER_BIN":
        del os.environ[_key]
os.environ.update(
    {
        "PREFECT_API_URL": API_URL,
        "PREFECT_HOME": str(CLIENT_HOME),
        "PREFECT_PROFILES_PATH": str(CLIENT_HOME / "profiles.toml"),
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.3",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # never let the client spawn its own ephemeral server
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
)


# --- polling helper -----------------------------------------------------------
class WaitTimeout(AssertionError):
    pass


def wait_for(
    condition: Callable[[], Any],
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str = "condition",
) -> Any:
    """Poll ``condition()`` until it returns a truthy value; return that value.

    Exceptions raised by ``condition`` count as "not yet" until the deadline, then
    the last one is chained onto the timeout error. This is the only place in the
    suite that sleeps.
    """
    deadline = time.monotonic() + timeout
    last_value: Any = None
    last_exc: Optional[BaseException] = None
    while True:
        try:
            last_value = condition()
            last_exc = None
            if last_value:
                return last_value
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        if time.monotonic() >= deadline:
            err = WaitTimeout(
                f"timed out after {timeout}s waiting for {message}; last value: {last_value!r}"
            )
            if last_exc is not None:
                raise err from last_exc
            raise err
        time.sleep(interval)


# --- server process management -------------------------------------------------
@dataclass
class ServerHandle:
    kind: str
    backend: str
    base_url: str
    api_url: str
    log_path: Path
    home: Path
    process: Optional[subprocess.Popen] = None
    db_name: Optional[str] = None
    extra: dict = field(default_factory=dict)

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<cannot read {self.log_path}: {exc}>"
        return "\n".join(text.splitlines()[-lines:])


_SERVER: Optional[ServerHandle] = None


def _pg_url_parts() -> tuple[str, str]:
    """Split the admin URL into (prefix without db name, admin db name)."""
    base, _, dbname = PG_ADMIN_URL.rpartition("/")
    return base, dbname or "postgres"


def _pg_exec(sql: str) -> None:
    import asyncpg  # in requirements.txt (the Prefect server depends on it)

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def _database_url(kind: str, home: Path) -> tuple[str, Optional[str]]:
    if BACKEND == "sqlite":
        path = home / "prefect.db"
        scheme = "sqlite+aiosqlite" if kind == "python" else "sqlite"
        return f"{scheme}:///{path}", None
    db_name = f"compat_{uuid.uuid4().hex}"
    _pg_exec(f'CREATE DATABASE "{db_name}"')
    base, _ = _pg_url_parts()
    scheme, rest = base.split("://", 1)
    if kind == "python":
        scheme = "postgresql+asyncpg"
    return f"{scheme}://{rest}/{db_name}", db_name


def _server_env(home: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_API_DATABASE_CONNECTION_URL": db_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "INFO",
            # Prefect streams logs on /logs/out only with these (this server
            # always does), so test_logs_out.py can check both servers.
            "PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED": "true",
            "PREFECT_SERVER_LOGS_STREAM_PUBLISHING_ENABLED": "true",
        }
    )
    return env


def _start_server() -> ServerHandle:
    home = SESSION_TMP / "server-home"
    home.mkdir(exist_ok=True)
    log_path = SESSION_TMP / "server.log"
    handle = ServerHandle(
        kind=SERVER_KIND,
        backend=BACKEND,
        base_url=BASE_URL,
        api_url=API_URL,
        log_path=log_path,
        home=home,
    )
    extra_env: dict[str, str] = {}
    if SERVER_KIND == "rust":
        binary = Path(
            os.environ.get("PREFECT_SERVER_BIN")
            or REPO_ROOT / "target" / "release" / "prefect-server"
        )
        if not binary.exists():
            raise RuntimeError(
                f"server binary {binary} does not exist (build it with "
                "`cargo build --release` or set PREFECT_SERVER_BIN)"
            )
        cmd = [str(binary)]
        extra_env = {
            "PREFECT_SERVER_API_HOST": HOST,
            "PREFECT_SERVER_API_PORT": str(PORT),
            # The UI bundles of the installed client (test_ui.py), as Prefect
            # serves them; found without importing prefect.
            "PREFECT_UI_STATIC_DIRECTORY": str(
                Path(importlib.util.find_spec("prefect").origin).parent / "server"
            ),
        }
    else:
        prefect_cli = Path(
            os.environ.get("PREFECT_COMPAT_PREFECT_CLI")
            or Path(sys.executable).parent / "prefect"
        )
        if not prefect_cli.exists():
            raise RuntimeError(
                f"{prefect_cli} does not exist (install requirements.txt into this "
                "interpreter's venv or set PREFECT_COMPAT_PREFECT_CLI)"
            )
        cmd = [str(prefect_cli), "server", "start", "--host", HOST, "--port", str(PORT)]
        extra_env = {}

    # created last: from here on every failure path drops the database again
    db_url, handle.db_name = _database_url(SERVER_KIND, home)
    env = _server_env(home, db_url)
    env.update(extra_env)
    handle.extra["env"] = env
    handle.extra["cmd"] = cmd
    try:
        _launch(handle, cmd, env, db_url)
        _wait_ready(handle)
    except BaseException:
        _stop_server(handle)
        raise
    return handle


def _launch(handle: ServerHandle, cmd: list[str], env: dict[str, str], db_url: str) -> None:
    log_file = open(handle.log_path, "ab")
    handle.extra["log_file"] = log_file
    log_file.write(f"$ {' '.join(cmd)}\n# database: {db_url}\n".encode())
    log_file.flush()
    handle.process = subprocess.Popen(
        cmd,
        env=env,
        cwd=str(handle.home),
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # own process group, so teardown reaches its children
    )


def _wait_ready(handle: ServerHandle) -> None:
    import httpx

    def ready() -> bool:
        assert handle.process is not None
        if handle.process.poll() is not None:
            raise _ServerDied(handle.process.returncode)
        try:
            r = httpx.get(f"{handle.api_url}/health", timeout=2.0)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    try:
        wait_for(_reraise_death(ready), timeout=STARTUP_TIMEOUT, interval=0.2,
                 message=f"{handle.api_url}/health to return 200")
    except (_FailFast, WaitTimeout) as exc:
        raise RuntimeError(
            f"{handle.kind} server did not become ready: {exc}\n"
            f"--- tail of {handle.log_path} ---\n{handle.log_tail()}"
        ) from None


class _ServerDied(Exception):
    def __init__(self, code: int):
        super().__init__(f"server process exited with code {code}")


def _reraise_death(fn: Callable[[], bool]) -> Callable[[], bool]:
    """wait_for swallows exceptions until the deadline; a dead server must fail fast."""

    def inner() -> bool:
        try:
            return fn()
        except _ServerDied as exc:
            raise _FailFast(exc) from exc

    return inner


class _FailFast(BaseException):
    pass


def _stop_server(handle: ServerHandle) -> None:
    proc = handle.process
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
    log_file = handle.extra.pop("log_file", None)
    if log_file is not None:
        log_file.close()
    if handle.db_name:
        try:
            _pg_exec(f'DROP DATABASE IF EXISTS "{handle.db_name}" WITH (FORCE)')
        except Exception as exc:  # noqa: BLE001
            print(f"warning: could not drop database {handle.db_name}: {exc}", file=sys.stderr)


def _drain_client_workers() -> None:
    """Flush the client's background log/event workers while the server is still up."""
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker
    except Exception:  # noqa: BLE001
        return
    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=10)
        except Exception:  # noqa: BLE001
            pass


@pytest.fixture(scope="session", autouse=True)
def server() -> ServerHandle:
    """The running server under test (started once per session)."""
    global _SERVER
    handle: Optional[ServerHandle] = None
    try:
        handle = _start_server()
        _SERVER = handle
        yield handle
    finally:
        _SERVER = None
        if handle is not None:
            _drain_client_workers()
            _stop_server(handle)
        if os.environ.get("PREFECT_COMPAT_KEEP_TMP"):
            print(f"\nkept {SESSION_TMP}", file=sys.stderr)
        else:
            shutil.rmtree(SESSION_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def base_url(server: ServerHandle) -> str:
    """e.g. http://127.0.0.1:54321 (the API lives under /api)."""
    return server.base_url


@pytest.fixture(scope="session")
def api_url(server: ServerHandle) -> str:
    return server.api_url


@pytest.fixture(name="wait_for", scope="session")
def wait_for_fixture() -> Callable[..., Any]:
    return wait_for


@pytest.fixture
def sync_client(server: ServerHandle):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        yield client


@pytest.fixture
def uid() -> str:
    """Short unique token for naming per-test flows, tags, etc."""
    return uuid.uuid4().hex[:12]


# --- reporting -----------------------------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _SERVER is not None:
        report.sections.append(
            (f"{_SERVER.kind} server log (tail of {_SERVER.log_path})", _SERVER.log_tail(60))
        )


def pytest_report_header(config) -> list[str]:
    return [
        f"prefect-compat: server={SERVER_KIND} backend={BACKEND} api={API_URL}",
        f"prefect-compat: scratch dir {SESSION_TMP}",
    ]
