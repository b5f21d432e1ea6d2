"""`python -m iacrun.orchestrator.models.schema`: the task file's JSON Schema, for editors."""

from __future__ import annotations

import json
import sys
from typing import Any

from iacrun.orchestrator.models.taskfile import TaskConfig


def task_schema() -> dict[str, Any]:
    schema = TaskConfig.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "iacrun task (dstack .dstack.yml, type: task)"
    schema["required"] = ["type"]  # as in dstack; load_task refuses a file without it
    return schema


if __name__ == "__main__":
    json.dump(task_schema(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
