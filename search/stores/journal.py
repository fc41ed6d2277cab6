"""MLflow writes kept on disk while a tracking server cannot be reached, sent later in their
order with their original steps and timestamps.

One journal per tracking server and user, shared by every process of this machine that
writes to it (appends and replays hold a lock on its folder): a worker that ends while the
server is still away leaves its writes there, and the next command that talks to the server
(the next run, or `han-search sync`) sends them. Each entry is one JSON line; a file it
uploads is copied into the journal's `files/` first, since the original (a trial's
checkpoint folder) may be gone by the time the server answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from han.files import folder_lock

# Where the journals live (one folder per tracking server in it); default below the user's
# cache folder.
JOURNAL_ENV = "HAN_SEARCH_JOURNAL"
_ENTRIES = "entries.jsonl"
_FILES = "files"

Entry = dict[str, Any]


def journal_root() -> Path:
    given = os.environ.get(JOURNAL_ENV)
    if given:
        return Path(given)
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "han-search" / "mlflow-journal"


class Journal:
    """The writes waiting for one tracking server."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def for_server(cls, tracking_uri: str) -> Journal | None:
        """The journal of a tracking server (None for a local store: a write it refuses is
        the disk's, said at once, not a server's absence to wait out)."""
        if not tracking_uri.startswith(("http://", "https://")):
            return None
        key = hashlib.sha256(tracking_uri.rstrip("/").encode()).hexdigest()[:16]
        return cls(journal_root() / key)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with folder_lock(self.folder):
            yield

    def pending(self) -> int:
        """Entries not sent yet."""
        path = self.folder / _ENTRIES
        if not path.exists():
            return 0
        with path.open(encoding="utf-8") as lines:
            return sum(1 for line in lines if line.strip())

    def append(self, entry: Entry, *, file: Path | None = None) -> None:
        """Keep `entry` (and a copy of the file it uploads, as `entry["path"]`)."""
        with self._locked():
            if file is not None:
                # A folder of its own keeps the file's name, which the upload takes.
                kept = self.folder / _FILES / uuid.uuid4().hex / file.name
                kept.parent.mkdir(parents=True)
                shutil.copyfile(file, kept)
                entry = entry | {"path": str(kept)}
            with (self.folder / _ENTRIES).open("a", encoding="utf-8") as out:
                out.write(json.dumps(entry) + "\n")
                out.flush()
                os.fsync(out.fileno())

    def replay(self, send: Callable[[Entry], None]) -> int:
        """Send the entries in order, each removed once sent (with its file); stops at the
        first that fails, which raises, the rest kept. Returns how many were sent."""
        sent = 0
        with self._locked():
            path = self.folder / _ENTRIES
            if not path.exists():
                return 0
            entries = [json.loads(line) for line in path.read_text(encoding="utf-8")
                       .splitlines() if line.strip()]
            try:
                for entry in entries:
                    send(entry)
                    sent += 1
                    if "path" in entry:
                        shutil.rmtree(Path(entry["path"]).parent, ignore_errors=True)
            finally:
                _rewrite(path, entries[sent:])
        return sent


def _rewrite(path: Path, entries: list[Mapping[str, Any]]) -> None:
    if not entries:
        path.unlink(missing_ok=True)
        return
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(json.dumps(entry) + "\n" for entry in entries),
                         encoding="utf-8")
    temporary.replace(path)


def send_entry(client: Any, entry: Entry, tracking_uri: str) -> None:
    """Make one write on the tracking server (an MlflowClient's)."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    op, run_id = entry["op"], entry["run_id"]
    if op == "log_batch":
        client.log_batch(run_id, metrics=[Metric(**m) for m in entry.get("metrics", [])],
                         params=[Param(**p) for p in entry.get("params", [])],
                         tags=[RunTag(**t) for t in entry.get("tags", [])])
    elif op == "log_artifact":
        client.log_artifact(run_id, entry["path"], entry.get("artifact_path"))
    elif op == "set_terminated":
        client.set_terminated(run_id, status=entry["status"], end_time=entry["end_time"])
    elif op == "delete_artifacts":
        uri = client.get_run(run_id).info.artifact_uri
        with suppress(FileNotFoundError):
            get_artifact_repository(uri, tracking_uri).delete_artifacts(entry["artifact_path"])
    else:
        raise ValueError(f"journal entry of unknown kind {op!r}")
