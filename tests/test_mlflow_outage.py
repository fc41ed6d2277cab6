"""An `mlflow server` that goes away for 30 seconds in the middle of a study loses nothing:
what could not be written waits on disk (search.stores.journal) and reaches the server, in
order, with its steps and timestamps, once it answers again; every trial's metrics, tags and
checkpoint end up as a run without the outage records them. Writes left when the run ends
with the server still away are sent by `han-search sync`."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from han.checkpoint import load_checkpoint
from tests.conftest import easy_corpus
from tests.helpers import free_port, mlflow_server, study_toml
from tests.test_distributed import (
    NO_PRUNER,
    SLOW_DOCS,
    SLOW_FIXED,
    SLOW_REFERENCE,
    SLOW_SPACE,
    han_search,
    han_search_background,
    wait_for,
)

pytestmark = pytest.mark.slow

OUTAGE_S = 30
TRIALS = 3
METRICS = ("dev_macro_f1", "train_loss", "reported_dev_macro_f1")


def _args(root: Path, name: str, uri: str, *extra: str | int) -> list[str | Path]:
    train = easy_corpus(root / "train.tsv", docs=SLOW_DOCS)
    config = study_toml(root / f"{name}.toml", name=name, train=train, trials=TRIALS,
                        fixed=SLOW_FIXED, space=SLOW_SPACE, pruner=NO_PRUNER,
                        reference=SLOW_REFERENCE)
    return ["run", "--config", config, "--storage", f"sqlite:///{root}/{name}.db",
            "--tracking-uri", uri, "--work-dir", root / "work", "--threads", 1,
            "--device", "cpu", "--trials", TRIALS, *map(str, extra)]


def _histories(client: MlflowClient, storage: str, name: str) -> list[dict[str, list]]:
    """Each trial's metric histories, (step, value) in step order, by trial number."""
    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * TRIALS
    found = []
    for trial in trials:
        run_id = trial.user_attrs["mlflow_run_id"]
        found.append({key: sorted((m.step, round(m.value, 6))
                                  for m in client.get_metric_history(run_id, key))
                      for key in METRICS})
    return found


def test_a_server_away_for_30s_loses_nothing(tmp_path: Path) -> None:
    server_root, calm_root = tmp_path / "server", tmp_path / "calm-server"
    server_root.mkdir()
    calm_root.mkdir()
    port = free_port()
    with mlflow_server(server_root, port=port) as uri:
        args = _args(tmp_path, "outage", uri)
        background = han_search_background(*args, cwd=tmp_path, log=tmp_path / "run.log")
        run = background.__enter__()
        wait_for("a first epoch", lambda: "epoch 1/" in run.output(), alive=run)
    # The server is gone (its whole process group) while the trial trains. Meanwhile the
    # same study runs against a server of its own that stays up: the record to match.
    away_since = time.monotonic()
    try:
        with mlflow_server(calm_root) as calm_uri:
            calm = han_search(*_args(tmp_path, "calm", calm_uri), cwd=tmp_path)
            assert calm.code == 0, calm.output
            calm_runs = _histories(MlflowClient(tracking_uri=calm_uri),
                                   f"sqlite:///{tmp_path}/calm.db", "calm")
        assert run.process.poll() is None, "the run ended before the server came back"
        time.sleep(max(0.0, away_since + OUTAGE_S - time.monotonic()))
        with mlflow_server(server_root, port=port) as uri:
            code = run.process.wait(timeout=600)
            output = run.output()
            assert code == 0, output[-3000:]
            assert "kept while the server was away; all" in output, output[-2000:]
            assert "MLflow writes failed" not in output
            client = MlflowClient(tracking_uri=uri)
            outage_runs = _histories(client, f"sqlite:///{tmp_path}/outage.db", "outage")
            # Every epoch's metrics arrived, with the steps and values of the calm run.
            assert outage_runs == calm_runs
            for trial in optuna.load_study(study_name="outage",
                                           storage=f"sqlite:///{tmp_path}/outage.db").trials:
                logged = client.get_run(trial.user_attrs["mlflow_run_id"])
                assert logged.info.status == "FINISHED"
                assert logged.data.tags["state"] == "complete"
                checkpoint = client.download_artifacts(logged.info.run_id,
                                                       "checkpoint/best.pt",
                                                       str(tmp_path / f"ck{trial.number}"))
                assert load_checkpoint(checkpoint).extra["dev_macro_f1"] == pytest.approx(
                    trial.value)
    finally:
        background.__exit__(None, None, None)


def test_sync_sends_what_a_run_left_while_the_server_stayed_away(tmp_path: Path) -> None:
    server_root = tmp_path / "server"
    server_root.mkdir()
    port = free_port()
    with mlflow_server(server_root, port=port) as uri:
        args = _args(tmp_path, "left", uri)
        args[args.index("--trials") + 1] = "1"
        background = han_search_background(*args, cwd=tmp_path, log=tmp_path / "run.log")
        run = background.__enter__()
        wait_for("a first epoch", lambda: "epoch 1/" in run.output(), alive=run)
    try:
        code = run.process.wait(timeout=600)
        output = run.output()
        assert code == 0, output[-3000:]
        assert "still wait in" in output and "han-search sync" in output, output[-2000:]
        with mlflow_server(server_root, port=port) as uri:
            synced = han_search("sync", "--tracking-uri", uri, cwd=tmp_path)
            assert synced.code == 0, synced.output
            assert synced.output.startswith("sent ")
            again = han_search("sync", "--tracking-uri", uri, cwd=tmp_path)
            assert again.output.strip() == f"nothing waits for {uri}"
            [trial] = optuna.load_study(study_name="left",
                                        storage=f"sqlite:///{tmp_path}/left.db").trials
            client = MlflowClient(tracking_uri=uri)
            logged = client.get_run(trial.user_attrs["mlflow_run_id"])
            assert logged.data.tags["state"] == "complete"
            steps = [m.step for m in client.get_metric_history(logged.info.run_id,
                                                               "dev_macro_f1")]
            assert sorted(steps) == list(range(1, SLOW_FIXED["epochs"] + 1))
    finally:
        background.__exit__(None, None, None)
