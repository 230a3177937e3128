"""Upload throughput of verified clips into S3-compatible object storage (cloud_sink/objects.py)
against a SeaweedFS on loopback (the tests' server, tests/services.py), next to the disk.

Prints, from one run: MB/s of ``S3Clips.upload`` (the upload, then the HEAD that checks size
and sha256 metadata) for N 60-s 16 kHz WAV clips (1.92 MB) one after the other, and for one
15-minute clip (28.8 MB) as one PUT and in parts; next to ``dd conv=fsync`` of the same bytes
on the same disk (SeaweedFS writes there too, so the disk bounds both). Ratios are the point:
the machine is shared.

    .venv/bin/python bench/objects.py [--clips 40] [--long-mb 28.8]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import tempfile
import time
from pathlib import Path

from cloud_sink.objects import S3Clips
from tests.services import SeaweedS3

WAV_60S = 60 * 16_000 * 2 + 44  # 60 s of 16 kHz 16-bit mono WAV


def dd_mb_s(path: Path, out: Path) -> float:
    """MB/s of copying ``path`` with dd, fsynced (the disk's sequential write speed)."""
    start = time.perf_counter()
    subprocess.run(
        ["dd", f"if={path}", f"of={out}", "bs=1M", "conv=fsync", "status=none"], check=True
    )
    elapsed = time.perf_counter() - start
    out.unlink()
    return path.stat().st_size / elapsed / 1e6


def upload_all(s3: S3Clips, files: list[tuple[Path, str]], prefix: str) -> tuple[float, float]:
    """(MB/s wall, CPU seconds of this process) uploading ``files`` one after the other."""
    total = sum(p.stat().st_size for p, _ in files)
    cpu0, start = time.process_time(), time.perf_counter()
    for path, sha in files:
        s3.upload(path, "clips", f"{prefix}/{path.name}", sha256=sha, size=path.stat().st_size)
    return total / (time.perf_counter() - start) / 1e6, time.process_time() - cpu0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40, help="60-s WAV clips (1.92 MB each)")
    parser.add_argument("--long-mb", type=float, default=28.8, help="the long clip's size (MB)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-objects-") as tmp:
        base = Path(tmp)
        server = SeaweedS3(base / "seaweedfs")
        server.start()
        try:
            clips_dir = base / "clips"
            clips_dir.mkdir()
            short: list[tuple[Path, str]] = []
            for i in range(args.clips):
                data = os.urandom(WAV_60S)
                path = clips_dir / f"c{i:03d}.wav"
                path.write_bytes(data)
                short.append((path, hashlib.sha256(data).hexdigest()))
            long_data = os.urandom(int(args.long_mb * 1e6))
            long_path = clips_dir / "long.wav"
            long_path.write_bytes(long_data)
            long = [(long_path, hashlib.sha256(long_data).hexdigest())]
            batch = clips_dir / "all.bin"  # the short clips' bytes as one file, for dd
            with batch.open("wb") as out:
                for path, _ in short:
                    out.write(path.read_bytes())

            disk = dd_mb_s(batch, base / "dd.out")
            disk_long = dd_mb_s(long_path, base / "dd.out")
            parts = S3Clips(server.section(multipart_threshold_mb=8, multipart_chunk_mb=8))
            one_put = S3Clips(server.section(multipart_threshold_mb=5000))
            short_mb_s, short_cpu = upload_all(parts, short, "short")
            put_mb_s, put_cpu = upload_all(one_put, long, "one-put")
            mp_mb_s, mp_cpu = upload_all(parts, long, "parts")
            load = os.getloadavg()
        finally:
            server.stop()
    n_mb = args.clips * WAV_60S / 1e6
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 cores)")
    print(f"disk (dd conv=fsync): {disk:.1f} MB/s ({n_mb:.1f} MB), {disk_long:.1f} MB/s (long)")
    print(
        f"{args.clips} x 60-s WAV ({WAV_60S / 1e6:.2f} MB), one after the other: "
        f"{short_mb_s:.1f} MB/s, {args.clips / (n_mb / short_mb_s):.1f} clips/s, "
        f"sink CPU {short_cpu / args.clips * 1000:.0f} ms per clip; "
        f"ratio to the disk {short_mb_s / disk:.2f}"
    )
    print(
        f"one {args.long_mb:.1f} MB clip: one PUT {put_mb_s:.1f} MB/s (CPU {put_cpu:.2f} s), "
        f"8 MiB parts x4 {mp_mb_s:.1f} MB/s (CPU {mp_cpu:.2f} s); ratio parts / PUT "
        f"{mp_mb_s / put_mb_s:.2f}, parts / disk {mp_mb_s / disk_long:.2f}"
    )


if __name__ == "__main__":
    main()
