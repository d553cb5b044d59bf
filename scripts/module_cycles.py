#!/usr/bin/env python3
"""Lists the references between the modules (files) of a crate's source folder and finds
import cycles.

A file `src/x.rs` is module `x`; it refers to module `y` when its code (comments left out)
says `crate::y` (in a `use` or a path), `use crate::{y, ...}`, or, in `main.rs`/`lib.rs`,
`y::` for a declared `mod y`. Usage: scripts/module_cycles.py src search/src
(exit status 1 when a folder has a cycle).
"""

import re
import sys
from pathlib import Path


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def references(folder):
    files = {p.stem: strip_comments(p.read_text()) for p in sorted(Path(folder).glob("*.rs"))}
    modules = set(files) - {"main", "lib"}
    edges = {}
    for name, code in files.items():
        refs = set(re.findall(r"\bcrate::(\w+)", code))
        for group in re.findall(r"\bcrate::\{([^;]*)\}", code):
            # Top-level names of a grouped import: at brace depth 0.
            depth, word = 0, ""
            for ch in group + ",":
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                elif depth == 0 and ch == ",":
                    refs.add(word.strip().split("::")[0])
                    word = ""
                    continue
                if depth == 0 and ch not in "{}":
                    word += ch
        if name in ("main", "lib"):
            refs |= {m for m in modules if re.search(rf"\b{m}::", code)}
        edges[name] = sorted((refs & modules) - {name})
    return edges


def cycles(edges):
    found, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in edges.get(node, []):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in edges:
        if node not in state:
            visit(node, [node])
    return found


def main():
    bad = False
    for folder in sys.argv[1:] or ["src"]:
        edges = references(folder)
        print(f"{folder}:")
        for name, refs in edges.items():
            print(f"  {name} -> {', '.join(refs) or '(none)'}")
        found = cycles(edges)
        for c in found:
            print("  CYCLE: " + " -> ".join(c))
        if not found:
            print("  no cycles")
        bad |= bool(found)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
