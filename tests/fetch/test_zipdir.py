"""``medimeta_cli.fetch.zipdir``: a member's local header must agree with its directory entry."""

from __future__ import annotations

import io
import zipfile

import pytest

from medimeta_cli.errors import IntegrityError
from medimeta_cli.fetch.zipdir import LOCAL_HEADER, check_local_header


class _Unseekable(io.RawIOBase):
    """A write-only stream: zipfile then writes a data descriptor after each member."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, chunk: bytes) -> int:  # type: ignore[override]
        self.data += chunk
        return len(chunk)


def _local(data: bytes, entry: zipfile.ZipInfo) -> tuple[bytes, bytes, bytes]:
    at = entry.header_offset
    fixed = data[at : at + LOCAL_HEADER.size]
    name_length, extra_length = LOCAL_HEADER.unpack(fixed)[9:]
    name = data[at + LOCAL_HEADER.size : at + LOCAL_HEADER.size + name_length]
    extra_at = at + LOCAL_HEADER.size + name_length
    return fixed, name, data[extra_at : extra_at + extra_length]


def _archive(stream: io.RawIOBase | io.BytesIO) -> None:
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ds/task_labels/a.npy", b"a" * 300)
        archive.writestr("ds/task_labels/b.npy", b"b" * 200)


def test_a_local_header_must_name_and_describe_its_entry() -> None:
    buffer = io.BytesIO()
    _archive(buffer)
    data = buffer.getvalue()
    first, second = zipfile.ZipFile(io.BytesIO(data)).infolist()
    check_local_header(*_local(data, first), first)
    with pytest.raises(IntegrityError, match=r"local header names 'ds/task_labels/a\.npy'"):
        check_local_header(*_local(data, first), second)
    fixed, name, extra = _local(data, first)
    other_crc = bytearray(fixed)
    other_crc[14] ^= 0xFF
    with pytest.raises(IntegrityError, match="another CRC-32"):
        check_local_header(bytes(other_crc), name, extra, first)
    with pytest.raises(IntegrityError, match="no local header"):
        check_local_header(b"PK\x01\x02" + fixed[4:], name, extra, first)


def test_with_a_data_descriptor_the_sizes_and_crc_may_be_zero() -> None:
    stream = _Unseekable()
    _archive(stream)
    data = bytes(stream.data)
    first, second = zipfile.ZipFile(io.BytesIO(data)).infolist()
    fixed, name, extra = _local(data, second)
    fields = LOCAL_HEADER.unpack(fixed)
    assert fields[2] & 0x08 and fields[6:9] == (0, 0, 0)  # deferred to the descriptor
    check_local_header(fixed, name, extra, second)
    with pytest.raises(IntegrityError):
        check_local_header(*_local(data, second), first)
