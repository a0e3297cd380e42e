"""Process-wide allocator tuning."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import pytest

from allotment import process


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tuning is Linux-only")
def test_allocator_thresholds_are_raised_on_glibc() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not hasattr(libc, "mallopt"):
        pytest.skip("not glibc")
    assert process.tune_allocator() is True


def test_operator_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert process.tune_allocator() is False
