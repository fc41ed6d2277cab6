"""The typer app and what every command shares: the process set up once the options are
parsed, user errors as one line and exit code 2, SIGINT/SIGTERM as a stop at the next batch.

Importing it loads typer and the option defaults, nothing heavier (see search.cli)."""

from __future__ import annotations

import functools
import logging
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Annotated, Any, NoReturn

import typer

from han.config import FileFormat
from han.errors import CheckpointError, DataError, DeviceError, TokenMismatch, UnwritablePath
from han.runtime import bound_primitive_cache
from search.errors import SearchError, StudyFileError, TrackingError

app = typer.Typer(
    help="Tune a Hierarchical Attention Network with Optuna; every trial on record in MLflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(asked: bool) -> None:
    if asked:
        from search.version import program_versions

        typer.echo(program_versions())
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the versions of han-search, the records it writes, Optuna, MLflow, "
             "PyTorch and Python, and exit.")] = False,
) -> None:
    """Tune a Hierarchical Attention Network with Optuna; every trial on record in MLflow."""


USER_ERRORS = (DataError, StudyFileError, SearchError, TrackingError, CheckpointError,
               UnwritablePath, DeviceError)

def _configure_process() -> None:
    """Settings every command's process needs before it does its work; not made for
    --help, which then answers without importing Optuna."""
    import optuna

    bound_primitive_cache()
    # Optuna logs every trial at INFO, MLflow and Alembic their database set-up; the
    # progress lines say what matters more briefly. Failed trials are reported by the
    # progress lines, without Optuna's traceback. MLflow's own HTTP retries are set by
    # search.stores.mlflow_requests.RetryPolicy.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # MLflow sets its loggers' levels from MLFLOW_LOGGING_LEVEL when it is imported, which
    # the commands do after this runs; the levels themselves for a process that imported
    # it already.
    os.environ["MLFLOW_LOGGING_LEVEL"] = "WARNING"
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # MLflow logs each failed SQL request of its store with a traceback; search.stores.tracking
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
    from search.stores.optuna_storage import storage_writes

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
    from search.setup.resolve import override_format

    with user_errors():
        return override_format(FileFormat(), **options)
