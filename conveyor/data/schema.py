"""The schema: what each feature should be, in a YAML file meant to be edited by hand.

A bad file is refused with its name and line (from YAML's node marks) and, for a misspelt
key, the key it probably meant. Comments are not kept when conveyor writes a schema, but a
hand-written file is copied as it is by ImportSchemaGen.

    features:
      - {name: product, type: string, presence: {min_fraction: 1.0}, domain: {values: [...]}}
      - {name: age, type: int, domain: {min: 17, max: 90}, drift_comparator: {auto: true}}
      - {name: consumer_disputed, type: int, not_in_environments: [SERVING]}
      - {name: old_score, type: float, deprecated: true}
    default_environments: [TRAINING, SERVING]
    dataset_constraints: {min_examples_count: 1000}

A comparator maps tests to thresholds: distances (``l_infinity``, ``jensen_shannon``,
``wasserstein``) flag drift above theirs, p-value tests (``ks``, ``chi_squared``,
``z_proportion``) below theirs, and ``{auto: true}`` picks the test and threshold as Evidently
does (``{auto: false}`` alone turns the comparison off); ``conveyor.data.drift`` gives the formulas.
A ``deprecated`` feature (TFDV's ``lifecycle_stage: DEPRECATED``) is kept in the file but
checked for nothing: neither its absence nor its values are anomalies.

The file is UTF-8 (a byte-order mark, CRLF line ends and UTF-16 with its mark are read too).
"""

from __future__ import annotations

import codecs
import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from conveyor import artifacts
from conveyor.data.drift import P_VALUE_TESTS, TESTS
from conveyor.exceptions import DataValidationError

FEATURE_TYPES = ("int", "float", "string", "bool", "date", "datetime", "other")
"""``date``, ``datetime`` (with or without a time zone): only presence is checked, and the type.
``other``: a column conveyor does not summarise (times, durations, lists, structs); only presence is checked."""

MAX_CATEGORICAL = 100
PRESENCE_SLACK = 0.9
WIDTH = 100


@dataclass
class Presence:
    """How often a feature must hold a value (TFDV's ``presence``): a fraction of rows, a count."""

    min_fraction: float | None = None
    min_count: int | None = None


@dataclass
class Domain:
    """Allowed values (categorical) or a range (numeric).

    ``min_mass`` is TFDV's ``distribution_constraints.min_domain_mass``: the share of values
    that must be in ``values`` (1.0, the default, allows none outside).
    """

    values: list[Any] | None = None
    min: float | None = None
    max: float | None = None
    min_mass: float | None = None


@dataclass
class Feature:
    name: str
    type: str
    presence: Presence | None = None
    domain: Domain | None = None
    skew_comparator: dict[str, Any] | None = None
    drift_comparator: dict[str, Any] | None = None
    in_environments: list[str] = field(default_factory=list)
    not_in_environments: list[str] = field(default_factory=list)
    deprecated: bool = False


@dataclass
class DatasetConstraints:
    """Rules on the number of examples; ``num_examples_drift`` bounds the ratio to the baseline's."""

    min_examples_count: int | None = None
    max_examples_count: int | None = None
    num_examples_drift: dict[str, float] | None = None


