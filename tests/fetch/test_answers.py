"""``medimeta_cli.fetch.answers``: the one place a server's answer to a range request is
classified, against the real local server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from medimeta_cli.catalog.datasets import RECORD_ID
from medimeta_cli.errors import NetworkError, RemoteDataError
from medimeta_cli.fetch.answers import Kind, check_zip_start, open_range
from medimeta_cli.zenodo.client import RemoteClient, RetryPolicy
from tests.support import zenodo_server as zs


@pytest.fixture
def client(zenodo: zs.ZenodoServer) -> Iterator[RemoteClient]:
    policy = RetryPolicy(retries=0, backoff_base=0.01, backoff_cap=0.02)
    with RemoteClient(zenodo.url, RECORD_ID, timeout=5, policy=policy) as remote:
        yield remote


def _kind(client: RemoteClient, url: str, start: int, end: int | None, total: int) -> Kind:
    with open_range(client, url, start, end, total=total, retry=False) as answer:
        return answer.kind


def test_each_answer_is_told_apart(zenodo: zs.ZenodoServer, client: RemoteClient) -> None:
    url, size = zenodo.download_url("crc.zip"), zenodo.file_size("crc.zip")
    with open_range(client, url, 100, 200, total=size) as answer:
        assert (answer.kind, answer.start, answer.total) == (Kind.PARTIAL, 100, size)
        assert len(answer.response.read()) == 100
    # A 206 of another file (another total) is not the bytes asked for.
    assert _kind(client, url, 100, None, size + 1) is Kind.WRONG_RANGE
    zenodo.inject("crc.zip", zs.ignore_range())
    assert _kind(client, url, 100, None, size) is Kind.WHOLE
    assert _kind(client, url, size + 10, None, size) is Kind.UNSATISFIABLE
    zenodo.inject("crc.zip", zs.status(429, retry_after=7))
    with open_range(client, url, 0, None, total=size, retry=False) as answer:
        assert (answer.kind, answer.retry_after) == (Kind.THROTTLED, 7.0)
    zenodo.inject("crc.zip", zs.html(200))
    with open_range(client, url, 0, None, total=size, retry=False) as answer:
        assert answer.kind is Kind.NOT_ARCHIVE
        assert "HTML page" in answer.refuse("crc.zip", url).message
    zenodo.inject("crc.zip", zs.json_error(200, "gone fishing"))
    with open_range(client, url, 0, None, total=size, retry=False) as answer:
        assert answer.kind is Kind.NOT_ARCHIVE
        assert "gone fishing" in answer.refuse("crc.zip", url).message
    zenodo.inject("crc.zip", zs.status(418))
    with open_range(client, url, 0, None, total=size, retry=False) as answer:
        assert answer.kind is Kind.HTTP_ERROR
        assert isinstance(answer.refuse("crc.zip", url), NetworkError)
    missing = zenodo.download_url("crc.zip").replace("crc.zip", "nothing.zip")
    with open_range(client, missing, 0, None, total=size, retry=False) as answer:
        assert answer.kind is Kind.NOT_FOUND
        assert "HTTP 404" in answer.refuse("nothing.zip", missing).message


def test_a_start_that_is_no_zip_is_refused() -> None:
    check_zip_start(b"PK\x03\x04rest", "crc.zip")
    check_zip_start(b"PK\x05\x06", "empty.zip")
    with pytest.raises(RemoteDataError, match="not a zip archive"):
        check_zip_start(b"<!DOCTYPE html>", "crc.zip")
