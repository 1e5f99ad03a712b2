"""The members' writes of an ordered pass: hashed in one thread, written in the next, in
the order given, the first error raised to the pass."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from medimeta_cli.fetch.member_writes import MemberWrites
from medimeta_cli.install.archive import HashedWriter


def test_writes_and_steps_run_in_the_order_given(tmp_path: Path) -> None:
    writes = MemberWrites(depth=64)  # a small bound: the pass waits for room often
    seen: list[tuple[str, int, bytes]] = []
    writers = [HashedWriter(tmp_path / f"{n}.bin", f"{n}.bin", open_now=False) for n in range(3)]
    try:
        for number, writer in enumerate(writers):
            writes.call(writer.open)
            for part in range(20):
                writes.write(writer, bytes([number]) * (part + 1))

            def look(writer: HashedWriter = writer) -> None:
                writer.flush()  # a step sees every write given before it, hashed and stored
                seen.append((writer.relative, writer.written, writer.target.read_bytes()))

            writes.call(look)
            writes.call(writer.finish)
        writes.drain()
    finally:
        writes.stop()
    assert [name for name, _, _ in seen] == ["0.bin", "1.bin", "2.bin"]
    for number, (_, written, content) in enumerate(seen):
        assert written == sum(range(1, 21)) == len(content)
        assert content == bytes([number]) * written
    for writer in writers:
        expected = hashlib.sha256(writer.target.read_bytes()).hexdigest()
        assert writer.finish().sha256 == (expected,)


def test_the_first_error_stops_later_steps_and_reaches_the_pass(tmp_path: Path) -> None:
    writes = MemberWrites()
    ran: list[str] = []
    started = threading.Event()

    def fail() -> None:
        started.set()
        raise OSError(28, "No space left on device")

    try:
        writes.call(fail)
        writes.call(lambda: ran.append("after the error"))
        with pytest.raises(OSError, match="No space left"):
            writes.drain()
        assert started.is_set()
        assert ran == []
        with pytest.raises(OSError, match="No space left"):  # and at the next write
            writes.write(HashedWriter(tmp_path / "x", "x", open_now=False), b"data")
    finally:
        writes.stop()
