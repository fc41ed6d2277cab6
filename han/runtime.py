"""Settings of the process that torch's libraries read once, when they first need them.

Nothing here imports torch: the command line makes these settings before its command runs,
and a command that never trains (`studies`, `show`) never loads it.
"""

from __future__ import annotations

import os

# oneDNN keeps up to this many primitives (the default is 1,024); a search builds new ones
# for every trial's sizes, and in bf16 each holds buffers of its shape. Measured on the
# 11,000-document look-alike, three trials of other sizes one after the other (bf16): the
# process held 1,067 MB after them instead of 1,331 MB, and peaked at 1,799 MB instead of
# 1,965 MB, at the same speed; 16 thrashed (2.8x slower).
ONEDNN_CACHE_CAPACITY = 128


def bound_primitive_cache() -> None:
    """Cap oneDNN's primitive cache at ONEDNN_CACHE_CAPACITY for this process, unless the
    environment sets it. oneDNN reads the setting when it builds its first primitive, so
    call this before any training or prediction."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_CACHE_CAPACITY))
