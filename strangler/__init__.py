"""strangler: a strangler-fig migration proxy.

Route by path prefix (and host, method, header, cookie) to a legacy monolith or to services
extracted from it; shadow and compare, canary with sticky weights, fall back to the monolith when a
new service fails, and report how far the migration has come.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
