"""Hostile YAML (alias bombs, huge or deeply nested files) is refused in one line, in bounded
memory: the loader never expands what it has not bounded first."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from iacrun.orchestrator.errors import ConfigError
from iacrun.orchestrator.models.loader import MAX_FILE_BYTES, load_profiles, load_task
from iacrun.orchestrator.models.settings import load_settings


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The classic "billion laughs": each anchor is a list of `width` aliases of the one before
    (9 levels of 9 is 387 million strings once expanded, from a file of about 500 bytes)."""
    lines = ['a0: &a0 ["lol"' + ', "lol"' * (width - 1) + "]"]
    for level in range(1, levels):
        items = ", ".join(f"*a{level - 1}" for _ in range(width))
        lines.append(f"a{level}: &a{level} [{items}]")
    return "type: task\ncommands: [echo]\n" + "\n".join(lines) + "\n"


#: loads a file in a child process whose address space is capped (so the unfixed loader fails
#: with MemoryError instead of eating the machine) and reports the error and its peak memory
_PROBE = textwrap.dedent(
    """
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    from iacrun.orchestrator.errors import ConfigError
    from iacrun.orchestrator.models.loader import load_task
    try:
        load_task(sys.argv[1])
        error = None
    except ConfigError as exc:
        error = str(exc)
    except MemoryError:
        error = "MemoryError"
    # VmHWM is this program's own peak: ru_maxrss would carry the forking pytest's over execve
    with open("/proc/self/status") as status:
        hwm = next(line for line in status if line.startswith("VmHWM:"))
    peak_mb = int(hwm.split()[1]) / 1024
    print(json.dumps({"error": error, "peak_mb": peak_mb}))
    """
)


def _probe(path: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_alias_bomb_refused_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.dstack.yml"
    path.write_text(alias_bomb())
    assert len(path.read_bytes()) < 600
    result = _probe(path)
    assert result["error"] is not None and "alias" in str(result["error"]), result
    assert float(str(result["peak_mb"])) < 200, result


def test_few_aliases_still_work(tmp_path: Path) -> None:
    path = tmp_path / "ok.dstack.yml"
    path.write_text("type: task\nenv: [A=1]\ncommands: [&c echo $A, *c]\n")
    task = load_task(path)
    assert task.commands == ["echo $A", "echo $A"]
    assert task.env == {"A": "1"}


def test_shared_anchor_used_many_times_counts_expanded(tmp_path: Path) -> None:
    # 10 aliases of a 1000-item list: 10 000 values once expanded, under the limit ...
    items = ", ".join(f"'c{i}'" for i in range(1000))
    text = f"type: task\ncommands: &c [{items}]\n" + "".join(f"x{i}: *c\n" for i in range(10))
    path = tmp_path / "t.dstack.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="unknown field 'x0'"):
        load_task(path)  # expansion allowed: the error is about the unknown field
    # ... 200 aliases of it are 200 000: refused before anything is expanded
    path.write_text(text + "".join(f"y{i}: *c\n" for i in range(200)))
    with pytest.raises(ConfigError, match=r"aliases expand to more than"):
        load_task(path)


def test_recursive_alias_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.dstack.yml"
    path.write_text("type: task\ncommands: [echo]\nloop: &l [1, *l]\n")
    with pytest.raises(ConfigError, match="refers to itself"):
        load_task(path)


def test_deep_nesting_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.dstack.yml"
    deep = "".join("  " * i + f"k{i}:\n" for i in range(300)) + "  " * 300 + "v: 1\n"
    path.write_text("type: task\ncommands: [echo]\nnest:\n" + textwrap.indent(deep, "  "))
    with pytest.raises(ConfigError, match="nested deeper than"):
        load_task(path)


def test_huge_files_refused_before_reading(tmp_path: Path) -> None:
    task = tmp_path / "big.dstack.yml"
    task.write_text("type: task\ncommands: [echo]\n" + "#" * MAX_FILE_BYTES + "\n")
    with pytest.raises(ConfigError, match=r"big\.dstack\.yml: the task file is larger than"):
        load_task(task)
    config = tmp_path / "config.yml"
    config.write_text("#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match="the config file is larger than"):
        load_settings(config)
    profiles = tmp_path / "profiles.yml"
    profiles.write_text("#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match="the profiles file is larger than"):
        load_profiles(profiles)


def test_alias_bomb_in_config_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(alias_bomb().split("\n", 2)[2])
    with pytest.raises(ConfigError, match="alias"):
        load_settings(config)
