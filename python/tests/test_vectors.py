"""The golden vectors of spec/vectors/ run through the Python binding: exports must be
byte-identical to the committed bundles, imports must report what the scenario says, and
every replica must end in the expected rows and state hash (the Rust runner is
core/tests/vectors.rs; the format is spec/vectors/README.md)."""

from __future__ import annotations

import json
import math
import pathlib
import struct
from typing import Any, Dict, List, Tuple

import pytest

import syncline
from syncline import Resolution, SyncEngine

VECTORS = pathlib.Path(__file__).resolve().parents[2] / "spec" / "vectors"
# spec/vectors/migrations holds the scenarios with schema-evolution steps (its README.md).
SCENARIOS = sorted(p for p in VECTORS.glob("*.json") if p.name != "interop.json") + sorted(
    (VECTORS / "migrations").glob("*.json")
)
# An import step's report always has these keys...
REPORT_KEYS = ["applied", "already_known", "conflicts", "rejected"]
# ...and may have these (compared when present).
OPTIONAL_REPORT_KEYS = ["quarantined", "released", "migrated", "held"]


def value(tagged: Any) -> syncline.SqlValue:
    """A tagged JSON value as a Python value."""
    if tagged is None:
        return None
    ((tag, payload),) = tagged.items()
    if tag == "int":
        return int(payload)
    if tag == "real":
        return float(payload)
    if tag == "text":
        return str(payload)
    if tag == "blob":
        return bytes.fromhex(payload)
    raise AssertionError(f"unknown value tag {tag}")


def same(a: syncline.SqlValue, b: syncline.SqlValue) -> bool:
    """Exact equality: same type and, for floats, the same bits (-0.0 differs from 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack(">d", a) == struct.pack(">d", b) or (math.isnan(a) and math.isnan(b))
    return a == b


def concat(c: syncline.Conflict) -> Resolution:
    """The resolver every runner registers for `custom` tables."""
    if isinstance(c.local.value, str) and isinstance(c.remote.value, str):
        return Resolution.with_value(" + ".join(sorted([c.local.value, c.remote.value])))
    return Resolution.LOCAL


def table_rows(e: SyncEngine, table: str) -> List[Tuple[syncline.SqlValue, ...]]:
    n = len(e.query(f'SELECT * FROM "{table}" LIMIT 0').columns)
    order = ", ".join(str(i) for i in range(1, n + 1))
    return list(e.query(f'SELECT * FROM "{table}" ORDER BY {order}'))


def dump(e: SyncEngine) -> str:
    names = [str(r[0]) for r in e.query("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")]
    return repr([(n, table_rows(e, n)) for n in names])


def scenario_id(p: pathlib.Path) -> str:
    return p.stem if p.parent == VECTORS else f"{p.parent.name}/{p.stem}"


@pytest.mark.parametrize("path", SCENARIOS, ids=[scenario_id(p) for p in SCENARIOS])
def test_golden_vector(path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    sc: Dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    reps: Dict[str, SyncEngine] = {}
    try:
        for name, site in sorted(sc["replicas"].items()):
            e = SyncEngine(tmp_path / f"{name}.db")
            reps[name] = e
            e.set_site_id(site)
            e.set_manual_clock(sc["clock_ms"])
            for sql in sc.get("schemas", {}).get(name, sc["schema"]):
                e.execute_batch(sql)
            for table, strategy in sorted(sc.get("table_overrides", {}).get(name, sc["tables"]).items()):
                e.enable_sync(table, strategy)
                if strategy == "custom":
                    e.set_resolver(table, concat)
        for k, step in enumerate(sc["steps"]):
            at = f"{path.stem} step {k}"
            if "on" in step:
                e = reps[step["on"]]
                if "sql" in step:
                    e.execute(step["sql"])
                if "clock_ms" in step:
                    e.set_manual_clock(step["clock_ms"])
            elif "export" in step:
                peer = reps[step["peer"]].site_id if "peer" in step else None
                data = reps[step["export"]].generate_bundle(peer)
                assert isinstance(data, bytes)
                assert data == (VECTORS / step["file"]).read_bytes(), f"{at}: bundle bytes differ"
            elif "derive" in step:
                assert (VECTORS / step["file"]).exists(), f"{at}: missing damaged bundle"
            elif "import" in step:
                e = reps[step["import"]]
                before = dump(e)
                if "error" in step:
                    with pytest.raises(syncline.SynclineError) as info:
                        e.import_bundle(VECTORS / step["file"])
                    assert info.value.code == step["error"], f"{at}: {info.value}"
                    assert dump(e) == before, f"{at}: a refused bundle changed the database"
                else:
                    r = e.import_bundle(VECTORS / step["file"])
                    if "report" in step:
                        want = step["report"]
                        missing = set(REPORT_KEYS) - set(want)
                        unknown = set(want) - set(REPORT_KEYS) - set(OPTIONAL_REPORT_KEYS)
                        assert not missing and not unknown, f"{at}: report keys missing {missing}, unknown {unknown}"
                        keys = [k for k in REPORT_KEYS + OPTIONAL_REPORT_KEYS if k in want]
                        report = {k: getattr(r, k) for k in keys}
                        assert report == want, f"{at}: {r}"
            elif "resolve" in step:
                e = reps[step["resolve"]]
                c = e.conflicts()[step["conflict"]]
                w = step["with"]
                if w == "local":
                    e.resolve(c, local=True)
                elif w == "remote":
                    e.resolve(c, remote=True)
                else:
                    e.resolve(c, value=value(w["value"]))
            elif "conflicts" in step:
                assert len(reps[step["conflicts"]].conflicts()) == step["count"], at
            elif "migrate" in step:
                e = reps[step["migrate"]]
                default = value(step["default"]) if "default" in step else None
                args = (step["table"], step["add_column"], step["type"], default)
                if "error" in step:
                    with pytest.raises(syncline.SynclineError) as info:
                        e.add_column(*args)
                    assert info.value.code == step["error"], f"{at}: {info.value}"
                else:
                    e.add_column(*args)
            elif "migration_policy" in step:
                policy = step["policy"]
                assert policy in ("apply", "hold"), f"{at}: unknown policy {policy}"
                reps[step["migration_policy"]].set_migration_policy(policy)
                assert reps[step["migration_policy"]].migration_policy() == policy, at
            elif "apply_held_migrations" in step:
                assert reps[step["apply_held_migrations"]].apply_held_migrations() == step["count"], at
            elif "enable" in step:
                reps[step["enable"]].enable_sync(step["table"])
            else:
                raise AssertionError(f"{at}: unknown step {step}")
        for name, want in sc["expect"].items():
            e = reps[name]
            for table, rows in want["rows"].items():
                got = table_rows(e, table)
                expected = [tuple(value(v) for v in row) for row in rows]
                assert len(got) == len(expected), f"{path.stem}: {table} on {name}: {got}"
                for g, w in zip(got, expected):
                    assert len(g) == len(w) and all(same(a, b) for a, b in zip(g, w)), f"{path.stem}: {g} != {w}"
            assert len(e.conflicts()) == want["open_conflicts"]
            assert e.state_hash() == want["state_hash"], f"{path.stem}: state hash of {name}"
    finally:
        for e in reps.values():
            e.close()


def test_every_scenario_is_run() -> None:
    assert len(SCENARIOS) >= 12
    assert "12-hostile-bundles" in [p.stem for p in SCENARIOS]
    migrations = [p for p in SCENARIOS if p.parent.name == "migrations"]
    assert len(migrations) >= 2, "spec/vectors/migrations is not run"
