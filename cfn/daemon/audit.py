"""The audit worker's local version (used when Claude Code is missing): secrets, risky
calls and .env files git would commit, in the headless audit's result shape.

A finding says where and what, never the secret: at most a masked hint of four characters.
"""

from __future__ import annotations

import ast
import posixpath
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from cfn.daemon import codebase, sensitive, tree

MAX_FINDINGS = 200  # listed; all of them count towards the score
WEIGHTS = {"high": 25, "medium": 10, "low": 3}  # riskScore: the weights summed, capped at 100
_SHELL_CALLS = {"subprocess.run", "subprocess.call", "subprocess.Popen", "subprocess.check_call",
                "subprocess.check_output", "subprocess.getoutput", "run", "call", "Popen",
                "check_call", "check_output"}
_PY_CALLS = {
    "eval": ("eval", "medium", "eval() runs arbitrary code from a string"),
    "exec": ("exec", "medium", "exec() runs arbitrary code from a string"),
    "os.system": ("os-system", "medium", "os.system() runs a command through the shell"),
    "os.popen": ("os-system", "medium", "os.popen() runs a command through the shell"),
    "pickle.loads": ("pickle", "medium", "pickle.loads() runs code embedded in the data"),
    "pickle.load": ("pickle", "medium", "pickle.load() runs code embedded in the data"),
    "marshal.loads": ("pickle", "medium", "marshal.loads() trusts its input"),
}
_JS_RULES = (
    ("js-eval", "medium", "eval() runs arbitrary code from a string",
     re.compile(r"(?<![\w.$])eval\s*\(")),
    ("child-process-exec", "medium", "child_process exec runs a command through the shell",
     re.compile(r"\bchild_process\s*\)?\s*\.\s*exec(?:Sync)?\s*\(|(?<![\w.$])exec(?:Sync)?\s*\(")),
    ("inner-html", "low", "assigning innerHTML can inject markup (XSS)",
     re.compile(r"\.innerHTML\s*\+?=(?!=)")),
    ("dangerously-set-inner-html", "low", "dangerouslySetInnerHTML can inject markup (XSS)",
     re.compile(r"\bdangerouslySetInnerHTML\b")),
)
RECOMMENDATIONS = {
    "secret": "Move secrets out of the code base into the environment or a secret manager, "
              "and rotate every one that was committed.",
    "dotenv": "Add .env files to .gitignore (and `git rm --cached` any that are tracked).",
    "eval": "Replace eval/exec with explicit parsing (ast.literal_eval, JSON) or dispatch.",
    "shell": "Run commands with an argument list and shell=False; never build shell strings "
             "from input.",
    "deserialize": "Do not unpickle or yaml.load untrusted data: use JSON or yaml.safe_load.",
    "xss": "Render text with textContent or the framework's escaping, not raw HTML.",
}
_ADVICE = {"eval": "eval", "exec": "eval", "js-eval": "eval", "os-system": "shell",
           "shell-true": "shell", "child-process-exec": "shell", "pickle": "deserialize",
           "yaml-load": "deserialize", "inner-html": "xss",
           "dangerously-set-inner-html": "xss", "dotenv-not-ignored": "dotenv"}


def finding(severity: str, file: str, line: int | None, kind: str, description: str) -> dict:
    return {"severity": severity, "file": file, "line": line, "kind": kind,
            "description": description}


def audit(root: Path) -> dict:
    """The audit of the tree at `root`: {"vulnerabilities", "riskScore", "recommendations",
    "mode": "local", ...} (the headless audit's shape, plus counts)."""
    found, scanned, dotenvs = [], 0, []
    for source in codebase.sources(root, want=(".env",)):
        name = posixpath.basename(source.rel)
        if sensitive.is_dotenv(name):
            dotenvs.append(source.rel)
        if source.text is None and sensitive.is_dotenv(name):
            source = codebase.SourceFile(source.entry, _small_text(source.entry))
        if source.text is None:
            continue
        scanned += 1
        found += _secrets(source, dotenv=sensitive.is_dotenv(name))
        found += list(_risky(source))
    found += _dotenv_findings(root, dotenvs)
    return _report(found, scanned)


def _small_text(entry: tree.Entry) -> str | None:
    """A dotenv file's text (they have no extension the walker's reader knows)."""
    if entry.size > codebase.MAX_PARSE_BYTES:
        return None
    read = tree.read_text(entry.path)
    return None if read is None else read[0]


