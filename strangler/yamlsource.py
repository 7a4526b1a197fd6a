"""YAML parsing that remembers where every key and value came from.

`parse_yaml` runs PyYAML's safe loader, but builds each mapping as a `LineDict` and each sequence as
a `LineList`, which carry the 1-based line of the node itself, of every key and of every value, so
the config loader can point each error at the offending line. YAML silently lets a later duplicate
key win; here the first one is kept and every repeat is recorded on the mapping (`duplicates`) for
the loader to report with the key's full path.

`Section` reads one such mapping for the loader: it checks the keys (unknown, duplicate, not a
string), converts values with the converters of `strangler.units`, and reports every problem with
its line and key path through a callback instead of raising, so one pass finds them all.

Invariants: only the safe subset of YAML is constructed (no arbitrary objects); a syntax error is
raised as `YamlSyntaxError` carrying the line of the problem, never as a PyYAML exception; a
Section never reads a key it reported as unknown.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

from strangler.units import Convert, Each

__all__ = [
    "DuplicateKey",
    "LineDict",
    "LineList",
    "Report",
    "Section",
    "YamlSyntaxError",
    "describe",
    "parse_yaml",
]

T = TypeVar("T")

_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, slots=True)
class DuplicateKey:
    key: object
    line: int
    first_line: int


class LineDict(dict[Any, Any]):
    """A mapping with `line` (its own start), `key_lines`, `value_lines` and `duplicates`."""

    __slots__ = ("duplicates", "key_lines", "line", "value_lines")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}
        self.value_lines: dict[Any, int] = {}
        self.duplicates: list[DuplicateKey] = []


class LineList(list[Any]):
    """A sequence with `line` (its own start) and `item_lines` (one per item)."""

    __slots__ = ("item_lines", "line")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


class YamlSyntaxError(Exception):
    """The text is not valid YAML; `line` is where the parser gave up (None when unknown)."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _LineLoader(yaml.SafeLoader):
    def construct_line_mapping(self, node: yaml.MappingNode) -> Iterator[LineDict]:
        data = LineDict(_line(node))
        yield data  # the empty container first, so recursive (anchored) structures resolve
        own_keys = {id(key_node) for key_node, _ in node.value if key_node.tag != _MERGE_TAG}
        self.flatten_mapping(node)  # merged pairs come first; the mapping's own keys override them
        seen_own: set[Hashable] = set()
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found an unhashable key",
                    key_node.start_mark,
                )
            if id(key_node) in own_keys:
                if key in seen_own:
                    data.duplicates.append(DuplicateKey(key, _line(key_node), data.key_lines[key]))
                    continue
                seen_own.add(key)
            data[key] = self.construct_object(value_node, deep=False)
            data.key_lines[key] = _line(key_node)
            data.value_lines[key] = _line(value_node)

    def construct_line_sequence(self, node: yaml.SequenceNode) -> Iterator[LineList]:
        data = LineList(_line(node))
        yield data
        for item_node in node.value:
            data.append(self.construct_object(item_node, deep=False))
            data.item_lines.append(_line(item_node))


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_line_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader.construct_line_sequence)


def parse_yaml(text: str) -> object:
    """The document in `text` (None for an empty one), with line-aware mappings and sequences."""
    try:
        return yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"invalid YAML: {exc.problem or exc.context}"
        if exc.context and exc.problem and exc.context_mark is not None:
            message += f" ({exc.context} starting on line {exc.context_mark.line + 1})"
        raise YamlSyntaxError(message, None if mark is None else mark.line + 1) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"invalid YAML: {exc}", None) from exc


Report = Callable[[int | None, str, str], None]  # (line, key path, message)


