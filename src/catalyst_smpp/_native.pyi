"""Type stub for ``catalyst_smpp._native``, the cffi extension built by native/build_native.py.

cffi makes ``ffi`` and ``lib`` at import time from the C declarations: ``lib`` carries one
attribute per C function and constant, and cffi ships no type information, so both are
``Any`` here.  The typed face of the C core is :mod:`catalyst_smpp.native`.
"""

from typing import Any

ffi: Any
lib: Any