@dataclass
class Schema:
    """Features, the environments they live in, and dataset-wide constraints.

    Example:
        >>> schema = Schema.load("schema.yaml")
        >>> schema.feature("age").domain
        Domain(values=None, min=17, max=90, min_mass=None)
        >>> schema.save("schema.yaml")
    """

    features: list[Feature] = field(default_factory=list)
    default_environments: list[str] = field(default_factory=list)
    dataset_constraints: DatasetConstraints | None = None

    def feature(self, name: str) -> Feature | None:
        return next((f for f in self.features if f.name == name), None)

    def environments(self) -> set[str]:
        named = {e for f in self.features for e in (*f.in_environments, *f.not_in_environments)}
        return set(self.default_environments) | named

    def in_environment(self, feature: Feature, environment: str) -> bool:
        """TFDV's rule: in_environments decides when set, then not_in_environments, then the defaults."""
        if feature.in_environments:
            return environment in feature.in_environments
        if environment in feature.not_in_environments:
            return False
        return not self.default_environments or environment in self.default_environments

    def check_environment(self, environment: str) -> None:
        """TRAINING and SERVING are always known; another name must appear in the schema."""
        known = self.environments() | {"TRAINING", "SERVING"}
        if environment not in known:
            msg = f"Environment {environment!r} is not in the schema, which names {sorted(known)}.{_did_you_mean(environment, known)}"
            raise DataValidationError(msg)

    def to_yaml(self) -> str:
        """Each feature is dumped apart (an item's text does not depend on its neighbours), once where libyaml can."""
        features = [_feature_dict(f) for f in self.features]
        rest: dict[str, Any] = {}
        if self.default_environments:
            rest["default_environments"] = _Flow(self.default_environments)
        if self.dataset_constraints is not None:
            rest["dataset_constraints"] = _FlowMap(_drop_empty(vars(self.dataset_constraints)))
        if _shared_containers([*features, rest]):  # anchored (&id001) and numbered across the whole file
            return _dump({"features": [_layout(d) for d in features], **rest})
        items = "".join(_feature_lines(d) for d in features)
        return ("features:\n" + items if items else "features: []\n") + (_dump(rest) if rest else "")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        """Read and check a schema file; ``path`` may be the file or a Schema artifact's folder."""
        p = Path(path)
        p = p / artifacts.Schema.FILE if p.is_dir() else p
        return cls.from_yaml(read_schema_text(p), source=str(p))

    @classmethod
    def from_yaml(cls, text: str, source: str = "<schema>") -> Schema:
        try:
            root = yaml.compose(text, Loader=_Loader)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line = f":{mark.line + 1}" if mark else ""
            msg = f"{source}{line}: not valid YAML: {e.problem or e.context}{_tab_hint(text, mark)}."
            raise DataValidationError(msg) from None
        return _Reader(source).schema(root)


# libyaml's parser where PyYAML was built with it (its wheels are): 12x the pure-Python one on
# a schema, with the same nodes and marks. (Its emitter indents lists its own way: _libyaml_lines fixes that.)
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):  # type: ignore[valid-type,misc]
    """YAML as people write it: ``1.0e6`` and ``1e6`` are numbers (YAML 1.1 reads them as strings)."""


_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+)$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789"))


def read_schema_text(path: Path) -> str:
    """A schema file's text: UTF-8, or UTF-16 when it starts with its byte-order mark (as YAML allows, and Notepad's "Unicode" saves)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        msg = f"Cannot read the schema file {path}: {e}."
        raise DataValidationError(msg) from e
    encoding = "utf-16" if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        msg = f"{path}:{line}: not {encoding.upper()} text (byte {data[e.start]:#04x}); save the schema file as UTF-8."
        raise DataValidationError(msg) from None


def _tab_hint(text: str, mark: yaml.Mark | None) -> str:
    """A hint when the error is at a tab, which libyaml's message does not name."""
    lines = text.splitlines()
    at = lines[mark.line][mark.column : mark.column + 1] if mark and mark.line < len(lines) else ""
    return " (a tab: YAML indents with spaces)" if at == "\t" else ""


def _did_you_mean(word: str, choices: Sequence[str] | set[str], cutoff: float = 0.6) -> str:
    """A hint naming the closest choice, ignoring case (``serving`` is ``SERVING`` misspelt)."""
    folded = {c.casefold(): c for c in sorted(choices)}
    close = difflib.get_close_matches(word.casefold(), folded, n=1, cutoff=cutoff)
    return f" Did you mean {folded[close[0]]!r}?" if close else ""


# --- reading, with line numbers -------------------------------------------------------------


