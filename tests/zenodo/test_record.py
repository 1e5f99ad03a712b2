"""``medimeta_cli.zenodo.record``: the record manifest in every response shape, saved and loaded."""

from __future__ import annotations

import pytest

from medimeta_cli.errors import RemoteDataError
from medimeta_cli.zenodo.record import parse_record

MD5 = "0123456789abcdef0123456789abcdef"

BASE = "https://zenodo.example"


def _parse(payload: object) -> object:
    return parse_record(payload, record_id=7884735, base_url=BASE)


@pytest.mark.parametrize(
    "files",
    [
        [{"key": "crc.zip", "size": 10, "checksum": f"md5:{MD5}", "links": {"self": "x"}}],
        [{"filename": "crc.zip", "filesize": 10, "checksum": MD5}],
        {
            "enabled": True,
            "entries": {
                "crc.zip": {"key": "crc.zip", "size": 10, "checksum": f"md5:{MD5.upper()}"}
            },
        },
    ],
    ids=["current", "legacy", "entries"],
)
def test_every_record_shape_gives_the_same_manifest(files: object) -> None:
    manifest = parse_record(
        {"id": 7884735, "metadata": {"version": "1.0"}, "files": files},
        record_id=7884735,
        base_url=BASE,
    )
    info = manifest.archive("crc.zip")
    assert (info.size, info.md5) == (10, MD5)
    assert info.url == f"{BASE}/records/7884735/files/crc.zip?download=1"


@pytest.mark.parametrize(
    ("files", "field"),
    [
        ([{"key": "crc.zip", "size": -1, "checksum": f"md5:{MD5}"}], "files[0].size"),
        (
            [
                {"key": "a.zip", "size": 1, "checksum": f"md5:{MD5}"},
                {"key": "b.zip", "size": 1, "checksum": f"sha256:{MD5}"},
            ],
            "files[1].md5",
        ),
        ([{"key": "crc.zip", "size": 1, "checksum": "md5:xyz"}], "files[0].md5"),
        ([{"size": 1, "checksum": f"md5:{MD5}"}], "files[0].key"),
    ],
)
def test_invalid_record_names_the_field(files: object, field: str) -> None:
    with pytest.raises(RemoteDataError) as caught:
        _parse({"id": 1, "files": files})
    assert caught.value.message.startswith(f"invalid record response: {field}")


def test_record_without_files_is_refused() -> None:
    with pytest.raises(RemoteDataError, match="no list of files"):
        _parse({"id": 1})
    with pytest.raises(RemoteDataError, match="not a JSON object"):
        _parse(["files"])


def test_missing_archive_is_a_remote_data_error() -> None:
    manifest = _parse({"id": 7884735, "files": []})
    with pytest.raises(RemoteDataError, match=r"has no file 'crc\.zip'"):
        manifest.archive("crc.zip")  # type: ignore[attr-defined]
