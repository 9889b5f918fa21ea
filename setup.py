from setuptools import setup

# The native shim is built by cffi in out-of-line API mode; see native/build_ffi.py.
setup(cffi_modules=["native/build_ffi.py:ffibuilder", "native/build_ffi.py:fastbuilder"])
