"""word2vec vectors for a corpus's tokens, in the text format `--embeddings` reads.

The reference trained word2vec on the training and test texts together (unsupervised, so
the test texts leak no labels) and froze the vectors in the model. gensim is the field's
standard implementation; its `corpus_file` mode reads a plain file of space-separated
tokens in C++ on every core, which is exactly what the competition's text column is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from han.config import Word2VecConfig
from han.files import writing, written_atomically
from han.io import Corpus


@dataclass(frozen=True)
class EmbeddingStats:
    out: Path
    vectors: int
    dim: int
    documents: int
    tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def _write_lines(corpora: Sequence[Corpus], path: Path) -> tuple[int, int]:
    """One document per line, tokens separated by spaces: gensim's LineSentence format."""
    documents = tokens = 0
    with writing(path, what="word2vec's training text"), path.open("w", encoding="utf-8") as handle:
        for corpus in corpora:
            for index in range(corpus.num_docs):
                handle.write(corpus.doc_text(index))
                handle.write("\n")
            documents += corpus.num_docs
            tokens += len(corpus.tokens)
    return documents, tokens


def train_word2vec(
    corpora: Sequence[Corpus], *, out: Path, config: Word2VecConfig | None = None,
    workers: int | None = None, on_epoch: Callable[[int, int], None] | None = None,
    in_subprocess: bool = False,
) -> EmbeddingStats:
    """Train word2vec (gensim's CBOW default) and write it in word2vec text format.

    `on_epoch(done, total)` is called after each epoch. The output is written to a
    temporary name and renamed, so an interrupted run leaves no half-written file. With
    `in_subprocess`, gensim trains in a child process (and `on_epoch` is not called): a
    search's process then never holds gensim's ~120 MB of libraries, nor its training
    arrays, beside the trials. A failure in the child is a RuntimeError with its last line.
    """
    config = config or Word2VecConfig()
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="han-w2v-") as scratch:
        lines = Path(scratch) / "corpus.txt"
        documents, tokens = _write_lines(corpora, lines)
        if in_subprocess:
            fitted = Path(scratch) / "vectors.txt"
            vectors = _fit_in_child(lines, fitted, config, workers)
            with written_atomically(out, what="the word2vec vectors") as temporary:
                shutil.copyfile(fitted, temporary)
        else:
            model = _fit(lines, config, workers, on_epoch)
            with written_atomically(out, what="the word2vec vectors") as temporary:
                model.wv.save_word2vec_format(str(temporary), binary=False)
            vectors = len(model.wv)
    return EmbeddingStats(out=out, vectors=vectors, dim=config.dim, documents=documents,
                          tokens=tokens * config.epochs, seconds=time.perf_counter() - started)


def _fit(lines: Path, config: Word2VecConfig, workers: int | None,
         on_epoch: Callable[[int, int], None] | None = None) -> Any:
    """gensim's Word2Vec of the documents in `lines`."""
    from gensim.models import Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec

    class Progress(CallbackAny2Vec):  # type: ignore[misc]
        def __init__(self) -> None:
            self.done = 0

        def on_epoch_end(self, model: Word2Vec) -> None:
            self.done += 1
            if on_epoch is not None:
                on_epoch(self.done, config.epochs)

    return Word2Vec(corpus_file=str(lines), vector_size=config.dim, window=config.window,
                    min_count=config.min_count, epochs=config.epochs, seed=config.seed,
                    workers=workers or os.cpu_count() or 1, callbacks=[Progress()])


def _fit_in_child(lines: Path, out: Path, config: Word2VecConfig, workers: int | None) -> int:
    """`python -m han.embeddings` fits and writes `out`; the number of vectors. A plain child
    rather than multiprocessing's: it imports only this module (spawn re-imports the
    parent's __main__, the whole CLI) and leaves no resource-tracker process behind. In a
    process group of its own, so a terminal's Ctrl-C reaches the search alone, which then
    ends the child rather than printing the child's traceback."""
    command = [sys.executable, "-m", "han.embeddings", str(lines), str(out),
               json.dumps(asdict(config)), str(workers or 0)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, process_group=0)
    try:
        stdout, stderr = child.communicate()
    finally:
        if child.poll() is None:  # interrupted while it trained
            child.kill()
            child.wait()
    if child.returncode != 0:
        # The child's own error is its last line (gensim's message); without one it died.
        said = stderr.strip().splitlines()
        raise RuntimeError(said[-1] if said else
                           f"word2vec's process ended with exit code {child.returncode}")
    return int(stdout.split()[-1])


def _child_main(argv: Sequence[str]) -> int:
    lines, out, config, workers = argv
    try:
        model = _fit(Path(lines), Word2VecConfig(**json.loads(config)), int(workers) or None)
        model.wv.save_word2vec_format(out, binary=False)
    except Exception as error:  # any failure is the parent's one line
        print(error, file=sys.stderr)
        return 1
    print(len(model.wv))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
