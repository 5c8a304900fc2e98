"""The C kernels beside the ring core (the candump parser, the divergence scorer, the
model-window sampler): the one place Python code finds them.

``shadowd.ring`` stays the only importer of ``shadowd._native`` and does the module's ABI
handshake when imported; ``kernel`` imports it lazily (so ``shadowd.core`` stays importable and
pure without a build), checks one kernel's own ABI version, and remembers the answer for the
process. A build without the kernel (no compiler, or a stale one) is said once and the caller
runs its Python reference, which gives the same results.
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)

FIELD_TYPES = {"<f4": 0, "<f8": 1, "|u1": 2, "|i1": 3, "|b1": 2, "<u2": 4, "<i2": 5, "<u4": 6, "<i4": 7}
"""numpy field type -> SHADOWD_WINDOW_* (native/include/shadowd/window.h): the frame fields
the C kernels read in place (the model-window sampler, the trigger evaluator)."""


@functools.cache
def kernel(abi_function: str, abi_version: int, what: str):
    """``(ffi, lib)`` when this build has ``what`` at ``abi_version`` (``lib.<abi_function>()``
    says which), else None after one log line."""
    try:
        from .ring import ffi, lib
    except ImportError as err:
        log.info("the C %s is unavailable (%s); using its Python implementation", what, err)
        return None
    check = getattr(lib, abi_function, None)
    if check is not None and check() == abi_version:
        return ffi, lib
    log.warning("shadowd._native has no %s of ABI v%d (stale build); using the Python implementation; rebuild "
                "with `.venv/bin/python -m pip install --no-build-isolation -e .`", what, abi_version)
    return None