class _Reader:
    """Turns the composed YAML node tree into a Schema, failing with ``file:line`` on any error."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.loader = _Loader("")
        self.environment_names: list[tuple[str, yaml.Node, str]] = []

    def fail(self, node: yaml.Node, message: str) -> NoReturn:
        msg = f"{self.source}:{node.start_mark.line + 1}: {message}"
        raise DataValidationError(msg)

    def construct(self, node: yaml.Node) -> Any:
        """The node's value; an explicit tag YAML cannot apply (``!!int abc``, ``!!python/name:...``) is the file's error."""
        try:
            return self.loader.construct_object(node)
        except (yaml.YAMLError, ValueError, LookupError, AttributeError, TypeError):
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            self.fail(node, f"cannot read {node.value!r} as {tag}; remove the tag.")

    def mapping(self, node: yaml.Node, keys: Sequence[str], what: str) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping such as {{{keys[0]}: ...}}.")
        out: dict[str, yaml.Node] = {}
        for k, v in node.value:
            key = self.construct(k)
            if not isinstance(key, str) or key not in keys:
                self.fail(
                    k, f"{what}: unknown key {key!r}.{_did_you_mean(str(key), keys)} Known keys: {', '.join(keys)}."
                )
            if key in out:
                self.fail(k, f"{what}: key {key!r} is given twice.")
            out[key] = v
        return out

    def scalar(self, node: yaml.Node, what: str, kinds: tuple[type, ...], expected: str) -> Any:
        value = self.construct(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            self.fail(node, f"{what} must be {expected}, got {_show(node, self.loader)}.")
        return value

    def number(self, node: yaml.Node, what: str, lo: float | None = None, hi: float | None = None) -> float:
        value = self.scalar(node, what, (int, float), "a number")
        if math.isnan(value):
            self.fail(node, f"{what} must be a number, got {node.value!r} (not a number).")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            allowed = f"between {lo} and {hi}" if hi is not None else f"{lo} or more"
            self.fail(node, f"{what} must be {allowed}, got {value}.")
        return value

    def count(self, node: yaml.Node, what: str) -> int:
        value = self.scalar(node, what, (int,), "a whole number")
        if value < 0:
            self.fail(node, f"{what} must be 0 or more, got {value}.")
        return value

    def names(self, node: yaml.Node, what: str) -> list[str]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, f"{what} must be a list such as [TRAINING, SERVING].")
        names = [self.scalar(n, what, (str,), "a name") for n in node.value]
        self.environment_names += [(name, n, what) for name, n in zip(names, node.value, strict=True)]
        return names

    def check_environment_names(self, defaults: list[str]) -> None:
        """A name a case or a letter away from a known environment is a typo that would change what is checked.

        Other names are the user's own environments, as in TFDV: ``EXPORT``, and ``SERVING_EU`` or
        ``TRAINING2``, which extend a known name rather than misspell it.
        """
        for name, node, what in self.environment_names:
            known = {"TRAINING", "SERVING"} | (set() if what == "default_environments" else set(defaults))
            if name in known or any(len(name) > len(k) and name.casefold().startswith(k.casefold()) for k in known):
                continue
            hint = _did_you_mean(name, known, cutoff=0.85)
            if hint:
                self.fail(node, f"{what}: unknown environment {name!r}.{hint} Known: {', '.join(sorted(known))}.")

    def schema(self, root: yaml.Node | None) -> Schema:
        if root is None:
            msg = f"{self.source}:1: the schema file is empty; it needs at least `features: [...]`."
            raise DataValidationError(msg)
        top = self.mapping(root, ("features", "default_environments", "dataset_constraints"), "the schema")
        features: list[Feature] = []
        if "features" in top:
            node = top["features"]
            if not isinstance(node, yaml.SequenceNode):
                self.fail(node, "features must be a list of mappings, one per feature: - {name: ..., type: ...}.")
            lines: dict[str, int] = {}
            for item in node.value:
                f = self.feature(item)
                if f.name in lines:
                    self.fail(item, f"feature {f.name!r} is given twice (first on line {lines[f.name]}).")
                lines[f.name] = item.start_mark.line + 1
                features.append(f)
        envs = self.names(top["default_environments"], "default_environments") if "default_environments" in top else []
        self.check_environment_names(envs)
        constraints = self.constraints(top["dataset_constraints"]) if "dataset_constraints" in top else None
        return Schema(features, envs, constraints)

    def feature(self, node: yaml.Node) -> Feature:
        named = [v for k, v in node.value if k.value == "name"] if isinstance(node, yaml.MappingNode) else []
        scalar_name = named and isinstance(named[0], yaml.ScalarNode)
        m = self.mapping(node, _FEATURE_KEYS, f"feature {named[0].value!r}" if scalar_name else "a feature")
        if "name" not in m or "type" not in m:
            self.fail(node, "a feature needs a name and a type: - {name: age, type: int}.")
        name = self.scalar(m["name"], "a feature's name", (str,), "a string")
        if not name:
            self.fail(m["name"], "a feature's name is empty; write the column's name.")
        where = f"feature {name!r}"
        type_ = self.scalar(m["type"], f"{where}: type", (str,), "a string")
        if type_ not in FEATURE_TYPES:
            self.fail(
                m["type"],
                f"{where}: unknown type {type_!r}.{_did_you_mean(type_, FEATURE_TYPES)} Types: {', '.join(FEATURE_TYPES)}.",
            )
        f = Feature(name, type_)
        if "presence" in m:
            p = self.mapping(m["presence"], ("min_fraction", "min_count"), f"{where}: presence")
            f.presence = Presence(
                self.number(p["min_fraction"], f"{where}: presence.min_fraction", 0, 1)
                if "min_fraction" in p
                else None,
                self.count(p["min_count"], f"{where}: presence.min_count") if "min_count" in p else None,
            )
        if "domain" in m:
            f.domain = self.domain(m["domain"], f, where)
        for key in ("skew_comparator", "drift_comparator"):
            if key in m:
                setattr(f, key, self.comparator(m[key], f"{where}: {key}"))
        for key in ("in_environments", "not_in_environments"):
            if key in m:
                setattr(f, key, self.names(m[key], f"{where}: {key}"))
        if f.in_environments and f.not_in_environments:
            self.fail(
                m["not_in_environments"],
                f"{where}: in_environments alone decides where a feature belongs, so not_in_environments "
                f"would be ignored; keep one of the two.",
            )
        if "deprecated" in m:
            f.deprecated = self.scalar(m["deprecated"], f"{where}: deprecated", (bool,), "true or false")
        return f

    def domain(self, node: yaml.Node, f: Feature, where: str) -> Domain:
        m = self.mapping(node, ("values", "min", "max", "min_mass"), f"{where}: domain")
        if not m:
            self.fail(
                node, f"{where}: the domain is empty, so it allows anything; give values or min/max, or remove it."
            )
        d = Domain()
        if f.type in ("other", "date", "datetime"):
            an = "an" if f.type == "other" else "a"
            self.fail(node, f"{where}: {an} {f.type} feature takes no domain (only its presence is checked).")
        if "values" in m:
            if f.type == "float":
                self.fail(m["values"], f"{where}: a float feature takes a range {{min, max}}, not values.")
            if not isinstance(m["values"], yaml.SequenceNode):
                self.fail(m["values"], f"{where}: domain.values must be a list.")
            kinds, expected = _VALUE_KINDS[f.type]
            d.values, seen = [], set[Any]()
            for n in m["values"].value:
                value = self.scalar(n, f"{where}: a domain value", kinds, expected)
                if value in seen:
                    self.fail(n, f"{where}: domain.values lists {value!r} twice.")
                d.values.append(value)
                seen.add(value)
        for key in ("min", "max"):
            if key in m:
                if f.type not in ("int", "float") or "values" in m:
                    self.fail(m[key], f"{where}: domain.{key} is for int and float features without domain.values.")
                setattr(d, key, self.number(m[key], f"{where}: domain.{key}"))
        if d.min is not None and d.max is not None and d.min > d.max:
            self.fail(node, f"{where}: domain.min ({d.min}) is above domain.max ({d.max}).")
        if "min_mass" in m:
            if "values" not in m:
                self.fail(
                    m["min_mass"], f"{where}: domain.min_mass is the share of values in domain.values; add values."
                )
            d.min_mass = self.number(m["min_mass"], f"{where}: domain.min_mass", 0, 1)
        return d

    def comparator(self, node: yaml.Node, what: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for test, v in self.mapping(node, TESTS, what).items():
            if test == "auto":
                out[test] = self.scalar(v, f"{what}: auto", (bool,), "true or false")
            else:
                hi = 1 if test in P_VALUE_TESTS or test in ("l_infinity", "jensen_shannon") else None
                out[test] = self.number(v, f"{what}: {test}", 0, hi)
        return out

    def constraints(self, node: yaml.Node) -> DatasetConstraints:
        keys = ("min_examples_count", "max_examples_count", "num_examples_drift")
        m = self.mapping(node, keys, "dataset_constraints")
        c = DatasetConstraints()
        for key in keys[:2]:
            if key in m:
                setattr(c, key, self.count(m[key], f"dataset_constraints.{key}"))
        lo, hi = c.min_examples_count, c.max_examples_count
        if lo is not None and hi is not None and lo > hi:
            self.fail(node, f"dataset_constraints: min_examples_count ({lo}) is above max_examples_count ({hi}).")
        if "num_examples_drift" in m:
            what = "dataset_constraints.num_examples_drift"
            r = self.mapping(m["num_examples_drift"], ("min_fraction", "max_fraction"), what)
            c.num_examples_drift = {k: self.number(v, f"{what}.{k}", 0) for k, v in r.items()}
            low, high = c.num_examples_drift.get("min_fraction"), c.num_examples_drift.get("max_fraction")
            if low is not None and high is not None and low > high:
                self.fail(m["num_examples_drift"], f"{what}: min_fraction ({low}) is above max_fraction ({high}).")
        return c


_FEATURE_KEYS = (
    "name", "type", "presence", "domain", "skew_comparator", "drift_comparator", "in_environments", "not_in_environments",
    "deprecated",
)  # fmt: skip
_VALUE_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    "string": ((str,), "a string (quote values YAML reads as something else: 'Yes', 'No', 'On', '02134')"),
    "int": ((int,), "a whole number"),
    "bool": ((bool,), "true or false"),
}


def _show(node: yaml.Node, loader: yaml.SafeLoader) -> str:
    if not isinstance(node, yaml.ScalarNode):
        return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
    value = loader.construct_object(node)
    return f"{node.value!r} (read as {type(value).__name__})" if not isinstance(value, str) else repr(value)


# --- writing: one line per feature where it fits, stable key order --------------------------


class _Flow(list):
    """A list written inline: [a, b]."""


class _FlowMap(dict):
    """A mapping written inline: {a: 1}."""


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


class _CDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """libyaml's emitter, 10-30x PyYAML's: same bytes for printable ASCII on one line, lists indentless."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    """Double quotes for NEL (U+0085): PyYAML writes it raw in single quotes, and YAML reads that back as a space."""
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if "\x85" in value else None)


for _dumper in (_Dumper, _CDumper):
    _dumper.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789"))
    _dumper.add_representer(str, _represent_str)
    _dumper.add_representer(_Flow, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))
    _dumper.add_representer(
        _FlowMap, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v.items(), flow_style=True)
    )

_PRINTABLE_ASCII = re.compile(r"[ -~]*")
_NO_WRAP = 10**5
"""Lines shorter than this are far from the width of 10**6, where an emitter would fold them."""


def _printable_ascii(value: Any) -> bool:
    """Whether libyaml writes value as PyYAML does: strings (keys too) of printable ASCII, numbers, bools, nulls."""
    if type(value) is list:
        strings = "".join(v for v in value if type(v) is str)
        return _PRINTABLE_ASCII.fullmatch(strings) is not None and all(
            _printable_ascii(v) for v in value if type(v) is not str
        )
    if type(value) in (dict, _FlowMap):
        return _printable_ascii(list(value)) and _printable_ascii(list(value.values()))
    if type(value) is str:
        return _PRINTABLE_ASCII.fullmatch(value) is not None
    return value is None or type(value) in (bool, int, float)


def _drop_empty(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None and v != []}


def _feature_dict(f: Feature) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f.name, "type": f.type}
    if f.presence is not None:
        out["presence"] = _drop_empty(vars(f.presence))
    if f.domain is not None and _drop_empty(vars(f.domain)):  # an empty domain allows anything: not written
        out["domain"] = _drop_empty(vars(f.domain))
    out |= {k: getattr(f, k) for k in _FEATURE_KEYS[4:]}
    return {k: v for k, v in _drop_empty(out).items() if v is not False}


def _feature_lines(d: dict[str, Any]) -> str:
    """The feature's item under ``features:``."""
    fast = _libyaml_lines(d) if _printable_ascii(d) else None
    return fast if fast is not None else _dump({"features": [_layout(d)]}).removeprefix("features:\n")


