"""Download throughput against curl and aria2c, and the cost of a resume, on a local server.

    python benchmarks/download.py [--size-mb 1024] [--runs 3] [--throttle-mb-s 32] [--work DIR]

For each run, `curl -o` and medimeta fetch the same ~1 GB archive from the same
server on 127.0.0.1 (curl first, then medimeta, alternating). medimeta's transfer
includes the md5 it computes while streaming; extraction is timed separately.
Targets: medimeta's throughput at least 0.95 of curl's; a download resumed after a
cut at 50% transfers at most the remaining bytes plus 1 MiB.

Whole job, unthrottled: ``medimeta download crc`` (the default: pieces over several
connections installed while they download; ``--keep-archive``, the archive path that was the
default before; and ``--stream``, one connection) against ``curl -o`` + ``md5sum`` +
``unzip``, timed alone, and the peak disk use under each one's folder sampled every 10 ms
in a run of its own (the sampler takes most of a core), as a ratio to the installed size
(goals: time <= 0.45, peak disk <= 1.05 plus the window of pieces).

Killed: a throttled default download is killed with SIGKILL once the server has sent 60%
of the archive; the next run's bytes, less what was still missing, are what the kill cost
(goal <= 10% of the archive).

Throttled: the server caps each connection (``--throttle-mb-s``, like nginx
``limit_rate`` and Zenodo); the whole ``medimeta download crc`` (default connections:
transfer, md5, install) is compared with ``aria2c -x8 -s8`` + ``md5sum`` + ``unzip``, and
the HTTP requests medimeta made are counted. aria2 and unzip are Debian packages: the
benchmark installs them when run as root, or skips that baseline and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _fixture import build_dataset, drop_file, medimeta_script, start_server, timed, tool_env

_ENGINE = """
import json, sys, time
from medimeta_cli.catalog.file import load_catalog
from medimeta_cli.download.run import Downloader
from medimeta_cli.settings import resolve_settings
from medimeta_cli.fetch.result import ArchiveFile, TransferContext
from medimeta_cli.fetch.whole import WholeArchiveTransfer
settings = resolve_settings()
catalog = load_catalog(settings.catalog)
downloader = Downloader(settings, catalog)
dataset = catalog.get("crc")
info = downloader.manifest().archive("crc.zip")
start = time.perf_counter()
context = TransferContext(downloader.record().client(), downloader.layout)
fetched = WholeArchiveTransfer(context).fetch(dataset, info)
assert isinstance(fetched.content, ArchiveFile)
transfer = time.perf_counter() - start
start = time.perf_counter()
downloader.installer().install_archive(dataset, fetched.content.path, info, proof=fetched.proof)
extract = time.perf_counter() - start
print(json.dumps({"transfer": transfer, "extract": extract, "bytes": fetched.fetched}))
"""


def median(values: list[float]) -> float:
    """The middle value (of an even count, the mean of the two middle ones)."""
    return statistics.median(values)


def throttle(server: object, link_mb_s: float) -> None:
    """Make the server send the next response at ``link_mb_s`` MB/s (0: full speed)."""
    if link_mb_s:
        from tests.support import zenodo_server as zs

        server.inject("crc.zip", zs.slow(link_mb_s * 1e6))  # type: ignore[attr-defined]


def missing_tools(tools: tuple[str, ...], packages: tuple[str, ...], case: str) -> str | None:
    """None when ``tools`` are there (the Debian ``packages`` installed with apt-get when
    run as root), else why ``case`` is skipped."""

    def missing() -> list[str]:
        return [tool for tool in tools if shutil.which(tool) is None]

    if missing() and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", *packages],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    if missing():
        names = ", ".join(missing())
        return f"skipping {case}: {names} missing (apt-get install {' '.join(packages)})"
    return None


def expert_tools() -> str | None:
    """None when aria2c and unzip are there, else why the aria2c baseline is skipped."""
    return missing_tools(("aria2c", "unzip", "md5sum"), ("aria2", "unzip"), "the aria2c baseline")


def expert_pipeline(url: str, work: Path) -> float:
    """Wall time of aria2c -x8 -s8, then md5sum, then unzip: what an expert would run."""
    drop_file(work)
    work.mkdir(parents=True)
    fetch = [
        "aria2c", "-x8", "-s8", "-q", "--allow-overwrite=true", "--auto-file-renaming=false",
        "-d", str(work), "-o", "crc.zip", url,
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(fetch, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["md5sum", str(work / "crc.zip")], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["unzip", "-q", "-o", str(work / "crc.zip"), "-d", str(work / "crc")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - start
    drop_file(work)
    return seconds


def disk_use(folder: Path) -> int:
    """Bytes allocated under ``folder`` (entries that vanish while it walks are skipped)."""
    total = 0
    for parent, _, files in os.walk(folder, onerror=lambda error: None):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(parent, name)).st_blocks * 512
    return total


def with_peak_disk(folder: Path, run: Callable[[], float]) -> tuple[float, int]:
    """``run()``'s result and the largest disk use seen under ``folder`` while it ran."""
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            if folder.exists():
                peak[0] = max(peak[0], disk_use(folder))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        seconds = run()
    finally:
        done.set()
        sampler.join()
    return seconds, max(peak[0], disk_use(folder) if folder.exists() else 0)


