"""The `han-search` command line: each command parses its options, calls one function of
search/ and prints the result.

Importing this module loads typer and the option defaults, nothing heavier: each command
imports what it uses (torch, MLflow, scikit-learn, Optuna) when it runs, so that
`han-search --help` and every command's `--help` answer at once. tests/test_cli_startup.py
holds the module to that; bench/cli_startup.py times it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from han.config import (
    COMPETITION_FORMAT,
    DataConfig,
    FileFormat,
    TokenChoice,
    TrainConfig,
    Word2VecConfig,
)
from han.errors import CheckpointError, DataError, DeviceError, TokenMismatch
from han.files import UnwritablePath
from han.runtime import bound_primitive_cache
from search.defaults import (
    DEFAULT_HEARTBEAT_S,
    DEFAULT_STORAGE,
    DEFAULT_TRACKING_URI,
    DEFAULT_WORK_DIR,
    MAX_TRIAL_SHARE,
)
from search.errors import SearchError, StudyFileError, TrackingError
from search.formatting import duration, redact, short

if TYPE_CHECKING:
    from search.budget import Budget
    from search.console import ConsoleProgress
    from search.lifecycle import RunOptions
    from search.studyspec import StudySpec
    from search.summary import RunSummary

app = typer.Typer(
    help="Tune a Hierarchical Attention Network with Optuna; every trial on record in MLflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

USER_ERRORS = (DataError, StudyFileError, SearchError, TrackingError, CheckpointError,
               UnwritablePath, DeviceError)

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


def _configure_process() -> None:
    """Settings every command's process needs before it does its work; not made for
    --help, which then answers without importing Optuna."""
    import optuna

    bound_primitive_cache()
    # Optuna logs every trial at INFO, MLflow and Alembic their database set-up; the
    # progress lines say what matters more briefly. Failed trials are reported by the
    # progress lines, without Optuna's traceback. MLflow's own HTTP retries are set by
    # search.tracking.RetryPolicy.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # MLflow sets its loggers' levels from MLFLOW_LOGGING_LEVEL when it is imported, which
    # the commands do after this runs; the levels themselves for a process that imported
    # it already.
    os.environ["MLFLOW_LOGGING_LEVEL"] = "WARNING"
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # MLflow logs each failed SQL request of its store with a traceback; search.tracking
    # says what failed in one line (a full disk, a locked or unreachable store).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def command(name: str | None = None) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """`app.command(name)`, the process configured (`_configure_process`) once the options
    are parsed and the command runs."""

    def register(function: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(function)  # typer reads the options from the wrapped signature
        def configured(*args: Any, **kwargs: Any) -> None:
            _configure_process()
            function(*args, **kwargs)

        app.command(name)(configured)
        return function

    return register


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@contextmanager
def user_errors(*, tokens_option: bool = False, storage: str | None = None) -> Iterator[None]:
    """Turn expected failures into one line and exit code 2, never a traceback. A command
    with --tokens (`tokens_option`) says which value reads a file that is not its ids; one
    with a `storage` names its SQLite file when the filesystem refuses a write to it."""
    from search.storage import storage_writes

    try:
        with storage_writes(storage) if storage else nullcontext():
            yield
    except TokenMismatch as error:
        fail(f"{error}: --tokens {error.fits}" if tokens_option else str(error))
    except USER_ERRORS as error:
        fail(str(error))


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], bool]]:
    """SIGINT/SIGTERM ask the trainer to stop at the next batch boundary."""
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if received:  # a second signal: stop now
            raise KeyboardInterrupt
        received.append(signum)
        typer.echo(f"\n{signal.Signals(signum).name}: stopping at the next batch boundary "
                   "(again to stop at once)", err=True)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(received)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        if received:
            typer.echo("stopped: a trial interrupted mid-epoch is marked failed "
                       "(interrupted); run the same command again to continue the study",
                       err=True)
            raise typer.Exit(code=128 + received[0])


def file_format(**options: str | None) -> FileFormat:
    """The default format (han.config.FileFormat) with the given options changed; a bad
    value exits 2."""
    from search.lifecycle import override_format

    with user_errors():
        return override_format(FileFormat(), **options)


@command()
def bench(
    train: Annotated[Path, typer.Option(help="Labelled training file (tab-separated).")],
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
    device: Device = "cpu",
    precision: Annotated[str, typer.Option(
        help="Training arithmetic: auto (bf16 where the hardware has it), fp32 or bf16.")] =
        TrainConfig.precision,
    sep: Sep = None,
    text_col: TextCol = None,
    label_col: LabelCol = None,
    tokens: Tokens = None,
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


# How `run` spreads its trials: options of its own, named here to keep the command short.
Workers = Annotated[int, typer.Option(
    min=1, help="Worker processes on this machine sharing the study (one GPU each, or an "
    "even share of the CPU cores).")]
WorkersPerGpu = Annotated[int, typer.Option(
    min=1, help="Workers sharing each GPU (a small model leaves most of a large GPU idle); "
    "with K > 1, --workers defaults to K x the GPUs.")]
Threads = Annotated[int | None, typer.Option(
    min=1, help="CPU threads for this process; default: all cores, split among workers.")]
Heartbeat = Annotated[int, typer.Option(
    min=1, help="Seconds between a running trial's heartbeats; a trial silent for three is "
    "failed and retried.")]


@command()
def run(
    study: StudyName = None,
    config: Annotated[Path | None, typer.Option(
        help="Study file (TOML); default: the built-in studies/demo.toml.")] = None,
    trials: Annotated[int | None, typer.Option(
        min=1, help="Trials to train now (added to the study); default: as many as "
        "--timeout holds when it is given, else the study file's count.")] = None,
    timeout: Annotated[float | None, typer.Option(
        min=1, help=f"Seconds the run may take, {MAX_TRIAL_SHARE:.0%} per trial.")] = None,
    train: Annotated[Path | None, typer.Option(
        help="Labelled training file; default: the study's, else the built-in corpus.")] = None,
    test: Annotated[Path | None, typer.Option(help="Test file for export-best.")] = None,
    embeddings: Annotated[Path | None, typer.Option(
        help="word2vec text file of frozen embeddings (dimension = embed_dim).")] = None,
    word2vec: Word2Vec = None,
    sep: Sep = None,
    text_col: TextCol = None,
    label_col: LabelCol = None,
    tokens: Tokens = None,
    storage: Storage = DEFAULT_STORAGE,
    tracking_uri: TrackingUri = DEFAULT_TRACKING_URI,
    device: Device = "auto",
    seed: Annotated[int | None, typer.Option(help="Seed of the sampler and training.")] =
        None,
    workers: Workers = 1,
    workers_per_gpu: WorkersPerGpu = 1,
    threads: Threads = None,
    heartbeat: Heartbeat = DEFAULT_HEARTBEAT_S,
    work_dir: Annotated[Path, typer.Option(help="Scratch folder for trial checkpoints.")] =
        DEFAULT_WORK_DIR,
    worker_index: Annotated[int | None, typer.Option(hidden=True)] = None,  # workers only
    skip_baseline: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Run trials of a study; running it again continues the same study."""
    from search.budget import Budget
    from search.console import print_summary
    from search.lifecycle import RunOptions, with_overrides
    from search.studyfile import builtin_study_path, load_study_file

    started = time.perf_counter()  # --timeout counts from here: reading the data included
    file_format = dict(sep=sep, text_col=text_col, label_col=label_col, tokens=tokens)
    with user_errors(tokens_option=True, storage=storage):
        options = RunOptions(storage=storage, tracking_uri=tracking_uri, device=device,
                             seed=seed, train=train, test=test, embeddings=embeddings,
                             word2vec=word2vec, heartbeat_s=heartbeat,
                             sampler_seed_offset=worker_index or 0,
                             register=worker_index is None, baseline=not skip_baseline)
        spec = with_overrides(load_study_file(config or builtin_study_path()), options,
                              name=study, **file_format)
        typer.echo(f"study {spec.name!r} from {spec.source}; {_stores(options)}")
        summary, code = _run_session(
            spec, options, workers=_workers(workers, workers_per_gpu, device), trials=trials,
            threads=threads, work_dir=work_dir, file_format=file_format,
            per_gpu=workers_per_gpu, budget=Budget(timeout, started=started,
                                                   clock=time.perf_counter))
    print_summary(summary)
    if code:
        raise typer.Exit(code=code)


