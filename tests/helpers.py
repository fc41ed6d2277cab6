"""Helpers shared by the tests and bench/reliability.py: study files, ports, processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def study_toml(path: Path, *, name: str, train: Path, trials: int, fixed: dict[str, Any],
               space: dict[str, dict[str, Any]], pruner: dict[str, Any],
               reference: dict[str, Any] | None = None, reference_after: int = 0,
               seed: int = 0, sampler: str = "tpe", word2vec: bool | None = None) -> Path:
    """A small study file in the layout of studies/demo.toml; `word2vec` None: the
    default ([data] word2vec not given)."""
    lines = ["[study]", f"name = {toml_value(name)}", 'direction = "maximize"',
             f"trials = {trials}",
             f"enqueue_reference = {toml_value(reference is not None)}",
             f"reference_after = {reference_after}",
             "", "[sampler]", f"name = {toml_value(sampler)}", f"seed = {seed}",
             "", "[pruner]", *(f"{k} = {toml_value(v)}" for k, v in pruner.items()),
             "", "[data]", f"train = {toml_value(str(train))}",
             *([] if word2vec is None else [f"word2vec = {toml_value(word2vec)}"]),
             "", "[fixed]", *(f"{k} = {toml_value(v)}" for k, v in fixed.items())]
    for param, fields in space.items():
        lines += ["", f"[space.{param}]", *(f"{k} = {toml_value(v)}" for k, v in fields.items())]
    if reference is not None:
        lines += ["", "[reference]", *(f"{k} = {toml_value(v)}" for k, v in reference.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def han_search_command() -> list[str]:
    found = shutil.which("han-search")
    return [found] if found else [sys.executable, "-m", "search.cli"]


def child_env(**extra: str) -> dict[str, str]:
    """One CPU thread per process; no storage or tracking URI leaking in from the caller."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HAN_SEARCH_STORAGE", "MLFLOW_TRACKING_URI")}
    env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            # A test's `mlflow server` runs no jobs: without its job runner it starts 3 s
            # sooner and takes no CPU from the trials beside it.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return env | extra


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def mlflow_server(root: Path, *, start_timeout: float = 120.0,
                  port: int | None = None) -> Iterator[str]:
    """`mlflow server` on a loopback port (free, unless given; SQLite runs, artifacts proxied
    to a folder); yields its URI. RuntimeError with the log's tail when it does not come
    up."""
    port = port or free_port()
    log = root / "mlflow-server.log"
    command = ["mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
               "--artifacts-destination", str(root / "mlflow-artifacts")]
    with log.open("wb") as sink:
        # Its own session: the server starts uvicorn and a job runner, stopped as a group.
        server = subprocess.Popen(command, cwd=root, env=child_env(), stdout=sink,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while not _healthy(uri):
            if server.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"mlflow server on port {port} did not come up:\n{tail}")
            time.sleep(0.25)
        yield uri
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):  # children that outlived the leader
            os.killpg(server.pid, signal.SIGKILL)
