"""A seeded look-alike of the Tianchi news-classification corpus.

The real competition files (200,000 training and 50,000 test documents of anonymised
integer token ids) cannot be shipped, yet `han-search run` needs data that behaves like
them so that tuning the network means something. This module writes files in exactly the
competition format (UTF-8, tab-separated, header line, text = space-separated ids) whose
statistics follow the public analyses in `shared/data/README.md`: the 14 class priors,
per-class mean lengths, a heavy-tailed length spread, a Zipf-like vocabulary of about
6,869 ids in 0..7549 and the punctuation-like separator tokens.

The class signal is built so that models and their hyperparameters separate:

* every class has its own keywords, mixed into a shared Zipf background at a density that
  varies per document, so some documents are easy and some are nearly topic-free;
* related classes (tech / finance / stocks, entertainment / fashion / horoscope,
  real estate / home, politics / society) share a pool of topic words, so a bag of words
  confuses them;
* inside a group the shared words also come as class-specific ordered pairs (bigrams):
  the unigram counts of the pairs are the same for every class of the group, only the
  order and pairing tell them apart, which a sequence model can learn and a unigram
  model cannot;
* the first sentence (the "headline") carries a denser topic, so position matters too;
* a quarter of the documents mix in a second class's topic, and about 2.5% of the labels
  are replaced (in proportion to the priors, so small classes keep a small noise share),
  which keeps macro-F1 clearly below 1.0.

Generation is vectorised numpy over blocks of documents. Every block draws from its own
seeded stream, so the output depends only on the spec, the number of documents and the
stream offset (train and test use different offsets), never on the machine.
"""

from han.synthetic.draw import (
    CLASS_COUNTS,
    CLASS_MEAN_LENGTHS,
    COMMA,
    EXCLAMATION,
    FULL_STOP,
    GENERATOR_VERSION,
    MAX_TOKEN_ID,
    PAUSE,
    QUESTION,
    SENTENCE_ENDS,
    SyntheticSpec,
)
from han.synthetic.files import builtin_corpus, default_cache_root, generate, write_corpus

__all__ = [
    "CLASS_COUNTS",
    "CLASS_MEAN_LENGTHS",
    "COMMA",
    "EXCLAMATION",
    "FULL_STOP",
    "GENERATOR_VERSION",
    "MAX_TOKEN_ID",
    "PAUSE",
    "QUESTION",
    "SENTENCE_ENDS",
    "SyntheticSpec",
    "builtin_corpus",
    "default_cache_root",
    "generate",
    "write_corpus",
]