def _workers(workers: int, per_gpu: int, device: str) -> int:
    """--workers, or K x the GPUs when only --workers-per-gpu K > 1 is given."""
    if per_gpu == 1:
        return workers
    from search.workers import gpus_for

    gpus = gpus_for(device)
    if not gpus:
        fail(f"--workers-per-gpu {per_gpu}: no CUDA GPU for --device {device}")
    return workers if workers > 1 else per_gpu * gpus


def _stores(options: RunOptions) -> str:
    return f"storage {redact(options.storage)}; MLflow {redact(options.tracking_uri)}"


def _run_session(spec: StudySpec, options: RunOptions, *, workers: int, trials: int | None,
                 threads: int | None, work_dir: Path, file_format: dict[str, str | None],
                 per_gpu: int, budget: Budget) -> tuple[RunSummary, int]:
    """The session's trials, here or in `workers` processes; the summary and the first
    failing worker's exit code (0 here)."""
    from search.console import ConsoleProgress

    progress = ConsoleProgress(epochs=spec.fixed.get("epochs", TrainConfig.epochs),
                               started=budget.started, budget=budget)
    if workers > 1:
        return _run_in_workers(spec, options, workers=workers, trials=trials,
                               threads=threads, budget=budget, work_dir=work_dir,
                               file_format=file_format, per_gpu=per_gpu, progress=progress)
    return _run_here(spec, options, trials=trials, work_dir=work_dir, threads=threads,
                     budget=budget, progress=progress), 0


