#!/usr/bin/env python3
"""Write the `description` of every value in charts/mesp/values.schema.json from values.yaml's comments.

values.yaml is where a value is documented: a comment starting with `# --` (helm-docs' convention)
right above a key, continued by the `#` lines that follow it. Its text, on one line, becomes the
description of that key's node in the schema; a key without such a comment gets none. Everything
else in the schema (types, bounds, patterns, descriptions of nodes that are not keys of values.yaml)
is written by hand and left as it is.

Usage: hack/gen-values-schema.py          rewrite the schema
       hack/gen-values-schema.py --check  exit 1 if the checked-in schema is not what this writes
tests/unit/test_chart.py runs the check.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

CHART = Path(__file__).resolve().parent.parent / "charts" / "mesp"
VALUES = CHART / "values.yaml"
SCHEMA = CHART / "values.schema.json"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):")
_COMMENT = re.compile(r"^ *#(?P<text>.*)$")


def value_comments(text: str) -> dict[str, str]:
    """{'operator.prometheus.url': 'Base URL of ...', ...} for every key with a `# --` comment."""
    comments: dict[str, str] = {}
    parents: list[tuple[int, str]] = []  # (indent, key) of the mappings enclosing the current line
    pending: list[str] | None = None     # the `# --` comment being read, one entry per line
    for line in text.splitlines():
        comment = _COMMENT.match(line)
        if comment:
            body = comment.group("text").strip()
            if body.startswith("--"):
                pending = [body[2:].strip()]
            elif pending is not None:
                pending.append(body)
            continue
        key = _KEY.match(line)
        if key is None:  # list items, blank lines and block scalars end nothing but a comment
            if not line.strip():
                pending = None
            continue
        indent = len(key.group("indent"))
        while parents and parents[-1][0] >= indent:
            parents.pop()
        path = ".".join([k for _, k in parents] + [key.group("key")])
        if pending:
            comments[path] = " ".join(" ".join(pending).split())
        pending = None
        parents.append((indent, key.group("key")))
    return comments


def value_paths(values: dict, prefix: str = ""):
    for key, value in values.items():
        yield prefix + key
        if isinstance(value, dict):
            yield from value_paths(value, f"{prefix}{key}.")


def schema_node(schema: dict, path: str) -> dict | None:
    node = schema
    for part in path.split("."):
        node = (node.get("properties") or {}).get(part)
        if node is None:
            return None
    return node


def with_descriptions(schema: dict, values: dict, comments: dict[str, str]) -> dict:
    """The schema with every values.yaml key's description taken from `comments` (in place)."""
    paths = list(value_paths(values))
    undocumented = sorted(set(comments) - set(paths))
    if undocumented:
        raise ValueError(f"comments on keys that are not values: {undocumented}")
    for path in paths:
        node = schema_node(schema, path)
        if node is None:
            if path in comments:
                raise ValueError(f"values.yaml documents {path}, which values.schema.json does not declare")
            continue  # inside an object the schema leaves open (labels, security contexts, ...)
        if path in comments:
            node["description"] = comments[path]
        else:
            node.pop("description", None)
    return schema


def render() -> str:
    import yaml

    text = VALUES.read_text()
    schema = with_descriptions(json.loads(SCHEMA.read_text()), yaml.safe_load(text), value_comments(text))
    return json.dumps(schema, indent=2) + "\n"


def main(argv: list[str]) -> int:
    fresh = render()
    if argv == ["--check"]:
        if SCHEMA.read_text() != fresh:
            print(f"{SCHEMA.relative_to(CHART.parent.parent)} is out of date: run hack/gen-values-schema.py",
                  file=sys.stderr)
            return 1
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    SCHEMA.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
