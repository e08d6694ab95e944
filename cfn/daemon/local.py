"""The workers' local versions: real work on the project, no model.

    result = run("map", project, workers.load_all(project.root))

Each returns a JSON-able dict with "mode": "local". Nothing is invented: a figure that
could not be measured is absent or None. The daemon records every result.
"""

from __future__ import annotations

import ast
import logging
import math
import posixpath
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cfn.daemon import audit as audit_worker
from cfn.daemon import codebase, context, tree

if TYPE_CHECKING:
    from cfn.daemon.workers import Worker
    from cfn.project import Project

log = logging.getLogger(__name__)

LARGEST = 10  # the largest files listed
MAX_EDGES = 2000  # import edges listed (all are counted)
MAX_LISTED = 500  # untested modules, undocumented definitions listed (all are counted)
PREDICT_COMMITS = 50
BENCHMARK_ROUNDS = 50
BENCHMARK_WAIT_S = 5.0  # a signal wait that is already satisfied returns long before this


def run(name: str, project: Project, workers: Mapping[str, Worker]) -> dict:
    """Run the local worker `name` on `project`; ValueError for a name with no local
    version."""
    table: dict[str, Callable[[], dict]] = {
        "map": lambda: codebase_map(project.root),
        "consolidate": lambda: consolidate(project),
        "benchmark": lambda: benchmark(project),
        "preload": lambda: preload(project, workers),
        "audit": lambda: audit_worker.audit(project.root),
        "testgaps": lambda: testgaps(project.root),
        "document": lambda: document(project.root),
        "predict": lambda: predict(project.root),
    }
    if name not in table:
        raise ValueError(f"no local worker {name!r}; local ones: {', '.join(table)}")
    started = time.monotonic()
    result = table[name]()
    log.info("local worker %s took %.2f s", name, time.monotonic() - started)
    return result


# --- map -----------------------------------------------------------------------------------

def codebase_map(root: Path) -> dict:
    """Files, languages (files, lines, bytes), the largest files and the import graph."""
    files = list(codebase.sources(root))
    graph = codebase.import_graph(files)
    inbound = Counter(target for _, target in graph.edges)
    edges = sorted(graph.edges)
    return {
        "mode": "local",
        "files": len(files),
        "bytes": sum(f.entry.size for f in files),
        "languages": _languages(files),
        "largest": [{"path": f.rel, "bytes": f.entry.size}
                    for f in sorted(files, key=lambda f: (-f.entry.size, f.rel))[:LARGEST]],
        "imports": {
            "edges": [list(e) for e in edges[:MAX_EDGES]],
            "edge_count": len(edges),
            "most_imported": [{"path": p, "importers": n} for p, n in
                              sorted(inbound.items(), key=lambda i: (-i[1], i[0]))[:LARGEST]],
            "external": dict(sorted(graph.external.items(), key=lambda i: (-i[1], i[0]))),
            "stdlib": dict(sorted(graph.stdlib.items(), key=lambda i: (-i[1], i[0]))),
            "unparsed": graph.unparsed,
        },
        "not_read": sum(1 for f in files if f.text is None and codebase.language(f.rel)
                        and f.entry.size > codebase.MAX_PARSE_BYTES),
    }


def _languages(files: list[codebase.SourceFile]) -> dict:
    """Per language: files, bytes, and lines of the files read (None when none was)."""
    stats: dict[str, dict] = {}
    for f in files:
        lang = codebase.language(f.rel) or "other"
        row = stats.setdefault(lang, {"files": 0, "bytes": 0, "lines": None,
                                      "lines_unmeasured": 0})
        row["files"] += 1
        row["bytes"] += f.entry.size
        if f.text is None:
            row["lines_unmeasured"] += 1  # too large, binary, unreadable, or no language
        else:
            row["lines"] = (row["lines"] or 0) + f.text.count("\n") + \
                (1 if f.text and not f.text.endswith("\n") else 0)
    return dict(sorted(stats.items(), key=lambda i: (-i[1]["files"], i[0])))


# --- consolidate ---------------------------------------------------------------------------

