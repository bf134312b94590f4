"""YAML as Go reads it (sigs.k8s.io/yaml, kyaml), so preflight accepts what kustomize-controller
accepts: an anchor may be defined again (the later one wins for what follows), merge keys
(`<<`) work, and a custom tag (`!env_var`, `!include`) is kept as its plain value instead of
being refused. Output of `kustomize build` takes the fast C loader; repo files take this one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.events import AliasEvent, MappingStartEvent, ScalarEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_Fast: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class GoLoader(yaml.SafeLoader):
    """SafeLoader with Go's anchor and tag rules."""

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        # yaml.composer.Composer.compose_node, minus the duplicate-anchor error: Go's parser
        # (and so Flux) lets a later `&name` replace an earlier one.
        if self.check_event(AliasEvent):
            event = self.get_event()  # type: ignore[no-untyped-call]
            anchor = event.anchor
            if anchor not in self.anchors:
                raise ComposerError(None, None, f"found undefined alias {anchor!r}",
                                    event.start_mark)
            node: Node = self.anchors[anchor]
            return node
        event = self.peek_event()  # type: ignore[no-untyped-call]
        anchor = event.anchor
        self.descend_resolver(parent, index)
        if self.check_event(ScalarEvent):
            node = self.compose_scalar_node(anchor)
        elif self.check_event(SequenceStartEvent):
            node = self.compose_sequence_node(anchor)
        elif self.check_event(MappingStartEvent):
            node = self.compose_mapping_node(anchor)
        else:  # pragma: no cover - the parser emits nothing else here
            raise ComposerError(None, None, "unexpected event", event.start_mark)
        self.ascend_resolver()
        return node


def _untagged(loader: GoLoader, suffix: str, node: Node) -> Any:
    if isinstance(node, ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, MappingNode):
        return loader.construct_mapping(node, deep=True)
    return None  # pragma: no cover


GoLoader.add_multi_constructor("!", _untagged)
GoLoader.add_multi_constructor("tag:", _untagged)


def parse_all(text: str) -> list[Any]:
    """Every document of a YAML stream: the fast loader first, Go's rules where it refuses."""
    try:
        return list(yaml.load_all(text, Loader=_Fast))
    except (yaml.composer.ComposerError, yaml.constructor.ConstructorError):
        return list(yaml.load_all(text, Loader=GoLoader))


def problem(exc: yaml.YAMLError) -> str:
    """`invalid YAML at line L, column C: <problem>` (1-based, as editors count)."""
    mark = getattr(exc, "problem_mark", None)
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"invalid YAML{where}: {what}"


def manifests(docs: list[Any]) -> list[dict[str, Any]]:
    """The Kubernetes objects of parsed documents (List kinds flattened, empties dropped)."""
    out: list[dict[str, Any]] = []
    for doc in docs:
        if not isinstance(doc, dict) or not doc:
            continue
        if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
            out.extend(d for d in doc["items"] if isinstance(d, dict))
        else:
            out.append(doc)
    return out


def load_file(path: Path) -> list[dict[str, Any]]:
    """The objects of one file; yaml.YAMLError propagates for the caller to name the file."""
    return manifests(parse_all(path.read_text(encoding="utf-8", errors="replace")))