def curl_pipeline(url: str, work: Path) -> float:
    """Wall time of curl -o, then md5sum, then unzip."""
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    subprocess.run(["curl", "-sf", "-o", str(work / "crc.zip"), url], check=True)
    subprocess.run(["md5sum", str(work / "crc.zip")], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["unzip", "-q", "-o", str(work / "crc.zip"), "-d", str(work / "crc")], check=True
    )
    return time.perf_counter() - start


def whole_job_case(
    url: str, env: dict[str, str], root: Path, work: Path, runs: int
) -> dict[str, tuple[float, float]] | str:
    """Median wall time and peak disk ÷ installed size of each whole job, or why skipped."""
    skipped = missing_tools(("unzip", "md5sum"), ("unzip",), "the whole-job case")
    if skipped:
        return skipped
    jobs: dict[str, Callable[[], float]] = {
        "curl + md5sum + unzip": lambda: curl_pipeline(url, work / "curl"),
        "medimeta download": lambda: timed([medimeta_script(), "download", "crc", "-q"], env=env),
        "medimeta download --keep-archive": lambda: timed(
            [medimeta_script(), "download", "crc", "-q", "--keep-archive"], env=env
        ),
        "medimeta download --stream": lambda: timed(
            [medimeta_script(), "download", "crc", "-q", "--stream"], env=env
        ),
    }
    folders = {name: work / "curl" if name.startswith("curl") else root for name in jobs}
    figures: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in jobs}
    for _ in range(runs):
        for name, job in jobs.items():
            drop_file(folders[name])
            figures[name][0].append(job())
            drop_file(folders[name])
    # The peak disk in a run of its own: the sampler walks the tree every 10 ms and takes
    # most of a core, which would slow a job that uses both cores more than one that uses
    # one at a time.
    for name, job in jobs.items():
        drop_file(folders[name])
        _, peak = with_peak_disk(folders[name], job)
        installed = disk_use(root / "crc" if folders[name] == root else work / "curl" / "crc")
        figures[name][1].append(peak / installed)
        drop_file(folders[name])
    return {name: (median(times), median(peaks)) for name, (times, peaks) in figures.items()}


def print_whole_job(figures: dict[str, tuple[float, float]] | str) -> None:
    """The whole-job table and its ratios against the goals."""
    print("[whole job, unthrottled loopback: wall time, peak disk / installed size]")
    if isinstance(figures, str):
        print(f"  {figures}")
        return
    base = figures["curl + md5sum + unzip"][0]
    for name, (seconds, peak) in figures.items():
        print(f"  {name:28s} {seconds:6.2f} s  ratio {seconds / base:4.2f}  peak disk {peak:4.2f}")
    best = min(seconds for name, (seconds, _) in figures.items() if name.startswith("medimeta"))
    lowest = min(peak for name, (_, peak) in figures.items() if name.startswith("medimeta"))
    default, default_peak = figures["medimeta download"]
    print(f"  best medimeta / curl pipeline: {best / base:.2f}")
    print(f"  default medimeta download / curl pipeline: {default / base:.2f} (goal <= 0.45)")
    print(f"  lowest medimeta peak disk / installed: {lowest:.3f}")
    print(f"  default peak disk / installed: {default_peak:.3f} (goal <= 1.05 + window)")


def throttled_case(
    server: object, url: str, env: dict[str, str], root: Path, work: Path, runs: int, rate: float
) -> tuple[list[float], list[float], list[int], list[float], str | None]:
    """medimeta download versus aria2c + md5sum + unzip, each connection capped at ``rate``."""
    skipped = expert_tools()
    ours: list[float] = []
    theirs: list[float] = []
    requests: list[int] = []
    peaks: list[float] = []
    server.connection_rate = rate  # type: ignore[attr-defined]
    command = [medimeta_script(), "download", "crc", "--quiet"]
    try:
        for _ in range(runs):
            if skipped is None:
                theirs.append(expert_pipeline(url, work / "aria2"))
            drop_file(root)
            server.clear_log()  # type: ignore[attr-defined]
            ours.append(timed(command, env=env))
            gets = server.requests_for("crc.zip", method="GET")  # type: ignore[attr-defined]
            requests.append(len(gets))
        # The peak disk in a run of its own, as in the whole-job case (the aria2c pipeline
        # is timed without a sampler too).
        drop_file(root)
        _, peak = with_peak_disk(root, lambda: timed(command, env=env))
        peaks.append(peak / disk_use(root / "crc"))
    finally:
        server.connection_rate = None  # type: ignore[attr-defined]
        drop_file(root)
    return ours, theirs, requests, peaks, skipped


