"""Where a study lives: its Optuna storage (`optuna_storage`), its MLflow runs, requests and
models (`tracking`, `mlflow_requests`, `mlflow_models`), a trial's data as MLflow dataset
inputs (`datasets`) and the dev-fold outputs kept on runs (`dev_outputs`).

Above search.records, below everything that runs or reads a study.
"""
