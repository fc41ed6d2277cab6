"""Models in MLflow: a pyfunc model logged from code on a run, and versions of a registered
model with an alias moved onto them."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

# MLflow's own scoped switch of the process's tracking URI (it restores an unset URI as unset),
# for the few calls that read the process's URI instead of their client's.
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from search.stores.tracking import Tracker


@dataclass(frozen=True, kw_only=True)
class CodeModel:
    """A pyfunc model logged from code: the file MLflow runs to build it, the packages it
    ships as code, its artifacts, an example of its input and output."""

    name: str
    code: Path
    code_paths: tuple[Path, ...]
    artifacts: Mapping[str, Path]
    input_example: Any
    output_example: Any
    pip_requirements: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class RegisteredVersion:
    name: str
    version: str
    alias: str
    model_id: str
    run_id: str

    @property
    def uri(self) -> str:
        """What `mlflow.pyfunc.load_model` takes: the version by its alias."""
        return f"models:/{self.name}@{self.alias}"


def log_code_model(tracker: Tracker, run_id: str, model: CodeModel) -> str:
    """Log `model` as an MLflow Model of `run_id` (in the run's experiment); its id.

    MLflow's `log_model` files a model under the process's active experiment and reads the
    process's tracking URI: the model is created here in the run's experiment and handed
    over by id, and the URI is this tracker's for the length of the call only.
    """
    # Imported here: the model flavours cost seconds, and only exporting needs them.
    import mlflow.pyfunc
    from mlflow.models import Model, infer_signature

    def log() -> str:
        experiment_id = tracker.client.get_run(run_id).info.experiment_id
        logged = tracker.client.create_logged_model(experiment_id, name=model.name,
                                                    source_run_id=run_id)
        with warnings.catch_warnings():
            # MLflow warns that integer columns cannot hold missing values: the output's
            # labels never are missing, and the input is text.
            warnings.simplefilter("ignore", UserWarning)
            signature = infer_signature(model.input_example, model.output_example)
        with _use_tracking_uri(tracker.tracking_uri):
            Model.log(
                artifact_path=None, name=model.name, flavor=mlflow.pyfunc, run_id=run_id,
                model_id=logged.model_id, python_model=str(model.code),
                code_paths=[str(path) for path in model.code_paths],
                artifacts={key: str(path) for key, path in model.artifacts.items()},
                signature=signature,
                input_example=model.input_example,
                pip_requirements=list(model.pip_requirements))
        return logged.model_id

    return tracker.requests.required(f"log the model of run {run_id}", log)


def register_version(tracker: Tracker, *, name: str, model_id: str, run_id: str,
                     alias: str) -> RegisteredVersion:
    """A new version of the registered model `name` (created when new) from the logged
    model, with `alias` moved onto it."""
    client = tracker.client

    def register() -> RegisteredVersion:
        try:
            client.create_registered_model(name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = client.create_model_version(name, source=f"models:/{model_id}",
                                              run_id=run_id, model_id=model_id)
        client.set_registered_model_alias(name, alias, version.version)
        return RegisteredVersion(name=name, version=str(version.version), alias=alias,
                                 model_id=model_id, run_id=run_id)

    def register_here() -> RegisteredVersion:
        # A SQL store looks the logged model up through the process's tracking URI (an
        # MLflow TODO), not the client's.
        with _use_tracking_uri(tracker.tracking_uri):
            return register()

    return tracker.requests.required(f"register model {name!r}", register_here)
