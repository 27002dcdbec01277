"""cffi build script for the C core (out-of-line API mode).

Run by setuptools through ``cffi_modules`` in ``setup.py``; it must never import
``catalyst_smpp`` itself.  Every ``native/csmpp_*.c`` file is compiled into the
single extension module ``catalyst_smpp._native``.  The declarations that
Python may call are taken from each ``native/csmpp_*.h`` header, between the
lines ``/* cdef:begin */`` and ``/* cdef:end */``; everything outside those
markers (include guards, macros, comments for C readers) is C-only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
_CDEF = re.compile(r"/\*\s*cdef:begin\s*\*/(.*?)/\*\s*cdef:end\s*\*/", re.S)


def _headers() -> list[Path]:
    return sorted(HERE.glob("csmpp_*.h"))


def _sources() -> list[str]:
    # setuptools wants paths relative to the project root (the cwd of the build)
    root = Path.cwd()
    out = []
    for p in sorted(HERE.glob("csmpp_*.c")):
        try:
            out.append(os.path.relpath(p, root))
        except ValueError:  # different drive (not on Linux)
            out.append(str(p))
    return out


def _cdef_text() -> str:
    parts = []
    for h in _headers():
        found = _CDEF.findall(h.read_text())
        if not found:
            raise RuntimeError(f"{h.name}: no /* cdef:begin */ ... /* cdef:end */ section")
        parts.extend(found)
    return "\n".join(parts)


ffibuilder = FFI()
ffibuilder.cdef(_cdef_text())
ffibuilder.set_source(
    "catalyst_smpp._native",
    "\n".join(f'#include "{h.name}"' for h in _headers()),
    sources=_sources(),
    include_dirs=[os.path.relpath(HERE, Path.cwd())],
    extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
