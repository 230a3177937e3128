"""CI's bounded run of the coverage-guided fuzz target (tests/fuzz/fuzz_sink.py): thousands of
inputs, at most ~20 s, atheris in a subprocess (libFuzzer owns its process), seeded with the
golden payloads. A crash leaves the input in the test's directory and fails with its trace."""

from __future__ import annotations

import importlib.util
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.corpus import write_seeds

REPO = Path(__file__).resolve().parent.parent.parent
RUNS = 20_000  # or SECONDS, whichever comes first (~1000 inputs a second here)
SECONDS = 20


def test_the_sink_parser_and_reassembler_survive_a_fuzzing_run(tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        # atheris ships wheels for x86-64 Linux only (the dev extra installs it there)
        assert platform.machine() != "x86_64", "atheris is missing: pip install -e '.[dev]'"
        pytest.skip(f"atheris has no wheel for {platform.machine()}")
    corpus = tmp_path / "corpus"
    write_seeds(corpus)
    command = [sys.executable, "-m", "tests.fuzz.fuzz_sink", f"-runs={RUNS}"]
    command += [f"-max_total_time={SECONDS}", "-max_len=8192", "-rss_limit_mb=2048", "-seed=1"]
    command += [f"-dict={REPO / 'tests' / 'fuzz' / 'sink.dict'}"]
    command += [f"-artifact_prefix={tmp_path}/", str(corpus)]
    result = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,  # start-up (instrumentation) and the seed corpus come on top
        check=False,
    )
    log = "\n".join(
        line for line in result.stderr.splitlines() if not line.startswith("INFO: Instrumenting")
    )
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert result.returncode == 0, f"{crashes}\n{log[-6000:]}"
    assert not crashes, f"{crashes}\n{log[-6000:]}"
    done = re.search(r"Done (\d+) runs", log)
    assert done is not None, log[-3000:]
    assert int(done.group(1)) >= 200, log[-3000:]  # it really fuzzed, even on a busy machine