class Section:
    """A YAML mapping being read at key path `path`; every problem goes to `report`.

    On creation it reports duplicate keys, non-string keys and keys outside `known` (None: any
    key is allowed, e.g. a mapping of upstream names). Readers return a default after reporting,
    so one pass finds every problem. Value problems are reported at the value's line, key
    problems at the key's line; problems of the mapping as a whole (a missing key, a policy
    that rejects its settings) at `line`, the line of the key holding the mapping.
    """

    __slots__ = ("_known", "_report", "line", "node", "path")

    def __init__(
        self,
        node: LineDict,
        path: str,
        known: Collection[str] | None,
        report: Report,
        line: int | None = None,
    ) -> None:
        self.node = node
        self._known = known
        self.path = path
        self.line = node.line if line is None else line
        self._report = report
        for duplicate in node.duplicates:
            report(
                duplicate.line,
                self.key_path(duplicate.key),
                f"duplicate key (first on line {duplicate.first_line})",
            )
        for key in node:
            if not isinstance(key, str):
                self.report_key(key, f"expected a string key, got {key!r}")
            elif known is not None and key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
                self.report_key(key, f"unknown key ({hint})")

    def key_path(self, key: object) -> str:
        return f"{self.path}.{key}" if self.path else str(key)

    def names(self) -> list[str]:
        return [key for key in self.node if isinstance(key, str)]

    def _present(self, key: str) -> bool:
        """Whether `key` is written and known (an unknown key is reported, never read)."""
        return key in self.node and (self._known is None or key in self._known)

    def _value(self, key: str) -> object:
        return self.node[key] if self._present(key) else None

    def has(self, key: str) -> bool:
        """Whether `key` is set (null counts as not set)."""
        return self._value(key) is not None

    def report_at(self, line: int | None, key_path: str, message: str) -> None:
        self._report(line, key_path, message)

    def report_here(self, message: str) -> None:
        self._report(self.line, self.path, message)

    def report_key(self, key: object, message: str) -> None:
        self._report(self.node.key_lines.get(key, self.line), self.key_path(key), message)

    def report_value(self, key: str, message: str) -> None:
        self._report(self.node.value_lines.get(key, self.line), self.key_path(key), message)

    def report_missing(self, key: str) -> None:
        self._report(self.line, self.key_path(key), "required key is missing")

    def convert_value(self, key: str, convert: Convert[Any]) -> tuple[Any, bool]:
        """(converted value of `key`, True), or (None, False) after reporting why not."""
        value = self.node[key]
        if isinstance(convert, Each) and isinstance(value, LineList):
            items, valid = [], True
            for index, (item, line) in enumerate(zip(value, value.item_lines, strict=True)):
                try:
                    items.append(convert.item(item))
                except ValueError as exc:
                    self._report(line, f"{self.key_path(key)}[{index}]", str(exc))
                    valid = False
            return (tuple(items), True) if valid else (None, False)
        try:
            return convert(value), True
        except ValueError as exc:
            self.report_value(key, str(exc))
            return None, False

    def get(self, key: str, convert: Convert[T], default: T) -> T:
        """The converted value of `key`, or `default` when absent or invalid (reported)."""
        if not self._present(key):
            return default
        value, valid = self.convert_value(key, convert)
        return value if valid else default

    def required(self, key: str, convert: Convert[T]) -> T | None:
        if not self._present(key):
            self.report_missing(key)
            return None
        return self.get(key, convert, None)

    def check_key(self, key: str, convert: Convert[object]) -> bool:
        """Whether the key itself is valid by `convert` (e.g. a name); reported if not."""
        try:
            convert(key)
        except ValueError as exc:
            self.report_key(key, str(exc))
            return False
        return True

    def values(self, converters: Mapping[str, Convert[Any]]) -> dict[str, Any] | None:
        """Converted values of the keys present among `converters`; None if any was invalid."""
        found: dict[str, Any] = {}
        all_valid = True
        for key, convert in converters.items():
            if self._present(key):
                found[key], valid = self.convert_value(key, convert)
                all_valid = all_valid and valid
        return found if all_valid else None

    def build(self, factory: Callable[..., T], converters: Mapping[str, Convert[Any]]) -> T | None:
        """`factory(**values)` of a section whose keys are the factory's parameters.

        None when a value is invalid, or when the factory (a policy validating itself in
        `__post_init__`) raises ValueError, reported at this section's key.
        """
        kwargs = self.values(converters)
        return None if kwargs is None else self.construct(factory, kwargs)

    def construct(self, factory: Callable[..., T], kwargs: Mapping[str, Any]) -> T | None:
        """`factory(**kwargs)`; its ValueError is reported at this section's key."""
        try:
            return factory(**kwargs)
        except ValueError as exc:
            self.report_here(str(exc))
            return None

    def section(self, key: str, known: Collection[str] | None) -> Section | None:
        """The mapping under `key` (None when absent or null; reported when not a mapping)."""
        value = self._value(key)
        if value is None:
            return None
        if not isinstance(value, LineDict):
            self.report_value(key, f"expected a mapping, got {describe(value)}")
            return None
        return Section(value, self.key_path(key), known, self._report, self.node.key_lines[key])

    def required_section(self, key: str, known: Collection[str] | None) -> Section | None:
        if not self.has(key):
            self.report_missing(key)
            return None
        return self.section(key, known)

    def section_items(self, key: str, known: Collection[str]) -> list[Section]:
        """A Section for each mapping in the list under `key`; anything else is reported."""
        value = self._value(key)
        if value is None:
            return []
        if not isinstance(value, LineList):
            self.report_value(key, f"expected a list, got {describe(value)}")
            return []
        sections: list[Section] = []
        for index, (item, line) in enumerate(zip(value, value.item_lines, strict=True)):
            path = f"{self.key_path(key)}[{index}]"
            if isinstance(item, LineDict):
                sections.append(Section(item, path, known, self._report))
            else:
                self._report(line, path, f"expected a mapping, got {describe(item)}")
        return sections


def describe(value: object) -> str:
    """How a value is named in messages: "a mapping", "a list", else its repr."""
    if isinstance(value, LineDict):
        return "a mapping"
    if isinstance(value, LineList):
        return "a list"
    return repr(value)
