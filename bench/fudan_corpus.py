#!/usr/bin/env python3
"""A second real corpus for bench/real_text.py: the Fudan Chinese text-classification corpus,
long documents in characters, built from a public copy of it.

Source: github.com/ubaops/text_classify at commit 73fe92d2 (its folder test_corpus/answer,
the Fudan corpus's answer set: GB18030 text files named CLASS/CLASS_NNNN.txt or
CLASSNNNN.txt). Fetch the repository, then

    git -C REPO archive 73fe92d2 test_corpus/answer | tar -x -C SRC
    python bench/fudan_corpus.py SRC/test_corpus/answer OUT

writes OUT/train.tsv (label, text), OUT/test.tsv (text) and OUT/test_labels.csv (label), the
layout of ../shared/data/r8. What it keeps: the classes with at least MIN_CLASS_DOCS
documents (9 of 20; the rest hold 27-76 each); each document's body without its header of
bibliographic fields (lines that open with 【, which name the source journal), whitespace
removed (Chinese needs none, and a TSV field may hold no tab or newline), cut to its first
MAX_CHARS characters; one copy of each text (the corpus repeats documents); a stratified
split, TEST_SHARE of each class to the test file, seeded.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

from sklearn.model_selection import train_test_split

MIN_CLASS_DOCS = 400
MAX_CHARS = 3000
TEST_SHARE = 0.25
SEED = 0
# Documents shorter than this after cleaning are empty shells (a header and a title).
MIN_CHARS = 50


def body(raw: bytes) -> str:
    lines = raw.decode("gb18030", errors="replace").splitlines()
    kept = [line for line in lines if not line.lstrip().startswith("【")]
    return re.sub(r"\s+", "", "".join(kept))[:MAX_CHARS]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the extracted test_corpus/answer folder")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    texts: list[str] = []
    labels: list[str] = []
    seen: set[str] = set()
    for folder in sorted(p for p in args.source.iterdir() if p.is_dir()):
        files = sorted(folder.glob("*.txt"))
        if len(files) < MIN_CLASS_DOCS:
            continue
        label = folder.name.split("-", 1)[1]  # C34-Economy -> Economy
        for file in files:
            text = body(file.read_bytes())
            if len(text) >= MIN_CHARS and text not in seen:
                seen.add(text)
                texts.append(text)
                labels.append(label)
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
