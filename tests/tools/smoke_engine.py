#!/usr/bin/env python3
"""Smoke test: the real Pulumi engine runs an Automation API inline program
with a Python dynamic provider, fully offline (loopback only).

Usage (from the repo root, with a Python that has the pinned ``pulumi`` SDK)::

    python tests/tools/smoke_engine.py [--keep]

If no ``pulumi`` is on PATH it runs ``tests/tools/get-pulumi`` (which builds
the CLI from its Go module, or reuses the cached build) and puts the printed
bin dir on PATH. Exits 0 on success and prints the timings of up and destroy.

Offline guarantees checked here:
  * PULUMI_HOME is a fresh empty temp dir, so there is no plugin cache: every
    plugin the engine loads must come from PATH / next to ``pulumi``.
  * PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true: a missing plugin is an
    error instead of a download attempt.
  * HTTP(S)_PROXY point at a dead loopback port (NO_PROXY covers loopback),
    so any other HTTP request by the CLI fails instead of leaving the box.
  * The engine output is checked for "download" messages.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Everything the engine needs to run offline and non-interactively. The test
# suite should set the same (PULUMI_HOME/PULUMI_BACKEND_URL per test session).
OFFLINE_ENV = {
    "PULUMI_SKIP_UPDATE_CHECK": "true",
    "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    "PULUMI_CONFIG_PASSPHRASE": "x",
    # The dynamic-provider launcher runs `$PULUMI_PYTHON_CMD -m pulumi.dynamic`;
    # it must be this interpreter (same Python + pulumi/dill installed).
    "PULUMI_PYTHON_CMD": sys.executable,
    # Dead proxy: any non-loopback HTTP(S) request fails fast and visibly.
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "localhost,127.0.0.1,::1",
    "no_proxy": "localhost,127.0.0.1,::1",
}


def ensure_pulumi() -> str:
    """Return the path of the `pulumi` binary, putting it on PATH if needed."""
    found = shutil.which("pulumi")
    if found:
        return found
    proc = subprocess.run(
        [os.path.join(HERE, "get-pulumi")], stdout=subprocess.PIPE, text=True, check=True
    )
    bin_dir = proc.stdout.strip().splitlines()[-1]
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    found = shutil.which("pulumi")
    if not found:
        raise SystemExit(f"get-pulumi printed {bin_dir!r} but no pulumi there")
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the temp state dir")
    args = ap.parse_args()

    t0 = time.monotonic()
    pulumi_path = ensure_pulumi()
    t_get = time.monotonic() - t0
    version = subprocess.run(
        [pulumi_path, "version"],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"},
    ).stdout.strip()

    import pulumi
    from pulumi import automation as auto
    from pulumi.dynamic import CreateResult, Resource, ResourceProvider

    print(f"pulumi CLI {version} at {pulumi_path} (get-pulumi {t_get:.2f}s)")
    from importlib.metadata import version as dist_version

    print(f"pulumi SDK {dist_version('pulumi')} on {sys.executable}")

    class EchoProvider(ResourceProvider):
        def create(self, props):
            return CreateResult(id_="x", outs={"value": props["value"], "pid": os.getpid()})

    class Echo(Resource):
        def __init__(self, name, value, opts=None):
            super().__init__(EchoProvider(), name, {"value": value, "pid": None}, opts)

    def program():
        echo = Echo("echo", "hello")
        pulumi.export("greeting", "hi")
        pulumi.export("echo_value", echo.value)  # type: ignore[attr-defined]
        pulumi.export("provider_pid", echo.pid)  # type: ignore[attr-defined]

    tmp = tempfile.mkdtemp(prefix="iacrun-smoke-")
    state_dir = os.path.join(tmp, "state")
    home_dir = os.path.join(tmp, "pulumi-home")
    os.makedirs(state_dir)
    os.makedirs(home_dir)
    env = dict(OFFLINE_ENV)
    env["PULUMI_BACKEND_URL"] = "file://" + state_dir
    env["PULUMI_HOME"] = home_dir

    lines: list[str] = []

    def on_output(line: str) -> None:
        lines.append(line)

    ok = False
    try:
        t = time.monotonic()
        stack = auto.create_or_select_stack(
            stack_name="t1",
            project_name="iacrun",
            program=program,
            opts=auto.LocalWorkspaceOptions(env_vars=env),
        )
        t_select = time.monotonic() - t

        t = time.monotonic()
        up = stack.up(on_output=on_output)
        t_up = time.monotonic() - t
        outs = {k: v.value for k, v in up.outputs.items()}
        assert outs["greeting"] == "hi", outs
        assert outs["echo_value"] == "hello", outs
        assert (
            isinstance(outs["provider_pid"], (int, float)) and outs["provider_pid"] != os.getpid()
        ), outs
        assert up.summary.result == "succeeded", up.summary
        assert (up.summary.resource_changes or {}).get("create") == 2, up.summary.resource_changes

        t = time.monotonic()
        exported = stack.export_stack()
        t_export = time.monotonic() - t
        types = [r.get("type") for r in exported.deployment.get("resources", [])]
        assert "pulumi-python:dynamic:Resource" in types, types

        t = time.monotonic()
        destroy = stack.destroy(on_output=on_output)
        t_destroy = time.monotonic() - t
        assert destroy.summary.result == "succeeded", destroy.summary

        t = time.monotonic()
        stack.workspace.remove_stack("t1")
        t_rm = time.monotonic() - t

        downloads = [ln for ln in lines if "download" in ln.lower()]
        assert not downloads, downloads

        print(f"outputs: {outs}")
        print(f"resource types: {types}")
        print(
            f"timings: create_or_select_stack {t_select:.2f}s, up {t_up:.2f}s, "
            f"export_stack {t_export:.2f}s, destroy {t_destroy:.2f}s, remove_stack {t_rm:.2f}s"
        )
        ok = True
    finally:
        if not ok:
            sys.stderr.write("---- engine output ----\n" + "\n".join(lines) + "\n")
        if args.keep or not ok:
            print(f"state kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
