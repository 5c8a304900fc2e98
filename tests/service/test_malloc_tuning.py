"""The service pins glibc's mmap threshold (``shadowd.daemon._pin_mmap_threshold``) unless the
operator chose one; the RSS effect is measured by ``shadowd bench soak`` (docs/service.md)."""

from __future__ import annotations

import platform

import pytest

from shadowd import daemon

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


@glibc
def test_pins_the_threshold_on_glibc():
    assert daemon._pin_mmap_threshold({}) is True


@pytest.mark.parametrize("environ", [{"MALLOC_MMAP_THRESHOLD_": "65536"},
                                     {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}])
def test_an_operator_setting_wins(environ):
    assert daemon._pin_mmap_threshold(environ) is False


def test_other_tunables_do_not_stop_it():
    env = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert daemon._pin_mmap_threshold(env) is (platform.libc_ver()[0] == "glibc")
