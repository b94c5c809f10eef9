#!/usr/bin/env python3
"""The cross-language interop matrix (issue 6): every language's agent runs the same scripted
edits (spec/vectors/interop.json) and must produce byte-identical bundles; every language
imports every language's bundle and must reach the same state hash. Prints a 5x5 table of
hashes and exits non-zero on any mismatch. Agents: scripts/agents/<language> (see
spec/vectors/README.md, "Interop script"); run each language's test.sh first."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPEC = ROOT / "spec" / "vectors" / "interop.json"
LANGUAGES = ["rust", "python", "node", "swift", "kotlin"]


def agent(language: str, *args: str) -> str:
    cmd = [str(ROOT / "scripts" / "agents" / language), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{language} {args[0]} failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    return out.stdout.strip().splitlines()[-1]


def main() -> int:
    passed = failed = 0
    with tempfile.TemporaryDirectory(dir=ROOT / "target" if (ROOT / "target").is_dir() else None) as tmp:
        bundles: dict[str, pathlib.Path] = {}
        export_hash: dict[str, str] = {}
        for lang in LANGUAGES:
            path = pathlib.Path(tmp) / f"{lang}.bundle"
            try:
                export_hash[lang] = agent(lang, "export", str(SPEC), str(path))
                bundles[lang] = path
            except RuntimeError as e:
                print(f"FAIL export: {e}")
                failed += 1
        reference = bundles.get("rust")
        for lang, path in bundles.items():
            same = reference is not None and path.read_bytes() == reference.read_bytes()
            print(f"{'ok  ' if same else 'FAIL'} {lang:7s} bundle {'identical to' if same else 'DIFFERS from'} rust's ({path.stat().st_size} bytes), writer hash {export_hash[lang][:12]}")
            passed, failed = passed + same, failed + (not same)
        want = export_hash.get("rust", "")
        table: dict[tuple[str, str], str] = {}
        for src in bundles:
            for dst in LANGUAGES:
                try:
                    table[(src, dst)] = agent(dst, "import", str(SPEC), str(bundles[src]))
                except RuntimeError as e:
                    table[(src, dst)] = "error"
                    print(f"FAIL import: {e}")
        print()
        print("state hash after import (rows: bundle made by, columns: imported by)")
        print(f"{'':8s}" + "".join(f"{d:>14s}" for d in LANGUAGES))
        for src in bundles:
            cells = []
            for dst in LANGUAGES:
                h = table[(src, dst)]
                ok = h == want
                passed, failed = passed + ok, failed + (not ok)
                cells.append(f"{h[:12] + ('' if ok else '!'):>14s}")
            print(f"{src:8s}" + "".join(cells))
        print(f"\nexpected everywhere: {want[:12]} (the writer's hash)")
    print(f"interop: {passed} passed, {failed} failed")
    return 0 if failed == 0 and passed == len(LANGUAGES) * (len(LANGUAGES) + 1) else 1


if __name__ == "__main__":
    sys.exit(main())