def _secrets(source: codebase.SourceFile, *, dotenv: bool) -> list[dict]:
    return [finding(s.severity, source.rel, s.line, s.kind,
                    f"{s.description} ({s.hint}); the value is not shown")
            for s in sensitive.find(source.text or "", dotenv=dotenv)]


# a Python file without any of these words makes none of the calls above: not parsed
_PY_WORDS = re.compile(r"eval|exec|system|popen|shell|pickle|marshal|yaml")


def _risky(source: codebase.SourceFile) -> Iterator[dict]:
    if codebase.is_python(source.rel):
        if not _PY_WORDS.search(source.text or ""):
            return
        module = codebase.parse_python(source)
        if module is not None:
            yield from _risky_python(module, source.rel)
    elif codebase.is_js(source.rel):
        yield from _risky_js(source.text or "", source.rel)


def _dotted(node: ast.AST) -> str:
    """`a.b.c` for a call's function, "" for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _risky_python(module: ast.Module, rel: str) -> Iterator[dict]:
    # loaders the module derives from a safe one (class Loader(yaml.SafeLoader)) are safe
    safe = {n.name for n in ast.walk(module) if isinstance(n, ast.ClassDef)
            and any("Safe" in _dotted(base) for base in n.bases)}
    for node in ast.walk(module):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name in _PY_CALLS:
            kind, severity, what = _PY_CALLS[name]
            yield finding(severity, rel, node.lineno, kind, what)
        elif name in _SHELL_CALLS and any(
                k.arg == "shell" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in node.keywords):
            yield finding("medium", rel, node.lineno, "shell-true",
                          f"{name}(..., shell=True) runs a command through the shell")
        elif name == "yaml.load" and not _safe_loader(node, safe):
            yield finding("medium", rel, node.lineno, "yaml-load",
                          "yaml.load() without a safe loader can build arbitrary objects")


def _safe_loader(call: ast.Call, safe: set[str]) -> bool:
    loader = next((k.value for k in call.keywords if k.arg == "Loader"),
                  call.args[1] if len(call.args) > 1 else None)
    name = _dotted(loader) if loader is not None else ""
    return "Safe" in name or name in safe


def _risky_js(text: str, rel: str) -> Iterator[dict]:
    shell = "child_process" in text  # a bare exec() is a shell only with child_process about
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(("//", "*", "/*")):
            continue
        for kind, severity, what, rx in _JS_RULES:
            if rx.search(line) and (kind != "child-process-exec" or shell):
                yield finding(severity, rel, number, kind, what)


def _dotenv_findings(root: Path, rels: list[str]) -> list[dict]:
    """The .env files git would commit: not ignored (git check-ignore), or already tracked."""
    if not rels:
        return []
    if not tree.is_repo(root):
        return [finding("low", rel, None, "dotenv-not-ignored",
                        "a .env file outside any git repository: make sure it is never "
                        "committed") for rel in rels]
    checked = tree.git_run(root, "check-ignore", "--", *rels)
    if checked is None or checked.returncode not in (0, 1):
        return []  # git could not say: claim nothing
    ignored = set(checked.stdout.splitlines())
    tracked = set((tree.git(root, "ls-files", "--", *rels) or "").splitlines())
    return [finding("high" if rel in tracked else "medium", rel, None, "dotenv-not-ignored",
                    "a .env file tracked by git: it is committed" if rel in tracked
                    else "a .env file .gitignore does not ignore: it could be committed")
            for rel in rels if rel not in ignored]


def _report(found: list[dict], scanned: int) -> dict:
    order = {"high": 0, "medium": 1, "low": 2}
    found.sort(key=lambda f: (order[f["severity"]], f["file"], f["line"] or 0))
    severities = Counter(f["severity"] for f in found)
    advice = {_ADVICE.get(f["kind"], "secret") for f in found}
    return {
        "mode": "local",
        "vulnerabilities": found[:MAX_FINDINGS],
        "riskScore": min(100, sum(WEIGHTS[s] * n for s, n in severities.items())),
        "recommendations": [RECOMMENDATIONS[a] for a in RECOMMENDATIONS if a in advice],
        "total": len(found),
        "by_severity": {s: severities.get(s, 0) for s in order},
        "files_scanned": scanned,
    }
