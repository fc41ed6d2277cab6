"""The registered model's code: MLflow logs this file as a model from code (no pickle), and runs
it when the model is loaded, with han-search checkpoints as the model's artifacts.

It needs only `han/` (shipped beside it in the model, as code) and what han needs (torch,
numpy, pandas, scikit-learn). Checkpoints are read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow
import pandas as pd

from han.predict import TextClassifier

# The artifact `search.export.registry` writes beside the checkpoints, and its keys: the artifact
# names of the checkpoints, in ensemble order, and each one's weight. (A file, not MLflow's
# model_config, which MLflow would also log as params of the run the model is logged on.)
ENSEMBLE = "ensemble"
CHECKPOINTS = "checkpoints"
WEIGHTS = "weights"


class HANTextClassifier(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with the training file's text column (raw text, as that file held
    it). Output: a DataFrame with the training file's label column, labels as it wrote them."""

    def load_context(self, context: Any) -> None:
        with open(context.artifacts[ENSEMBLE], encoding="utf-8") as handle:
            config = json.load(handle)
        self.classifier = TextClassifier(
            [context.artifacts[name] for name in config[CHECKPOINTS]], config[WEIGHTS])

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        column = self.classifier.file_format.text_col
        return self.classifier.predict(model_input[column].tolist()).submission()


mlflow.models.set_model(HANTextClassifier())
