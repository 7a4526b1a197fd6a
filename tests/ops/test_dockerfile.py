"""The container image definition (issue 11).

Docker cannot build here, so: hadolint must report nothing, the Dockerfile's shape is checked
(stages, pins, user, entrypoint, ports, volume), the HEALTHCHECK command is run against a local
HTTP server, and .dockerignore must let through everything the wheel build needs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from . import REPO, describe, find_tool, run_tool

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PINNED_BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    pairs = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def stages() -> dict[str, list[tuple[str, str]]]:
    """Instructions per stage name, in file order (dicts keep it)."""
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            name = rest.split()[-1] if " AS " in rest.upper() else f"stage{len(result)}"
            current = result.setdefault(name, [])
        current.append((keyword, rest))
    return result


def single(stage: list[tuple[str, str]], keyword: str) -> str:
    (value,) = [rest for kw, rest in stage if kw == keyword]
    return value


def test_hadolint_reports_nothing() -> None:
    result = run_tool(find_tool("hadolint"), "--no-color", DOCKERFILE)
    assert result.returncode == 0, describe(result)
    assert result.stdout.strip() == "", describe(result)


def test_stages_and_default_target() -> None:
    names = list(stages())
    assert names[0] == "builder"
    assert {"builder", "base", "demo", "runtime"} <= set(names)
    # `docker build .` without --target builds the last stage: the proxy.
    assert names[-1] == "runtime"


def test_base_images_are_fully_pinned() -> None:
    images = [rest.split()[0] for kw, rest in instructions() if kw == "FROM"]
    stage_names = set(stages())
    external = [image for image in images if image not in stage_names]
    assert external
    for image in external:
        assert PINNED_BASE.match(image), f"{image} is not a full python:3.11.x-slim-bookworm pin"


def test_runtime_installs_only_the_built_wheels() -> None:
    base = stages()["base"]
    installs = [rest for kw, rest in base if kw == "RUN" and "pip install" in rest]
    assert len(installs) == 1
    (install,) = installs
    assert "--no-index" in install
    assert "--no-cache-dir" in install
    assert "from=builder" in install
    assert re.search(r"/wheels/strangler-\S*\.whl", install)
    # The image refuses to build when the wheel carries an interpreted data plane.
    assert "strangler.build() != 'compiled'" in install
    builder_runs = [rest for kw, rest in stages()["builder"] if kw == "RUN"]
    assert any("pip wheel" in rest for rest in builder_runs)
    # The C compiler mypyc needs lives in the builder only.
    assert any("gcc" in rest for rest in builder_runs)
    assert not any("gcc" in rest for kw, rest in base)


def test_runs_as_numeric_non_root_user() -> None:
    user = single(stages()["base"], "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0, user
    assert not gid or (gid.isdigit() and int(gid) > 0), user


def test_entrypoint_command_ports_and_volume() -> None:
    every = stages()
    assert json.loads(single(every["base"], "ENTRYPOINT")) == ["strangler"]
    assert json.loads(single(every["runtime"], "CMD")) == [
        "serve",
        "--config",
        "/etc/strangler/routes.yaml",
    ]
    assert json.loads(single(every["demo"], "CMD"))[0] == "demo"
    assert set(single(every["base"], "EXPOSE").split()) == {"8080", "9901"}
    assert json.loads(single(every["runtime"], "VOLUME")) == ["/etc/strangler"]


def healthcheck_command() -> list[str]:
    healthcheck = single(stages()["base"], "HEALTHCHECK")
    _, _, command = healthcheck.partition(" CMD ")
    return json.loads(command)


def test_healthcheck_uses_python_not_curl() -> None:
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert "http://127.0.0.1:9901/health/ready" in command[2]
    assert not any(tool in " ".join(command) for tool in ("curl", "wget"))


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health/ready" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)], ids=["ready", "not"])
def test_healthcheck_command_follows_readiness(
    health_server: ThreadingHTTPServer, status: int, healthy: bool
) -> None:
    _Health.status = status
    script = healthcheck_command()[2].replace(":9901/", f":{health_server.server_address[1]}/")
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert (result.returncode == 0) is healthy, describe(result)


def test_healthcheck_command_fails_when_nothing_listens() -> None:
    script = healthcheck_command()[2].replace(":9901/", ":9/")  # discard port, closed
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode != 0


def dockerignore_allows(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    allowed = True
    for line in DOCKERIGNORE.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        regex = (
            re.escape(pattern)
            .replace(r"\*\*/", "(?:.*/)?")
            .replace(r"\*", "[^/]*")
            .replace(r"\[", "[")
            .replace(r"\]", "]")
        )
        if re.fullmatch(f"{regex}(?:/.*)?", path):
            allowed = negate
    return allowed


def test_dockerignore_keeps_what_the_wheel_needs_and_nothing_else() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [
        pattern.rstrip("*")
        for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    needed = ["pyproject.toml", pyproject["project"]["readme"]]
    needed += [f"{package}/__init__.py" for package in packages]
    for path in needed:
        assert dockerignore_allows(path), f".dockerignore excludes {path}, needed by the build"
    for path in (
        ".git/config",
        "tests/ops/test_dockerfile.py",
        "deploy/kubernetes/secret.yaml",
        ".venv/bin/python",
        "strangler/__pycache__/config.cpython-311.pyc",
        "strangler/config.pyc",
    ):
        assert not dockerignore_allows(path), f".dockerignore lets {path} into the context"


def test_dockerignore_allowlist_exists() -> None:
    lines = [line for line in DOCKERIGNORE.read_text().splitlines() if line and line[0] != "#"]
    assert lines[0] == "*", "start from an empty context and allow what the build needs"
