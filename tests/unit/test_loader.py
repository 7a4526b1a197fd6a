"""The config loader: valid files load into the model, invalid ones report every problem exactly.

Invalid configs are fixture files, each beside the exact error text it must produce
(`tests/fixtures/configs/invalid/NAME.yaml` and `NAME.expected`); messages name the fixture by its
path relative to the repository root, so the loader is run from there.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from strangler.breaker import BreakerPolicy
from strangler.config import Config, Role, Stage
from strangler.loader import ConfigError, ConfigIssue, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path("tests/fixtures/configs")
VALID = sorted(
    [*(REPO / FIXTURES / "valid").glob("*.yaml"), REPO / "config/routes.yaml", REPO / "config/minimal.yaml"]
)
INVALID = sorted((REPO / FIXTURES / "invalid").glob("*.yaml"))


@pytest.fixture(autouse=True)
def _from_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


@pytest.mark.parametrize("path", VALID, ids=lambda p: str(p.relative_to(REPO)))
def test_valid_config_loads(path: Path) -> None:
    config = load_config(path.relative_to(REPO))
    assert isinstance(config, Config)
    assert config.upstreams


def test_there_are_enough_invalid_fixtures() -> None:
    assert len(INVALID) >= 25


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_config_reports_exact_errors(path: Path) -> None:
    expected = path.with_suffix(".expected").read_text(encoding="utf-8").rstrip("\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path.relative_to(REPO))
    assert str(caught.value) == expected
