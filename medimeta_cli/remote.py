"""The Zenodo record: where archives live and how to address them.

Kept free of heavy imports at module level so that ``info`` can show URLs
without loading the HTTP stack.
"""

from __future__ import annotations


def record_api_url(base_url: str, record_id: int) -> str:
    """``GET`` this for the record's JSON: files with key, size and md5."""
    return f"{base_url.rstrip('/')}/api/records/{record_id}"


def file_download_url(base_url: str, record_id: int, key: str) -> str:
    """The URL of one archive that honours byte ranges (the API ``/content`` URL does not)."""
    from urllib.parse import quote

    return f"{base_url.rstrip('/')}/records/{record_id}/files/{quote(key)}?download=1"
