"""The C library is built here: setuptools runs the cffi builder in native/."""
from setuptools import setup

setup(cffi_modules=["native/build_native.py:ffibuilder"])
