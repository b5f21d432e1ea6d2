"""The Pulumi toolchain on a user's machine: exact provider plugins, installed before anything is
created (from a plugin server the test serves on loopback), and a CLI iacrun can install itself."""

from __future__ import annotations

import http.server
import io
import platform
import shutil
import tarfile
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from iacrun.orchestrator.backends.aws import AWSBackend
from iacrun.orchestrator.errors import ToolMissingError
from iacrun.orchestrator.models.settings import AWSSettings
from iacrun.stacks.engine import StackEngine, install_cli
from iacrun.stacks.toolchain import (
    Plugin,
    find_pulumi,
    installed_cli,
    missing_plugins,
    required_plugin,
    sdk_version,
)
from tests.stacks.engine.support import OFFLINE_ENV, REPO

pytestmark = pytest.mark.engine


def _pins() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {d.split("==")[0]: d.split("==")[1] for d in deps if "==" in d}


def test_provider_sdks_are_pinned_exactly_and_their_plugins_follow_them() -> None:
    pins = _pins()
    assert pins["pulumi-aws"] and pins["pulumi-azure-native"]
    assert required_plugin("aws") == Plugin("aws", pins["pulumi-aws"])
    assert required_plugin("azure") == Plugin("azure-native", pins["pulumi-azure-native"])
    assert required_plugin("standin") is None


def test_missing_plugins_compares_exact_versions() -> None:
    need = [Plugin("aws", "7.51.1")]
    assert missing_plugins(need, [Plugin("aws", "7.50.0")]) == need
    assert missing_plugins(need, [Plugin("aws", "7.51.1"), Plugin("random", "4.0.0")]) == []


def _plugin_tarball(name: str) -> bytes:
    """A provider plugin archive as Pulumi's servers lay it out: one executable at the top."""
    script = b"#!/bin/sh\necho 'not a real provider' >&2\nexit 1\n"
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"pulumi-resource-{name}")
        info.size, info.mode = len(script), 0o755
        tar.addfile(info, io.BytesIO(script))
    return out.getvalue()


@pytest.fixture
def plugin_server() -> Iterator[tuple[str, list[str]]]:
    """A loopback plugin mirror serving every plugin archive it is asked for but `missing-*`."""
    requested: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            file = self.path.rsplit("/", 1)[-1]
            if not file.startswith("pulumi-resource-") or "missing" in file:
                self.send_error(404)
                return
            name = file.removeprefix("pulumi-resource-").split("-v")[0]
            body = _plugin_tarball(name)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()


def test_plugins_install_from_a_mirror_at_their_exact_version(
    tmp_path: Path, plugin_server: tuple[str, list[str]]
) -> None:
    url, requested = plugin_server
    engine = StackEngine(tmp_path / "home", env=OFFLINE_ENV)
    assert engine.plugins() == []
    notes: list[str] = []
    engine.install_plugins([Plugin("aws", "7.51.1")], server=url, on_progress=notes.append)
    assert Plugin("aws", "7.51.1") in engine.plugins()
    system = platform.system().lower()
    assert any(f"pulumi-resource-aws-v7.51.1-{system}-" in path for path in requested), requested
    assert notes == ["installing the pulumi aws v7.51.1 plugin (once per iacrun home)"]


def test_a_plugin_that_cannot_be_installed_is_one_line(
    tmp_path: Path, plugin_server: tuple[str, list[str]]
) -> None:
    engine = StackEngine(tmp_path / "home", env=OFFLINE_ENV)
    with pytest.raises(ToolMissingError) as caught:
        engine.install_plugins([Plugin("missing-cloud", "1.2.3")], server=plugin_server[0])
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("the pulumi missing-cloud v1.2.3 plugin could not be installed (")
    assert "iacrun doctor --fix" in message


def test_preflight_installs_the_provider_plugin_once(
    tmp_path: Path, plugin_server: tuple[str, list[str]]
) -> None:
    home = tmp_path / "home"
    environ = {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "IACRUN_PULUMI_PLUGIN_SERVER": plugin_server[0],
    }
    backend = AWSBackend(
        AWSSettings(),
        engine=StackEngine(home, env=OFFLINE_ENV),
        home=home,
        environ=environ,
        user_home=tmp_path,
    )
    notes: list[str] = []
    backend.preflight(notes.append)
    plugin = required_plugin("aws")
    assert plugin is not None
    assert notes == [f"installing the pulumi {plugin} plugin (once per iacrun home)"]
    backend.preflight(notes.append)  # already there: nothing downloaded again
    assert len(notes) == 1
    assert len([p for p in plugin_server[1] if "pulumi-resource-aws" in p]) == 1


def test_the_cli_iacrun_installed_is_used_when_none_is_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.which("pulumi")
    assert real is not None
    home = tmp_path / "home"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_pulumi(home) is None
    target = installed_cli(home)
    assert target.parent.parent.name == f"pulumi-v{sdk_version()}"
    target.parent.mkdir(parents=True)
    target.symlink_to(real)
    assert find_pulumi(home) == str(target)
    engine = StackEngine(home, env=OFFLINE_ENV)
    assert engine.pulumi == str(target)
    assert engine.stack_names() == []  # the installed CLI really runs


def test_installing_the_cli_without_internet_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens: the download fails here
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(ToolMissingError) as caught:
        install_cli(tmp_path / "home")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"could not install pulumi {sdk_version()} into ")
    assert not installed_cli(tmp_path / "home").exists()
