"""scripts/check_imports.py on small made-up trees: it reports cycles and forbidden imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

CHECKER = Path(__file__).resolve().parents[1] / "scripts" / "check_imports.py"


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def check(root: Path) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, str(CHECKER), str(root)], capture_output=True, text=True, check=False
    )
    assert done.stderr == ""
    return done.returncode, done.stdout.splitlines()


CLEAN = {
    "orchestrator/__init__.py": "from iacrun.orchestrator.api import Orchestrator\n",
    "orchestrator/api.py": """\
        from iacrun.orchestrator import errors
        from iacrun.orchestrator.models.spec import Spec
        from iacrun.stacks.engine import Engine
        """,
    "orchestrator/errors.py": "import json\n",
    "orchestrator/models/__init__.py": "",
    "orchestrator/models/spec.py": "from iacrun.orchestrator.errors import InputError\n",
    "orchestrator/offers/__init__.py": "",
    "orchestrator/offers/model.py": "from iacrun.orchestrator.models.spec import Spec\n",
    "orchestrator/runner/__init__.py": "",
    "orchestrator/runner/runner.py": "import os\n",
    "stacks/__init__.py": "",
    "stacks/engine.py": """\
        from pulumi import automation
        from iacrun.orchestrator.errors import StackError
        from iacrun.orchestrator.runner import runner
        """,
    "cli/__init__.py": "",
    "cli/main.py": "from iacrun.orchestrator import Orchestrator\n",
}


def test_a_tree_that_keeps_the_rules_passes(tmp_path: Path) -> None:
    write(tmp_path, CLEAN)
    assert check(tmp_path) == (0, [])


def test_cycles_through_every_kind_of_import_statement(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            **CLEAN,
            # top level, `from package import submodule`, and an import inside a function
            "orchestrator/a.py": "from iacrun.orchestrator import b\n",
            "orchestrator/b.py": "def f():\n    from iacrun.orchestrator.a import x\n",
            # under TYPE_CHECKING, and a relative import
            "cli/c.py": """\
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    import iacrun.cli.d
                """,
            "cli/d.py": "from .c import C\n",
        },
    )
    code, lines = check(tmp_path)
    assert code == 1
    assert lines == [
        "import cycle: iacrun.cli.c (cli/c.py:3) -> iacrun.cli.d (cli/d.py:1) -> iacrun.cli.c",
        "import cycle: iacrun.orchestrator.a (orchestrator/a.py:1)"
        " -> iacrun.orchestrator.b (orchestrator/b.py:2) -> iacrun.orchestrator.a",
    ]


def test_forbidden_layer_imports(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            **CLEAN,
            "stacks/spec.py": "from iacrun.orchestrator.offers.model import Offer, Gpu\n",
            "stacks/vm.py": "from pulumi.automation import Stack\n",
            # a name spelled as a forbidden module counts, whether the module is there or not
            "orchestrator/models/run.py": "def f():\n    from iacrun.orchestrator import registry",
            "orchestrator/runner/runner.py": "import os\nimport iacrun.orchestrator.errors\n",
        },
    )
    code, lines = check(tmp_path)
    assert code == 1
    assert [line.split(" (forbidden")[0] for line in lines] == [
        "orchestrator/models/run.py:2: iacrun.orchestrator.models.run imports"
        " iacrun.orchestrator.registry",
        "orchestrator/runner/runner.py:2: iacrun.orchestrator.runner.runner imports"
        " iacrun.orchestrator.errors",
        "stacks/spec.py:1: iacrun.stacks.spec imports iacrun.orchestrator.offers.model",
        "stacks/vm.py:1: iacrun.stacks.vm imports pulumi.automation.Stack",
    ]
    assert all(line.split(" (forbidden: ")[1] for line in lines)  # each says why


def test_at_most_eight_modules_directly_under_orchestrator(tmp_path: Path) -> None:
    extra = {f"orchestrator/m{i}.py": "" for i in range(5)}  # 3 + 5 = 8 is the limit
    write(tmp_path, {**CLEAN, **extra})
    assert check(tmp_path) == (0, [])
    write(tmp_path, {"orchestrator/one_more.py": ""})
    assert check(tmp_path)[1] == [
        "orchestrator/: 9 modules directly under it, at most 8"
        " (a newcomer sees the rooms at once; the rest lives in named subpackages)"
    ]
