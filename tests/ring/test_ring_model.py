"""Property test: the ring behaves like a simple reference model.

For any sequence of writes (of any size, lapping or not), reads of any batch size on several
readers, readers opened at the head or at the oldest frame, seeks and time look-ups, the real
ring returns exactly the frames, drop counts and look-up results of the model below. Sequence
numbers start at 0, just below 2^32 and just below 2^64 so the wraps are covered too.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from shadowd.ring import RingReader, RingWriter

DTYPE = np.dtype([("t_ns", "<i8"), ("value", "<u4"), ("tag", "u1")])
CAPACITY = 8


class RingModel:
    """What a single-threaded observer must see: the last CAPACITY frames are kept; a reader
    further behind skips to the oldest kept frame and counts the skipped ones as dropped."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.frames: list[tuple[int, int, int]] = []  # (t_ns, value, tag) by sequence
        self.cursors: list[int] = []

    @property
    def head(self) -> int:
        return len(self.frames)

    @property
    def oldest(self) -> int:
        return max(0, self.head - self.capacity)

    def open(self, start: str) -> None:
        self.cursors.append(self.head if start == "latest" else self.oldest)

    def read(self, i: int, max_n: int) -> tuple[list[tuple[int, int, int]], int]:
        dropped = max(0, self.oldest - self.cursors[i])
        cursor = self.cursors[i] + dropped
        out = self.frames[cursor : min(self.head, cursor + max_n)]
        if max_n == 0:
            dropped = 0  # a zero-length read touches nothing
            cursor = self.cursors[i]
        self.cursors[i] = cursor + len(out)
        return out, dropped

    def find(self, t0: int, t1: int) -> list[tuple[int, int, int]]:
        return [f for f in self.frames[self.oldest :] if t0 <= f[0] <= t1]


ops = st.one_of(
    st.tuples(st.just("write"), st.integers(0, 3 * CAPACITY), st.integers(0, 3)),
    st.tuples(st.just("read"), st.integers(0, 3), st.integers(0, 2 * CAPACITY)),
    st.tuples(st.just("open"), st.sampled_from(["latest", "oldest"]), st.just(0)),
    st.tuples(st.just("find"), st.integers(-5, 400), st.integers(0, 60)),
    st.tuples(st.just("seek"), st.integers(0, 3), st.sampled_from(["latest", "oldest"])),
)


@given(
    start_seq=st.sampled_from([0, 2**32 - 3, 2**64 - 5]),
    program=st.lists(ops, min_size=1, max_size=40),
)
def test_ring_matches_reference_model(tmp_path_factory, start_seq, program):
    path = str(tmp_path_factory.mktemp("ring") / "seg")
    writer = RingWriter.create(path, DTYPE, CAPACITY, start_seq=start_seq)
    model = RingModel(CAPACITY)
    readers = [RingReader.open(path, DTYPE, start="oldest")]
    model.open("oldest")
    t_ns = 0
    try:
        for op, a, b in program:
            if op == "write":
                batch = np.zeros(a, DTYPE)
                for k in range(a):
                    t_ns += b  # non-decreasing, with runs of equal stamps
                    batch[k] = (t_ns, len(model.frames) + k, (len(model.frames) + k) % 251)
                if a == 1 and b % 2:
                    writer.write(batch[0])  # a single record takes the same path
                else:
                    writer.write(batch)
                model.frames.extend(tuple(int(x) for x in f) for f in batch.tolist())
            elif op == "read":
                i = a % len(readers)
                want, want_dropped = model.read(i, b)
                out = np.zeros(max(b, 1), DTYPE)[:b]
                n, dropped = readers[i].read_into(out)
                assert [tuple(int(x) for x in f) for f in out[:n].tolist()] == want
                assert dropped == want_dropped
            elif op == "open":
                readers.append(RingReader.open(path, DTYPE, start=a))
                model.open(a)
            elif op == "find":
                t0, t1 = a, a + b
                got = writer.frames(t0, t1) if b % 2 else readers[0].frames(t0, t1)
                assert [tuple(int(x) for x in f) for f in got.tolist()] == model.find(t0, t1)
            elif op == "seek":
                i = a % len(readers)
                readers[i].seek(b)
                model.cursors[i] = model.head if b == "latest" else model.oldest
            for i, r in enumerate(readers):
                assert r.poll() == (model.cursors[i] != model.head)
        for i, r in enumerate(readers):
            stats = r.stats
            assert stats.cursor_seq == (start_seq + model.cursors[i]) % 2**64
    finally:
        for r in readers:
            r.close()
        writer.close()
