"""strangler: a strangler-fig migration proxy.

Route by path prefix (and host, method, header, cookie) to a legacy monolith or to services
extracted from it; shadow and compare, canary with sticky weights, fall back to the monolith when a
new service fails, and report how far the migration has come.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util

__version__ = "0.1.0"

__all__ = ["__version__", "build"]

# The modules setup.py compiles with mypyc when it can (the per-request path).
COMPILED_MODULES = (
    "accesslog",
    "breaker",
    "bulkhead",
    "deadlines",
    "dispatch",
    "errors",
    "exchange",
    "headers",
    "metrics",
    "pathnorm",
    "progress",
    "request",
    "retry",
    "routing",
    "runtime",
    "sampling",
    "server",
    "shadow",
    "upstream",
)


def build() -> str:
    """The build in use: "compiled" (the data plane as mypyc C extensions) or "interpreted"."""
    spec = importlib.util.find_spec("strangler.server")
    compiled = spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)
    return "compiled" if compiled else "interpreted"
