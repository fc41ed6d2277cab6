"""word2vec by default: before a study's first trial, vectors trained on its data's texts (the
training file's, and the test file's when there is one: unsupervised, no label is read) at
the study's embed_dim, as the reference notebook did, and given frozen to every trial exactly
as `--embeddings FILE` gives them.

They are cached in the run's work folder as `word2vec/KEY.txt`, KEY a hash of everything
that decides them (the training and test files' bytes, how their texts are read, the word2vec
settings): another session or study on the same data reuses the file, other data never meets
it. Trained or found, the file is logged as the MLflow run `word2vec` under the study's parent
run, once per study and file (`Word2VecRecord` on the Optuna study remembers it).
"""

from __future__ import annotations

import enum
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import optuna

from han.config import FileFormat, Word2VecConfig
from han.embeddings import train_word2vec
from han.errors import first_line
from han.files import check_writable, folder_lock
from han.io import Corpus
from search.records import SHORT_HASH, Key, Role, Tag, Word2VecRecord, run_tags
from search.stores.tracking import RunHandle, Tracker
from search.studyfile.spec import StudySpec

RUN_NAME = "word2vec"
# The cache's folder inside the work folder.
FOLDER = "word2vec"
# Part of every key: bumped when a key comes to cover something new, so that files keyed
# the old way are not taken for vectors of the new.
KEY_VERSION = 1
# A vectors file goes to its MLflow run when it is no larger: the text format takes about
# 1 KB a vector at 100 dims, so this holds 50,000 tokens (the competition's ids: 6 MB, R8's
# words: 12 MB) and leaves out the vocabularies of large word corpora, whose copy per study
# (each study logs its own run) would weigh on an artifact store for a file that is on disk.
MAX_ARTIFACT_BYTES = 50 * 2**20


class Source(enum.StrEnum):
    """Where the trials' vectors come from, or why they have none."""

    TRAINED = "trained"
    REUSED = "reused"  # a cached file of the same data and settings
    GIVEN = "given"  # --embeddings FILE or [data] embeddings: not trained here
    OFF = "off"
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True)
class Word2VecOutcome:
    """What a session did about word2vec: the file its trials use (None: no vectors), what it
    holds, the seconds it cost this session, and for OFF and FAILED the reason."""

    source: Source
    path: Path | None = None
    dim: int = 0
    vectors: int = 0
    documents: int = 0
    seconds: float = 0.0
    reason: str | None = None


def cache_folder(work_dir: Path) -> Path:
    return work_dir / FOLDER


def not_trained(spec: StudySpec, *, flag: bool | None,
                embeddings: Path | None) -> Word2VecOutcome | None:
    """Why this session trains no vectors (a file is given, or word2vec is off), or None when
    it trains or reuses them. `flag` is --word2vec/--no-word2vec (None: the study file's)."""
    if embeddings is not None:
        return Word2VecOutcome(source=Source.GIVEN, path=embeddings)
    if flag is False:
        return Word2VecOutcome(source=Source.OFF, reason="--no-word2vec")
    if flag is None and not spec.word2vec:
        return Word2VecOutcome(source=Source.OFF, reason="[data] word2vec = false")
    if any(param.name == "embed_dim" for param in spec.space):
        # Vectors have one dimension; trials of another would each fail on them.
        return Word2VecOutcome(source=Source.OFF, reason="embed_dim is searched; fix it in "
                               "[fixed] to train vectors of that dimension")
    return None


def check_cache_folder(work_dir: Path) -> None:
    """Refuse, before anything is created, a cache folder that could not be written."""
    check_writable(cache_folder(work_dir), folder=True)


@dataclass(frozen=True, kw_only=True)
class Word2VecData:
    """What word2vec learns from: the training and test files' bytes (their SHA-256) read as
    `file_format` says, and their documents."""

    train_sha256: str
    test_sha256: str | None
    file_format: FileFormat
    corpora: Sequence[Corpus]

    def key(self, config: Word2VecConfig) -> str:
        """The cache key of vectors trained on this data with `config`. The label column is
        left out: no label is read, and which column holds them does not change the texts."""
        read_as = self.file_format
        described = {"version": KEY_VERSION, "train": self.train_sha256,
                     "test": self.test_sha256, "sep": read_as.sep, "text_col": read_as.text_col,
                     "tokens": read_as.tokens} | asdict(config)
        encoded = json.dumps(described, sort_keys=True).encode()
        return hashlib.sha256(encoded).hexdigest()[:SHORT_HASH]

    @property
    def documents(self) -> int:
        return sum(corpus.num_docs for corpus in self.corpora)


