from __future__ import annotations

import hashlib
import os

from pymender.artifact import hashing
from pymender.artifact.hashing import BackgroundSha256


def test_background_sha256_matches_hashlib_whatever_it_is_fed() -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    hasher = BackgroundSha256(buffer_size=64 * 1024, buffers=2)
    hasher.update(data[:1000])  # bytes: queued as they are
    hasher.update(bytearray(data[1000:500_000]))  # a caller's buffer: copied into the pool
    hasher.update(memoryview(data)[500_000:2_000_000])
    view = memoryview(data)[2_000_000:]
    while view:  # the zero-copy way: fill pooled buffers, hand them over
        buffer = hasher.buffer()
        count = min(len(buffer), len(view))
        buffer[:count] = view[:count]
        hasher.submit(buffer, count)
        view = view[count:]
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()


def test_an_abandoned_hash_lets_its_thread_end() -> None:
    import gc

    hasher = BackgroundSha256()
    hasher.update(os.urandom(100_000))
    thread = hasher._thread
    del hasher
    gc.collect()
    thread.join(60)  # returns as soon as the thread ends; the bound only keeps a bug from hanging
    assert not thread.is_alive()


def test_small_payloads_are_hashed_inline() -> None:
    assert not isinstance(hashing.new_sha256(1000), BackgroundSha256)
