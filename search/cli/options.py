"""The options several commands share, each defined once (its help, its environment
variable): the stores, the device, the study name, how data files are read."""

from __future__ import annotations

from typing import Annotated

import typer

from han.config import COMPETITION_FORMAT, FileFormat, TokenChoice

StudyName = Annotated[str | None, typer.Option(
    "--study", help="Study name; default: the training file's name when --train is given "
    "(news.csv: news), else the study file's (demo). A study keeps one dataset.")]
Storage = Annotated[str, typer.Option(
    help="Optuna storage URL: sqlite:///FILE or postgresql://USER@HOST/DB.",
    envvar="HAN_SEARCH_STORAGE")]
TrackingUri = Annotated[str, typer.Option(
    help="MLflow tracking URI: sqlite:///FILE or http://HOST:PORT of an mlflow server.",
    envvar="MLFLOW_TRACKING_URI")]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda:N.")]
# How data files are read; None keeps the study file's [data] setting, else the default of
# han.config.FileFormat, quoted from there.
_UNLESS = "the study file's, else"
Sep = Annotated[str | None, typer.Option(
    help="Column delimiter, one character ('\\t' or 'tab' for a tab). Default: "
    f"{_UNLESS} {COMPETITION_FORMAT.sep!r}.")]
TextCol = Annotated[str | None, typer.Option(
    help=f"Name of the text column. Default: {_UNLESS} {COMPETITION_FORMAT.text_col!r}.")]
LabelCol = Annotated[str | None, typer.Option(
    help="Name of the label column; labels are integers (class ids) or names. Default: "
    f"{_UNLESS} {COMPETITION_FORMAT.label_col!r}.")]
Word2Vec = Annotated[bool | None, typer.Option(
    "--word2vec/--no-word2vec", help="Without --embeddings, train word2vec on the training "
    "and test texts at embed_dim before the trials (cached in --work-dir, reused for the same "
    "data) and give its vectors to every trial. Default: the study file's [data] word2vec, "
    "else on.", show_default=False)]
Tokens = Annotated[TokenChoice | None, typer.Option(
    help="What a token is: ids (space-separated integer ids, the competition's), words "
    "(whitespace-separated) or chars (every non-space character, e.g. Chinese text); auto "
    "tells them apart from the training file's first rows. "
    f"Default: {_UNLESS} {FileFormat.tokens!r}.")]
