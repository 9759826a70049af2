"""Named configurations in YAML files, validated by pydantic against plain dataclasses: the one loader
of `pipelines.yaml` (curation/pipeline_config.py) and `training.yaml` (train/config.py). Here, below
both (`dataset` is the package both import), so the two files behave alike:

- `extends: NAME` starts from entry NAME of the same file (or of `base_file`, for a file of one entry)
  and merges the entry's own keys in, mapping by mapping; a cycle is an error;
- `KEY=VALUE` overrides (`--set`; the value read as YAML) are applied before validation, so an
  override is checked exactly as the file is;
- every key is checked by pydantic in strict mode: an unknown key, or a value of the wrong type (a
  string for a number, 1 for a boolean, 2.5 for an integer), is an error naming the file, the entry
  and the dotted key. Validation goes through JSON (`validate_json(strict=True)`): pydantic's strict
  mode takes a nested dataclass from a JSON object but wants an instance from a Python dict.
"""
from __future__ import annotations

import dataclasses
import json
import re
import typing

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

_FORBID = ConfigDict(extra="forbid")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_ADAPTERS: dict[type, TypeAdapter] = {}


def read_yaml(path: str, what: str, error: type[Exception]):
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None


def resolve(entry, where: str, path: str, named: dict | None, chain: list, error: type[Exception],
            base_file: str | None = None, entry_word: str = "configuration") -> dict:
    """The entry with its `extends:` chain merged in (the entry's own keys win, mapping by mapping)."""
    if not isinstance(entry, dict):
        raise error(f"{where}: expected a mapping, got {type(entry).__name__}")
    entry = dict(entry)
    base = entry.pop("extends", None)
    if base is None:
        return entry
    if named is None:  # a file of one entry extends an entry of the default file
        if base_file is None:
            raise error(f"{where}: extends {base!r}, but this file has no named entries")
        path, named = base_file, read_yaml(base_file, "configurations", error)
    if not isinstance(base, str) or base not in (named or {}):
        raise error(f"{where}: extends {base!r}, which is not a {entry_word} of {path}")
    if base in chain:
        raise error(f"{where}: extends {base!r} in a cycle ({' -> '.join(map(str, chain + [base]))})")
    return merge(resolve(named[base], f"{path}: {entry_word} {base!r}", path, named, chain + [base], error,
                         base_file, entry_word), entry)


def merge(base: dict, own: dict) -> dict:
    out = dict(base)
    for key, value in own.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def apply_override(body: dict, item: str, where: str, error: type[Exception]) -> None:
    """`item` ("dotted.key=value", the value read as YAML) set in `body`."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise error(f"{where}: override {item!r}: expected KEY=VALUE (e.g. render.samples=64)")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise error(f"{where}: override {item!r}: value is not valid YAML: {exc}") from None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads 3e-4 (no dot) as a string
    parts = key.strip().split(".")
    node = body
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise error(f"{where}: override {item!r}: {'.'.join(parts[:i + 1])!r} is not a mapping")
        node = child
    node[parts[-1]] = value


def build(cls, data: dict, where: str, error: type[Exception]):
    """`cls` (a dataclass) from `data`, every key checked; `error` names the first bad key."""
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        _forbid_extra(cls, set())
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    try:
        return adapter.validate_json(json.dumps(data), strict=True)
    except ValidationError as exc:
        raise error(f"{where}: {_describe(cls, exc.errors())}") from None


def _forbid_extra(tp, seen: set) -> None:
    # every dataclass of the tree refuses keys it does not have (pydantic reads the class's own config)
    for arg in typing.get_args(tp):
        _forbid_extra(arg, seen)
    if dataclasses.is_dataclass(tp) and tp not in seen:
        seen.add(tp)
        tp.__pydantic_config__ = _FORBID
        for hint in typing.get_type_hints(tp).values():
            _forbid_extra(hint, seen)


_MEMBERS = {"int", "float", "bool", "str"}  # a union's member, as pydantic appends it to the location


def _describe(cls, errors: list[dict]) -> str:
    err = errors[0]
    loc = [str(p) for p in err["loc"]]
    if loc and loc[-1] in _MEMBERS:  # a union: every member failed; say them all at the field's key
        loc = loc[:-1]
        members = [str(e["loc"][-1]) for e in errors if [str(p) for p in e["loc"][:-1]] == loc]
        value = err.get("input")
        return f"key {'.'.join(loc)!r}: expected {' or '.join(members)}, got {type(value).__name__} {value!r}"
    dotted = ".".join(loc)
    if err["type"] == "unexpected_keyword_argument":
        owner = _owner(cls, loc[:-1])
        allowed = sorted(f.name for f in dataclasses.fields(owner)) if owner else []
        return f"unknown key {dotted!r} (allowed here: {', '.join(allowed)})"
    value = err.get("input")
    if err["type"] == "dataclass_type":
        return f"key {dotted!r}: expected a mapping, got {type(value).__name__} {value!r}"
    if not loc:
        return f"expected a mapping ({err['msg']})"
    return f"key {dotted!r}: expected {_expected(err)}, got {type(value).__name__} {value!r} ({err['msg']})"


def _expected(err: dict) -> str:
    kind = err["type"].split("_")[0]
    return {"int": "int", "float": "float", "bool": "bool", "string": "str", "list": "a list",
            "dict": "a mapping", "literal": "one of the allowed values"}.get(kind, err["type"])


def _owner(cls, path: list[str]):
    """The dataclass at `path` below `cls` (list indices and dict keys skipped), or None."""
    tp = cls
    for part in path:
        if not dataclasses.is_dataclass(tp):
            args = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
            tp = args[0] if args else None
            if tp is None:
                return None
        hints = typing.get_type_hints(tp)
        if part not in hints:
            continue  # an index or a mapping key
        tp = hints[part]
    while tp is not None and not dataclasses.is_dataclass(tp):
        args = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        tp = args[0] if args else None
    return tp