def killed_case(
    server: object, env: dict[str, str], root: Path, size: int, rate: float
) -> tuple[int, int]:
    """Bytes the server sent to a default download killed with SIGKILL at 60%, and to the
    run after it."""
    drop_file(root)
    server.clear_log()  # type: ignore[attr-defined]
    server.connection_rate = rate  # type: ignore[attr-defined]

    def sent() -> int:
        return server.bytes_sent("crc.zip")  # type: ignore[attr-defined,no-any-return]

    try:
        job = subprocess.Popen([medimeta_script(), "download", "crc", "--quiet"], env=env)
        while sent() < 0.6 * size and job.poll() is None:
            time.sleep(0.005)
        job.kill()
        job.wait()
    finally:
        server.connection_rate = None  # type: ignore[attr-defined]
    first = sent()
    server.wait_idle()  # type: ignore[attr-defined]
    server.clear_log()  # type: ignore[attr-defined]
    subprocess.run([medimeta_script(), "download", "crc", "--quiet"], env=env, check=True)
    again = sent()
    drop_file(root)
    return first, again


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
    parser.add_argument(
        "--throttle-mb-s",
        type=float,
        default=32,
        help="per-connection cap of the throttled case, MB/s (0: skip that case)",
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
                    [sys.executable, "-c", _ENGINE], env=env, capture_output=True, text=True
                )
                if result.returncode:
                    sys.exit(f"the engine's run failed:\n{result.stderr}")
                figures = json.loads(result.stdout)
                ours.append(figures["transfer"])
                extracts.append(figures["extract"])
            results[link] = (median(curl_times), median(ours), median(extracts))
        drop_file(curl_out)
        whole_job = whole_job_case(url, env, root, args.work, args.runs)
        throttled = None
        if args.throttle_mb_s:
            throttled = throttled_case(
                server, url, env, root, args.work, args.runs, args.throttle_mb_s * 1e6
            )

        killed = killed_case(server, env, root, size, max(args.throttle_mb_s, 32) * 1e6)
        # Resume: cut the transfer at 50%, then run again and count what the server sent.
        drop_file(root)
        from tests.support import zenodo_server as zs

        server.inject("crc.zip", zs.cut_after(size // 2))
        # One stream (--connections 1) of the archive path (--keep-archive): the cut leaves
        # exactly the second half to fetch.
        failed = subprocess.run(
            [medimeta_script(), "download", "crc", "--quiet", "--keep-archive"],
            env={**env, "MEDIMETA_RETRIES": "0", "MEDIMETA_CONNECTIONS": "1"},
            check=False,
        )
        assert failed.returncode == 3, "the cut transfer should fail with the network code"
        server.wait_idle()
        server.clear_log()
        subprocess.run(
            [
                medimeta_script(),
                "download",
                "crc",
                "--quiet",
                "--connections",
                "1",
                "--keep-archive",
            ],
            env=env,
            check=True,
        )
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
    print_whole_job(whole_job)
    if throttled is not None:
        ours, theirs, requests, peaks, skipped = throttled
        print(f"[throttled: {args.throttle_mb_s:.0f} MB/s per connection, whole job]")
        print(f"  medimeta download (default connections) {median(ours):6.2f} s")
        print(f"  its peak disk / installed size: {median(peaks):.3f} (the window of pieces)")
        print(f"  HTTP requests medimeta made: {max(requests)} (target <= 20 per GB)")
        if skipped:
            print(f"  {skipped}")
        else:
            ratio = median(ours) / median(theirs)
            print(f"  aria2c -x8 -s8 + md5sum + unzip        {median(theirs):6.2f} s")
            print(
                f"  ratio medimeta / aria2c pipeline: {ratio:.2f} (goal <= 0.6): "
                f"{'ok' if ratio <= 0.6 else 'ABOVE GOAL'}"
            )
    sent, again = killed
    refetched = sent + again - size
    print(
        f"SIGKILL at {sent / size:.0%} of a default download: the next run fetched {again:,} "
        f"bytes, {refetched / size:.1%} of the archive again (goal <= 10%): "
        f"{'ok' if refetched <= size / 10 else 'OVER GOAL'}"
    )
    extra = resumed - (size - size // 2)
    print(
        f"resume after a cut at 50%: {resumed:,} bytes sent for {size - size // 2:,} missing "
        f"(+{extra:,}; target <= +1 MiB): {'ok' if extra <= 1 << 20 else 'OVER TARGET'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
