"""The tracker on its own: the retry policy, and runs ended by the block they wrap (real
MLflow on a SQLite store, no training)."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from search.errors import TrackingError, TrialStopped
from search.records import MAX_PARAM_LENGTH, TrialRecord
from search.stores.mlflow_requests import Requests, RetryPolicy
from search.stores.tracking import Tracker

FAST = RetryPolicy(attempts=3, backoff_s=0.0, outage_s=60.0)


class Failing:
    """An action that fails `times` times with `error`, then returns "ok"."""

    def __init__(self, times: int, error: Exception | None = None) -> None:
        self.times, self.calls = times, 0
        self.error = error or OSError("connection refused")

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error
        return "ok"


def test_a_request_is_retried_then_tried_once_while_the_server_is_down() -> None:
    requests = Requests("http://127.0.0.1:9", FAST)
    assert requests.required("read", Failing(2)) == "ok"
    down = Failing(10)
    with pytest.raises(TrackingError, match=r"^MLflow at http://127.0.0.1:9: could not read"):
        requests.required("read", down)
    assert down.calls == FAST.attempts
    # The outage window: one try each, a best-effort write says False and is listed.
    later = Failing(10)
    assert requests.write("log metrics", later) is False
    assert later.calls == 1
    assert requests.not_logged == ["log metrics"]
    # Back up: the next request succeeds, and the one after gets every attempt again.
    assert requests.required("read", Failing(0)) == "ok"
    assert requests.required("read", Failing(2)) == "ok"


def test_a_refused_request_is_not_retried() -> None:
    requests = Requests("http://127.0.0.1:9", FAST)
    refused = Failing(10, MlflowException("bad", error_code=INVALID_PARAMETER_VALUE))
    with pytest.raises(TrackingError):
        requests.required("log params", refused)
    assert refused.calls == 1
    assert requests.required("read", Failing(1)) == "ok"  # no outage window after it


def test_mlflow_http_settings_default_but_the_environment_wins(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    Tracker(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == str(RetryPolicy().http_timeout_s)


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Tracker:
    root = tmp_path_factory.mktemp("tracking")
    return Tracker(tracking_uri=f"sqlite:///{root}/mlflow.db")


@pytest.mark.parametrize(("raised", "status", "state", "reason"), [
    (None, "FINISHED", "complete", None),
    (optuna.TrialPruned("at epoch 2 (dev F1 0.1000)"), "KILLED", "pruned",
     "at epoch 2 (dev F1 0.1000)"),
    (TrialStopped("stopped at epoch 1"), "KILLED", "interrupted", "stopped at epoch 1"),
    (ValueError("boom"), "FAILED", "failed", "ValueError: boom"),
])
def test_a_trial_run_ends_as_its_block_does(tracker: Tracker, raised: Exception | None,
                                            status: str, state: str,
                                            reason: str | None) -> None:
    study = optuna.create_study()
    trial = study.ask()
    long_value = "x" * (MAX_PARAM_LENGTH + 10)
    with tracker.study_run("ends", tags={}, params={}) as parent:
        try:
            with tracker.trial_run(trial, study_name="ends", parent_run_id=parent.id,
                                   params={"long": long_value}, tags={"extra": "1"}) as run:
                run.log_metrics({"dev_macro_f1": 0.5}, step=1)
                if raised is not None:
                    raise raised
        except Exception as error:
            assert error is raised
    record = TrialRecord.of(study.trials[0])
    assert record.run_id == run.run_id
    assert record.reason == reason
    client = MlflowClient(tracking_uri=tracker.tracking_uri)
    logged = client.get_run(run.id)
    assert (logged.info.status, logged.data.tags["state"]) == (status, state)
    assert logged.data.tags.get("reason") == reason
    assert logged.data.tags["mlflow.parentRunId"] == parent.id
    assert logged.data.tags["extra"] == "1"
    assert logged.data.params["long"] == long_value[:MAX_PARAM_LENGTH]
    assert logged.data.metrics["dev_macro_f1"] == 0.5
    assert client.get_run(parent.id).info.status == "FINISHED"
    assert tracker.not_logged == []
