"""Each C test program in native/tests/ (one per behaviour) builds with the system cc
and passes, so `pytest` alone also covers the C core. The sanitizer runs live in
`make -C native check-asan check-tsan` (scripts/test runs them)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

NATIVE = pathlib.Path(__file__).resolve().parents[2] / "native"
PROGRAMS = sorted(p.stem for p in (NATIVE / "tests").glob("*.c"))
ARGS = {"ring-stress-one-writer-many-readers": ["500000", "8"]}


def test_every_behaviour_has_a_program():
    assert len(PROGRAMS) >= 10, PROGRAMS


@pytest.mark.parametrize("program", PROGRAMS)
def test_native_program_passes(program, tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler on PATH (cc/gcc)")
    exe = tmp_path / program
    subprocess.run(
        [cc, "-O2", "-g", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", f"-I{NATIVE / 'include'}",
         f"-I{NATIVE / 'src'}", str(NATIVE / "tests" / f"{program}.c"), *map(str, sorted((NATIVE / "src").glob("*.c"))),
         "-o", str(exe), "-pthread", "-lm"],
        check=True,
        capture_output=True,
    )
    proc = subprocess.run(
        [str(exe), *ARGS.get(program, [])], capture_output=True, timeout=120, env={"TMPDIR": str(tmp_path)}
    )
    if proc.returncode == 77:
        pytest.skip(f"{program}: {proc.stderr.decode().strip()}")
    assert proc.returncode == 0, proc.stderr.decode()
