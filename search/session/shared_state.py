"""A trial's training state where every worker can read it: the trial's MLflow run, beside the
checkpoints it already holds. After each finished epoch the latest state replaces the one
before (`training-state/`); a retry or a promotion that finds no newer state in its own
work dir (another machine's trial, or a wiped folder) downloads it and resumes from that
epoch; the state is removed from MLflow when the trial ends without needing it again.

Local first: the work dir's state is used when it is at least as far as the shared one, so a
retry on the same machine pays no download.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from han.train import BEST_CHECKPOINT, STATE_FILE
from search import records
from search.records import TrialRecord
from search.stores.tracking import RunHandle, Tracker

STATE_ARTIFACT = "training-state"
# The best checkpoint before the state that names its epoch: a worker killed between the two
# leaves a state one epoch behind a newer best, which the resumed epoch (replayed from the
# same RNG state) writes again; the other order could leave a state whose best is missing.
_FILES = (BEST_CHECKPOINT, STATE_FILE)


def this_worker() -> str:
    """Who trains a trial: this machine and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def shared(tracking_uri: str) -> bool:
    """Whether trials share their state: only through a tracking server. A local store lies
    on the worker's own disk, beside its work dir: a copy there would save nothing."""
    return tracking_uri.startswith(("http://", "https://"))


def upload(trial: optuna.Trial, run: RunHandle, checkpoint_dir: Path, epoch: int) -> None:
    """The state after `epoch` on the trial's run, replacing the last one; recorded on the
    trial (with the seconds it took) only once both files arrived."""
    started = time.perf_counter()
    sent = all(run.log_artifact(checkpoint_dir / name, artifact_path=STATE_ARTIFACT)
               for name in _FILES if (checkpoint_dir / name).exists())
    if sent:
        records.set_state_epochs(trial, epoch, upload_s=time.perf_counter() - started)


def discard(trial: optuna.Trial, run: RunHandle) -> None:
    """The shared state of a trial that will not be resumed (complete or pruned)."""
    if TrialRecord.of(trial).state_epochs:
        run.delete_artifacts(STATE_ARTIFACT)


def fetch(tracker: Tracker, study: optuna.Study, origin: int, checkpoint_dir: Path) -> int:
    """Bring the furthest shared state of trial `origin`'s attempts (the original, its
    retries, its promotion) into `checkpoint_dir` when the folder holds fewer finished epochs;
    the epochs of the state now in the folder."""
    local = _epochs_in(checkpoint_dir / STATE_FILE)
    attempts = [t for t in study.get_trials(deepcopy=False) if _continues(t, origin)]
    shared = max(attempts, key=lambda t: TrialRecord.of(t).state_epochs, default=None)
    if shared is None:
        return local
    record = TrialRecord.of(shared)
    if record.state_epochs <= local or record.run_id is None:
        return local
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    # The folder in one request, into scratch space beside the state: where MLflow puts a
    # download depends on the artifact store, so only the path it returns is trusted.
    with tempfile.TemporaryDirectory(dir=checkpoint_dir, prefix=".fetch-") as scratch:
        folder = tracker.download(record.run_id, STATE_ARTIFACT, Path(scratch))
        for name in _FILES:
            if (folder / name).is_file():
                (folder / name).replace(checkpoint_dir / name)
    return _epochs_in(checkpoint_dir / STATE_FILE)


def dead_here(trial: FrozenTrial) -> bool:
    """Whether a RUNNING trial's worker was a process of this machine that is gone (killed,
    or the machine restarted): known at once, without waiting for its heartbeats to stop."""
    worker = TrialRecord.of(trial).worker
    if trial.state != TrialState.RUNNING or worker is None:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _continues(trial: FrozenTrial, origin: int) -> bool:
    record = TrialRecord.of(trial)
    return trial.number == origin or record.origin == origin


def _epochs_in(path: Path) -> int:
    """Finished epochs of a saved training state (0: none there)."""
    if not path.exists():
        return 0
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError):  # half a file from a dead machine's disk
        return 0
    return len(state["history"])