def _run_here(spec: StudySpec, options: RunOptions, *, trials: int | None, work_dir: Path,
              threads: int | None, budget: Budget, progress: ConsoleProgress) -> RunSummary:
    """The trials in this process, one line per epoch and trial, stopped by SIGINT/SIGTERM."""
    import torch

    from search.lifecycle import run_study

    if threads is not None:
        torch.set_num_threads(threads)
    with stop_on_signals() as should_stop:
        return run_study(spec, options, trials=trials, work_dir=work_dir, progress=progress,
                         should_stop=should_stop, budget=budget)


def _run_in_workers(spec: StudySpec, options: RunOptions, *, workers: int,
                    trials: int | None, threads: int | None, budget: Budget,
                    work_dir: Path, file_format: dict[str, str | None], per_gpu: int,
                    progress: ConsoleProgress) -> tuple[RunSummary, int]:
    """The trials in `workers` processes; this one trains the word2vec vectors and the
    baseline first. Each worker gets the study name this process decided (a worker derives
    none of its own), its vectors, and the time left of --timeout when it starts."""
    from search.lifecycle import run_with_workers

    def args(given: RunOptions, timeout: float | None) -> list[str]:
        return _worker_args(spec.source, given, study=spec.name, timeout=timeout,
                            work_dir=work_dir, **file_format)

    return run_with_workers(
        spec, options, workers=workers, trials=trials, threads=threads, worker_args=args,
        budget=budget, work_dir=work_dir, per_gpu=per_gpu, progress=progress)


# The options a worker gets on its command line. The stores' URLs travel in its environment
# (they may hold passwords, which `ps` would show); its device and seed offset come from its
# plan (search.workers).
_WORKER_FLAGS = {"seed": "--seed", "train": "--train", "test": "--test",
                 "embeddings": "--embeddings", "heartbeat_s": "--heartbeat"}


def _worker_args(source: Path, options: RunOptions, *, study: str | None,
                 timeout: float | None, work_dir: Path | None = None,
                 **file_format: str | None) -> list[str]:
    """The command line of one worker: the parent's options, spelled out, with `study` the
    name the parent decided (a worker derives none of its own)."""
    passed: dict[str, Any] = {"--config": source, "--study": study or None,
                              "--timeout": timeout or None, "--work-dir": work_dir}
    passed |= {flag: getattr(options, name) for name, flag in _WORKER_FLAGS.items()}
    passed |= {f"--{name.replace('_', '-')}": value for name, value in file_format.items()}
    # The parent trains the study's word2vec vectors (passed on as --embeddings) and its
    # baseline before starting its workers.
    off = ["--no-word2vec"] if options.word2vec is False else []
    return [part for flag, value in passed.items() if value is not None
            for part in (flag, str(value))] + off + ["--skip-baseline"]


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
    sep: Sep = None,
    text_col: TextCol = None,
    tokens: Tokens = None,
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