def ensure_word2vec(data: Word2VecData, config: Word2VecConfig, *, work_dir: Path,
                    study: optuna.Study, tracker: Tracker, parent_run_id: str,
                    tags: Mapping[str, str], threads: int | None = None) -> Word2VecOutcome:
    """The vectors for `data`: the cached file when there is one, else trained now (on
    `threads` threads) and cached. Logged as the run `word2vec` under the parent run unless
    the study has logged this very file before.

    The cache folder is locked while it is looked into and written, so that two processes
    wanting the same vectors train them once. A failure (gensim's, memory, the disk) is the
    outcome's reason, and the search goes on without vectors.
    """
    key = data.key(config)
    path = cache_folder(work_dir) / f"{key}.txt"
    started = time.perf_counter()
    recorded = Word2VecRecord.of(study)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with folder_lock(path.parent):
            vectors = _vector_count(path)
            if vectors is not None and recorded is not None and recorded.key == key \
                    and recorded.path == path.resolve() and recorded.run_id is not None:
                return _found(path, config, data, vectors, started)
            with tracker.child_run(
                    experiment_id=tracker.experiment_id(study.study_name), name=RUN_NAME,
                    tags=run_tags(Role.WORD2VEC, study=study.study_name,
                                  parent_run_id=parent_run_id) | dict(tags),
                    params=asdict(config) | {Key.CACHE_KEY: key,
                                             Key.TEST_SHA256: data.test_sha256},
                    required=False) as run:
                if vectors is None:
                    outcome = _trained(path, config, data, threads)
                else:
                    outcome = _found(path, config, data, vectors, started)
                _log(run, outcome)
    except (RuntimeError, ValueError, MemoryError, OSError) as error:
        return Word2VecOutcome(source=Source.FAILED, dim=config.dim, documents=data.documents,
                               seconds=time.perf_counter() - started,
                               reason=f"{type(error).__name__}: {first_line(error)}")
    Word2VecRecord(key=key, path=path, run_id=run.run_id).write(study)
    return outcome


def _vector_count(path: Path) -> int | None:
    """The vectors a cached file holds (its header's count); None when it is not there or
    not a word2vec file (it is then trained again, and replaced)."""
    try:
        with path.open(encoding="utf-8") as handle:
            header = handle.readline().split()
    except (OSError, UnicodeDecodeError):
        return None
    return int(header[0]) if len(header) == 2 and header[0].isdigit() else None


def _found(path: Path, config: Word2VecConfig, data: Word2VecData, vectors: int,
           started: float) -> Word2VecOutcome:
    return Word2VecOutcome(source=Source.REUSED, path=path, dim=config.dim, vectors=vectors,
                           documents=data.documents, seconds=time.perf_counter() - started)


def _trained(path: Path, config: Word2VecConfig, data: Word2VecData,
             threads: int | None) -> Word2VecOutcome:
    # train_word2vec writes the file atomically: an interrupted run leaves no half of it.
    stats = train_word2vec(data.corpora, out=path, config=config, workers=threads,
                           in_subprocess=True)
    return Word2VecOutcome(source=Source.TRAINED, path=path, dim=config.dim,
                           vectors=stats.vectors, documents=stats.documents,
                           seconds=stats.seconds)


def _log(run: RunHandle, outcome: Word2VecOutcome) -> None:
    """The outcome on its run: what the file holds and cost, and the file when not huge."""
    assert outcome.path is not None
    run.log_metrics({Key.SECONDS: outcome.seconds, Key.VECTORS: outcome.vectors,
                     Key.DOCUMENTS: outcome.documents}, step=0)
    size = outcome.path.stat().st_size
    tags = {Tag.EMBEDDINGS: str(outcome.path.resolve()),
            Tag.REUSED: str(outcome.source is Source.REUSED).lower()}
    if size <= MAX_ARTIFACT_BYTES:
        run.log_artifact(outcome.path, artifact_path=FOLDER)
    else:
        tags[Tag.ARTIFACT] = (f"not uploaded: {size / 2**20:.0f} MB, over the "
                              f"{MAX_ARTIFACT_BYTES // 2**20} MB limit")
    run.set_tags(tags)
