from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from han import stopping
from han.batching import prepare
from han.checkpoint import load_checkpoint
from han.config import DataConfig, HANConfig, TrainConfig
from han.errors import CheckpointError, DeviceOutOfMemoryError
from han.io import read_corpus
from han.model import HAN
from han.predict import predict
from han.stopping import StopReason
from han.train import train
from tests.conftest import easy_corpus

DATA = DataConfig(seg_len=16, max_segments=4, folds=4, min_count=1)
TRAIN = TrainConfig(epochs=3, batch_size=8, lr=1e-2, decay_steps=100, patience=2)


def small_model(split, **overrides) -> HANConfig:
    return HANConfig(vocab_size=split.vocab.size, num_classes=split.num_classes, embed_dim=16,
                     word_hidden=16, sent_hidden=16, **overrides)


@pytest.fixture(scope="module")
def easy(tmp_path_factory):
    path = easy_corpus(tmp_path_factory.mktemp("easy") / "train.tsv")
    return path, prepare(read_corpus(path, labelled=True), DATA)


def test_short_run_learns_well_above_chance(easy, tmp_path: Path) -> None:
    _, split = easy
    seen = []
    result = train(split, model_config=small_model(split), data_config=DATA, train_config=TRAIN,
                   checkpoint_dir=tmp_path, on_epoch=seen.append)
    assert result.best_dev_f1 > 0.8  # chance is 0.25 with 4 balanced classes
    assert [m.epoch for m in seen] == [m.epoch for m in result.history]
    first = result.history[0]
    assert first.train_docs_per_s > 0 and first.epoch_seconds > 0 and first.lr == 1e-2
    assert result.checkpoint_path.exists()
    assert len(result.dev_predictions) == len(split.dev_docs)


def test_training_is_reproducible(easy, tmp_path: Path) -> None:
    _, split = easy
    config = TrainConfig(epochs=1, batch_size=16, lr=5e-3)
    runs = [train(split, model_config=small_model(split), data_config=DATA, train_config=config,
                  checkpoint_dir=tmp_path / str(i)) for i in range(2)]
    assert runs[0].history[0].train_loss == runs[1].history[0].train_loss
    assert runs[0].best_dev_f1 == runs[1].best_dev_f1


def test_callback_stops_the_run_and_exceptions_propagate(easy, tmp_path: Path) -> None:
    _, split = easy
    result = train(split, model_config=small_model(split), data_config=DATA, train_config=TRAIN,
                   checkpoint_dir=tmp_path / "a",
                   on_epoch=lambda metrics: stopping.Stop(StopReason.BUDGET_SHARE))
    assert len(result.history) == 1 and result.stop.reason is StopReason.BUDGET_SHARE

    class Stop(Exception):
        pass

    def raise_stop(metrics):
        raise Stop

    with pytest.raises(Stop):
        train(split, model_config=small_model(split), data_config=DATA, train_config=TRAIN,
              checkpoint_dir=tmp_path / "b", on_epoch=raise_stop)


def test_non_finite_loss_stops_as_not_learning(easy, tmp_path: Path) -> None:
    _, split = easy
    config = TrainConfig(epochs=2, lr=1e30, clip=1e30)
    result = train(split, model_config=small_model(split), data_config=DATA,
                   train_config=config, checkpoint_dir=tmp_path)
    assert result.stop.reason is StopReason.NOT_LEARNING
    assert "non-finite loss" in result.stop.message


def test_interrupt_then_resume_continues_from_last_epoch(easy, tmp_path: Path) -> None:
    _, split = easy
    calls = {"n": 0}

    def stop_in_second_epoch() -> stopping.Stop | None:
        calls["n"] += 1
        if calls["n"] > len(split.train_docs) // 16 + 3:
            return stopping.Stop(StopReason.INTERRUPTED)
        return None

    config = TrainConfig(epochs=3, batch_size=16, lr=5e-3, patience=5)
    stopped = train(split, model_config=small_model(split), data_config=DATA,
                    train_config=config, checkpoint_dir=tmp_path,
                    should_stop=stop_in_second_epoch)
    assert stopped.stop.reason is StopReason.INTERRUPTED
    resumed = train(split, model_config=small_model(split), data_config=DATA,
                    train_config=config, checkpoint_dir=tmp_path, resume=True)
    assert resumed.resumed_from_epoch == 1
    assert [m.epoch for m in resumed.history] == [1, 2, 3]
    fresh = train(split, model_config=small_model(split), data_config=DATA, train_config=config,
                  checkpoint_dir=tmp_path / "fresh")
    assert fresh.history[2].train_loss == pytest.approx(resumed.history[2].train_loss, rel=1e-6)
    # The best epoch's dev probabilities survive the interruption (in last_state.pt).
    assert resumed.best_epoch == fresh.best_epoch
    assert resumed.dev_probabilities is not None and fresh.dev_probabilities is not None
    np.testing.assert_allclose(resumed.dev_probabilities, fresh.dev_probabilities, atol=1e-5)


def test_checkpoint_round_trip_gives_identical_predictions(easy, tmp_path: Path) -> None:
    path, split = easy
    result = train(split, model_config=small_model(split), data_config=DATA,
                   train_config=TrainConfig(epochs=1, lr=5e-3), checkpoint_dir=tmp_path)
    loaded = load_checkpoint(result.checkpoint_path)
    raw = torch.load(result.checkpoint_path, weights_only=True)
    assert set(raw) >= {"state_dict", "model_config", "data_config", "vocab"}
    first = predict(result.checkpoint_path, path)
    second = predict(result.checkpoint_path, path)
    assert np.array_equal(first.probabilities, second.probabilities)
    assert first.labels.shape == (240,)
    # Dev predictions from training equal what the saved model predicts for those docs.
    assert np.array_equal(first.labels[split.dev_docs], result.dev_predictions)
    # And the best epoch's dev probabilities, kept for blending, are the saved model's.
    assert result.dev_probabilities is not None
    np.testing.assert_allclose(result.dev_probabilities, first.probabilities[split.dev_docs],
                               atol=1e-5)
    assert loaded.vocab.size == split.vocab.size


def test_checkpoint_loader_rejects_foreign_files(tmp_path: Path) -> None:
    pickled = tmp_path / "evil.pt"
    torch.save({"format": 1, "payload": object()}, pickled)
    with pytest.raises(CheckpointError, match="not a loadable"):
        load_checkpoint(pickled)
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pt")


def test_out_of_memory_names_the_batch_shape(easy, tmp_path: Path, monkeypatch) -> None:
    """Fault injection: the device's allocator failing mid-step (no GPU on CI machines)."""
    _, split = easy

    def exhausted(self, *args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(HAN, "forward", exhausted)
    with pytest.raises(DeviceOutOfMemoryError, match=r"batch size 8 with \d+ segments"):
        train(split, model_config=small_model(split), data_config=DATA, train_config=TRAIN,
              checkpoint_dir=tmp_path)
