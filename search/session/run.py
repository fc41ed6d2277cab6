"""A session of a study: resolve the run, open the study, prepare what its trials share (the
word2vec vectors, the baseline), run its trials alone or in workers, and sum it up."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from han.config import Word2VecConfig
from han.device import release_host_memory
from han.errors import CheckpointError, DataError, DeviceOutOfMemoryError, WriteFailed
from han.files import check_writable, content_hash, writing
from search import records
from search.defaults import DEFAULT_WORK_DIR
from search.errors import SearchError, TrackingError, TrialStopped
from search.export.best import register_best
from search.records import Key, Outcome, TrialRecord
from search.session.baseline import ensure_baseline
from search.session.budget import Budget, budget_of
from search.session.diskspace import Shortage, footprint, shortages
from search.session.draws import CostModel, DrawRules, shaped_sampler
from search.session.progress import Progress
from search.session.promotion import pause_rule, promotion_due
from search.session.shared_state import dead_here
from search.session.study import (
    OpenStudy,
    enqueue_reference,
    open_study,
    reference_due,
    session_trials,
)
from search.session.trial import TrialContext, objective
from search.session.word2vec import (
    Word2VecData,
    check_cache_folder,
    ensure_word2vec,
    not_trained,
)
from search.session.workers import plan_workers, run_workers
from search.setup.options import RunOptions
from search.setup.resolve import ResolvedRun, resolve
from search.stores.datasets import training_input
from search.stores.mlflow_requests import artifact_folder
from search.stores.optuna_storage import fail_dead_trials, retry_stale_trial
from search.stores.tracking import RunHandle
from search.studyfile import StudySpec
from search.views.figures import log_study_plots
from search.views.summary import RunSummary, summarize

# Study plots are redrawn every this many finished trials (and at the end): drawing them
# after every trial would cost more than a small trial.
PLOT_EVERY = 5


def run_study(spec: StudySpec, options: RunOptions, *, trials: int | None = None,
              timeout: float | None = None, work_dir: Path = DEFAULT_WORK_DIR,
              progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None,
              budget: Budget | None = None) -> RunSummary:
    """Run `trials` more trials of the study within `budget` (default: `timeout` seconds
    from now; see search.session.budget). `trials` None: as many as the budget holds when
    it has a timeout, else the study file's count."""
    started = time.perf_counter()
    budget = budget or budget_of(spec, timeout=timeout)
    resolved = resolve(spec, options)
    check_work_dir(resolved, work_dir)
    opened = open_study(resolved)
    total = session_trials(resolved.spec, trials=trials, timeout=budget.timeout)
    _describe_and_make_work_dir(opened, progress, work_dir=work_dir,
                                trials=total or resolved.spec.trials)
    with opened.parent_run() as parent:
        parent.log_datasets([training_input(resolved.dataset)])
        resolved = before_trials(opened, parent.id, work_dir, progress)
        context = TrialContext(resolved=resolved, tracker=opened.tracker,
                               parent_run_id=parent.id, work_dir=work_dir, budget=budget,
                               should_stop=should_stop, progress=progress)
        session = _Session(opened=opened, parent=parent, total=total, budget=budget,
                           progress=progress, should_stop=should_stop,
                           context=context, rules=_spend_where_it_pays(opened, context))
        session.optimize()
    return _summed_up(opened, parent.id, started=started, trials=session.started,
                      ended_early=session.ended_early)


