"""What the local workers know of a code base: languages, the import graph (Python by `ast`,
JS/TS by a regex), which files are tests. Files come from cfn.daemon.tree's walker.
"""

from __future__ import annotations

import ast
import logging
import posixpath
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from cfn.daemon import tree

log = logging.getLogger(__name__)

MAX_PARSE_BYTES = 1024 * 1024  # larger files are counted, never read or parsed
LANGUAGES = {
    ".py": "Python", ".pyi": "Python", ".js": "JavaScript", ".mjs": "JavaScript",
    ".cjs": "JavaScript", ".jsx": "JavaScript", ".ts": "TypeScript", ".tsx": "TypeScript",
    ".mts": "TypeScript", ".cts": "TypeScript", ".go": "Go", ".rs": "Rust", ".java": "Java",
    ".kt": "Kotlin", ".rb": "Ruby", ".php": "PHP", ".c": "C", ".h": "C", ".cc": "C++",
    ".cpp": "C++", ".hpp": "C++", ".cs": "C#", ".swift": "Swift", ".sh": "Shell",
    ".bash": "Shell", ".bats": "Shell", ".sql": "SQL", ".lua": "Lua", ".md": "Markdown",
    ".rst": "reStructuredText", ".toml": "TOML", ".yaml": "YAML", ".yml": "YAML",
    ".json": "JSON", ".html": "HTML", ".css": "CSS", ".scss": "CSS", ".j2": "Jinja",
}
JS_EXTENSIONS = (".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts")
PY_EXTENSIONS = (".py", ".pyi")
TEST_DIRS = frozenset({"tests", "test", "__tests__"})
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) | {"__future__"}
_JS_IMPORT = re.compile(
    r"""(?:\bimport\s+(?:type\s+)?(?:[\w*{}\s,$]+?\s+from\s+)?|\bexport\s+[\w*{}\s,$]+?\s+from\s+"""
    r"""|\brequire\s*\(\s*|\bimport\s*\(\s*)(['"])([^'"\n]+)\1""")


def language(rel: str) -> str | None:
    """The language of a file by its extension, None when it is none cfn names."""
    return LANGUAGES.get(posixpath.splitext(rel)[1].lower())


def is_python(rel: str) -> bool:
    return rel.endswith(PY_EXTENSIONS)


def is_js(rel: str) -> bool:
    return rel.endswith(JS_EXTENSIONS) and not rel.endswith(".d.ts")


def is_test(rel: str) -> bool:
    """A test file: Python tests/test_*.py or *_test.py, JS/TS *.test.* / *.spec.* or under
    __tests__ (and any file under a tests directory, conftest.py included)."""
    directory, name = posixpath.split(rel)
    if TEST_DIRS & set(directory.split("/")):
        return True
    if is_python(rel):
        return name.startswith("test_") or name.endswith(("_test.py", "_test.pyi"))
    return is_js(rel) and (".test." in name or ".spec." in name)


def test_subject(rel: str) -> str:
    """The name a test file's name gives its subject: test_foo.py, foo_test.py, foo.test.ts
    and foo.spec.js all give foo."""
    name = posixpath.basename(rel).split(".")[0]
    return name.removeprefix("test_").removesuffix("_test")


# --- the files --------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceFile:
    """A walked file and, when it is small, text and known, its text (else None)."""

    entry: tree.Entry
    text: str | None

    @property
    def rel(self) -> str:
        return self.entry.rel


def sources(root, *, want: Iterable[str] = ()) -> Iterator[SourceFile]:
    """Every walked file, with the text of those in a known language (or ending with one of
    `want`) up to MAX_PARSE_BYTES."""
    extra = tuple(want)
    for entry in tree.walk(root):
        readable = entry.size <= MAX_PARSE_BYTES and (
            language(entry.rel) is not None or (extra and entry.rel.endswith(extra)))
        data = tree.read_bytes(entry.path) if readable else None
        yield SourceFile(entry, data.decode("utf-8", errors="replace") if data is not None
                         else None)


def parse_python(source: SourceFile) -> ast.Module | None:
    """The file's syntax tree, None when it cannot be parsed (or was not read)."""
    if source.text is None:
        return None
    try:
        return ast.parse(source.text, source.rel)
    except (SyntaxError, ValueError, RecursionError):  # ValueError: a NUL after the probe
        return None


# --- the import graph ----------------------------------------------------------------------

@dataclass
class Imports:
    """Edges between project files, and what is imported from outside the project."""

    edges: set[tuple[str, str]] = field(default_factory=set)
    external: Counter = field(default_factory=Counter)  # top-level package -> importing files
    stdlib: Counter = field(default_factory=Counter)
    unparsed: list[str] = field(default_factory=list)