def consolidate(project: Project) -> dict:
    """Expiries for cfn's coordination keys that lost theirs, event streams trimmed to
    their cap, and the database optimized; removes no live data and no history."""
    from cfn.coordination import upkeep
    from cfn.db import db_path
    from cfn.db import upkeep as db_upkeep

    redis_done = upkeep.tidy(project.redis, key_ttl=project.key_ttl).to_dict()
    # a database is opened (and so created) only if there is one
    sqlite_done = db_upkeep.compact(project.sqlite) if db_path(project.home).exists() else None
    return {
        "mode": "local",
        "redis": {**redis_done, "key_ttl": project.key_ttl},
        "sqlite": sqlite_done,
        "history": {"rows_removed": 0,
                    "why": "no retention is configured for the history tables (tasks, "
                           "results, decisions, agents, cost_ledger): nothing is removable"},
    }


# --- benchmark -----------------------------------------------------------------------------

def benchmark(project: Project, rounds: int = BENCHMARK_ROUNDS) -> dict:
    """Coordination latency on the project's Redis, through the library: `rounds` rounds of
    context store and get, signal send and wait, and a report, on a private task whose keys
    are deleted afterwards. Per operation: p50, p95 and max in ms."""
    from cfn.coordination import upkeep

    task = f"daemon-benchmark-{secrets.token_hex(6)}"
    timings: dict[str, list[float]] = {op: [] for op in
                                       ("context_store", "context_get", "signal_send",
                                        "signal_wait", "report")}
    try:
        for number in range(rounds):
            _round(project, task, number, timings)
    finally:  # an interrupted run leaves nothing (and its keys expire regardless)
        deleted = upkeep.delete_task(project.redis, task)
    return {"mode": "local", "rounds": rounds, "task_id": task,
            "operations": {op: _percentiles(values) for op, values in timings.items()},
            "keys_deleted": deleted, "keys_left": upkeep.count_task(project.redis, task)}


def _round(project: Project, task: str, number: int, timings: dict[str, list[float]]) -> None:
    payload = f'{{"round": {number}}}'
    steps = (
        ("context_store", lambda: project.store_context(task, "bench", payload, ttl=3600)),
        ("context_get", lambda: project.get_context(task, "bench")),
        ("signal_send", lambda: project.send_signal(task, "bench", payload)),
        ("signal_wait", lambda: project.wait_signal(task, "bench", timeout=BENCHMARK_WAIT_S)),
        ("report", lambda: project.report(task, "benchmark", result={"round": number})),
    )
    for op, step in steps:
        started = time.perf_counter()
        step()
        timings[op].append((time.perf_counter() - started) * 1000)


def _percentiles(values: list[float]) -> dict:
    """Nearest-rank p50 and p95, and the max, in ms (None with no samples)."""
    if not values:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)], 3)

    return {"n": len(ordered), "p50_ms": rank(0.50), "p95_ms": rank(0.95),
            "max_ms": round(ordered[-1], 3)}


# --- preload -------------------------------------------------------------------------------

def preload(project: Project, workers: Mapping[str, Worker]) -> dict:
    """Warm the context cache of every enabled headless worker; per worker: files, bytes,
    characters and how many came from the cache already."""
    from cfn.config import ensure_home

    cache = ensure_home(project.home) / "daemon" / "cache"  # the state dir stays 0700
    done, without = {}, []
    for worker in sorted(workers.values(), key=lambda w: w.name):
        if not (worker.enabled and worker.mode == "headless"):
            continue
        if not worker.context_patterns:
            without.append(worker.name)  # its prompt carries no files
            continue
        found = context.build(project.root, worker.context_patterns,
                              max_files=worker.max_files, max_chars=worker.max_chars_per_file,
                              cache_dir=cache)
        done[worker.name] = {"files": len(found.files), "matched": found.matched,
                             "bytes": sum(f.size for f in found.files),
                             "chars": len(found.text), "cache_hits": found.cache_hits}
    return {"mode": "local", "workers": done, "without_patterns": without,
            "files": sum(w["files"] for w in done.values()),
            "cache_hits": sum(w["cache_hits"] for w in done.values())}


# --- testgaps ------------------------------------------------------------------------------

