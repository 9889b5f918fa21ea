import pathlib

from setuptools import setup

# The native shim is built by cffi in out-of-line API mode; see native/build_ffi.py.
# The RDMA data path needs libibverbs' header (package libibverbs-dev): it is
# built where that exists, and rdma:// says how to get it where it does not.
modules = ["native/build_ffi.py:ffibuilder", "native/build_ffi.py:fastbuilder"]
if pathlib.Path("/usr/include/infiniband/verbs.h").exists():
    modules.append("native/build_ffi.py:verbsbuilder")
setup(cffi_modules=modules)
