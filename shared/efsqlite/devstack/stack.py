"""``efsqlite dev``: the whole architecture on one machine, no AWS account and no Docker.

It runs, in one process: our SQS (SQLite-backed) on loopback with the FIFO queue and its FIFO DLQ
(``local_sqs``), a poller that feeds the writer's real handler like Lambda's event source
mapping (``local_poller``), and the reader's real handler behind the Lambda Invoke API and a
Function URL (``local_lambda_api``). It writes ``<data-dir>/endpoints.json`` so clients, the CLI
and tests find it. See docs/local-stack.md for every difference from AWS.

Parts above the devstack (the web console of :mod:`efsqlite.console`) join as an
:data:`Addon`: started once the stack is up, given its endpoints, their own endpoints written
to ``endpoints.json`` with the rest and printed at start, stopped first.

DO hold the data folder's lock for the stack's whole life: two stacks on one folder would be
two writers on one database. DON'T stop in the middle of a batch: signals only set a flag.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from efsqlite.devstack.exceptions import LocalStackError

log = logging.getLogger("efsqlite.devstack.stack")

ENDPOINTS_FILE = "endpoints.json"
LOCK_FILE = "dev.lock"
DEFAULT_DATA_DIR = Path(".efsqlite")
DEFAULT_SQS_PORT = 4766
DEFAULT_LAMBDA_PORT = 4767
DEFAULT_URL_PORT = 4768
DEFAULT_CONSOLE_PORT = 4769
READER_FUNCTION = "efsqlite-reader"
WRITER_FUNCTION = "efsqlite-writer"
LOCAL_REGION = "us-east-1"

#: A part started with the stack: given the stack's endpoints (and the options), it starts and
#: returns the endpoints it adds (a ``*_url`` key is printed at start) and how to stop it.
Addon = Callable[["dict[str, Any]", "DevOptions"], tuple[dict[str, Any], Callable[[], None]]]


def repo_root() -> Path:
    """The checkout holding ``functions/`` (the package is installed in editable mode)."""
    here = Path(__file__).resolve()
    for candidate in (Path.cwd(), *here.parents):
        if (candidate / "functions" / "writer" / "app.py").is_file():
            return candidate
    raise LocalStackError(
        "cannot find functions/writer/app.py: run `efsqlite dev` from the repository root "
        "or pass --app-root"
    )


@dataclass(slots=True)
class DevOptions:
    data_dir: Path = DEFAULT_DATA_DIR
    host: str = "127.0.0.1"
    sqs_port: int = DEFAULT_SQS_PORT
    lambda_port: int = DEFAULT_LAMBDA_PORT
    url_port: int = DEFAULT_URL_PORT
    visibility_timeout: int = 30
    max_receive_count: int = 5
    #: The writer's ``EFSQLITE_DATABASES``: names or patterns it may create, or ``*``.
    databases: str = "*"
    migrations_dir: Path | None = None
    commands: str | None = None
    queries: str | None = None
    read_mode: str = "snapshot"
    app_root: Path | None = None
    reader_environments: int = 4
    journal_fsync: bool = False
    verbose: bool = False


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[IO[str]]:
    """An exclusive ``flock`` on ``<data_dir>/dev.lock``; the kernel drops it if we die."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / LOCK_FILE).open("a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise LocalStackError(
                f"another efsqlite dev is already running on {data_dir} ({holder}); "
                "stop it first or use another --data-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        yield handle
    finally:
        handle.close()


def write_endpoints(path: Path, endpoints: dict[str, Any]) -> None:
    """Write the endpoints file atomically, so a reader never sees half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(endpoints, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _environment(options: DevOptions, data_dir: Path) -> None:
    """The handlers read ``EFSQLITE_*`` at import: set them before any cold start."""
    os.environ["EFSQLITE_DATA_DIR"] = str(data_dir / "databases")
    os.environ.setdefault("AWS_DEFAULT_REGION", LOCAL_REGION)
    os.environ["EFSQLITE_READ_MODE"] = options.read_mode
    os.environ["EFSQLITE_DATABASES"] = options.databases
    # The local queue's redrive policy, so the ledger tells "retried" from "in the DLQ".
    os.environ["EFSQLITE_MAX_RECEIVE_COUNT"] = str(options.max_receive_count)
    if options.migrations_dir is not None:
        os.environ["EFSQLITE_MIGRATIONS_DIR"] = str(options.migrations_dir.resolve())
    if options.commands:
        os.environ["EFSQLITE_COMMANDS"] = options.commands
    if options.queries:
        os.environ["EFSQLITE_QUERIES"] = options.queries
    # Powertools would print an EMF metrics blob per batch and an INFO line per batch;
    # the poller logs one line per batch already. --verbose keeps both.
    if not options.verbose:
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "efsqlite-local")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "efsqlite")


class DevStack:
    """The running local stack. ``start()`` then ``stop()``; ``run()`` does both around Ctrl-C."""

    def __init__(self, options: DevOptions, addons: Sequence[Addon] = ()) -> None:
        self.options = options
        self.addons = tuple(addons)
        self.data_dir = options.data_dir.resolve()
        self.stop_event = threading.Event()
        self.endpoints: dict[str, Any] = {}
        self._stack = contextlib.ExitStack()

    def start(self) -> dict[str, Any]:
        from efsqlite.devstack.lambda_api import FunctionPool, ReaderApi
        from efsqlite.devstack.poller import Poller
        from efsqlite.devstack.sqs import LocalSqs

        options = self.options
        try:
            self._stack.enter_context(data_dir_lock(self.data_dir))
            root = (options.app_root or repo_root()).resolve()
            # Registries such as examples.todo.commands import from the checkout's root.
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            _environment(options, self.data_dir)
            writer_path = root / "functions" / "writer" / "app.py"
            reader_path = root / "functions" / "reader" / "app.py"

            sqs_local = LocalSqs(
                self.data_dir,
                host=options.host,
                port=options.sqs_port,
                visibility_timeout=options.visibility_timeout,
                max_receive_count=options.max_receive_count,
                journal_fsync=options.journal_fsync,
            )
            urls = sqs_local.start()
            self._stack.callback(sqs_local.stop)
            if sqs_local.restored:
                log.info("restored %d queued messages from sqs.sqlite", sqs_local.restored)

            pool = FunctionPool(
                reader_path,
                READER_FUNCTION,
                environment=lambda n: {
                    "EFSQLITE_SNAPSHOT_DIR": str(self.data_dir / "snapshots" / f"env-{n}")
                },
                max_environments=options.reader_environments,
            )
            reader_ready = reader_path.is_file()
            if reader_ready:
                pool.warm_up()
            else:
                log.warning("%s not found: the reader endpoints answer errors", reader_path)
            self._stack.callback(pool.close)
            api = ReaderApi(
                pool, host=options.host, invoke_port=options.lambda_port, url_port=options.url_port
            )
            api.start()
            self._stack.callback(api.stop)

            poller = Poller(
                _local_sqs_client(sqs_local.endpoint),
                queue_url=urls.queue_url,
                queue_arn=urls.queue_arn,
                handler_path=writer_path,
                migrations_dir=options.migrations_dir.resolve() if options.migrations_dir else None,
                function_name=WRITER_FUNCTION,
                region=LOCAL_REGION,
            )
            poller.cold_start()
            poller.start()
            self._stack.callback(poller.stop)  # runs first: the batch in hand finishes

            self.endpoints = {
                "sqs_endpoint": sqs_local.endpoint,
                "queue_url": urls.queue_url,
                "queue_arn": urls.queue_arn,
                "dlq_url": urls.dlq_url,
                "dlq_arn": urls.dlq_arn,
                "lambda_endpoint": api.invoke_endpoint,
                "reader_function": READER_FUNCTION,
                "writer_function": WRITER_FUNCTION,
                "function_url": api.function_url,
                "data_dir": str(self.data_dir),
                "databases_dir": os.environ["EFSQLITE_DATA_DIR"],
                "region": LOCAL_REGION,
                "pid": os.getpid(),
                "visibility_timeout": options.visibility_timeout,
                "max_receive_count": options.max_receive_count,
            }
            for addon in self.addons:
                added, stop = addon(dict(self.endpoints), options)
                self._stack.callback(stop)  # runs before the poller's: added parts stop first
                self.endpoints.update(added)
            endpoints_path = self.data_dir / ENDPOINTS_FILE
            write_endpoints(endpoints_path, self.endpoints)
            self._stack.callback(lambda: endpoints_path.unlink(missing_ok=True))
        except BaseException:
            self._stack.close()
            raise
        return self.endpoints

    def stop(self) -> None:
        self._stack.close()

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM, then stop between batches."""

        def request_stop(signum: int, _frame: FrameType | None) -> None:
            log.info("%s received: stopping after the batch in hand", signal.Signals(signum).name)
            self.stop_event.set()

        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            endpoints = self.start()
        except BaseException:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            raise
        try:
            log.info(
                "efsqlite dev is up: SQS %s, reader %s (function %s), Function URL %s, data %s",
                endpoints["sqs_endpoint"],
                endpoints["lambda_endpoint"],
                endpoints["reader_function"],
                endpoints["function_url"],
                endpoints["data_dir"],
            )
            print(
                f"efsqlite dev: ready. Endpoints in {self.data_dir / ENDPOINTS_FILE}. "
                "Ctrl-C to stop.",
                flush=True,
            )
            for key in sorted(set(endpoints) - _STACK_URLS):
                if key.endswith("_url"):
                    print(f"efsqlite dev: {key.removesuffix('_url')}: {endpoints[key]}", flush=True)
            while not self.stop_event.wait(0.5):
                pass
        finally:
            started = time.monotonic()
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            log.info(
                "stopped in %.1f s; queued messages are kept for the next start",
                time.monotonic() - started,
            )


def _local_sqs_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name=LOCAL_REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


#: The stack's own URLs (the rest ending in ``_url`` came from an addon and are printed).
_STACK_URLS = frozenset({"queue_url", "dlq_url", "function_url"})


def run_dev(options: DevOptions, addons: Sequence[Addon] = ()) -> None:
    """The ``efsqlite dev`` command: configure logging, then serve until stopped."""
    logging.basicConfig(
        level=logging.DEBUG if options.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    DevStack(options, addons).run()
