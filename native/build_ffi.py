"""cffi build of ``shadowd._native`` (out-of-line API mode) from native/.

Not installed (the cryptography ``_cffi_src`` model): setup.py names it in ``cffi_modules``.
The cdef is the part of each header (include/shadowd/ring.h, candump.h, score.h, window.h)
between the ``cffi-begin`` and ``cffi-end`` markers, so the headers are
the one declaration of the API (cryptography's padding.h model); the sources are compiled into
the extension, nothing is linked from the system but libm. shadowd/ring.py stays the only
importer of the module (one place for the ABI handshake); the other C parts (the candump
parser, the divergence and window kernels) are found through ``shadowd.native.kernel``, which
checks each one's own ABI version.
"""

from __future__ import annotations

import pathlib
import re

from cffi import FFI

NATIVE = pathlib.Path(__file__).resolve().parent
HEADER = NATIVE / "include" / "shadowd" / "ring.h"
HEADERS = [HEADER, *(NATIVE / "include" / "shadowd" / f"{h}.h" for h in ("candump", "score", "window", "trig"))]
SOURCES = [NATIVE / "src" / f"{c}.c" for c in ("ring", "candump", "score", "window", "trig")]


def cdef_text(header: pathlib.Path = HEADER) -> str:
    """The cffi-parsable slice of the header (between the cffi-begin/cffi-end markers)."""
    text = header.read_text()
    match = re.search(r"/\* cffi-begin \*/(.*)/\* cffi-end \*/", text, re.S)
    if not match:
        raise RuntimeError(f"{header}: cffi-begin/cffi-end markers not found")
    return match.group(1)


ffibuilder = FFI()
ffibuilder.cdef("".join(cdef_text(h) for h in HEADERS))
ffibuilder.set_source(
    "shadowd._native",
    "".join(f'#include "shadowd/{h.name}"\n' for h in HEADERS),
    sources=[str(p.relative_to(NATIVE.parent)) for p in SOURCES],
    include_dirs=[str(NATIVE / "include"), str(NATIVE / "src")],
    libraries=["m"],
    # no fused multiply-add: score.c must round as numpy does (native/Makefile passes it too)
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-ffp-contract=off"],
)

if __name__ == "__main__":
    import os

    # In-place build for development: writes shadowd/_native.c and the .so next to the
    # package (both git-ignored), as `pip install -e .` does.
    os.chdir(NATIVE.parent)
    print(ffibuilder.compile(tmpdir=".", target="_native.abi3.so", verbose=False))
