"""Reading task and profile files: YAML with positions, and pydantic errors turned into one line."""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from iacrun.orchestrator.errors import ConfigError
from iacrun.orchestrator.models.taskfile import (
    UNSUPPORTED_DSTACK_FIELDS,
    Profile,
    ProfilesFile,
    TaskConfig,
)
from iacrun.orchestrator.models.validation import first_error, problem

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
TASK_SUFFIX = ".dstack.yml"


class PositionedYaml:
    """A parsed YAML document plus where each key and value starts (1-based line and column)."""

    def __init__(self, text: str, file: str) -> None:
        self.file = file
        self.key_marks: dict[Loc, tuple[int, int]] = {}
        self.value_marks: dict[Loc, tuple[int, int]] = {}
        try:
            node = yaml.compose(text, Loader=_Loader)
            self.data: Any = yaml.load(text, Loader=_Loader) if node is not None else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or exc.context or "invalid YAML"
            raise ConfigError(
                f"YAML syntax error: {problem}; fix the file's indentation or quoting",
                file=file,
                line=mark.line + 1 if mark else None,
                column=mark.column + 1 if mark else None,
            ) from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"YAML error: {exc}", file=file) from exc
        if node is not None:
            self._index(node, ())

    def _index(self, node: yaml.Node, path: Loc) -> None:
        self.value_marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue  # a complex key: pydantic refuses it, without a position
                key = key_node.value
                mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if (*path, key) in self.key_marks:
                    # YAML keeps the last of two equal keys; a dstack user meant one of them
                    raise ConfigError(
                        f'key "{_render_loc((*path, key))}" repeats line '
                        f"{self.key_marks[(*path, key)][0]}; keep one of them",
                        file=self.file,
                        line=mark[0],
                    )
                self.key_marks[(*path, key)] = mark
                self._index(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._index(item, (*path, index))

    def error(self, message: str, loc: Loc = (), *, at_key: bool = False) -> ConfigError:
        marks = self.key_marks if at_key else self.value_marks
        position = marks.get(loc) or self.key_marks.get(loc) or _nearest(self.value_marks, loc)
        return ConfigError(
            message,
            file=self.file,
            line=position[0] if position else None,
            column=position[1] if position else None,
            field=_render_loc(loc) or None,
        )

    def validate(self, model: type[M], what: str) -> M:
        if self.data is None:
            raise self.error(f"the {what} is empty; see examples/hello.dstack.yml")
        if not isinstance(self.data, dict):
            kind = type(self.data).__name__
            raise self.error(f"the {what} must be a mapping of fields, not a {kind}")
        try:
            return model.model_validate(self.data)
        except ValidationError as exc:
            raise self._translate(exc, model) from exc

    def _translate(self, exc: ValidationError, model: type[BaseModel]) -> ConfigError:
        loc, err = first_error(exc)
        if err["type"] == "extra_forbidden" and loc:
            return self.error(_unknown_field_message(model, loc), loc, at_key=True)
        return self.error(problem(err), loc)


def _nearest(marks: dict[Loc, tuple[int, int]], loc: Loc) -> tuple[int, int] | None:
    while loc:
        loc = loc[:-1]
        if loc in marks:
            return marks[loc]
    return marks.get(())


def _render_loc(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _unknown_field_message(model: type[BaseModel], loc: Loc) -> str:
    key = str(loc[-1])
    if len(loc) == 1 and key in UNSUPPORTED_DSTACK_FIELDS:
        return f"'{key}' is not supported: {UNSUPPORTED_DSTACK_FIELDS[key]}"
    fields = _fields_at(model, loc[:-1])
    close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
    hint = f" — did you mean '{close[0]}'?" if close else f" — valid fields: {', '.join(fields)}"
    return f"unknown field '{key}'{hint}"


def _fields_at(model: type[BaseModel], path: Loc) -> list[str]:
    current: type[BaseModel] | None = model
    for part in path:
        if current is None:
            return []
        if isinstance(part, int):
            continue
        info = current.model_fields.get(part)
        current = _model_in(info.annotation) if info else None
    return sorted(current.model_fields) if current is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _model_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no such {what}; check the path", file=str(path)) from None
    except IsADirectoryError:
        raise ConfigError(f"is a folder, not a {what}", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the {what}: {exc}", file=str(path)) from exc


def load_task(path: str | Path) -> TaskConfig:
    """Parse and validate a task file; every problem becomes one ConfigError line."""
    path = Path(path)
    if not path.name.endswith(TASK_SUFFIX):
        raise ConfigError(
            f"task file names must end in {TASK_SUFFIX}; rename it to "
            f"{path.name.split('.')[0]}{TASK_SUFFIX}",
            file=str(path),
        )
    doc = PositionedYaml(read_text(path, "task file"), str(path))
    if isinstance(doc.data, dict) and "type" not in doc.data:
        raise ConfigError('missing "type: task" (iacrun runs tasks)', file=str(path))
    if isinstance(doc.data, dict) and doc.data.get("type") != "task":
        kind = doc.data.get("type")
        raise doc.error(
            f"type {kind!r} is not supported: iacrun runs dstack tasks (type: task)", ("type",)
        )
    return doc.validate(TaskConfig, "task file")


def load_profiles(*paths: Path) -> list[Profile]:
    """Profiles from the given files; a name found earlier shadows the same name found later."""
    found: dict[str, Profile] = {}
    for path in paths:
        if not path.is_file():
            continue
        doc = PositionedYaml(read_text(path, "profiles file"), str(path))
        if doc.data is None:
            continue
        for profile in doc.validate(ProfilesFile, "profiles file").profiles:
            found.setdefault(profile.name, profile)
    return list(found.values())