@command("export-best")
def export_best(
    study: Annotated[str, typer.Option(help="Study name.")] = "demo",
    storage: Storage = DEFAULT_STORAGE,
    tracking_uri: TrackingUri = DEFAULT_TRACKING_URI,
    test: Annotated[Path | None, typer.Option(
        help="Test file; default: the one the study ran with.")] = None,
    out: Annotated[Path, typer.Option(help="Submission CSV to write.")] =
        Path("submission.csv"),
    device: Device = "auto",
    folds: Annotated[int | None, typer.Option(
        help="Retrain the best trial on K stratified folds and submit the K models' mean "
        "probabilities; logs the out-of-fold macro-F1. Default: the best trial's model.")] =
        None,
    register: Annotated[str | None, typer.Option(
        metavar="NAME", help="Also register the model (with --folds, the ensemble) in "
        "MLflow's Model Registry as NAME, alias 'champion': mlflow.pyfunc.load_model("
        "'models:/NAME@champion') labels texts as this file does.")] = None,
    id_col: Annotated[str | None, typer.Option(
        metavar="COLUMN", help="Copy this column of the test file (its document ids) into "
        "the submission, before the labels.")] = None,
    blend: Annotated[bool, typer.Option(
        "--blend", help="Submit w x the HAN's probabilities + (1 - w) x the study's linear "
        "baseline's, w chosen on the dev fold (with --folds, out of fold).")] = False,
) -> None:
    """Predict the test file with the best complete trial and write the submission CSV."""
    from search import export
    from search.summary import registered_text

    if blend:
        _export_blend(study=study, storage=storage, tracking_uri=tracking_uri, test=test,
                      out=out, device=device, folds=folds, register=register, id_col=id_col)
        return
    if folds is not None:
        _export_refit(study=study, storage=storage, tracking_uri=tracking_uri, test=test,
                      out=out, device=device, folds=folds, register=register, id_col=id_col)
        return
    with user_errors(storage=storage):
        result = export.export_best(study_name=study, storage=storage,
                                    tracking_uri=tracking_uri, test=test, out=out,
                                    device=device, register=register, id_col=id_col)
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"wrote {result.rows} predictions to {result.out} from trial {result.trial} "
               f"(dev F1 {result.value:.4f}, MLflow run {result.run_id})")
    if result.registered is not None:
        typer.echo(f"registered {registered_text(result.registered)}")


def _export_refit(*, study: str, storage: str, tracking_uri: str, test: Path | None,
                  out: Path, device: str, folds: int, register: str | None,
                  id_col: str | None) -> None:
    """export-best --folds K: the best trial retrained on K folds, their mean submitted."""
    from search.refit import export_refit
    from search.summary import registered_text

    with user_errors(storage=storage):
        refitted = export_refit(study_name=study, storage=storage, tracking_uri=tracking_uri,
                                folds=folds, test=test, out=out, device=device,
                                echo=typer.echo, register=register, id_col=id_col)
    for note in refitted.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"out-of-fold macro-F1 {refitted.oof_macro_f1:.4f} "
               f"(best trial's dev macro-F1 {refitted.value:.4f})")
    typer.echo(f"wrote {refitted.rows} predictions to {refitted.out} from a "
               f"{refitted.folds}-fold refit of trial {refitted.trial} (MLflow run "
               f"{refitted.refit_run_id})")
    if refitted.registered is not None:
        typer.echo(f"registered {registered_text(refitted.registered)}")


def _export_blend(*, study: str, storage: str, tracking_uri: str, test: Path | None,
                  out: Path, device: str, folds: int | None, register: str | None,
                  id_col: str | None) -> None:
    """export-best --blend: the best HAN blended with the study's baseline."""
    from search.blend import export_blend

    if register is not None:
        fail("--register takes a HAN model; the blend's baseline cannot be registered "
             "with it: drop --blend or --register")
    with user_errors(storage=storage):
        blended = export_blend(study_name=study, storage=storage, tracking_uri=tracking_uri,
                               folds=folds, test=test, out=out, device=device,
                               echo=typer.echo, id_col=id_col)
    for note in blended.notes:
        typer.echo(f"note: {note}")
    choice = blended.choice
    held_out = "dev" if blended.folds is None else f"out-of-fold ({blended.folds} folds)"
    typer.echo(f"blend weight {choice.weight:.2f} on the HAN ({1 - choice.weight:.2f} on the "
               f"baseline); {held_out} macro-F1 on {choice.documents:,} documents: HAN "
               f"{choice.han_f1:.4f}, baseline {choice.baseline_f1:.4f}, blend "
               f"{choice.blend_f1:.4f}")
    source = (f"trial {blended.trial}" if blended.folds is None
              else f"a {blended.folds}-fold refit of trial {blended.trial}")
    typer.echo(f"wrote {blended.rows} predictions to {blended.out} from {source} blended "
               f"with the baseline (MLflow run {blended.run_id})")


