"""Hyper-parameter search of the HAN with Optuna, every trial recorded in MLflow."""
