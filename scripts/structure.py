#!/usr/bin/env python3
"""The structure drawing's numbers (DESIGN.md "Shape"): loose files at
src/'s root beyond the allowed ones, arrows into web/ from below it, arrows
that break the rooms' order, and import cycles between top-level modules.

Usage: scripts/structure.py [--check]   (--check exits 1 on any finding)
A module is a top-level file or folder under src/ (bin/ excluded); an arrow
A -> B is any `crate::B` path written in A's files.
"""
import re
import sys
from pathlib import Path

ROOT_ALLOWED = {"main.rs", "lib.rs", "cli.rs", "config.rs", "error.rs", "state.rs", "clock.rs"}
# The order of rooms (DESIGN.md): a module may depend only on modules of a
# lower rank. cli.rs is the clap definitions alone, read by config and cmd.
RANK = {
    "main": 9, "lib": 9,
    "cmd": 8,
    "web": 7,
    "state": 6,
    "engine": 5,
    "troubleshoot": 4,
    "exchange": 3,
    "store": 2.5,
    "tls": 2,
    "net": 1.8,
    "telemetry": 1.2,
    "secrets": 1.5,
    "config": 1, "error": 1, "clock": 1,
    "cli": 0.5,
    "domain": 0,
}

src = Path(__file__).resolve().parent.parent / "src"


def module_of(path: Path) -> str:
    rel = path.relative_to(src)
    return rel.parts[0].removesuffix(".rs")


def arrows():
    edges = {}
    for path in src.rglob("*.rs"):
        rel = path.relative_to(src)
        if rel.parts[0] == "bin":
            continue
        a = module_of(path)
        text = path.read_text(encoding="utf-8")
        # Comments say nothing about dependencies.
        text = re.sub(r"//[^\n]*", "", text)
        targets = set(re.findall(r"\bcrate::(\w+)", text))
        for group in re.findall(r"\bcrate::\{([^}]*)\}", text, re.S):
            targets.update(re.findall(r"(?:^|,)\s*(\w+)", group))
        for b in targets:
            if b != a and (src / f"{b}.rs").exists() or (src / b).is_dir():
                if b != a:
                    edges.setdefault(a, set()).add(b)
    return edges


def inner_arrows():
    """Arrows between the files of one room: `super::x` and `crate::room::x`."""
    edges = {}
    for room in sorted(p for p in src.iterdir() if p.is_dir() and p.name != "bin"):
        for path in room.rglob("*.rs"):
            rel = path.relative_to(room)
            a = f"{room.name}::{rel.parts[0].removesuffix('.rs')}"
            if a.endswith("::mod"):
                a = room.name
            text = re.sub(r"//[^\n]*", "", path.read_text(encoding="utf-8"))
            # Test modules may reach anywhere in their room.
            text = text.split("#[cfg(test)]")[0]
            names = set(re.findall(r"\bcrate::%s::(\w+)" % room.name, text))
            if a != room.name:
                names |= set(re.findall(r"\bsuper::(\w+)", text))
                for group in re.findall(r"\bsuper::\{([^}]*)\}", text, re.S):
                    names.update(re.findall(r"(?:^|,)\s*(\w+)", group))
            for n in names:
                b = f"{room.name}::{n}"
                if b != a and ((room / f"{n}.rs").exists() or (room / n).is_dir()):
                    edges.setdefault(a, set()).add(b)
    return edges


def cycles(edges):
    # Tarjan's strongly connected components.
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return out


def main():
    loose = sorted(p.name for p in src.glob("*.rs") if p.name not in ROOT_ALLOWED)
    edges = arrows()
    into_web = sorted(f"{a} -> web" for a, bs in edges.items() if "web" in bs and a not in ("lib", "main"))
    upward = sorted(
        f"{a} -> {b}"
        for a, bs in edges.items()
        for b in bs
        if a in RANK and b in RANK and RANK[b] >= RANK[a] and a not in ("lib", "main")
    )
    cyc = cycles(edges) + cycles(inner_arrows())
    print(f"loose files at src/'s root beyond the seven: {len(loose)} {loose}")
    print(f"arrows into web/ from below: {len(into_web)} {into_web}")
    print(f"arrows against the rooms' order: {len(upward)} {upward}")
    print(f"import cycles between modules (top-level, and files of one room): {len(cyc)} {cyc}")
    unknown = sorted({m for m in edges} - set(RANK))
    if unknown:
        print(f"modules outside the rooms' order: {unknown}")
    if "--check" in sys.argv and (loose or into_web or upward or cyc or unknown):
        sys.exit(1)


if __name__ == "__main__":
    main()