def python_index(rels: Iterable[str]) -> dict[str, str]:
    """Module name -> file, for the project's Python files (a src/ layout's too)."""
    index: dict[str, str] = {}
    for rel in sorted(rels):
        if not is_python(rel):
            continue
        parts = rel.rsplit(".", 1)[0].split("/")
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and all(p.isidentifier() for p in parts):
            index.setdefault(".".join(parts), rel)
            if parts[0] in ("src", "lib") and len(parts) > 1:
                index.setdefault(".".join(parts[1:]), rel)
    return index


def python_targets(module: ast.Module, rel: str, index: dict[str, str]
                   ) -> tuple[set[str], set[str]]:
    """(project files `rel` imports, top-level names it imports from outside the project)."""
    package = rel.rsplit(".", 1)[0].split("/")[:-1]  # the directory: its package, or sys.path
    internal, outside = set(), set()
    for node in statements(module):
        for candidates, absolute in _import_candidates(node, package):
            found = _resolve(candidates, package if absolute else None, index)
            if found:
                internal.add(found)
            elif absolute and candidates:
                outside.add(candidates[-1][0])
    internal.discard(rel)
    return internal, outside


def statements(module: ast.Module) -> Iterator[ast.stmt]:
    """Every statement, nested ones (in functions, classes, ifs, trys) included: imports are
    statements, so expressions (most of a tree) need not be visited."""
    stack = list(reversed(module.body))
    while stack:
        node = stack.pop()
        yield node
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, name, None)
            if isinstance(children, list):
                stack.extend(reversed([c for c in children if isinstance(c, ast.AST)]))


def _import_candidates(node: ast.AST, package: list[str]
                       ) -> Iterator[tuple[list[list[str]], bool]]:
    """For each module an import statement names: the module names it could be, most
    specific first, and whether the import is absolute."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            parts = alias.name.split(".")
            yield [parts[:n] for n in range(len(parts), 0, -1)], True
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            if node.level - 1 > len(package):
                return
            base = package[:len(package) - (node.level - 1)]
        else:
            base = []
        module = base + (node.module.split(".") if node.module else [])
        chain = [module[:n] for n in range(len(module), 0, -1)]
        for alias in node.names:
            named = [module + [alias.name]] if alias.name != "*" else []
            yield named + chain, not node.level


def _resolve(candidates: list[list[str]], directory: list[str] | None,
             index: dict[str, str]) -> str | None:
    for parts in candidates:
        if ".".join(parts) in index:
            return index[".".join(parts)]
    if directory is not None:  # a script's or test's sibling module (its dir is on sys.path)
        for parts in candidates:
            found = index.get(".".join(directory + parts))
            if found:
                return found
    return None


def js_specifiers(text: str) -> list[str]:
    """The module specifiers a JS/TS file imports, requires or re-exports."""
    return [m.group(2) for m in _JS_IMPORT.finditer(text)]


def js_resolve(rel: str, spec: str, files: set[str]) -> str | None:
    """The project file a relative specifier names (extension and index files tried)."""
    if not spec.startswith("."):
        return None
    base = posixpath.normpath(posixpath.join(posixpath.dirname(rel), spec))
    stem = base.rsplit(".", 1)[0] if base.endswith((".js", ".jsx", ".mjs", ".cjs")) else base
    for candidate in (base, *(stem + ext for ext in JS_EXTENSIONS),
                      *(f"{base}/index{ext}" for ext in JS_EXTENSIONS)):
        if candidate in files:
            return candidate
    return None


def js_package(spec: str) -> str | None:
    """The package a bare specifier names (@scope/name or name); None for a relative one."""
    if spec.startswith((".", "/")):
        return None
    parts = spec.removeprefix("node:").split("/")
    return "/".join(parts[:2]) if spec.startswith("@") else parts[0]


def import_graph(files: list[SourceFile]) -> Imports:
    """The import graph among `files` (Python and JS/TS ones; the rest are ignored)."""
    rels = {f.rel for f in files}
    index = python_index(rels)
    tops = {name.split(".")[0] for name in index}
    found = Imports()
    for source in files:
        if is_python(source.rel) and source.text is not None:
            _add_python(found, source, index, tops)
        elif is_js(source.rel) and source.text is not None:
            _add_js(found, source, rels)
    return found


def _add_python(found: Imports, source: SourceFile, index: dict[str, str],
                project_tops: set[str]) -> None:
    module = parse_python(source)
    if module is None:
        found.unparsed.append(source.rel)
        return
    internal, outside = python_targets(module, source.rel, index)
    found.edges |= {(source.rel, target) for target in internal}
    for name in outside - project_tops:  # a project package's missing module: no package
        (found.stdlib if name in _STDLIB else found.external)[name] += 1


def _add_js(found: Imports, source: SourceFile, rels: set[str]) -> None:
    packages = set()
    for spec in js_specifiers(source.text or ""):
        target = js_resolve(source.rel, spec, rels)
        if target and target != source.rel:
            found.edges.add((source.rel, target))
        elif (package := js_package(spec)) is not None:
            packages.add(("node:" + package) if spec.startswith("node:") else package)
    for package in packages:
        (found.stdlib if package.startswith("node:") else found.external)[package] += 1