@command()
def studies(storage: Storage = DEFAULT_STORAGE) -> None:
    """One line per study: trials by state, best value and best trial."""
    from search.summary import dataset_text, list_studies

    with user_errors(storage=storage):
        rows = list_studies(storage)
    if not rows:
        typer.echo(f"no studies in {redact(storage)}")
        return
    typer.echo(f"{'study':<24} {'trials':<40} {'best':>8} {'baseline':>8}  "
               f"{'best trial':<10}  dataset")
    for row in rows:
        states = ", ".join(f"{n} {s}" for s, n in sorted(row.states.items()))
        best = f"{row.best_value:.4f}" if row.best_value is not None else "-"
        baseline = f"{row.baseline_value:.4f}" if row.baseline_value is not None else "-"
        trial = str(row.best_trial) if row.best_trial is not None else "-"
        typer.echo(f"{row.name:<24} {states:<40} {best:>8} {baseline:>8}  {trial:<10}  "
                   f"{dataset_text(row.dataset)}")


@command()
def show(
    study: Annotated[str, typer.Option(help="Study name.")] = "demo",
    storage: Storage = DEFAULT_STORAGE,
    top: Annotated[int, typer.Option(min=1, help="How many of the best trials to list.")] =
        10,
) -> None:
    """Best params and the top trials of a study, with the MLflow run of each."""
    from search.storage import open_study
    from search.summary import baseline_text, summarize, top_trials, versus_baseline

    with user_errors(storage=storage):
        loaded = open_study(study, storage)
        summary = summarize(loaded, storage=storage, tracking_uri="")
        rows = top_trials(loaded, limit=top)
    typer.echo(f"study {study}: " + ", ".join(
        f"{n} {s}" for s, n in sorted(summary.states.items())))
    if summary.dataset is not None:  # studies from before datasets were recorded have none
        typer.echo(f"dataset {summary.dataset.describe()}")
    if summary.baseline is not None:
        verdict = versus_baseline(summary.best_value, summary.baseline,
                                  maximize=summary.maximize)
        typer.echo(f"baseline {baseline_text(summary.baseline)}, MLflow run "
                   f"{summary.baseline.run_id or '-'}: {verdict}")
    if summary.best_value is None:
        typer.echo("no complete trial yet")
        return
    typer.echo(f"best dev F1 {summary.best_value:.4f} (trial {summary.best_trial})")
    for key, value in summary.best_params.items():
        typer.echo(f"  {key:<14} {short(value)}")
    typer.echo(f"\n{'trial':>5} {'dev F1':>8} {'epochs':>6}  {'MLflow run':<32}  params")
    for row in rows:
        params = ", ".join(f"{k}={short(v)}" for k, v in row.params.items())
        typer.echo(f"{row.number:>5} {row.value or 0:>8.4f} {row.epochs:>6.3g}  "
                   f"{row.run_id or '-':<32}  {params}")


@command()
def report(
    study: Annotated[str, typer.Option(help="Study name.")] = "demo",
    out: Annotated[Path, typer.Option(
        help="Where to write the page: a file ending in .html, or a folder for "
        "STUDY-report.html (created if missing).")] = Path("."),
    storage: Storage = DEFAULT_STORAGE,
    tracking_uri: TrackingUri = DEFAULT_TRACKING_URI,
) -> None:
    """Write a self-contained HTML report of a study and log it on its MLflow parent run."""
    from search.study_report import write_report

    with user_errors(storage=storage):
        result = write_report(study_name=study, storage=storage, tracking_uri=tracking_uri,
                              out=out)
    typer.echo(f"wrote {result.out} ({result.size_bytes / 1024:.0f} KB, {result.trials} "
               f"trials) in {result.seconds:.1f}s")
    logged = result.logged
    if logged.artifact is not None:
        typer.echo(f"logged to MLflow {redact(tracking_uri)} as {logged.artifact} on the "
                   f"study's parent run {logged.parent_run_id}")
    elif logged.warning is not None:
        typer.echo(f"warning: {logged.warning}", err=True)
    else:
        typer.echo(f"note: {logged.note}")


def main() -> None:  # pragma: no cover - console entry for `python -m search.cli`
    app()
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
