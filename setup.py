"""Build: the data plane's modules compiled to C extensions with mypyc, when a C compiler exists.

The per-request path (parsing callbacks, routing, the exchange, pooled upstream connections,
header scans) is plain, strictly typed Python. mypyc (part of mypy, which type-checks this code
anyway) compiles those modules to C: attribute reads become struct reads and calls between them
direct C calls, which roughly halves the Python cost of a proxied request (bench/README.md).
The Python source stays the one source of truth and runs as is wherever it is not compiled:
``STRANGLER_PURE_PYTHON=1`` at install time, or no C compiler or Python headers on the machine.
`strangler.build()` says which one is running.
"""

from __future__ import annotations

import ast
import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup

# The modules every proxied request runs through. Config-time modules (the loader, the policy
# classes whose constructors validate operator input) stay interpreted: mypyc would turn their
# "must be an integer" errors into bare TypeErrors.
# The list lives in strangler/__init__.py (COMPILED_MODULES), read here without importing it.
_INIT = (Path(__file__).parent / "strangler" / "__init__.py").read_text()
_NAMES = ast.literal_eval(_INIT.split("COMPILED_MODULES = ", 1)[1].split(")", 1)[0] + ")")
COMPILED = [f"strangler/{name}.py" for name in _NAMES]


def _can_compile() -> str | None:
    """None when a C build is possible here, else why not."""
    if os.environ.get("STRANGLER_PURE_PYTHON") == "1":
        return "STRANGLER_PURE_PYTHON=1"
    compiler = os.environ.get("CC", "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (Python.h)"
    return None


def _remove_stale(keep: set[str]) -> None:
    """Delete in-place extensions of modules this build does not compile.

    An editable build puts the extensions beside the sources, where one left by an earlier build
    (a module since dropped from the list, or every one of them before a pure build) would
    shadow its source.
    """
    for extension in (Path(__file__).parent / "strangler").glob("*.so"):
        if extension.name.split(".", 1)[0] not in keep:
            extension.unlink()


def _ext_modules() -> list[object]:
    reason = _can_compile()
    if reason is None:
        try:
            from mypyc.build import mypycify
        except ImportError:
            reason = "mypyc is not installed"
        else:
            _remove_stale({*_NAMES, "_dataplane__mypyc"})
            return list(mypycify(COMPILED, opt_level="3", group_name="strangler._dataplane"))
    print(f"strangler: building pure Python ({reason})", file=sys.stderr)
    _remove_stale(set())
    return []


setup(ext_modules=_ext_modules())
