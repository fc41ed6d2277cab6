"""The live view of `han-search run` on a terminal: the same lines as ConsoleProgress prints,
scrolling above a status panel redrawn in place (the budget spent and left, the trial
running now and its epoch, the best so far). Off a terminal (CI, a log file, `nohup`)
nothing here runs and the lines are the plain ones."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from search.cli.console import ConsoleProgress
from search.formatting import duration
from search.records import TrialRecord

if TYPE_CHECKING:
    from han.dev_reports import EpochMetrics, Report
    from search.session.budget import Budget

# The panel is redrawn this often, so that the clock moves between epochs.
REFRESH_PER_S = 2
BAR_WIDTH = 30


def wants_live_view() -> bool:
    """Only a person at a terminal sees a panel redrawn in place; anything reading the
    output gets the plain lines."""
    return sys.stdout.isatty()


@dataclass
class _Running:
    number: int
    epoch: int
    epochs: int | None
    dev_f1: float | None
    started: float  # the budget's clock


def _bar(total: float, completed: float, text: str) -> RenderableType:
    row = Table.grid(padding=(0, 1))
    row.add_row(ProgressBar(total=total, completed=completed, width=BAR_WIDTH), text)
    return row


class LiveProgress(ConsoleProgress):
    """ConsoleProgress's lines above a panel; use as a context manager around the session
    (the panel is gone when it ends, before the summary is printed)."""

    def __init__(self, *, started: float, budget: Budget | None = None,
                 console: Console | None = None) -> None:
        super().__init__(started=started, budget=budget)
        self.running: _Running | None = None
        self.best_trial: int | None = None
        self.done = 0
        # Other writes to stdout and stderr (warnings) go above the panel too.
        self.live = Live(get_renderable=self.panel, console=console or Console(),
                         refresh_per_second=REFRESH_PER_S, transient=True,
                         redirect_stdout=True, redirect_stderr=True)

    def __enter__(self) -> LiveProgress:
        self.live.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.live.stop()

    def echo(self, text: str) -> None:
        # Through the live console, above the panel: typer.echo (click) would find the
        # terminal's own buffer behind rich's redirected stdout and write across the panel.
        # soft_wrap: the terminal wraps long lines, as it does the plain ones.
        self.live.console.print(Text(text), soft_wrap=True, highlight=False)

    def _now(self) -> float:
        return self.budget.clock()

    def panel(self) -> RenderableType:
        """Two lines: the budget (a bar when --timeout or --trials bounds the run), then the
        trial running now and the study's best."""
        elapsed = self._now() - self.started
        left = self.budget.left()
        if self.budget.timeout is not None and left is not None:
            label = "budget"
            gauge = _bar(self.budget.timeout, min(elapsed, self.budget.timeout),
                         f"{duration(elapsed)} spent, {duration(left)} left")
        elif self.total:
            label = "trials"
            gauge = _bar(self.total, self.done,
                         f"{self.done} of {self.total} in {duration(elapsed)}")
        else:
            label, gauge = "elapsed", Text(duration(elapsed))
        now = "between trials"
        if self.running is not None:
            run = self.running
            score = f", dev F1 {run.dev_f1:.4f}" if run.dev_f1 is not None else ""
            of = f"/{run.epochs}" if run.epochs else ""
            now = (f"trial {run.number}, {run.epoch}{of} epochs done{score}, "
                   f"{duration(self._now() - run.started)} in")
        best = ("none complete yet" if self.best is None
                else f"{self.best:.4f} (trial {self.best_trial})")
        count = f"{self.done}" + (f" of {self.total}" if self.total else "")
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ellipsis")
        grid.add_row(label, gauge)
        grid.add_row("now", Text(f"{now}; best {best}; this run {count} done"))
        return grid

    def trial_started(self, trial: optuna.Trial, params: dict[str, Any]) -> None:
        super().trial_started(trial, params)
        record = TrialRecord.of(trial)
        self.running = _Running(number=trial.number, epoch=record.epochs_done or 0,
                                epochs=record.max_epochs, dev_f1=None, started=self._now())

    def epoch_done(self, trial: optuna.Trial, metrics: EpochMetrics) -> None:
        super().epoch_done(trial, metrics)
        if self.running is not None:
            self.running.epoch = metrics.epoch
            self.running.dev_f1 = metrics.dev_macro_f1

    def reported(self, trial: optuna.Trial, report: Report) -> None:
        super().reported(trial, report)
        if self.running is not None:
            self.running.dev_f1 = report.dev_macro_f1

    def trial_done(self, study: optuna.Study, trial: FrozenTrial) -> None:
        before = self.best
        super().trial_done(study, trial)
        if trial.state == TrialState.COMPLETE and self.best != before:
            self.best_trial = trial.number
        self.done = self.index
        self.running = None

