"""The search: tuning han/'s classifier with Optuna, every trial on record in MLflow.

Its packages, top to bottom (each imports only those below it; pyproject.toml's
import-linter contracts hold them to that): `cli` (the commands), `session` (a study's
session and its trials), `export` (submissions, refit, blend, registry), `setup` (options
and study file resolved once; a trial's build step), `views` (a study read for people),
`studyfile` (the study file), `pruners`, `stores` (Optuna and MLflow), `records` (every
key a study writes), and `errors`, `defaults`, `formatting`, `version`, which import none
of them.
"""
