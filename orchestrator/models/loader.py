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
#: the largest task, profiles or config file read (a real one is a few kilobytes)
MAX_FILE_BYTES = 1 << 20
#: the most values a document may hold once its aliases are expanded (a real file: hundreds)
MAX_EXPANDED_NODES = 50_000
#: the deepest nesting of mappings and lists a document may have
MAX_DEPTH = 64


class PositionedYaml:
    """A parsed YAML document plus where each key and value starts (1-based line and column)."""

    def __init__(self, text: str, file: str) -> None:
        self.file = file
        self.key_marks: dict[Loc, tuple[int, int]] = {}
        self.value_marks: dict[Loc, tuple[int, int]] = {}
        try:
            node = yaml.compose(text, Loader=_Loader)
            if node is not None:
                _check_bounded(node, file)  # before anything is expanded or constructed
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

    def validate(self, model: type[M], what: str, context: dict[str, Any] | None = None) -> M:
        if self.data is None:
            raise self.error(f"the {what} is empty; see examples/hello.dstack.yml")
        if not isinstance(self.data, dict):
            kind = type(self.data).__name__
            raise self.error(f"the {what} must be a mapping of fields, not a {kind}")
        try:
            return model.model_validate(self.data, context=context)
        except ValidationError as exc:
            raise self._translate(exc, model) from exc

    def _translate(self, exc: ValidationError, model: type[BaseModel]) -> ConfigError:
        loc, err = first_error(exc)
        if err["type"] == "extra_forbidden" and loc:
            return self.error(_unknown_field_message(model, loc), loc, at_key=True)
        return self.error(problem(err), loc)


def _check_bounded(root: yaml.Node, file: str) -> None:
    """Refuse a document whose aliases would expand past MAX_EXPANDED_NODES values, that nests
    deeper than MAX_DEPTH, or that refers to itself: measured on the composed graph, where each
    anchored node is held once, so the check costs what the file's text does (an alias bomb of
    500 bytes expands to hundreds of millions of values; it is never expanded)."""
    sizes: dict[int, int] = {}  # id(node) → values under it, aliases expanded
    depths: dict[int, int] = {}  # id(node) → how deep it nests
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            kids = _children(node)
            sizes[key] = 1 + sum(sizes[id(k)] for k in kids)
            depths[key] = 1 + max((depths[id(k)] for k in kids), default=0)
            if sizes[key] > MAX_EXPANDED_NODES:
                raise _refuse(
                    f"aliases expand to more than {MAX_EXPANDED_NODES} values; "
                    "write the values out or use fewer aliases",
                    node,
                    file,
                )
            if depths[key] > MAX_DEPTH:
                raise _refuse(
                    f"values are nested deeper than {MAX_DEPTH} levels; flatten the file",
                    node,
                    file,
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise _refuse("an alias refers to itself (a recursive anchor); remove it", node, file)
        on_path.add(key)
        stack.append((node, True))
        for kid in _children(node):
            if id(kid) in on_path:
                raise _refuse(
                    "an alias refers to itself (a recursive anchor); remove it", kid, file
                )
            if id(kid) not in sizes:
                stack.append((kid, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _refuse(message: str, node: yaml.Node, file: str) -> ConfigError:
    return ConfigError(
        message, file=file, line=node.start_mark.line + 1, column=node.start_mark.column + 1
    )


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
    """The file's text; one that is larger than MAX_FILE_BYTES is refused without being read
    whole (a FIFO or a growing file included: at most one byte past the limit is read)."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ConfigError(
                f"the {what} is larger than {MAX_FILE_BYTES // 1024} KiB; is it the right file?",
                file=str(path),
            )
        return data.decode("utf-8")
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
    # local paths under files and repos are checked from the task file's folder
    return doc.validate(TaskConfig, "task file", {"task_dir": path.resolve().parent})


def key_position(path: Path, loc: Loc) -> tuple[int, int] | None:
    """Where the key at `loc` starts in the YAML file at `path` (line, column); None when the
    file cannot be read or has no such key."""
    try:
        return PositionedYaml(read_text(path, "file"), str(path)).key_marks.get(loc)
    except ConfigError:
        return None


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
