# Placeholder until the ring core lands (issue 2): compiles a trivial ABI probe so the
# package builds.
from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef("int shadowd_ring_abi_version(void);")
ffibuilder.set_source("shadowd._native", "int shadowd_ring_abi_version(void) { return 0; }")

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
