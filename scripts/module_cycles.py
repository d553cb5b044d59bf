#!/usr/bin/env python3
"""Finds import circles between the modules of each crate of the workspace.

A module is a top-level `mod` of a crate (a file `src/x.rs` or a folder `src/x/`); module A
depends on B when a file of A names `crate::B` (or `super::B` from a top-level file). Prints
every circle found and exits 1 if there is one, 0 otherwise.

Usage: python3 scripts/module_cycles.py [CRATE_SRC_DIR ...]   (default: every crate's src/)
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT = ["src", "framework/src", "kernels/src", "search/src", "modalities/vision/src",
           "modalities/audio/src", "modalities/text/src", "test-support/src"]


def modules(src: pathlib.Path):
    """Top-level module name -> its files."""
    out = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).parts
        if rel in (("lib.rs",), ("main.rs",)):
            continue
        name = rel[0][:-3] if len(rel) == 1 else rel[0]
        out.setdefault(name, []).append(f)
    return out


def strip_comments(text: str) -> str:
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def edges(src: pathlib.Path):
    mods = modules(src)
    graph = {m: set() for m in mods}
    for m, files in mods.items():
        for f in files:
            text = strip_comments(f.read_text())
            # Test modules may reach anywhere; they are not part of the build graph.
            text = text.split("#[cfg(test)]")[0]
            names = set(re.findall(r"\bcrate::(\w+)", text))
            for group in re.findall(r"\bcrate::\{([^}]*)\}", text):
                names |= set(re.findall(r"(\w+)", group))
            if len(f.relative_to(src).parts) == 1:  # a top-level file: super:: is the crate
                names |= set(re.findall(r"\bsuper::(\w+)", text))
            for n in names:
                if n in mods and n != m:
                    graph[m].add(n)
    return graph


def cycles(graph):
    found, seen = [], set()

    def visit(node, path):
        for nxt in sorted(graph[node]):
            if nxt in path:
                cyc = path[path.index(nxt):] + [nxt]
                key = frozenset(cyc)
                if key not in seen:
                    seen.add(key)
                    found.append(cyc)
            elif len(path) < 12:
                visit(nxt, path + [nxt])

    for n in sorted(graph):
        visit(n, [n])
    return found


def main():
    dirs = sys.argv[1:] or [d for d in DEFAULT if (ROOT / d).is_dir()]
    bad = 0
    for d in dirs:
        src = (ROOT / d) if not pathlib.Path(d).is_absolute() else pathlib.Path(d)
        for cyc in cycles(edges(src)):
            bad += 1
            print(f"{d}: circle {' -> '.join(cyc)}")
    print(f"module_cycles: {bad} circle(s) in {len(dirs)} crate(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