@dataclass(kw_only=True)
class _Session:
    """The trials of one `run_study` session: what they share, and the counts that decide
    when the session ends. Optuna calls `run_trial` for each trial and `after_trial` once it
    has ended."""

    opened: OpenStudy
    parent: RunHandle
    context: TrialContext
    total: int | None
    budget: Budget
    progress: Progress | None
    should_stop: Callable[[], bool] | None
    # Trials started this session, and those of them the budget did not skip: what `total`
    # counts (a skipped trial costs a few batches, not a trial's work).
    started: int = 0
    trained: int = 0
    skipped_in_a_row: int = 0
    # Why the session ended before its timeout or trial count (None: it did not).
    ended_early: str | None = None
    # The user's stop that ended a trial: the session ends with it, as it would have.
    interrupted: TrialStopped | None = None
    # What the sampler may draw now (None: it draws the whole space).
    rules: DrawRules | None = None

    @property
    def spec(self) -> StudySpec:
        return self.context.resolved.spec

    def optimize(self) -> None:
        """The session's trials, the reference queued first when it is due."""
        study = self.opened.study
        # Retries of trials whose worker died are queued before anything this session
        # queues: they run first.
        fail_dead_trials(study, dead_here)
        if reference_due(study, self.spec, done=0, total=self.total):
            enqueue_reference(study, self.spec)
        self._promote_when_due(study)
        if self.should_stop is not None and self.should_stop():
            return  # stopped while starting: a trial begun now would only be stopped
        with _parent_refreshed(self.parent, study):
            # Out of memory is a property of the trial's settings, not of the study: the
            # trial fails with its shape in the reason and the study goes on; so does a
            # trial the budget stopped before its first epoch ended (the run then ends).
            # Under a timeout, skipped trials do not count: the run goes on to the timeout
            # or to `total` trained trials (after_trial stops it), whichever comes first.
            study.optimize(self.run_trial,
                           n_trials=self.total if self.budget.timeout is None else None,
                           timeout=self.budget.left(), callbacks=[self.after_trial],
                           catch=(DeviceOutOfMemoryError, TrialStopped))
            if self.interrupted is not None:
                raise self.interrupted

    def run_trial(self, trial: optuna.Trial) -> float:
        self.started += 1
        if self.progress is not None:
            self.progress.next_trial(self.started, self.total)
        try:
            return objective(trial, self.context)
        except TrialStopped as stopped:
            if self.should_stop is not None and self.should_stop():
                self.interrupted = stopped
            raise

    def after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        release_host_memory()
        if reference_due(study, self.spec, done=self.started, total=self.total):
            enqueue_reference(study, self.spec)
        if self.progress is not None:
            self.progress.trial_done(study, trial)
        log_history(self.parent, study, trial)
        if trial.state == TrialState.FAIL and TrialRecord.of(trial).outcome is not None:
            # Stopped by the budget before an epoch ended: the next run trains it (the
            # reference configuration stays on record that way).
            retry_stale_trial(study, trial)
        if self.started % PLOT_EVERY == 0:
            _refresh_parent(self.parent, study)
        if self._ends_after(trial):
            study.stop()
            return
        self._promote_when_due(study)

    def _promote_when_due(self, study: optuna.Study) -> None:
        """A paused trial queued to resume next, when the time left is better spent so."""
        if self.context.pause is None or any(
                TrialRecord.of(t).promoted_from is not None
                for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))):
            return
        promotion = promotion_due(study, self.budget)
        if promotion is not None:
            study.enqueue_trial(promotion.trial.params,
                                user_attrs=records.promotion_attrs(promotion.trial))

    def _ends_after(self, trial: FrozenTrial) -> bool:
        """Count the trial; whether the session ends with it."""
        if TrialRecord.of(trial).outcome is Outcome.SKIPPED:
            self.skipped_in_a_row += 1
        else:
            self.trained += 1
            self.skipped_in_a_row = 0
        if self.budget.expired():
            return True
        reason = self.budget.ends_after_skips(self.skipped_in_a_row) or (
            None if self.rules is None or self._queued() else self.rules.nothing_fits())
        if reason is not None:
            self.ended_early = self.ended_early or reason
            return True
        # A stop asked for while the trial was ending (its last report, its upload) ends
        # the run here; the next trial would only start to be interrupted.
        stop_asked = self.should_stop is not None and self.should_stop()
        return stop_asked or self.budget.expired() or (
            self.total is not None and self.trained >= self.total)


    def _queued(self) -> bool:
        """Whether trials wait to run (a promotion, a retry, the reference)."""
        return bool(self.opened.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _spend_where_it_pays(opened: OpenStudy, context: TrialContext) -> DrawRules | None:
    """Under a timeout, as the study file asks: trials whose share is spent while they lead
    pause (to be promoted), and the sampler draws only what the budget affords (its draws
    shaped by the cost model the trials' timings teach). The rules, or None."""
    spec, budget = opened.resolved.spec, context.budget
    if budget.timeout is None:
        return None
    if spec.pause_and_promote:
        context.pause = pause_rule(opened.study)
    if not spec.shape_draws:
        return None
    context.cost = CostModel(context.resolved, vocabulary=opened.profile.vocabulary)
    rules = DrawRules(context.resolved, budget, context.cost)
    opened.study.sampler = shaped_sampler(context.resolved, opened.study.sampler, rules)
    return rules


def _summed_up(opened: OpenStudy, parent_run_id: str, *, started: float, trials: int,
               ended_early: str | None = None) -> RunSummary:
    """The session's summary: the study so far, this session's trials and time, what MLflow
    did not take, the champion registered when the study file asks."""
    resolved, requests = opened.resolved, opened.tracker.requests
    with suppress(TrackingError):  # still away: the journal keeps them for the next command
        requests.flush()
    journal = requests.journal
    summary = replace(
        summarize(opened.study, storage=resolved.options.storage, tracker=opened.tracker,
                  tracking_uri=resolved.options.tracking_uri, parent_run_id=parent_run_id),
        trials_this_run=trials, ended_early=ended_early,
        not_logged=opened.tracker.not_logged, runs_view=opened.runs_view(),
        delayed=requests.delayed, replayed=requests.replayed,
        waiting=0 if journal is None else journal.pending(),
        journal="" if journal is None else str(journal.folder))
    summary = register_champion(resolved, summary)
    return replace(summary, seconds=time.perf_counter() - started)


def _describe_and_make_work_dir(opened: OpenStudy, progress: Progress | None, *,
                                work_dir: Path, trials: int) -> None:
    """The data block, told when the disk cannot hold the `trials` asked for; the work dir
    made (a trial finding it gone then knows it was removed, see han.files.folder_made)."""
    if progress is not None:
        progress.data_described(opened.profile)
        for shortage in disk_shortages(opened, work_dir=work_dir, trials=trials):
            progress.disk_short(shortage)
    with writing(work_dir, what="--work-dir"):
        work_dir.mkdir(parents=True, exist_ok=True)


def disk_shortages(opened: OpenStudy, *, work_dir: Path, trials: int) -> list[Shortage]:
    """The filesystems that cannot hold `trials` of the study's largest model (see
    search.session.diskspace): --work-dir's and MLflow's local artifacts'."""
    resolved = opened.resolved
    corpus = resolved.corpus
    trial = footprint(resolved.spec, vocabulary=opened.profile.vocabulary,
                      classes=corpus.num_classes, dev_docs=corpus.num_docs - resolved.epoch_docs,
                      pretrained=resolved.files.embeddings is not None)
    return shortages(trial=trial, trials=trials, work_dir=work_dir,
                     artifacts=artifact_folder(resolved.options.tracking_uri))


def run_with_workers(spec: StudySpec, options: RunOptions, *, workers: int,
                     trials: int | None, threads: int | None,
                     worker_args: Callable[[RunOptions, float | None], list[str]],
                     budget: Budget | None = None, work_dir: Path = DEFAULT_WORK_DIR,
                     progress: Progress | None = None,
                     per_gpu: int = 1) -> tuple[RunSummary, int]:
    """Split `trials` exactly among `workers` processes on this machine, each a `han-search
    run` with the command line `worker_args(options, timeout)`: this process's options with
    its word2vec vectors, and what is left of `budget` when they start (see `session_trials`);
    returns the summary and the first failing worker's exit code."""
    started = time.perf_counter()
    budget = budget or budget_of(spec, timeout=None)
    resolved = resolve(spec, options)
    check_work_dir(resolved, work_dir)
    # The study, its reference trial and parent run are created once, before the workers
    # race for them.
    opened = open_study(resolved)
    # The enqueued reference trial waits to be run: it counts as this run's.
    before = len(opened.study.get_trials(
        deepcopy=False, states=tuple(s for s in TrialState if s != TrialState.WAITING)))
    plans = plan_workers(workers=workers, device=options.device,
                         trials=session_trials(resolved.spec, trials=trials,
                                               timeout=budget.timeout),
                         threads=threads, per_gpu=per_gpu)
    with opened.parent_run() as parent:
        resolved = before_trials(opened, parent.id, work_dir, progress)
        # Every worker takes this process's vectors, or none: no worker trains its own.
        given = replace(options, embeddings=resolved.files.embeddings, word2vec=False)
        left = budget.left()
        # URLs travel in the environment: they may hold passwords, which `ps` would show.
        code = run_workers(plans, worker_args(given, None if left is None else max(1.0, left)),
                           env={"HAN_SEARCH_STORAGE": options.storage,
                                "MLFLOW_TRACKING_URI": options.tracking_uri})
    trained = len(opened.study.get_trials(deepcopy=False)) - before
    return _summed_up(opened, parent.id, started=started, trials=trained), code


def check_work_dir(resolved: ResolvedRun, work_dir: Path) -> None:
    """Refuse, before anything is created, a work folder (and, when this session may train
    word2vec, its cache of vectors) that could not be written."""
    check_writable(work_dir, folder=True)
    if not_trained(resolved.spec, flag=resolved.options.word2vec,
                   embeddings=resolved.files.embeddings) is None:
        check_cache_folder(work_dir)


def before_trials(opened: OpenStudy, parent_run_id: str, work_dir: Path,
                  progress: Progress | None) -> ResolvedRun:
    """What the trials need first, in this order: their word2vec vectors (the run they are
    resolved with), then the study's baseline."""
    resolved = _word2vec(opened, parent_run_id, work_dir, progress)
    _baseline(opened, parent_run_id, progress)
    return resolved


def _word2vec(opened: OpenStudy, parent_run_id: str, work_dir: Path,
              progress: Progress | None) -> ResolvedRun:
    """The run with its trials' vectors: the given file, or none (word2vec off), or trained
    now on the data (found in the cache when trained before), which the trials then take
    exactly as they take `--embeddings FILE`."""
    resolved = opened.resolved
    outcome = not_trained(resolved.spec, flag=resolved.options.word2vec,
                          embeddings=resolved.files.embeddings)
    if outcome is None:
        outcome = ensure_word2vec(
            _word2vec_data(resolved), Word2VecConfig(dim=resolved.embed_dim),
            work_dir=work_dir, study=opened.study, tracker=opened.tracker,
            parent_run_id=parent_run_id, tags=resolved.tags, threads=torch.get_num_threads())
        if outcome.path is not None:
            resolved = resolved.with_vectors(outcome.path)
    if progress is not None:
        progress.word2vec(outcome)
    return resolved


def _word2vec_data(resolved: ResolvedRun) -> Word2VecData:
    """The texts word2vec learns from: the training file's and the test file's (the run
    has read both into its cache)."""
    # The training file's format with its tokens resolved (detected or given).
    files, read_as = resolved.files, resolved.corpus.file_format
    corpora = [resolved.corpus]
    if files.test is not None:
        corpora.append(resolved.cache.load_corpus(files.test, labelled=False,
                                                  file_format=read_as))
    return Word2VecData(train_sha256=resolved.dataset.sha256,
                        test_sha256=None if files.test is None else content_hash(files.test),
                        file_format=read_as, corpora=corpora)


def _baseline(opened: OpenStudy, parent_run_id: str, progress: Progress | None) -> None:
    """The study's baseline, trained before its first trial by one process: this one,
    unless it is a worker of a --workers run."""
    resolved = opened.resolved
    if not resolved.options.baseline:
        return
    outcome = ensure_baseline(resolved, opened.study, tracker=opened.tracker,
                              parent_run_id=parent_run_id, threads=torch.get_num_threads())
    # Its sparse matrices are gone once it is scored; the trials need the memory.
    release_host_memory()
    if progress is not None:
        progress.baseline(outcome)


@contextmanager
def _parent_refreshed(parent: RunHandle, study: optuna.Study) -> Iterator[None]:
    """The parent run's best trial and plots brought up to date when the block ends, however
    it ends; not when a store refused a write (the error on its way says so)."""
    try:
        yield
    except BaseException:
        with suppress(WriteFailed):
            _refresh_parent(parent, study)
        raise
    _refresh_parent(parent, study)


def _refresh_parent(parent: RunHandle, study: optuna.Study) -> None:
    if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        parent.set_tags(records.best_tags(study.best_trial))
    log_study_plots(parent, study)


def log_history(parent: RunHandle, study: optuna.Study, trial: FrozenTrial) -> None:
    """The study's history on its parent run as metrics, one step per finished trial (step =
    its number), so MLflow's charts of the parent run are the optimization history, live:
    the trial's dev F1 (complete trials), the best so far, trials by state."""
    states = Counter(t.state for t in study.get_trials(deepcopy=False))
    metrics = {Key.TRIALS_COMPLETE: states[TrialState.COMPLETE],
               Key.TRIALS_PRUNED: states[TrialState.PRUNED],
               Key.TRIALS_FAILED: states[TrialState.FAIL]}
    if trial.state == TrialState.COMPLETE and trial.value is not None:
        metrics[Key.TRIAL_DEV_F1] = trial.value
    if states[TrialState.COMPLETE]:
        metrics[Key.BEST_DEV_F1] = study.best_value
    parent.log_metrics(metrics, step=trial.number)


def register_champion(resolved: ResolvedRun, summary: RunSummary) -> RunSummary:
    """With `[export] registered_model`, register the best trial's model at the end of a
    session (not of each worker: the session that started them does it once). A failure is
    a warning in the summary: the trials are done and on record either way."""
    spec, options = resolved.spec, resolved.options
    if spec.register is None or not options.register:
        return summary
    if summary.best_trial is None:
        return replace(summary, register_warning=f"no complete trial yet: {spec.register} "
                       "not registered")
    try:
        return replace(summary, registered=register_best(
            study_name=spec.name, name=spec.register, storage=options.storage,
            tracking_uri=options.tracking_uri))
    except (SearchError, TrackingError, DataError, CheckpointError) as error:
        return replace(summary, register_warning=f"{spec.register} not registered: {error}")
