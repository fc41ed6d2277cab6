"""A study's results taken out: the best trial's submission (`best`), the K-fold refit
ensemble (`refit`), the blend with the linear baseline (`blend`), and the MLflow Model
Registry (`registry`, with the code MLflow runs to load a model: `pyfunc_model`).

Stands on the run set up (search.setup: a refit builds its folds as a trial is built), the
stores and the records; the session registers its champion through it.
"""