_NAMES = re.compile(r"[A-Za-z_][\w./-]*")  # dotted module names and paths a test mentions
_NOT_MODULES = frozenset({"__init__.py", "__main__.py", "conftest.py", "setup.py"})


def testgaps(root: Path) -> dict:
    """Source modules no test imports or names (Python and JS/TS), listed."""
    files = [f for f in codebase.sources(root)
             if codebase.is_python(f.rel) or codebase.is_js(f.rel)]
    rels = {f.rel for f in files}
    tests = [f for f in files if codebase.is_test(f.rel)]
    covered, names = _test_references(tests, rels)
    subjects = {codebase.test_subject(t.rel) for t in tests}
    modules = {file: name for name, file in codebase.python_index(rels).items()}

    def tested(rel: str) -> bool:
        stem = posixpath.basename(rel).split(".")[0]
        return rel in covered or stem in subjects or rel in names or modules.get(rel) in names

    result: dict = {"mode": "local", "tests": len(tests)}
    for label, wanted in (("python", codebase.is_python), ("javascript", codebase.is_js)):
        sources = sorted(r for r in rels if wanted(r) and not codebase.is_test(r)
                         and posixpath.basename(r) not in _NOT_MODULES)
        untested = [r for r in sources if not tested(r)]
        result[label] = {"modules": len(sources), "untested_count": len(untested),
                         "untested": untested[:MAX_LISTED]}
    result["untested_total"] = result["python"]["untested_count"] + \
        result["javascript"]["untested_count"]
    return result


def _test_references(tests: list[codebase.SourceFile], rels: set[str]
                     ) -> tuple[set[str], set[str]]:
    """(project files the tests import, names and paths the tests mention)."""
    index = codebase.python_index(rels)
    covered, names = set(), set()
    for test in tests:
        names |= set(_NAMES.findall(test.text or ""))
        if codebase.is_python(test.rel):
            module = codebase.parse_python(test)
            if module is not None:
                covered |= codebase.python_targets(module, test.rel, index)[0]
        else:
            covered |= {t for spec in codebase.js_specifiers(test.text or "")
                        if (t := codebase.js_resolve(test.rel, spec, rels))}
    return covered, names


# --- document ------------------------------------------------------------------------------

_JS_EXPORT = re.compile(
    r"^\s*export\s+(?:default\s+)?(?:async\s+)?(?:function\s*\*?\s*(?P<f>[\w$]+)|"
    r"class\s+(?P<c>[\w$]+)|(?:const|let|var)\s+(?P<v>[\w$]+)\s*(?::[^=]+)?=\s*(?:async\s+)?"
    r"(?:function\b|\([^)]*\)\s*(?::[^=]+)?=>|[\w$]+\s*=>))")


def document(root: Path) -> dict:
    """Public Python functions and classes without a docstring, and exported JS/TS
    functions and classes without a /** */ comment before them (test files left out)."""
    missing, public = [], Counter()
    for source in codebase.sources(root):
        if source.text is None or codebase.is_test(source.rel):
            continue
        if codebase.is_python(source.rel):
            module = codebase.parse_python(source)
            found = _python_public(module, source.rel) if module else []
            public["python"] += len(found)
        elif codebase.is_js(source.rel):
            found = _js_exported(source.text, source.rel)
            public["javascript"] += len(found)
        else:
            continue
        missing += [item for item, documented in found if not documented]
    by_language = Counter("python" if codebase.is_python(m["file"]) else "javascript"
                          for m in missing)
    return {"mode": "local",
            "python": {"public": public["python"], "undocumented": by_language["python"]},
            "javascript": {"exported": public["javascript"],
                           "undocumented": by_language["javascript"]},
            "undocumented_total": len(missing), "undocumented": missing[:MAX_LISTED]}


def _python_public(module: ast.Module, rel: str) -> list[tuple[dict, bool]]:
    """(definition, has a docstring) for each public module-level function and class, and
    each public method of a public class."""
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    found = []
    for node in module.body:
        if not isinstance(node, kinds) or node.name.startswith("_"):
            continue
        found.append(_definition(node, rel, node.name))
        if isinstance(node, ast.ClassDef):
            found += [_definition(item, rel, f"{node.name}.{item.name}") for item in node.body
                      if isinstance(item, kinds[:2]) and not item.name.startswith("_")]
    return found


