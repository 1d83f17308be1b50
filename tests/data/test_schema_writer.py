"""The schema writer gives, byte for byte, what PyYAML's writer gave when it dumped every feature twice."""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

import yaml

from conveyor.data.schema import (
    WIDTH,
    DatasetConstraints,
    Domain,
    Feature,
    Presence,
    Schema,
    _drop_empty,
    _Dumper,
    _feature_dict,
    _Flow,
    _FlowMap,
)

# fmt: off
TRICKY = [
    "Yes", "No", "yes", "on", "OFF", "y", "n", "true", "False", "null", "Null", "~", "", "02134", "0x1F", "0o17",
    "1e3", "1.0e6", "1.0", "1_000", ".5", "-1", "+1", ".inf", "-.Inf", ".NaN", "190:20:30", "2001-12-14", "<<", "=",
    "a: b", "a:b", "a :b", "- a", "-a", "#x", "a #b", "a#b", "[x]", "{x}", "a,b", "a, b", "?x", "? x", "!x", "&x",
    "*x", "|x", ">x", "'q'", '"q"', "it's", "%x", "@x", "`x", " lead", "trail ", "  ", "---", "...", "--- x", "a  b",
    "a\\b", "café", "日本語", "Ünïcödé ß", "emoji 😀", "tab\tx", "line\nbreak", "crlf\r\n", "nel\x85x", "ls\u2028x",
    "\ufeffbom", "nbsp\xa0x", "bell\x07", "del\x7f", "x" * 150, "long words " * 12,
]
# fmt: on
FLOATS = [0.0, -0.0, 0.1, 1.5, 1e20, 1e-7, 123456789.125, math.inf, -math.inf, math.nan, 2.0, -3.25]


def old_to_yaml(schema: Schema) -> str:
    """The writer before: each feature dumped to measure its width, then the whole file dumped again."""

    def dump(node: Any) -> str:
        return yaml.dump(node, Dumper=_Dumper, width=10**6)

    def layout(d: dict[str, Any]) -> dict[str, Any]:
        inline = _FlowMap(
            {k: _FlowMap(v) if isinstance(v, dict) else _Flow(v) if isinstance(v, list) else v for k, v in d.items()}
        )
        if len(dump(inline).strip()) <= WIDTH:
            return inline
        block = {
            k: _FlowMap(v) if isinstance(v, dict) else _Flow(v) if isinstance(v, list) else v for k, v in d.items()
        }
        values = d.get("domain", {}).get("values")
        if values is not None and len(dump(_Flow(values))) > WIDTH:
            block["domain"] = {k: list(v) if k == "values" else v for k, v in d["domain"].items()}
        return block

    doc: dict[str, Any] = {"features": [layout(_feature_dict(f)) for f in schema.features]}
    if schema.default_environments:
        doc["default_environments"] = _Flow(schema.default_environments)
    if schema.dataset_constraints is not None:
        doc["dataset_constraints"] = _FlowMap(_drop_empty(vars(schema.dataset_constraints)))
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=10**6, allow_unicode=True)


def word(rng: random.Random, tricky: float) -> str:
    if rng.random() < tricky:
        return rng.choice(TRICKY)
    return "".join(rng.choice("abcdefghij_ XYZ0123.-") for _ in range(rng.randint(1, 24))).strip() or "v"