def _dump(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=10**6, allow_unicode=True)


def _layout(d: dict[str, Any]) -> dict[str, Any]:
    """One inline line when it fits; else one key per line, and a long domain one value per line."""
    inline = _FlowMap(_flow_values(d))
    if len(yaml.dump(inline, Dumper=_Dumper, width=10**6).strip()) <= WIDTH:
        return inline
    return _block(d, _long_values(d, _Dumper))


def _shared_containers(docs: list[dict[str, Any]]) -> bool:
    """Whether a list or mapping of the schema's own is written twice: PyYAML then anchors it, numbering across the file."""
    seen: set[int] = set()
    stack = [w for d in docs for v in d.values() if isinstance(v, (list, dict)) for w in _containers_in(v)]
    while stack:
        container = stack.pop()
        if id(container) in seen:
            return True
        seen.add(id(container))
        stack.extend(_containers_in(container))
    return False


def _containers_in(container: list[Any] | dict[str, Any]) -> list[Any]:
    members = container.values() if isinstance(container, dict) else container
    return [m for m in members if isinstance(m, (list, dict))]


def _libyaml_lines(d: dict[str, Any]) -> str | None:
    """The same item written by libyaml, each value once or twice; None when a line is long enough to fold.

    A long list of values cannot fit on the feature's line, so it is measured first, and the line is not.
    """
    long_values = _long_values(d, _CDumper)
    if not long_values:
        text = yaml.dump(_FlowMap(_flow_values(d)), Dumper=_CDumper, sort_keys=False, width=10**6)
        if len(text.strip()) <= WIDTH:
            return "  - " + text
    lines = yaml.dump(_block(d, long_values), Dumper=_CDumper, sort_keys=False, width=10**6).splitlines(True)
    if max(map(len, lines)) >= _NO_WRAP:
        return None
    # PyYAML's writer here indents lists under their key; the domain's values are the only list in block style.
    return "  - " + lines[0] + "".join(("      " if x.startswith("  - ") else "    ") + x for x in lines[1:])


