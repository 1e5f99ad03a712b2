"""The upstream file format: split files."""

from __future__ import annotations

import numpy as np

from medimeta_cli.dataset.upstream import parse_split_bytes
from tests.support.archives import DatasetSpec, split_file_text


def test_parse_split_bytes() -> None:
    assert parse_split_bytes(b"").tolist() == []
    assert parse_split_bytes(b"images/000007.tiff").tolist() == [7]
    assert parse_split_bytes(b"images/000007.tiff\nimages/123456.tiff\n").tolist() == [7, 123456]
    # Lines of the wrong length put the rest out of step; line numbers must stay exact.
    data = b"images/000001.tiff\nimages/1.tiff\nimages/000002.tif\nimages/000003.tiff"
    assert parse_split_bytes(data).tolist() == [1, -1, -1, 3]
    # Same length as a good line, but not digits / wrong prefix.
    assert parse_split_bytes(b"images/00a001.tiff\nimagez/000001.tiff").tolist() == [-1, -1]
    assert parse_split_bytes(b"images/000001.tiff\r\nimages/000002.tiff").tolist()[0] == -1


def test_parse_a_crc_sized_split_file() -> None:
    spec = DatasetSpec(id="big", splits={"train": 107_180}, original_splits={"train": 107_180})
    text = split_file_text(spec, "train")
    assert text is not None
    indices = parse_split_bytes(text.encode())
    np.testing.assert_array_equal(indices, np.arange(107_180))
