"""`han-search run`: trials of a study, here or in worker processes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from search.cli.app import command, fail, stop_on_signals, user_errors
from search.cli.options import (
    Device,
    LabelCol,
    Sep,
    Storage,
    StudyName,
    TextCol,
    Tokens,
    TrackingUri,
    Word2Vec,
)
from search.defaults import (
    DEFAULT_HEARTBEAT_S,
    DEFAULT_STORAGE,
    DEFAULT_STORAGE_PATIENCE_S,
    DEFAULT_TRACKING_URI,
    DEFAULT_WORK_DIR,
    MAX_TRIAL_SHARE,
)
from search.formatting import redact

if TYPE_CHECKING:
    from search.cli.console import ConsoleProgress
    from search.session.budget import Budget
    from search.setup.options import RunOptions
    from search.studyfile import StudySpec
    from search.views.summary import RunSummary

# How `run` spreads its trials: options of its own, named here to keep the command short.
Workers = Annotated[int, typer.Option(
    min=1, help="Worker processes on this machine sharing the study (one GPU each, or an "
    "even share of the CPU cores).")]
WorkersPerGpu = Annotated[int, typer.Option(
    min=1, help="Workers sharing each GPU (a small model leaves most of a large GPU idle); "
    "with K > 1, --workers defaults to K x the GPUs.")]
Threads = Annotated[int | None, typer.Option(
    min=1, help="CPU threads for this process; default: all cores, split among workers.")]
Timeout = Annotated[float | None, typer.Option(
    min=1, help="Seconds the run may take, a trial at most a share of it (the study "
    f"file's max_trial_share, else {MAX_TRIAL_SHARE:.0%}). Default: the study file's "
    "timeout, else none.")]
Heartbeat = Annotated[int, typer.Option(
    min=1, help="Seconds between a running trial's heartbeats; a trial silent for three is "
    "failed and retried.")]
StoragePatience = Annotated[float, typer.Option(
    min=0, help="Seconds a worker waits for an Optuna storage that stopped answering (a "
    "database restart) before it stops with exit 2; its trial is retried by the next run.")]


@command()
def run(
    study: StudyName = None,
    config: Annotated[Path | None, typer.Option(
        help="Study file (TOML); default: the built-in studies/demo.toml.")] = None,
    trials: Annotated[int | None, typer.Option(
        min=1, help="Trials to train now (added to the study); default: as many as "
        "--timeout holds when it is given, else the study file's count.")] = None,
    timeout: Timeout = None,
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
    storage_patience: StoragePatience = DEFAULT_STORAGE_PATIENCE_S,
    work_dir: Annotated[Path, typer.Option(help="Scratch folder for trial checkpoints.")] =
        DEFAULT_WORK_DIR,
    worker_index: Annotated[int | None, typer.Option(hidden=True)] = None,  # workers only
    skip_baseline: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Run trials of a study; running it again continues the same study."""
    from search.cli.console import print_summary
    from search.session.budget import budget_of
    from search.setup.options import RunOptions
    from search.setup.resolve import with_overrides
    from search.studyfile import builtin_study_path, load_study_file

    started = time.perf_counter()  # --timeout counts from here: reading the data included
    file_format = dict(sep=sep, text_col=text_col, label_col=label_col, tokens=tokens)
    with user_errors(tokens_option=True, storage=storage):
        options = RunOptions(storage=storage, tracking_uri=tracking_uri, device=device,
                             seed=seed, train=train, test=test, embeddings=embeddings,
                             word2vec=word2vec, heartbeat_s=heartbeat,
                             storage_patience_s=storage_patience,
                             sampler_seed_offset=worker_index or 0,
                             register=worker_index is None, baseline=not skip_baseline)
        spec = with_overrides(load_study_file(config or builtin_study_path()), options,
                              name=study, **file_format)
        typer.echo(f"study {spec.name!r} from {spec.source}; {_stores(options)}")
        summary, code = _run_session(
            spec, options, workers=_workers(workers, workers_per_gpu, device), trials=trials,
            threads=threads, work_dir=work_dir, file_format=file_format,
            per_gpu=workers_per_gpu, budget=budget_of(spec, timeout=timeout, started=started,
                                                      clock=time.perf_counter))
    print_summary(summary)
    if code:
        raise typer.Exit(code=code)


def _workers(workers: int, per_gpu: int, device: str) -> int:
    """--workers, or K x the GPUs when only --workers-per-gpu K > 1 is given."""
    if per_gpu == 1:
        return workers
    from search.session.workers import gpus_for

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
    from search.cli.console import ConsoleProgress
    from search.cli.live import LiveProgress, wants_live_view

    if workers > 1:  # the workers' own lines, prefixed, are the view
        progress = ConsoleProgress(started=budget.started, budget=budget)
        return _run_in_workers(spec, options, workers=workers, trials=trials,
                               threads=threads, budget=budget, work_dir=work_dir,
                               file_format=file_format, per_gpu=per_gpu, progress=progress)
    if not wants_live_view():
        progress = ConsoleProgress(started=budget.started, budget=budget)
        return _run_here(spec, options, trials=trials, work_dir=work_dir, threads=threads,
                         budget=budget, progress=progress), 0
    with LiveProgress(started=budget.started, budget=budget) as live:
        return _run_here(spec, options, trials=trials, work_dir=work_dir, threads=threads,
                         budget=budget, progress=live), 0


def _run_here(spec: StudySpec, options: RunOptions, *, trials: int | None, work_dir: Path,
              threads: int | None, budget: Budget, progress: ConsoleProgress) -> RunSummary:
    """The trials in this process, one line per epoch and trial, stopped by SIGINT/SIGTERM."""
    import torch

    from search.session.run import run_study

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
    from search.session.run import run_with_workers

    def args(given: RunOptions, timeout: float | None) -> list[str]:
        return _worker_args(spec.source, given, study=spec.name, timeout=timeout,
                            work_dir=work_dir, **file_format)

    return run_with_workers(
        spec, options, workers=workers, trials=trials, threads=threads, worker_args=args,
        budget=budget, work_dir=work_dir, per_gpu=per_gpu, progress=progress)


# The options a worker gets on its command line. The stores' URLs travel in its environment
# (they may hold passwords, which `ps` would show); its device and seed offset come from its
# plan (search.session.workers).
_WORKER_FLAGS = {"seed": "--seed", "train": "--train", "test": "--test",
                 "embeddings": "--embeddings", "heartbeat_s": "--heartbeat",
                 "storage_patience_s": "--storage-patience"}


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
