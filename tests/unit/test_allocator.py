"""Tests of strangler.allocator: glibc's thresholds set, an operator's environment respected."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

GLIBC = platform.libc_ver()[0] == "glibc"


def _in_child(env: dict[str, str]) -> str:
    # A child process: mallopt changes the process's allocator for good.
    code = "from strangler.allocator import tune_allocator; print(tune_allocator())"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_thresholds_are_applied_on_glibc() -> None:
    assert _in_child({"PATH": "/usr/bin:/bin"}) == "True"


def test_an_operators_malloc_setting_wins() -> None:
    env = {"PATH": "/usr/bin:/bin", "MALLOC_MMAP_THRESHOLD_": "131072"}
    assert _in_child(env) == "False"
