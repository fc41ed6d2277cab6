#!/usr/bin/env python3
"""A text capture of what a command shows on a terminal: the command runs under `script`
(a real pseudo-terminal, so `han-search run` draws its live view), and the recording is
replayed through a terminal emulator (pyte) to print the screen as it stood at chosen
moments: what a person watching it saw, without escape codes, for the docs.

Usage:  python bench/terminal_capture.py [--at 0.5 0.9] [--columns 110] [--rows 30]
            [--out capture.txt] -- han-search run --train train.tsv --timeout 120

`--at F` is a point of the recording (0.5: when half of its output had been written);
one screen is printed per point. Needs `script` (util-linux) and `pip install pyte`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pyte


def record(command: list[str], *, columns: int, rows: int) -> bytes:
    """The bytes `command` wrote to a pseudo-terminal of that size."""
    with tempfile.TemporaryDirectory(prefix="han-capture-") as scratch:
        typescript = Path(scratch) / "typescript"
        env = dict(os.environ, COLUMNS=str(columns), LINES=str(rows), TERM="xterm-256color")
        inner = f"stty cols {columns} rows {rows}; exec {shlex.join(command)}"
        subprocess.run(["script", "-q", "-e", "-c", inner, str(typescript)], env=env,
                       stdout=subprocess.DEVNULL, check=True)
        return typescript.read_bytes()


def screen_at(recording: bytes, fraction: float, *, columns: int, rows: int) -> str:
    """The screen after the first `fraction` of the recording, trailing blanks dropped."""
    screen = pyte.Screen(columns, rows)
    stream = pyte.ByteStream(screen)
    # To the end of the frame being drawn there: the next reset of the cursor, which rich
    # writes before each redraw of its live view.
    cut = recording.find(b"\r\x1b[2K", int(len(recording) * fraction))
    stream.feed(recording[:len(recording) if cut < 0 else cut])
    lines = [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--at", type=float, nargs="+", default=[0.5])
    parser.add_argument("--columns", type=int, default=110)
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--out", type=Path, help="also write the screens here")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    recording = record(command, columns=args.columns, rows=args.rows)
    screens = [f"--- at {fraction:.0%} of the output ---\n"
               + screen_at(recording, fraction, columns=args.columns, rows=args.rows)
               for fraction in args.at]
    text = "\n\n".join(screens) + "\n"
    sys.stdout.write(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
