#!/usr/bin/env python3
"""A third real corpus for bench/real_text.py: the Blog Authorship Corpus, long English
documents in words (one blogger's posts each), labelled by the blogger's gender and age group,
built from a public copy of it.

Source: the Blog Authorship Corpus (Schler, Koppel, Argamon and Pennebaker, "Effects of Age
and Gender on Blogging", AAAI Spring Symposium 2006; 19,320 bloggers of blogger.com, 2004;
its authors allow free use for non-commercial research), as github.com/muhwagua/color-bert
holds it at commit 406f4e95 (folder data/dump/blogs: one XML-like file per blogger named
ID.GENDER.AGE.INDUSTRY.SIGN.xml, posts between <post> and </post>, in windows-1252 or UTF-8;
the repository removed the folder in a later commit, so name this one). Fetch the
repository, then

    git -C REPO archive 406f4e95 data/dump/blogs | tar -x -C SRC
    python bench/blogs_corpus.py SRC/data/dump/blogs OUT

writes OUT/train.tsv (label, text), OUT/test.tsv (text) and OUT/test_labels.csv (label), the
layout of ../shared/data/r8. What it keeps: each blogger's posts in file order, HTML entities
decoded, lower-cased words with punctuation removed as r8's texts are (the corpus's "urlLink"
placeholders for removed links dropped), cut to the first MAX_WORDS words; the label is the
gender and age group of the file name (the corpus holds ages 13-17, 23-27 and 33-48 only, so
six classes of uneven size: the 33-48 groups are a third of the others); bloggers with fewer
than MIN_WORDS words dropped (empty or near-empty blogs), one copy of each text; a stratified
split, TEST_SHARE of each class to the test file, seeded. A text holds only letters, digits,
apostrophes and single spaces, so no field is ever quoted (han-search reads tab-separated
files unquoted, as the competition's are). Why this corpus: long documents (over half the
bloggers write past the cut), more than 10,000 of them, classes of uneven size, and a text's
topic says little about its label, unlike r8's and fudan9's.
"""

from __future__ import annotations

import argparse
import csv
import html
import re
import sys
from pathlib import Path

from sklearn.model_selection import train_test_split

MAX_WORDS = 1500
MIN_WORDS = 50
TEST_SHARE = 0.2
SEED = 0
AGE_GROUPS = ((13, 17), (23, 27), (33, 48))

POST = re.compile(r"<post>(.*?)</post>", re.DOTALL)
WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def label_of(name: str) -> str:
    """A file name's label: 1000331.female.37.indUnk.Leo.xml -> female-33-48."""
    _, gender, age, *_ = name.split(".")
    for low, high in AGE_GROUPS:
        if low <= int(age) <= high:
            return f"{gender}-{low}-{high}"
    raise ValueError(f"{name}: age {age} is in no group of the corpus")


def words(raw: bytes) -> list[str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    body = html.unescape(" ".join(POST.findall(text))).lower()
    body = body.replace("\u2019", "'").replace("\u2018", "'")
    return [w for w in WORD.findall(body) if w != "urllink"][:MAX_WORDS]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the extracted data/dump/blogs folder")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    texts: list[str] = []
    labels: list[str] = []
    seen: set[str] = set()
    for file in sorted(args.source.glob("*.xml")):
        kept = words(file.read_bytes())
        text = " ".join(kept)
        if len(kept) >= MIN_WORDS and text not in seen:
            seen.add(text)
            texts.append(text)
            labels.append(label_of(file.name))
    train_x, test_x, train_y, test_y = train_test_split(
        texts, labels, test_size=TEST_SHARE, stratify=labels, random_state=SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "train.tsv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(["label", "text"])
        writer.writerows(zip(train_y, train_x, strict=True))
    with (args.out / "test.tsv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(["text"])
        writer.writerows([text] for text in test_x)
    with (args.out / "test_labels.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label"])
        writer.writerows([label] for label in test_y)
    classes = {label: labels.count(label) for label in sorted(set(labels))}
    print(f"{len(train_x):,} training and {len(test_x):,} test documents, "
          f"{len(classes)} classes: " + ", ".join(f"{k} {v:,}" for k, v in classes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
