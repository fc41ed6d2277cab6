"""A trial's configurations built from its parameters: the study file's fixed settings under
the trial's searched ones, the run's device and seed, and the data split they encode. The
one build step of a search trial and of a refit's folds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from han.batching import EncodedSplit, prepare
from han.config import DataConfig, HANConfig, TrainConfig
from han.model import config_for
from search.setup.resolve import ResolvedRun
from search.studyfile.settings import split_settings


@dataclass(frozen=True, kw_only=True)
class TrialBuild:
    """One trial's encoded data and configurations."""

    split: EncodedSplit
    model_config: HANConfig
    data_config: DataConfig
    train_config: TrainConfig

    def params(self) -> dict[str, Any]:
        """Every setting, searched and fixed, as the run's params."""
        return asdict(self.model_config) | asdict(self.data_config) | asdict(self.train_config)


def build_configs(params: dict[str, Any], resolved: ResolvedRun
                  ) -> tuple[dict[str, Any], DataConfig, TrainConfig]:
    """The trial's model settings, split and training settings: `params` over the study's
    fixed settings, trained on the run's device with its seed (when --seed was given)."""
    model_kwargs, data_kwargs, train_kwargs = split_settings({**resolved.spec.fixed, **params})
    train_kwargs["device"] = resolved.device
    if resolved.seed is not None:
        train_kwargs["seed"] = resolved.seed
    return model_kwargs, DataConfig(**data_kwargs), TrainConfig(**train_kwargs)


def build_trial(params: dict[str, Any], resolved: ResolvedRun, *,
                fold: tuple[int, int] | None = None) -> TrialBuild:
    """The trial of `params`, its data encoded; with `fold` (K, k), on the k-th of K folds
    instead of the study's split (a refit)."""
    model_kwargs, data_config, train_config = build_configs(params, resolved)
    if fold is not None:
        data_config = replace(data_config, folds=fold[0], dev_fold=fold[1])
    split = prepare(resolved.corpus, data_config, embeddings=resolved.files.embeddings,
                    embed_dim=model_kwargs.get("embed_dim", resolved.embed_dim),
                    label_names=resolved.spec.label_names, cache=resolved.cache)
    return TrialBuild(split=split, model_config=config_for(split, **model_kwargs),
                      data_config=data_config, train_config=train_config)
