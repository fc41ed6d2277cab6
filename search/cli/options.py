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
# How data files are read. For commands that read a study file, None keeps its [data]
# setting, else the default of han.config.FileFormat, quoted from there; for commands that
# take none (bench, embeddings), None is that default.
def _format_helps(unless: str) -> dict[str, str]:
    return {
        "sep": "Column delimiter, one character ('\\t' or 'tab' for a tab). Default: "
               f"{unless}{COMPETITION_FORMAT.sep!r}.",
        "text_col": f"Name of the text column. Default: {unless}{COMPETITION_FORMAT.text_col!r}.",
        "label_col": "Name of the label column; labels are integers (class ids) or names. "
                     f"Default: {unless}{COMPETITION_FORMAT.label_col!r}.",
        "tokens": "What a token is: ids (space-separated integer ids, the competition's), "
                  "words (whitespace-separated) or chars (every non-space character, e.g. "
                  "Chinese text); auto tells them apart from the training file's first rows. "
                  f"Default: {unless}{FileFormat.tokens!r}.",
    }


_STUDY_FILE = _format_helps("the study file's, else ")
_NO_STUDY_FILE = _format_helps("")
Sep = Annotated[str | None, typer.Option(help=_STUDY_FILE["sep"])]
TextCol = Annotated[str | None, typer.Option(help=_STUDY_FILE["text_col"])]
LabelCol = Annotated[str | None, typer.Option(help=_STUDY_FILE["label_col"])]
FileSep = Annotated[str | None, typer.Option("--sep", help=_NO_STUDY_FILE["sep"])]
FileTextCol = Annotated[str | None, typer.Option("--text-col",
                                                 help=_NO_STUDY_FILE["text_col"])]
FileLabelCol = Annotated[str | None, typer.Option("--label-col",
                                                  help=_NO_STUDY_FILE["label_col"])]
Word2Vec = Annotated[bool | None, typer.Option(
    "--word2vec/--no-word2vec", help="Without --embeddings, train word2vec on the training "
    "and test texts at embed_dim before the trials (cached in --work-dir, reused for the same "
    "data) and give its vectors to every trial. Default: the study file's [data] word2vec, "
    "else on.", show_default=False)]
Tokens = Annotated[TokenChoice | None, typer.Option(help=_STUDY_FILE["tokens"])]
FileTokens = Annotated[TokenChoice | None, typer.Option("--tokens",
                                                        help=_NO_STUDY_FILE["tokens"])]
