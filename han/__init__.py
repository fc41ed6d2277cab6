"""The HAN training core: data, model, training, prediction.

It knows nothing of Optuna or MLflow: the search layer drives it through configs and a
per-epoch callback.
"""