def _definition(node: ast.AST, rel: str, name: str) -> tuple[dict, bool]:
    kind = "class" if isinstance(node, ast.ClassDef) else "function"
    return ({"file": rel, "line": node.lineno, "name": name, "kind": kind},
            ast.get_docstring(node) is not None)


def _js_exported(text: str, rel: str) -> list[tuple[dict, bool]]:
    lines = text.splitlines()
    found = []
    for number, line in enumerate(lines):
        match = _JS_EXPORT.match(line)
        if match:
            name = match.group("f") or match.group("c") or match.group("v")
            kind = "class" if match.group("c") else "function"
            found.append(({"file": rel, "line": number + 1, "name": name, "kind": kind},
                          _has_doc_comment(lines, number)))
    return found


def _has_doc_comment(lines: list[str], index: int) -> bool:
    """Whether a /** */ block ends just before line `index` (blank and decorator lines
    between are allowed)."""
    above = index - 1
    while above >= 0 and (not lines[above].strip() or lines[above].lstrip().startswith("@")):
        above -= 1
    if above < 0 or not lines[above].rstrip().endswith("*/"):
        return False
    while above >= 0 and "/*" not in lines[above]:
        above -= 1
    return above >= 0 and "/**" in lines[above]


# --- predict -------------------------------------------------------------------------------

def predict(root: Path, commits: int = PREDICT_COMMITS) -> dict:
    """From git: the files changed most recently and most often in the last `commits`
    commits, the uncommitted ones, and the tests that go with them."""
    empty = {"mode": "local", "git": False, "commits": 0, "recent": [], "frequent": [],
             "uncommitted": [], "tests": []}
    if not tree.is_repo(root):
        return empty
    history = _history(root, commits)
    exists = {p: (root / p).is_file() for c in history for p in c}
    recent = list(dict.fromkeys(p for c in history for p in c if exists[p]))[:LARGEST]
    counts = Counter(p for c in history for p in set(c) if exists[p])
    frequent = [{"path": p, "commits": n} for p, n in
                sorted(counts.items(), key=lambda i: (-i[1], i[0]))[:LARGEST]]
    uncommitted = _uncommitted(root)
    wanted = [*uncommitted, *recent, *(f["path"] for f in frequent)]
    return {**empty, "git": True, "commits": len(history), "recent": recent,
            "frequent": frequent, "uncommitted": uncommitted,
            "tests": _tests_for(root, wanted)[:LARGEST * 2]}


def _history(root: Path, commits: int) -> list[list[str]]:
    """The files of each of the last `commits` commits, newest first, relative to `root`."""
    out = tree.git(root, "log", f"-n{max(1, commits)}", "--relative", "--name-only",
                   "--format=%x1e%h") or ""
    return [[line for line in chunk.splitlines()[1:] if line.strip()]
            for chunk in out.split("\x1e") if chunk.strip()]


def _uncommitted(root: Path) -> list[str]:
    """Changed and new files not yet committed, relative to `root`."""
    prefix = (tree.git(root, "rev-parse", "--show-prefix") or "").strip()
    out = tree.git(root, "status", "--porcelain", "--untracked-files=all", "--", ".") or ""
    paths = []
    for line in out.splitlines():
        path = line[3:].split(" -> ")[-1].strip('"')
        if path.startswith(prefix):
            paths.append(path[len(prefix):])
    return paths


def _tests_for(root: Path, paths: list[str]) -> list[str]:
    """The test files that go with `paths`: each test among them, and the tracked tests
    whose name names one of them (test_foo.py, foo.test.ts for foo.py / foo.ts)."""
    tests = [p for p in (tree.git(root, "ls-files") or "").splitlines() if codebase.is_test(p)]
    by_subject: dict[str, list[str]] = {}
    for test in tests:
        by_subject.setdefault(codebase.test_subject(test), []).append(test)
    found = []
    for path in paths:
        if codebase.is_test(path):
            found.append(path)
        else:
            found += by_subject.get(posixpath.basename(path).split(".")[0], [])
    return list(dict.fromkeys(found))
