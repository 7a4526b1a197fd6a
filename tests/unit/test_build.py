"""Which build runs: the data plane compiled by mypyc (setup.py) or interpreted.

CI installs with a C compiler, so there (`STRANGLER_REQUIRE_TOOLS=1`) every module of the list
must be the compiled one: the suite then tests what ships.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
from pathlib import Path

import pytest

import strangler


def _loaded_from_extension(name: str) -> bool:
    spec = importlib.import_module(f"strangler.{name}").__spec__
    assert spec is not None
    return isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)


def test_every_listed_module_exists_as_source() -> None:
    package = Path(strangler.__file__).parent
    missing = [n for n in strangler.COMPILED_MODULES if not (package / f"{n}.py").is_file()]
    assert missing == []


def test_build_says_whether_the_listed_modules_are_compiled() -> None:
    compiled = {name: _loaded_from_extension(name) for name in strangler.COMPILED_MODULES}
    # All or nothing: one build compiles the whole list into one shared library.
    assert len(set(compiled.values())) == 1, compiled
    expected = "compiled" if compiled["server"] else "interpreted"
    assert strangler.build() == expected


def test_config_time_modules_stay_interpreted() -> None:
    # Their constructors validate operator input with messages a compiled build would replace
    # by bare TypeErrors (setup.py).
    for name in ("policies", "config", "loader", "units", "split"):
        assert not _loaded_from_extension(name), name


@pytest.mark.skipif(
    os.environ.get("STRANGLER_REQUIRE_TOOLS") != "1", reason="CI only: a compiler is required"
)
def test_ci_tests_the_compiled_build() -> None:
    assert strangler.build() == "compiled"
