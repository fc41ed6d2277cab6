"""Typed settings of the training core.

Every default here is the reference notebook's configuration and lives nowhere else: study
files, the CLI and the search override fields, they never restate a default.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

CellType = Literal["lstm", "gru"]
# How the training loss weighs classes: "none" (the notebook's plain cross-entropy),
# "sqrt" (each class by the square root of its inverse frequency) or "inverse" (by its
# inverse frequency: every class weighs as much in the loss as in macro-F1).
ClassWeight = Literal["none", "sqrt", "inverse"]
CLASS_WEIGHTS: tuple[ClassWeight, ...] = ("none", "sqrt", "inverse")
Precision = Literal["auto", "fp32", "bf16"]
# What a token of a file is; "auto" (han.io.detect_tokens) decides from the file itself.
TokenMode = Literal["ids", "chars", "words"]
TOKEN_MODES: tuple[TokenMode, ...] = ("ids", "chars", "words")
TokenChoice = Literal["auto", "ids", "chars", "words"]
TOKEN_CHOICES: tuple[TokenChoice, ...] = ("auto", *TOKEN_MODES)
# Spellings of a tab that survive a shell and a TOML file alike.
_TAB_ALIASES = ("\\t", "tab", "TAB")


@dataclass(frozen=True, kw_only=True)
class FileFormat:
    """How a data file is read. The defaults read the competition's files.

    `tokens`: "ids" reads space-separated integer ids (the competition's anonymised text);
    "words" splits raw text on whitespace; "chars" makes every non-space character a token
    (Chinese text); "auto" tells them apart from the file (the loader resolves it: a
    corpus's format always names one of the three). `sep` may be given as `\\t` or `tab`
    for a tab.
    """

    sep: str = "\t"
    text_col: str = "text"
    label_col: str = "label"
    tokens: TokenChoice = "auto"

    def __post_init__(self) -> None:
        if self.sep in _TAB_ALIASES:
            object.__setattr__(self, "sep", "\t")
        if len(self.sep) != 1 or self.sep.isalnum() or self.sep in "\"\r\n ":
            raise ValueError(f"sep must be one character other than a letter, digit, quote, "
                             f"space or line end, got {self.sep!r}")
        for name in ("text_col", "label_col"):
            if not getattr(self, name).strip():
                raise ValueError(f"{name} must be a column name, got {getattr(self, name)!r}")
        if self.text_col == self.label_col:
            raise ValueError(f"text_col and label_col are both {self.text_col!r}")
        if self.tokens not in TOKEN_CHOICES:
            raise ValueError(f"tokens must be one of {', '.join(TOKEN_CHOICES)}, "
                             f"got {self.tokens!r}")

    def fits_competition(self) -> bool:
        """Whether this format reads the competition's files (the built-in corpus is one):
        their delimiter and columns, and their ids, given or to be detected."""
        return self.tokens in ("auto", "ids") and replace(self, tokens="ids") == COMPETITION_FORMAT


# The competition's files as read; frozen, so one shared instance serves as every default
# of a format that is already resolved (a corpus's, a checkpoint's, a study's record).
COMPETITION_FORMAT = FileFormat(tokens="ids")


@dataclass(frozen=True, kw_only=True)
class HANConfig:
    """The network's shape. `vocab_size` and `num_classes` come from the data."""

    vocab_size: int
    num_classes: int
    embed_dim: int = 100
    word_hidden: int = 128
    word_layers: int = 2
    sent_hidden: int = 256
    sent_layers: int = 2
    dropout: float = 0.15
    cell: CellType = "lstm"
    # Set from the data when a word2vec file is given: adds a frozen embedding table.
    pretrained_embeddings: bool = False

    def __post_init__(self) -> None:
        _check_positive(self, "vocab_size", "num_classes", "embed_dim", "word_hidden",
                        "word_layers", "sent_hidden", "sent_layers")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {self.cell!r}")


@dataclass(frozen=True, kw_only=True)
class Word2VecConfig:
    """word2vec trained on a corpus's texts for the model's frozen embeddings (han.embeddings):
    gensim's CBOW at gensim's own defaults, as the reference notebook trained it."""

    # The vectors' dimension: the model's embed_dim, which they are added to.
    dim: int = HANConfig.embed_dim
    window: int = 5
    min_count: int = 5
    epochs: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive(self, "dim", "window", "min_count", "epochs")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """How documents become batches: vocabulary, segmentation and the dev split."""

    seg_len: int = 256
    max_segments: int = 8
    min_count: int = 5
    folds: int = 10
    dev_fold: int = 0
    split_seed: int = 0

    def __post_init__(self) -> None:
        _check_positive(self, "seg_len", "max_segments", "min_count")
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds}")
        if not 0 <= self.dev_fold < self.folds:
            raise ValueError(f"dev_fold must be in [0, {self.folds}), got {self.dev_fold}")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation and stopping."""

    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-4
    lr_decay: float = 0.75
    decay_steps: int = 1000
    clip: float = 5.0
    class_weight: ClassWeight = "none"
    patience: int = 3
    seed: int = 0
    device: str = "auto"
    # Training arithmetic. "auto": bf16 autocast where it was measured faster: CPUs with
    # native bf16 (AVX512-BF16, AMX; about 1.7x on the LSTMs), GPUs at batches of 256 and
    # more (han.device); fp32 elsewhere, plain AVX-512 included, which only emulates bf16.
    # Evaluation and prediction on CPU stay fp32 either way.
    precision: Precision = "auto"
    # Evaluation holds no activations for backward, so it can take larger batches.
    eval_batch_size: int = 64
    # CPU training passes a batch of more padded tokens (segments x width) than this forward
    # and backward in chunks of documents, gradients summed: the same step, with one chunk's
    # activations alive at a time. A batch of 32 documents of 8 x 256 tokens (hidden 128)
    # otherwise peaks at 1.6 GB above the process; with 8192 the whole run on an 11,000-doc,
    # 100,000-word corpus stays under 1.5 GB. On a GPU the batch goes whole.
    max_batch_tokens: int = 8192
    # Training documents between two reports of the dev macro-F1 (to the search's pruner),
    # on a grid every run of the same data shares: a report falls where the documents seen
    # cross a multiple of it, whatever the batch size. None: one report, at each epoch's end.
    report_every: int | None = None
    # Reports inside an epoch score this many dev documents, a fixed stratified sample (the
    # same for every run of the same split); each epoch's end scores the whole dev fold.
    # None: as many as keep a report's noise near han.metrics.TARGET_NOISE on the dev
    # fold's classes (rare classes need more), at most the whole fold.
    report_dev_docs: int | None = None

    def __post_init__(self) -> None:
        _check_positive(self, "epochs", "batch_size", "decay_steps", "patience",
                        "eval_batch_size", "max_batch_tokens")
        for name in ("report_every", "report_dev_docs"):
            if getattr(self, name) is not None:
                _check_positive(self, name)
        if self.lr <= 0 or self.clip <= 0:
            raise ValueError("lr and clip must be positive")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if self.class_weight not in CLASS_WEIGHTS:
            raise ValueError(f"class_weight must be one of {', '.join(CLASS_WEIGHTS)}, "
                             f"got {self.class_weight!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")


def _check_positive(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class BaselineConfig:
    """The linear baseline trained once per study (han.baseline): TF-IDF over hashed word
    1-2-grams and scikit-learn's SGDClassifier."""

    # 2**24 buckets: on the competition's corpus, few n-grams that survive `min_df` share one.
    hash_bits: int = 24
    # N-grams in fewer training documents are dropped (mostly one-off bigrams).
    min_df: int = 2
    loss: Literal["hinge", "modified_huber", "log_loss"] = "hinge"
    alpha: float = 3e-5
    epochs: int = 10
    # Classes weighted by inverse frequency: the metric is macro-F1.
    balanced: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive(self, "hash_bits", "min_df", "epochs")
        if not 8 <= self.hash_bits <= 31:
            raise ValueError(f"hash_bits must be in [8, 31], got {self.hash_bits}")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be positive, got {self.alpha}")
