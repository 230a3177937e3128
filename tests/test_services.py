"""The test harness's own services hold up on the machines CI runs on.

SeaweedFS by default takes no writes once its disk is below 1 % free, which on a shared 252 GB
disk means "below 2.5 GB": CI failed that way once, with the object storage tests waiting two
minutes for a gateway that never took an object. Here it runs on a real filesystem that is
below 1 % free but still has room for what the tests write.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fullfs import fill, free_bytes, small_tmpfs
from tests.services import SeaweedS3, SeaweedUnavailableError

MIB = 1 << 20


@pytest.mark.timeout(300)
def test_seaweedfs_takes_objects_on_a_disk_below_one_percent_free(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", 1024 * MIB) as disk:
        filler = fill(disk, leave_bytes=10 * MIB)
        free = free_bytes(disk)
        assert free < 1024 * MIB // 100  # below weed's default floor of 1 %
        server = SeaweedS3(disk / "weed")
        server.start()
        try:
            client = server.client()
            client.put_object(Bucket=server.bucket, Key="a/clip.flac", Body=b"\x01" * 65536)
            body = client.get_object(Bucket=server.bucket, Key="a/clip.flac")["Body"].read()
            assert body == b"\x01" * 65536
        finally:
            server.stop()
            filler.unlink()


@pytest.mark.timeout(300)
def test_seaweedfs_on_a_full_disk_fails_at_once_saying_so(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", 256 * MIB) as disk:
        filler = fill(disk, leave_bytes=2 * MIB)  # below the absolute floor too
        server = SeaweedS3(disk / "weed")
        try:
            with pytest.raises(SeaweedUnavailableError, match=r"takes no writes: .*make room"):
                server.start()
            assert server.process is None  # a failed start leaves nothing running
        finally:
            server.stop()
            filler.unlink()
