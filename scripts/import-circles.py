#!/usr/bin/env python3
"""List file-level import circles in each crate of the workspace.

A circle is a set of source files of one crate that reach each other through paths into
the crate itself: file A names something in file B (`use crate::b::Thing`, `super::b::f()`,
`self::...`) and B, directly or through other files, names something in A. Each circle is
printed as a strongly connected component of the file graph, with its two-file pairs.

Paths are resolved to the file that *defines* the item: a `pub use` re-export (such as
`pub use error::Error` in lib.rs) is followed to its source, so `use crate::Error` points at
error.rs, not at lib.rs. `mod x;` declarations are not edges. Inline `#[cfg(test)]` modules
are skipped unless --with-tests is given (tests may freely reach back into their parent).
Binaries under src/bin/ are separate crates and are skipped.

--why prints, for each pair, the paths that make each file name the other.

Usage: scripts/import-circles.py [--with-tests] [--why] [CRATE_DIR ...]   (default: every
workspace member). Exit status 1 when a circle is found.
"""

import re
import sys
from pathlib import Path

ITEM_KINDS = r"(?:fn|struct|enum|trait|type|const|static|mod|union|macro_rules!)"


def strip_comments_and_strings(text):
    """Blanks out comments, string and char literals (keeping line structure)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if text[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 20]) and not re.match(r"\w", text[i - 1:i] or " "):
            m = re.match(r'r(#*)"', text[i:])
            end = text.find('"' + m.group(1), i + len(m.group(0)))
            end = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(text, start):
    """Index just past the `}` matching the `{` at `start`."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def drop_test_modules(text):
    """Removes `#[cfg(test)] mod name { ... }` blocks."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", text)
        if not m:
            return text
        end = matching_brace(text, m.end() - 1)
        text = text[:m.start()] + "\n" * text.count("\n", m.start(), end) + text[end:]


def split_top(s, sep=","):
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def parse_use_statements(code):
    """Yields (visibility, [(path, alias)]) for every `use` statement."""
    for m in re.finditer(r"(?:^|[;{}\s])(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", code):
        tree = m.group(2).strip()
        if tree.startswith("::"):
            tree = tree[2:]
        yield (m.group(1) or "").strip(), _expand(tree, ())


def _expand(tree, prefix):
    """`a::{b, c::{d, e as f}, *}` -> [(path, name bound)], name None for a glob."""
    tree = tree.strip()
    m = re.match(r"^((?:\w+\s*::\s*)*)\{(.*)\}$", tree, re.S)
    if m:
        head = tuple(x.strip() for x in m.group(1).split("::") if x.strip())
        result = []
        for part in split_top(m.group(2)):
            result.extend(_expand(part, prefix + head))
        return result
    alias = None
    am = re.match(r"^(.*?)\s+as\s+(\w+)$", tree, re.S)
    if am:
        tree, alias = am.group(1), am.group(2)
    segs = tuple(x.strip() for x in tree.split("::") if x.strip())
    if segs and segs[-1] == "self":
        segs = segs[:-1]
    if segs and segs[-1] == "*":
        return [(prefix + segs, None)]
    full = prefix + segs
    return [(full, alias or (full[-1] if full else None))]


class Crate:
    def __init__(self, root):
        self.root = root
        self.src = root / "src"
        self.files = {}  # module path tuple -> Path
        self.is_dir_module = {}  # module path -> whether the file is a directory module
        for f in sorted(self.src.rglob("*.rs")):
            rel = f.relative_to(self.src)
            if rel.parts[0] == "bin":
                continue
            parts = list(rel.with_suffix("").parts)
            dir_module = False
            if parts in (["lib"], ["main"]):
                if parts == ["main"] and (self.src / "lib.rs").exists():
                    continue  # the binary is a separate crate over the library
                parts, dir_module = [], True
            elif parts[-1] == "mod":
                parts, dir_module = parts[:-1], True
            self.files[tuple(parts)] = f
            self.is_dir_module[tuple(parts)] = dir_module
        self.code = {}
        self.code_with_tests = {}
        for mod, f in self.files.items():
            text = strip_comments_and_strings(f.read_text())
            self.code_with_tests[mod] = text
            self.code[mod] = drop_test_modules(text)
        self.reexports = {}  # module -> {name: absolute path} and globs
        self.globs = {}
        self.defines = {}
        for mod, code in self.code_with_tests.items():
            names, globs = {}, []
            for vis, items in parse_use_statements(code):
                if not vis.startswith("pub"):
                    continue
                for path, alias in items:
                    absolute = self.absolute(mod, path)
                    if absolute is None:
                        continue
                    if alias is None:
                        globs.append(absolute[:-1])
                    else:
                        names[alias] = absolute
            self.reexports[mod], self.globs[mod] = names, globs
            self.defines[mod] = set(
                re.findall(r"(?:^|\n)\s*(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:unsafe\s+)?" + ITEM_KINDS + r"\s+(\w+)", code)
            )

    def absolute(self, mod, path):
        """Turns a crate-relative path (crate::, super::, self::) into an absolute one."""
        if not path:
            return None
        if path[0] == "crate":
            return path[1:]
        if path[0] == "self":
            return mod + path[1:]
        if path[0] == "super":
            base = list(mod)
            rest = list(path)
            while rest and rest[0] == "super":
                if not base:
                    return None
                base.pop()
                rest.pop(0)
            return tuple(base) + tuple(rest)
        if mod + (path[0],) in self.files:
            return mod + path  # a path relative to this module (`use error::Error` in lib.rs)
        return None

    def resolve(self, absolute, depth=0):
        """The file module that defines what `absolute` names."""
        if depth > 8:
            return None
        # longest module prefix that is a file
        for cut in range(len(absolute), -1, -1):
            mod = absolute[:cut]
            if mod not in self.files:
                continue
            rest = absolute[cut:]
            if not rest:
                return mod
            name = rest[0]
            if name in self.reexports.get(mod, {}):
                target = self.reexports[mod][name] + rest[1:]
                return self.resolve(target, depth + 1) or mod
            if name in self.defines.get(mod, set()):
                return mod
            for glob in self.globs.get(mod, []):
                found = self.resolve(glob + rest, depth + 1)
                if found is not None and found != glob and name in self.defines.get(found, set()) | set(self.reexports.get(found, {})):
                    return found
            return mod
        return None

    def edges(self, with_tests):
        graph = {mod: set() for mod in self.files}
        self.why = {}
        for mod in self.files:
            code = self.code_with_tests[mod] if with_tests else self.code[mod]
            paths = []
            for _vis, items in parse_use_statements(code):
                paths.extend(p for p, _ in items)
            # inline paths such as crate::journal::FORMAT_VERSION or super::targets::Targets
            without_uses = re.sub(r"(?:pub(?:\([^)]*\))?\s+)?use\s+[^;]+;", "", code)
            children = [m[-1] for m in self.files if len(m) == len(mod) + 1 and m[:-1] == mod]
            roots = "|".join(["crate", "self", "super"] + children)
            for m in re.finditer(r"(?<![\w:])((?:" + roots + r")(?:\s*::\s*\w+)+)", without_uses):
                paths.append(tuple(s.strip() for s in m.group(1).split("::")))
            for path in paths:
                absolute = self.absolute(mod, path)
                if absolute is None:
                    continue
                target = self.resolve(absolute)
                if target is not None and target != mod:
                    graph[mod].add(target)
                    self.why.setdefault((mod, target), set()).add("::".join(path))
        return graph

    def name(self, mod):
        return str(self.files[mod].relative_to(self.root.parent))


def strongly_connected(graph):
    index, low, stack, on_stack, result = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                result.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(result)


def workspace_members(top):
    text = (top / "Cargo.toml").read_text()
    m = re.search(r"members\s*=\s*\[([^\]]*)\]", text)
    return [top / x for x in re.findall(r'"([^"]+)"', m.group(1))] if m else []


def main(argv):
    with_tests = "--with-tests" in argv
    why = "--why" in argv
    args = [a for a in argv if not a.startswith("--")]
    top = Path(__file__).resolve().parent.parent
    crates = [Path(a).resolve() for a in args] or workspace_members(top)
    found = 0
    for root in crates:
        if not (root / "src").is_dir():
            continue
        crate = Crate(root)
        graph = crate.edges(with_tests)
        circles = strongly_connected(graph)
        if not circles:
            print(f"{root.name}: no circles")
            continue
        for comp in circles:
            found += 1
            members = set(comp)
            pairs = sorted(
                (a, b) for a in comp for b in graph[a] if b in members and a < b and a in graph[b]
            )
            print(f"{root.name}: circle of {len(comp)} files: " + ", ".join(crate.name(m) for m in comp))
            for a, b in pairs:
                print(f"    {crate.name(a)} <-> {crate.name(b)}")
                if why:
                    print(f"        {crate.name(a)} names " + ", ".join(sorted(crate.why[(a, b)])))
                    print(f"        {crate.name(b)} names " + ", ".join(sorted(crate.why[(b, a)])))
            if not pairs:
                for a in comp:
                    for b in sorted(graph[a] & members):
                        print(f"    {crate.name(a)} -> {crate.name(b)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
