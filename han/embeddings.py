"""word2vec vectors for a corpus's tokens, in the text format `--embeddings` reads.

The reference trained word2vec on the training and test texts together (unsupervised, so
the test texts leak no labels) and froze the vectors in the model. gensim is the field's
standard implementation; its `corpus_file` mode reads a plain file of space-separated
tokens in C++ on every core, which is exactly what the competition's text column is.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

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
) -> EmbeddingStats:
    """Train word2vec (gensim's CBOW default) and write it in word2vec text format.

    `on_epoch(done, total)` is called after each epoch. The output is written to a
    temporary name and renamed, so an interrupted run leaves no half-written file.
    """
    from gensim.models import Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec

    config = config or Word2VecConfig()
    epochs = config.epochs

    class Progress(CallbackAny2Vec):  # type: ignore[misc]
        def __init__(self) -> None:
            self.done = 0

        def on_epoch_end(self, model: Word2Vec) -> None:
            self.done += 1
            if on_epoch is not None:
                on_epoch(self.done, epochs)

    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="han-w2v-") as scratch:
        lines = Path(scratch) / "corpus.txt"
        documents, tokens = _write_lines(corpora, lines)
        model = Word2Vec(corpus_file=str(lines), vector_size=config.dim,
                         window=config.window, min_count=config.min_count, epochs=epochs,
                         seed=config.seed, workers=workers or os.cpu_count() or 1,
                         callbacks=[Progress()])
    with written_atomically(out, what="the word2vec vectors") as temporary:
        model.wv.save_word2vec_format(str(temporary), binary=False)
    return EmbeddingStats(out=out, vectors=len(model.wv), dim=config.dim, documents=documents,
                          tokens=tokens * epochs, seconds=time.perf_counter() - started)
