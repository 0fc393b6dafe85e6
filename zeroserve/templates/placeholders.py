"""The ``{{inputs.parameters.X}}`` and ``{{inputs.artifacts.X}}`` placeholders of a serving template,
and how values are filled into them: the YAML text is parsed with each placeholder replaced by a
marker, and a value only ever becomes the content of a scalar of the parsed tree, whatever quotes
or newlines it holds, so that no value can inject YAML.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

PLACEHOLDER = re.compile(r"\{\{\s*inputs\.(parameters|artifacts)\.([A-Za-z0-9_-]+)\s*\}\}")
BRACES = re.compile(r"\{\{.*?\}\}", re.DOTALL)
_STR_TAG = "tag:yaml.org,2002:str"
# A placeholder standing alone and unquoted takes the type YAML would give its value, but only a
# scalar type: a value can never turn into a mapping, a list, a merge key or a timestamp.
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null")
)
_RESOLVER = yaml.resolver.Resolver()


@dataclass(frozen=True)
class Marked:
    """YAML text whose placeholders are replaced by plain-scalar-safe markers.

    Filling values into the parsed tree instead of the text is what makes rendering injection
    safe: a value is only ever a scalar's content, whatever quotes or newlines it holds. Parsing
    after marking (not before) keeps SAP's style of unquoted placeholders valid YAML and tells a
    bare placeholder (``minReplicas: {{...}}``, typed like YAML would) from a quoted one (a string).
    """

    text: str
    refs: tuple[tuple[str, str], ...]
    marker: re.Pattern[str]

    @classmethod
    def of(cls, text: str) -> Marked:
        nonce = secrets.token_hex(6)
        while nonce in text:
            nonce = secrets.token_hex(6)
        refs: list[tuple[str, str]] = []

        def mark(placeholder: re.Match[str]) -> str:
            refs.append((placeholder[1], placeholder[2]))
            return f"zs{nonce}x{len(refs) - 1}x"

        marked = PLACEHOLDER.sub(mark, text)
        return cls(marked, tuple(refs), re.compile(f"zs{nonce}x([0-9]+)x"))


def compose(marked: Marked) -> yaml.Node | None:
    return yaml.compose(marked.text, Loader=yaml.SafeLoader)


@dataclass
class Filling:
    marked: Marked
    values: Mapping[tuple[str, str], str]
    typed: bool

    def __post_init__(self) -> None:
        # Anchors and aliases share nodes; the memo keeps them shared and stops on cycles.
        self.memo: dict[int, yaml.Node] = {}

    def value(self, marker: re.Match[str]) -> str:
        return self.values[self.marked.refs[int(marker[1])]]

    def fill(self, node: yaml.Node, *, key: bool = False) -> yaml.Node:
        if id(node) in self.memo:
            return self.memo[id(node)]
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, key=key)
        if isinstance(node, yaml.SequenceNode):
            sequence = yaml.SequenceNode(node.tag, [], node.start_mark, node.end_mark, node.flow_style)
            self.memo[id(node)] = sequence
            sequence.value.extend(self.fill(item) for item in node.value)
            return sequence
        if isinstance(node, yaml.MappingNode):
            mapping = yaml.MappingNode(node.tag, [], node.start_mark, node.end_mark, node.flow_style)
            self.memo[id(node)] = mapping
            mapping.value.extend((self.fill(k, key=True), self.fill(v)) for k, v in node.value)
            return mapping
        return node

    def _scalar(self, node: yaml.ScalarNode, *, key: bool) -> yaml.Node:
        alone = self.marked.marker.fullmatch(node.value)
        if alone and self.typed and not key and node.style is None and node.tag == _STR_TAG:
            value = self.value(alone)
            tag = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))
            tag = tag if tag in _SCALAR_TAGS else _STR_TAG
            return yaml.ScalarNode(tag, value, node.start_mark, node.end_mark, style=None)
        if not self.marked.marker.search(node.value):
            return node
        value = self.marked.marker.sub(self.value, node.value)
        return yaml.ScalarNode(node.tag, value, node.start_mark, node.end_mark, style=node.style)
