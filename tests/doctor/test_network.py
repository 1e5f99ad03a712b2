"""The network checks of ``medimeta doctor`` (record API, clock, proxy, certificates), against
the local Zenodo server and a closed port."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from medimeta_cli.doctor.checks import Check, CheckStatus
from medimeta_cli.doctor.network import (
    RecordProbe,
    check_certificates,
    check_clock,
    check_proxy,
    mask_credentials,
    probe_record_api,
)
from medimeta_cli.settings import resolve_settings
from tests.support.zenodo_server import RECORD, ZenodoServer, status


def closed_port_url() -> str:
    """An http URL nothing listens on: a port the kernel just handed out, closed again."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ----------------------------------------------------------------------------- record API


def test_record_api_reports_latency_files_and_rate_limit(zenodo: ZenodoServer) -> None:
    probe = probe_record_api(resolve_settings())
    assert probe.check.status == "ok", probe.check
    assert probe.check.hint is None
    assert f"{len(zenodo.keys)} files" in probe.check.detail
    assert " ms" in probe.check.detail
    assert probe.manifest is not None and set(probe.manifest.files) == set(zenodo.keys)
    # The server's own headers were captured for the clock check and the detail.
    assert probe.server_date is not None and probe.server_date.endswith("GMT")
    assert re.search(r"\b\d+ requests left in the rate-limit window", probe.check.detail)
    assert 0 < probe.check.seconds < 5
    assert len(zenodo.requests) == 1


def test_record_api_reports_a_retry(zenodo: ZenodoServer) -> None:
    zenodo.inject(RECORD, status(503, retry_after=0))
    probe = probe_record_api(resolve_settings())
    assert probe.check.status == "ok", probe.check
    assert "after 1 retry," in probe.check.detail
    assert len(zenodo.requests) == 2


def test_record_api_fails_with_a_hint_on_a_closed_port(monkeypatch: pytest.MonkeyPatch) -> None:
    url = closed_port_url()
    monkeypatch.setenv("MEDIMETA_BASE_URL", url)
    started = time.monotonic()
    probe = probe_record_api(resolve_settings())
    assert probe.check.status == "fail"
    assert url in probe.check.detail and "refused" in probe.check.detail.lower()
    assert probe.check.hint and "MEDIMETA_BASE_URL" in probe.check.hint
    assert probe.manifest is None and probe.server_date is None
    assert time.monotonic() - started < 5  # one short retry at most


def test_record_api_error_status_fails_with_the_servers_hint(
    zenodo: ZenodoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMETA_RECORD", "1")  # the server answers 404 for other records
    probe = probe_record_api(resolve_settings())
    assert probe.check.status == "fail"
    assert "HTTP 404" in probe.check.detail
    assert probe.check.hint and "MEDIMETA_RECORD" in probe.check.hint
    assert probe.server_date is not None  # the 404 still told us the server's time


def test_record_api_is_skipped_offline(zenodo: ZenodoServer) -> None:
    probe = probe_record_api(resolve_settings({"offline": True}))
    assert probe.check.status == "skip"
    assert "offline" in probe.check.detail
    assert zenodo.requests == []


# ----------------------------------------------------------------------------- clock


@pytest.mark.parametrize(
    ("offset", "status", "words"),
    [
        (0.0, "ok", "in step"),
        (120.0, "warn", "ahead of"),
        (-120.0, "warn", "behind"),
        (900.0, "fail", "ahead of"),
    ],
)
def test_clock_skew_against_the_servers_date_header(
    zenodo: ZenodoServer, offset: float, status: str, words: str
) -> None:
    # The server sends its real Date header; only our side of the comparison is shifted.
    probe = probe_record_api(resolve_settings(), clock=lambda: time.time() + offset)
    check = check_clock(probe)
    assert check.status == status, check
    assert words in check.detail
    if status == "ok":
        assert check.hint is None
    else:
        assert f"{abs(offset):.0f} s" in check.detail
        assert check.hint and "Retry-After" in check.hint


def test_clock_is_skipped_without_a_server_date() -> None:
    offline = RecordProbe(Check("record API", CheckStatus.SKIP, "offline"))
    assert check_clock(offline).status == "skip"
    failed = RecordProbe(Check("record API", CheckStatus.FAIL, "refused"))
    assert "no answer" in check_clock(failed).detail


# ----------------------------------------------------------------------------- proxy


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("http://alice:s3cret@proxy.example:3128", "http://alice:***@proxy.example:3128"),
        ("http://alice:s3cret@proxy.example:3128/x", "http://alice:***@proxy.example:3128/x"),
        ("alice:s3cret@proxy.example:3128", "alice:***@proxy.example:3128"),
        ("http://proxy.example:3128", "http://proxy.example:3128"),
        ("proxy.example:3128", "proxy.example:3128"),
    ],
)
def test_proxy_passwords_are_masked(value: str, shown: str) -> None:
    assert mask_credentials(value) == shown


def test_proxy_variables_in_any_case_are_listed_masked() -> None:
    environ = {
        "https_proxy": "http://alice:s3cret@proxy.example:3128",
        "NO_PROXY": "localhost,127.0.0.1",
        "PATH": "/usr/bin",
    }
    check = check_proxy(environ)
    assert check.status == "ok"
    assert "https_proxy=http://alice:***@proxy.example:3128" in check.detail
    assert "NO_PROXY=localhost,127.0.0.1" in check.detail
    assert "s3cret" not in check.detail and "PATH" not in check.detail


def test_proxy_is_suspected_when_the_record_api_failed() -> None:
    failed = Check("record API", CheckStatus.FAIL, "refused")
    check = check_proxy({"HTTPS_PROXY": "http://proxy.example:3128"}, record_check=failed)
    assert check.status == "warn" and check.hint and "NO_PROXY" in check.hint
    # NO_PROXY alone routes nothing through a proxy: no reason to blame one.
    assert check_proxy({"NO_PROXY": "*"}, record_check=failed).status == "ok"
    assert "no proxy" in check_proxy({}, record_check=failed).detail


# ----------------------------------------------------------------------------- certificates


def test_missing_certificate_file_fails(tmp_path: Path) -> None:
    missing = tmp_path / "corporate-ca.pem"
    check = check_certificates({"SSL_CERT_FILE": str(missing)})
    assert check.status == "fail"
    assert f"SSL_CERT_FILE={missing} does not exist" in check.detail
    assert check.hint and "SSL_CERT_FILE" in check.hint


def test_unloadable_certificate_file_fails(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    check = check_certificates({"SSL_CERT_FILE": str(garbage)})
    assert check.status == "fail" and "cannot be loaded" in check.detail


def test_certificate_sources(tmp_path: Path) -> None:
    import certifi

    assert check_certificates({}).detail == f"certifi bundle {certifi.where()}"
    assert check_certificates({"SSL_CERT_FILE": certifi.where()}).status == "ok"
    assert check_certificates({"SSL_CERT_DIR": str(tmp_path)}).status == "ok"
    assert check_certificates({"SSL_CERT_DIR": str(tmp_path / "nope")}).status == "fail"
    # requests' variable does nothing for httpx: say so, and how to carry it over.
    ignored = check_certificates({"REQUESTS_CA_BUNDLE": "/etc/corp.pem"})
    assert ignored.status == "warn" and ignored.hint == "If the server needs that CA, set " + (
        "SSL_CERT_FILE=/etc/corp.pem too."
    )
