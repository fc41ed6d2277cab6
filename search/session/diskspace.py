"""Free space where a run writes, against what its trials may keep there: checked before the
first trial, so a study the disk cannot hold is told at its start, not found out overnight."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from han.config import HANConfig
from han.files import mount_point, nearest_existing
from han.model import HAN
from search.formatting import size
from search.studyfile.spec import StudySpec

# Weights, Adam's two moments and the dev fold's class probabilities are float32; token ids
# and predicted classes int64.
FLOAT_BYTES = 4
ID_BYTES = 8
# torch.save writes each tensor as a zip record: a header and alignment besides its bytes.
RECORD_BYTES = 512
# The evaluation files of a complete trial beside its checkpoint in MLflow (its
# classification report and confusion matrix figure: 17 KB for 4 classes).
EVALUATION_BYTES = 64 * 1024
_SIZES = ("embed_dim", "word_hidden", "word_layers", "sent_hidden", "sent_layers")


@dataclass(frozen=True, kw_only=True)
class TrialFootprint:
    """What one trial of the study's largest model writes."""

    checkpoint: int  # the best checkpoint: weights and vocabulary
    state: int  # the training state beside it in --work-dir: weights, Adam's moments
    kept: int  # what MLflow keeps of a complete trial: its checkpoint, dev outputs, evaluation


def footprint(spec: StudySpec, *, vocabulary: int, classes: int, dev_docs: int,
              pretrained: bool) -> TrialFootprint:
    """The footprint of the largest model the study's space allows, from its parameter
    count (the model is built on the meta device: no memory is taken)."""
    sizes = {name: spec.setting_range(name)[1] for name in _SIZES}
    cell = "lstm" if "lstm" in spec.setting_range("cell") else "gru"
    with torch.device("meta"):
        model = HAN(HANConfig(vocab_size=vocabulary + 2, num_classes=classes, cell=cell,
                              pretrained_embeddings=pretrained, **sizes))
    tensors = list(model.state_dict().values())
    trained = [p for p in model.parameters() if p.requires_grad]
    weights = sum(t.numel() for t in tensors) * FLOAT_BYTES + len(tensors) * RECORD_BYTES
    moments = 2 * (sum(p.numel() for p in trained) * FLOAT_BYTES + len(trained) * RECORD_BYTES)
    dev_outputs = dev_docs * (classes * FLOAT_BYTES + ID_BYTES)
    checkpoint = weights + vocabulary * ID_BYTES
    return TrialFootprint(checkpoint=checkpoint, state=weights + moments + dev_outputs,
                          kept=checkpoint + dev_outputs + EVALUATION_BYTES)


@dataclass(frozen=True, kw_only=True)
class Shortage:
    """A filesystem that may not hold what the run writes on it."""

    mount: Path
    free: int
    needed: int
    parts: tuple[str, ...]  # what it would hold, for people

    def describe(self) -> str:
        return (f"{self.mount} has {size(self.free)} free, but the run may write "
                f"{size(self.needed)} there: {'; '.join(self.parts)}")


def shortages(*, trial: TrialFootprint, trials: int, work_dir: Path,
              artifacts: Path | None) -> list[Shortage]:
    """The filesystems that cannot hold the run: --work-dir holds one trial's checkpoint
    and training state at a time, MLflow's local artifact folder (None: a server's, whose
    disk is not this machine's) what every complete trial keeps."""
    running = trial.checkpoint + trial.state
    needs = {work_dir: (running, f"a trial's checkpoint and training state ({size(running)}) "
                                 f"in --work-dir {work_dir}")}
    if artifacts is not None:
        needs[artifacts] = (trials * trial.kept,
                            f"{trials} trial{'s' if trials != 1 else ''} x {size(trial.kept)} "
                            f"(checkpoint, evaluation) in MLflow's artifacts {artifacts}")
    return [shortage for shortage in _by_filesystem(needs) if shortage.needed > shortage.free]


def _by_filesystem(needs: Mapping[Path, tuple[int, str]]) -> list[Shortage]:
    """The needs of folders on one filesystem added up, with its free space."""
    found: dict[int, Shortage] = {}
    for folder, (needed, part) in needs.items():
        existing = nearest_existing(folder)
        device = existing.stat().st_dev
        held = found.get(device)
        if held is None:
            status = os.statvfs(existing)
            held = Shortage(mount=mount_point(existing),
                            free=status.f_bavail * status.f_frsize, needed=0, parts=())
        found[device] = Shortage(mount=held.mount, free=held.free, needed=held.needed + needed,
                                 parts=(*held.parts, part))
    return list(found.values())