def _flow_values(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _FlowMap(v) if isinstance(v, dict) else _Flow(v) if isinstance(v, list) else v for k, v in d.items()}


def _long_values(d: dict[str, Any], dumper: type[yaml.SafeDumper]) -> bool:
    values = d.get("domain", {}).get("values")
    return values is not None and len(yaml.dump(_Flow(values), Dumper=dumper, width=10**6)) > WIDTH


def _block(d: dict[str, Any], long_values: bool) -> dict[str, Any]:
    """One key per line; the domain's values one per line too when they do not fit on one."""
    block = _flow_values(d)
    if long_values:
        block["domain"] = {k: list(v) if k == "values" else v for k, v in d["domain"].items()}
    return block


# --- inference ------------------------------------------------------------------------------


def infer_schema(
    statistics: dict[str, Any] | Sequence[dict[str, Any]],
    *,
    infer_ranges: bool = False,
    max_categorical: int = MAX_CATEGORICAL,
) -> Schema:
    """A first schema from statistics of one split, or of several (their union).

    Types come from the statistics (int and float together widen to float; other mixes take
    the type holding the most values, and the other splits are UNEXPECTED_TYPE). Presence is
    ``min_fraction: 1.0`` where nothing was missing, else the lowest fraction seen times 0.9,
    rounded down: a split a little sparser than the one inferred from is not an anomaly. A
    string becomes categorical, with ``domain.values``, when its value counts are exact, it
    has at most ``max_categorical`` values, and each is seen twice on average (so the ids of
    a small sample are not taken for categories). Numeric ranges only with
    ``infer_ranges``, infinities included when seen. An empty split shows no column, so it
    lowers no presence. Environments and comparators are the user's to add.

    Example:
        >>> schema = infer_schema(read_statistics("stats/Split-train"), infer_ranges=True)
    """
    splits = [statistics] if isinstance(statistics, dict) else list(statistics)
    names = list(dict.fromkeys(n for s in splits for n in s.get("features", {})))
    features = [_infer_feature(n, splits, infer_ranges, max_categorical) for n in names]
    return Schema(features=features)


