# The only reason this file exists: cffi_modules is a setup() keyword added by cffi and
# cannot move into pyproject.toml. The build script lives beside the package, not in it.
from setuptools import setup

setup(cffi_modules=["native/build_ffi.py:ffibuilder"])