def random_feature(rng: random.Random, i: int, tricky: float) -> Feature:
    kind = rng.choice(["string", "int", "float", "bool", "other"])
    name = word(rng, tricky) if rng.random() < 0.3 else f"feature_{i}"
    f = Feature(name=name, type=kind)
    if rng.random() < 0.5:
        f.presence = Presence(min_fraction=rng.choice([None, 1.0, 0.5, 0.9999]), min_count=rng.choice([None, 1, 10**9]))
    shape = rng.random()
    if kind in ("string", "int", "bool") and shape < 0.6:
        n = rng.choice([1, 2, 5, 12, 30, 80])
        pool: list[Any] = [word(rng, tricky) for _ in range(n)] + [rng.randint(-(10**12), 10**12) for _ in range(2)]
        pool += [rng.choice(FLOATS), True, False, None]
        f.domain = Domain(values=list(dict.fromkeys(rng.sample(pool, k=min(n, len(pool))), None)))
        f.domain.min_mass = rng.choice([None, 0.95, 1.0])
    elif kind in ("int", "float") and shape < 0.8:
        f.domain = Domain(min=rng.choice([None, *FLOATS, -5, 0]), max=rng.choice([None, *FLOATS, 90, 10**15]))
    elif shape < 0.85:
        f.domain = Domain()
    for side in ("skew_comparator", "drift_comparator"):
        if rng.random() < 0.3:
            setattr(
                f,
                side,
                rng.choice(
                    [
                        {"auto": True},
                        {"auto": False},
                        {"l_infinity": 0.1, "ks": 0.05},
                        {"jensen_shannon": rng.choice(FLOATS)},
                        {"wasserstein": 3},
                    ]
                ),
            )
    if rng.random() < 0.2:
        f.in_environments = [word(rng, tricky) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.2:
        f.not_in_environments = rng.sample(["SERVING", "TRAINING", "Yes", "ÉVAL", "on"], k=rng.randint(1, 3))
    f.deprecated = rng.random() < 0.15
    return f


def random_schema(seed: int) -> Schema:
    rng = random.Random(seed)
    tricky = rng.choice([0.0, 0.1, 0.5, 1.0])
    schema = Schema([random_feature(rng, i, tricky) for i in range(rng.randint(0, 10))])
    if rng.random() < 0.5:
        schema.default_environments = rng.sample(["TRAINING", "SERVING", "No", "ÉVAL"], k=rng.randint(1, 3))
    if rng.random() < 0.4:
        schema.dataset_constraints = DatasetConstraints(
            min_examples_count=rng.choice([None, 1000]),
            max_examples_count=rng.choice([None, 10**7]),
            num_examples_drift=rng.choice([None, {"min_ratio": 0.5, "max_ratio": 2.0}]),
        )
    return schema


def test_the_writer_gives_the_old_bytes_on_schemas_of_many_shapes() -> None:
    texts = []
    for seed in range(300):
        schema = random_schema(seed)
        expected = old_to_yaml(schema)
        assert schema.to_yaml() == expected, f"seed {seed}"
        texts.append(expected)
    written = "".join(texts)
    # The shapes the layout can take all came up: inline, one key per line, one value per line, quoted values.
    assert "  - {name: " in written and "\n    type: " in written and "\n        - " in written
    assert "'Yes'" in written and "'02134'" in written and "café" in written and '"nel\\Nx"' in written


def test_every_tricky_string_in_every_place_gives_the_old_bytes() -> None:
    for text in TRICKY:
        short = Feature(text, "string", domain=Domain(values=[text, "x"]), in_environments=[text])
        long = Feature(
            "f", "string", presence=Presence(1.0), domain=Domain(values=[text, *(f"v{i}" for i in range(40))])
        )
        block = Feature(
            "g",
            "int",
            domain=Domain(values=[text, 1]),
            drift_comparator={"auto": True, "ks": 0.01},
            not_in_environments=[text, "SERVING", "TRAINING", "x" * 40],
        )
        schema = Schema([short, long, block], default_environments=[text])
        assert schema.to_yaml() == old_to_yaml(schema), repr(text)


def test_a_line_long_enough_to_fold_gives_the_old_bytes() -> None:
    """Past the width of 10**6 PyYAML folds a line at a space, and libyaml folds it elsewhere."""
    schema = Schema([Feature("f", "string", domain=Domain(values=["word " * 210_000, "b"])), Feature("g", "int")])
    assert schema.to_yaml() == old_to_yaml(schema)


def test_a_list_two_features_share_is_anchored_as_before() -> None:
    """dataclasses.replace shares the domain: the old writer anchored it (&id001), and so does the new."""
    first = Feature("a", "string", domain=Domain(values=["x", "y"]))
    second = dataclasses.replace(first, name="b", domain=dataclasses.replace(first.domain))
    third = Feature("c", "string", domain=Domain(values=["p"] * 3 + [["nested"]]))
    schema = Schema([first, second, third])
    assert "&id001" in schema.to_yaml()
    assert schema.to_yaml() == old_to_yaml(schema)
