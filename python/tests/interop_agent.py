"""The Python interop agent (spec/vectors/README.md, "Interop script"):
``python interop_agent.py export interop.json OUT`` / ``import interop.json IN``, each printing
the replica's state hash."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict

from syncline import SyncEngine


def replica(folder: Path, spec: Dict[str, Any], role: str) -> SyncEngine:
    e = SyncEngine(folder / f"{role}.db")
    e.set_site_id(spec[role]["site"])
    e.set_manual_clock(spec[role]["clock_ms"])
    for sql in spec["schema"]:
        e.execute_batch(sql)
    for table, strategy in sorted(spec["tables"].items()):
        e.enable_sync(table, strategy)
    return e


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] not in ("export", "import"):
        print("usage: interop_agent.py export|import interop.json BUNDLE", file=sys.stderr)
        return 2
    command, spec_path, bundle = argv[1:]
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        if command == "export":
            with replica(Path(tmp), spec, "writer") as e:
                for step in spec["steps"]:
                    if "sql" in step:
                        e.execute(step["sql"])
                    if "clock_ms" in step:
                        e.set_manual_clock(step["clock_ms"])
                data = e.generate_bundle()
                assert isinstance(data, bytes)
                Path(bundle).write_bytes(data)
                print(e.state_hash())
        else:
            with replica(Path(tmp), spec, "reader") as e:
                e.import_bundle(bundle)
                print(e.state_hash())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