def _infer_feature(name: str, splits: list[dict[str, Any]], infer_ranges: bool, max_categorical: int) -> Feature:
    seen = [(s["features"][name], s["num_examples"]) for s in splits if name in s["features"]]
    stats = [f for f, _ in seen]
    counted = [s for s in stats if s["count"]]
    f = Feature(name, _widen(counted) if counted else stats[0]["type"])
    lacking = sum(1 for s in splits if s["num_examples"] and name not in s["features"])  # an empty split has no columns
    if all(s["missing"] == 0 for s in stats) and not lacking:
        f.presence = Presence(min_fraction=1.0)
    else:
        fractions = [(s["count"] + s.get("nan", 0)) / n for s, n in seen if n] + [0.0] * lacking
        f.presence = Presence(min_fraction=math.floor(100 * PRESENCE_SLACK * min(fractions, default=0.0)) / 100)
    # A split of another type is an anomaly (UNEXPECTED_TYPE), not part of the domain.
    typed = [s for s in counted if s["type"] in (f.type, "int" if f.type == "float" else f.type)]
    if f.type == "string" and typed and all(s.get("value_counts", {}).get("exact") for s in typed):
        values = {v["value"] for s in typed for v in s["value_counts"]["values"]}
        if len(values) <= max_categorical and 2 * len(values) <= sum(s["count"] for s in typed):
            f.domain = Domain(values=sorted(values))
    if infer_ranges and f.type in ("int", "float") and typed:
        f.domain = _seen_range(typed)
    return f


def _seen_range(counted: list[dict[str, Any]]) -> Domain | None:
    """The range the data spans, infinities included: min and max leave them out, the data does not."""
    lows = [-math.inf if s.get("neg_inf") else s["min"] for s in counted]
    highs = [math.inf if s.get("pos_inf") else s["max"] for s in counted]
    lows, highs = [v for v in lows if v is not None], [v for v in highs if v is not None]
    return Domain(min=min(lows), max=max(highs)) if lows and highs else None


def _widen(stats: list[dict[str, Any]]) -> str:
    """int and float widen to float; other mixes take the type holding the most values (a tie: the first split's)."""
    kinds = list(dict.fromkeys(s["type"] for s in stats))
    if len(kinds) == 1:
        return kinds[0]
    if set(kinds) <= {"int", "float"}:
        return "float"
    return max(kinds, key=lambda kind: sum(s["count"] for s in stats if s["type"] == kind))
