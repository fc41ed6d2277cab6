"""`han-search bench`, `embeddings` and `sync`: a file's throughput figures, word2vec
vectors for --embeddings, and the MLflow writes kept while a tracking server was away."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from han.config import DataConfig, TrainConfig, Word2VecConfig
from search.cli.app import command, fail, file_format, user_errors
from search.cli.options import (
    Device,
    FileLabelCol,
    FileSep,
    FileTextCol,
    FileTokens,
    TrackingUri,
)
from search.defaults import DEFAULT_TRACKING_URI
from search.formatting import duration


@command()
def bench(
    train: Annotated[Path, typer.Option(help="Labelled training file.")],
    seg_len: Annotated[int, typer.Option(help="Tokens per segment.")] = DataConfig.seg_len,
    max_segments: Annotated[int, typer.Option(help="Segments kept per document.")] =
        DataConfig.max_segments,
    word_hidden: Annotated[int | None, typer.Option(help="Word BiLSTM hidden size.")] = None,
    sent_hidden: Annotated[int | None, typer.Option(
        help="Segment (sentence) BiLSTM hidden size.")] = None,
    batch_size: Annotated[int, typer.Option(help="Documents per batch.")] = 16,
    steps: Annotated[int, typer.Option(
        min=0, help="Timed training and evaluation batches; 0: the rest of one epoch after "
        "the untimed first two, and the whole dev fold.")] = 20,
    device: Device = TrainConfig.device,
    precision: Annotated[str, typer.Option(
        help="Training arithmetic: auto (bf16 where the hardware has it), fp32 or bf16.")] =
        TrainConfig.precision,
    sep: FileSep = None,
    text_col: FileTextCol = None,
    label_col: FileLabelCol = None,
    tokens: FileTokens = None,
) -> None:
    """Print one JSON line of throughput and memory figures for a file and configuration."""
    from han.bench import bench as run_bench

    read_as = file_format(sep=sep, text_col=text_col, label_col=label_col, tokens=tokens)
    model = {k: v for k, v in (("word_hidden", word_hidden), ("sent_hidden", sent_hidden))
             if v is not None}
    with user_errors(tokens_option=True):
        try:
            data_config = DataConfig(seg_len=seg_len, max_segments=max_segments)
        except ValueError as error:
            fail(str(error))
        figures = run_bench(train, model_config=model, data_config=data_config,
                            batch_size=batch_size, steps=steps or None, device=device,
                            precision=precision, file_format=read_as)
    typer.echo(json.dumps(figures))


@command()
def embeddings(
    train: Annotated[Path, typer.Option(help="Training file (its texts; labels unused).")],
    out: Annotated[Path, typer.Option(help="word2vec text file to write.")],
    test: Annotated[Path | None, typer.Option(
        help="Test file whose texts are added (unsupervised: no labels are read).")] = None,
    dim: Annotated[int, typer.Option(min=1, help="Vector size; must equal the study's "
                                      "embed_dim.")] = Word2VecConfig.dim,
    window: Annotated[int, typer.Option(min=1, help="Context window.")] =
        Word2VecConfig.window,
    min_count: Annotated[int, typer.Option(min=1, help="Ignore rarer tokens.")] =
        Word2VecConfig.min_count,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the texts.")] =
        Word2VecConfig.epochs,
    workers: Annotated[int | None, typer.Option(
        min=1, help="Training threads; default: all cores.")] = None,
    sep: FileSep = None,
    text_col: FileTextCol = None,
    tokens: FileTokens = None,
) -> None:
    """Train word2vec on the training (and test) texts for --embeddings."""
    from han.embeddings import train_word2vec
    from han.files import check_writable
    from han.io import load_corpus

    read_as = file_format(sep=sep, text_col=text_col, tokens=tokens)
    with user_errors(tokens_option=True):
        check_writable(out)
        corpora = [load_corpus(train, labelled=False, file_format=read_as)]
        detected = ", detected" if read_as.tokens == "auto" else ""
        # The test file's tokens are the training file's, as a run reads them.
        read_as = corpora[0].file_format
        if test is not None:
            corpora.append(load_corpus(test, labelled=False, file_format=read_as))
        typer.echo(f"word2vec on {sum(c.num_docs for c in corpora)} documents, "
                   f"{sum(len(c.tokens) for c in corpora)} tokens ({read_as.tokens}"
                   f"{detected}), dim {dim}")
        config = Word2VecConfig(dim=dim, window=window, min_count=min_count, epochs=epochs)
        stats = train_word2vec(
            corpora, out=out, config=config, workers=workers,
            on_epoch=lambda done, total: typer.echo(f"epoch {done}/{total}"))
    typer.echo(f"wrote {stats.vectors} vectors of dimension {stats.dim} to {stats.out} in "
               f"{duration(stats.seconds)} ({stats.tokens_per_s:,.0f} tokens/s)")


@command()
def sync(tracking_uri: TrackingUri = DEFAULT_TRACKING_URI) -> None:
    """Send the MLflow writes that runs kept on this machine while the tracking server was
    away, in their order (the next run sends them too)."""
    from search.formatting import redact
    from search.stores.journal import Journal
    from search.stores.tracking import Tracker

    journal = Journal.for_server(tracking_uri)
    if journal is None:
        typer.echo(f"{redact(tracking_uri)} is a local store: nothing waits for it")
        return
    if not journal.pending():
        typer.echo(f"nothing waits for {redact(tracking_uri)}")
        return
    with user_errors():
        sent = Tracker(tracking_uri=tracking_uri).requests.flush()
    typer.echo(f"sent {sent} MLflow writes to {redact(tracking_uri)}, in the order they were "
               "made")
