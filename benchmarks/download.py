"""Download throughput against curl, and the cost of a resume, on a local server.

    python benchmarks/download.py [--size-mb 1024] [--runs 3] [--work DIR]

For each run, `curl -o` and medimeta fetch the same ~1 GB archive from the same
server on 127.0.0.1 (curl first, then medimeta, alternating). medimeta's transfer
includes the md5 it computes while streaming; extraction is timed separately.
Targets: medimeta's throughput at least 0.95 of curl's; a download resumed after a
cut at 50% transfers at most the remaining bytes plus 1 MiB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _fixture import build_dataset, drop_file, medimeta_script, start_server, timed, tool_env

_ENGINE = """
import json, sys, time
from medimeta_cli.catalog import load_catalog
from medimeta_cli.download import Downloader
from medimeta_cli.settings import resolve_settings
from medimeta_cli.transfer import ArchiveTransfer
settings = resolve_settings()
catalog = load_catalog(settings.catalog)
downloader = Downloader(settings, catalog)
dataset = catalog.get("crc")
info = downloader.manifest().archive("crc.zip")
start = time.perf_counter()
archive = ArchiveTransfer(downloader.record().client(), downloader.layout).fetch("crc", info)
transfer = time.perf_counter() - start
start = time.perf_counter()
downloader.installer().install_archive(dataset, archive.path, info)
extract = time.perf_counter() - start
print(json.dumps({"transfer": transfer, "extract": extract, "bytes": archive.fetched}))
"""


def median(values: list[float]) -> float:
    """The middle value."""
    return sorted(values)[len(values) // 2]


def throttle(server: object, link_mb_s: float) -> None:
    """Make the server send the next response at ``link_mb_s`` MB/s (0: full speed)."""
    if link_mb_s:
        from tests.support import zenodo_server as zs

        server.inject("crc.zip", zs.slow(link_mb_s * 1e6))  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--link-mb-s",
        type=float,
        default=0,
        help="also measure through a link of this many MB/s (the server throttles both clients)",
    )
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "medimeta-bench")
    args = parser.parse_args()
    if shutil.which("curl") is None:
        sys.exit("curl is needed as the baseline")
    archive, _ = build_dataset(args.work / "data", args.size_mb * 1024 * 1024)
    size = archive.stat().st_size
    server = start_server(archive)
    url = server.download_url("crc.zip")
    root = args.work / "root"
    curl_out = args.work / "curl.zip"
    try:
        env = tool_env(server, None, root)
        timed(["curl", "-sf", "-o", str(curl_out), url])  # warm the server's md5 cache
        links = [0.0] + ([args.link_mb_s] if args.link_mb_s else [])
        results = {}
        for link in links:
            curl_times, ours, extracts = [], [], []
            for _ in range(args.runs):
                drop_file(curl_out)
                throttle(server, link)
                curl_times.append(timed(["curl", "-sf", "-o", str(curl_out), url]))
                drop_file(root)
                throttle(server, link)
                result = subprocess.run(
                    [sys.executable, "-c", _ENGINE],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                figures = json.loads(result.stdout)
                ours.append(figures["transfer"])
                extracts.append(figures["extract"])
            results[link] = (median(curl_times), median(ours), median(extracts))
        drop_file(curl_out)

        # Resume: cut the transfer at 50%, then run again and count what the server sent.
        drop_file(root)
        from tests.support import zenodo_server as zs

        server.inject("crc.zip", zs.cut_after(size // 2))
        failed = subprocess.run(
            [medimeta_script(), "download", "crc", "--quiet"],
            env={**env, "MEDIMETA_RETRIES": "0"},
            check=False,
        )
        assert failed.returncode == 3, "the cut transfer should fail with the network code"
        server.wait_idle()
        server.clear_log()
        subprocess.run([medimeta_script(), "download", "crc", "--quiet"], env=env, check=True)
        resumed = sum(r.bytes_sent for r in server.requests_for("crc.zip", method="GET"))
    finally:
        server.stop()
        drop_file(root)

    mb = size / 1e6
    print(f"archive: {mb:.0f} MB, {args.runs} runs each, medians")
    for link, (curl_median, our_median, extract_median) in results.items():
        where = f"link throttled to {link:.0f} MB/s" if link else "unthrottled loopback"
        ratio = curl_median / our_median
        print(f"[{where}]")
        print(f"  curl -o                      {curl_median:6.2f} s  {mb / curl_median:7.0f} MB/s")
        print(f"  medimeta transfer + md5      {our_median:6.2f} s  {mb / our_median:7.0f} MB/s")
        print(f"  medimeta extraction + sha256 {extract_median:6.2f} s  (separate)")
        print(
            f"  throughput ratio to curl: {ratio:.2f} (target >= 0.95): "
            f"{'ok' if ratio >= 0.95 else 'BELOW TARGET'}"
        )
    extra = resumed - (size - size // 2)
    print(
        f"resume after a cut at 50%: {resumed:,} bytes sent for {size - size // 2:,} missing "
        f"(+{extra:,}; target <= +1 MiB): {'ok' if extra <= 1 << 20 else 'OVER TARGET'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
