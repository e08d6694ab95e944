"""The daemon's local workers and the headless workers' context, on real trees, real git
repositories, a real Redis and a real SQLite database."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
from pathlib import Path

import pytest

from cfn import defaults, keys
from cfn.daemon import context, local, sensitive, workers
from cfn.project import Project

# fake secrets, built so this file itself holds none literally
AWS_KEY = "AKIA" + "Q7XK2M9PLW4RT8ZB"
ANTHROPIC_KEY = "sk-" + "ant-api03-" + "Zx81Kq0LmW2vB7nR4tY9uP3s"
GITHUB_TOKEN = "gh" + "p_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
PASSWORD = "Tr0ub4dor" + "&3horse"
DB_SECRET = "q9" + "Lw2Rt7Yx4"


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org",
                           "-c", "commit.gpgsign=false", "-C", str(root), *args],
                          check=True, capture_output=True, text=True, timeout=30).stdout


def commit(root: Path, message: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        write(root, rel, text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


def repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    return path


# --- context ----------------------------------------------------------------------------

def test_context_sorts_caps_and_skips(tmp_path):
    root, outside = tmp_path / "proj", tmp_path / "outside"
    write(outside, "id_rsa.py", "OUTSIDE-SECRET = 1\n")
    write(root, "src/b.py", "b = 2\n")
    write(root, "src/a.py", "a = 1\n")
    write(root, "src/long.py", "x" * 600)
    write(root, "top.py", "top = 0\n")
    for hidden in (".venv/lib/v.py", "node_modules/m/n.py", ".hidden/h.py", "__pycache__/c.py",
                   ".cfn/state.py", ".git/hooks/g.py", "src/.secret.py"):
        write(root, hidden, "SKIPPED = 1\n")
    (root / "src/bin.py").write_bytes(b"\x00\x01binary")
    (root / "src/leak.py").symlink_to(outside / "id_rsa.py")  # leads out of the root
    (root / "src/alias.py").symlink_to(root / "src/a.py")  # stays inside: a file like any

    found = context.build(root, ["**/*.py"], max_files=3, max_chars=100)

    assert [f.path for f in found.files] == ["src/a.py", "src/alias.py", "src/b.py"]
    assert found.matched == 5  # a, alias, b, long, top: not bin, leak or the skipped dirs
    assert found.text.startswith("--- src/a.py ---\na = 1\n\n\n--- src/alias.py ---")
    everything = context.build(root, ["**/*.py"], max_files=50, max_chars=100)
    assert "OUTSIDE-SECRET" not in everything.text and "SKIPPED" not in everything.text
    long = next(f for f in everything.files if f.path == "src/long.py")
    assert long.truncated and long.chars == 100
    assert "[cut: the first 100 characters of 600 bytes]" in everything.text
    assert not any(f.truncated for f in everything.files if f.path != "src/long.py")
    assert context.build(root, ["nothing/*.md"]) == context.Context([], "", 0)


def test_context_finds_hidden_names_only_when_a_pattern_spells_them(tmp_path):
    write(tmp_path, ".env", "A=1\n")
    write(tmp_path, "app/.env.local", "B=2\n")
    write(tmp_path, ".github/workflows/ci.yml", "on: push\n")
    write(tmp_path, "app/main.py", "pass\n")

    assert [f.path for f in context.build(tmp_path, ["**/.env*"]).files] == \
        [".env", "app/.env.local"]
    assert [f.path for f in context.build(tmp_path, ["**/*"]).files] == ["app/main.py"]
    assert [f.path for f in context.build(tmp_path, [".github/**/*.yml"]).files] == \
        [".github/workflows/ci.yml"]


def test_context_cache_is_reused_until_a_file_changes(tmp_path):
    root, cache = tmp_path / "proj", tmp_path / "cache"
    write(root, "a.py", "a = 1\n")
    write(root, "b.py", "b = 2\n")

    first = context.build(root, ["*.py"], cache_dir=cache)
    second = context.build(root, ["*.py"], cache_dir=cache)
    (cache_file,) = cache.iterdir()
    assert (first.cache_hits, second.cache_hits) == (0, 2)
    assert second.text == first.text
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o600
    assert set(json.loads(cache_file.read_text())["files"]) == {"a.py", "b.py"}

    write(root, "b.py", "b = 'changed'\n")  # another size: another key
    third = context.build(root, ["*.py"], cache_dir=cache)
    assert [f.from_cache for f in third.files] == [True, False]
    assert "b = 'changed'" in third.text
    other_caps = context.build(root, ["*.py"], max_chars=3, cache_dir=cache)
    assert other_caps.cache_hits == 0 and len(list(cache.iterdir())) == 2


def test_recent_changes_lists_commits_newest_first_and_uncommitted_files(tmp_path):
    root = repo(tmp_path / "r")
    commit(root, "first commit", {"old/one.py": "1\n"})
    commit(root, "second commit", {"new/two.py": "2\n"})
    write(root, "new/two.py", "2 changed\n")

    text = context.recent_changes(root)
    assert " M new/two.py" in text
    assert text.index("second commit") < text.index("first commit")
    assert "old/one.py" in text
    assert "first commit" not in context.recent_changes(root, limit=1)
    assert context.recent_changes(tmp_path / "not-a-repo-dir") == ""
    (tmp_path / "plain").mkdir()
    assert context.recent_changes(tmp_path / "plain") == ""


def test_redact_masks_secrets_and_keeps_the_rest():
    text = f'key = "{AWS_KEY}"\nother = 1\npassword = "{PASSWORD}"\n'
    masked = context.redact(text)
    assert AWS_KEY not in masked and PASSWORD not in masked
    assert "other = 1" in masked and "AKIA…[redacted aws-access-key]" in masked


# --- map ------------------------------------------------------------------------------------

def test_map_counts_languages_and_builds_the_import_graph(tmp_path):
    write(tmp_path, "pkg/__init__.py", "")
    write(tmp_path, "pkg/core.py", "import os\nimport requests\nfrom pkg import util\n")
    write(tmp_path, "pkg/util.py", "from . import core\nimport requests.adapters\n\n\n")
    write(tmp_path, "tests/test_core.py", "import pytest\nfrom pkg.core import x\n")
    write(tmp_path, "web/app.ts", "import { h } from './lib';\nimport React from 'react';\n"
                                  "const fs = require('node:fs');\n")
    write(tmp_path, "web/lib/index.ts", "export const h = 1;\nimport x from '@scope/pkg/sub';\n")
    write(tmp_path, "pkg/huge.py", "x = 1\n" * 200_000)  # 1.2 MB: counted, not parsed
    write(tmp_path, "node_modules/react/index.js", "module.exports = 1;\n")

    found = local.run("map", Project.open(tmp_path, env={}), {})

    assert found["mode"] == "local" and found["files"] == 7
    python = found["languages"]["Python"]
    assert python["files"] == 5 and python["lines"] == 3 + 4 + 2
    assert python["lines_unmeasured"] == 1 and found["not_read"] == 1
    assert found["largest"][0]["path"] == "pkg/huge.py"
    edges = {tuple(e) for e in found["imports"]["edges"]}
    assert edges == {("pkg/core.py", "pkg/util.py"), ("pkg/util.py", "pkg/core.py"),
                     ("tests/test_core.py", "pkg/core.py"), ("web/app.ts", "web/lib/index.ts")}
    assert found["imports"]["external"] == {"requests": 2, "@scope/pkg": 1, "pytest": 1,
                                            "react": 1}
    assert found["imports"]["stdlib"] == {"node:fs": 1, "os": 1}


# --- audit ----------------------------------------------------------------------------------

def test_audit_finds_secrets_and_risky_calls_and_never_shows_a_secret(tmp_path, caplog):
    root = repo(tmp_path / "r")
    write(root, ".gitignore", ".env.local\n")
    write(root, ".env", f"DB_PASSWORD={DB_SECRET}\n")  # not ignored
    write(root, ".env.local", f"API_TOKEN={DB_SECRET}\n")  # ignored
    write(root, ".env.example", "DB_PASSWORD=changeme\n")
    write(root, "app/config.py", f'AWS = "{AWS_KEY}"\nclaude = "{ANTHROPIC_KEY}"\n'
                                 f'password = "{PASSWORD}"\nplaceholder_password = "changeme!"\n')
    write(root, "app/deploy.sh", f"export GH={GITHUB_TOKEN}\n")
    write(root, "app/run.py", "import subprocess, pickle, yaml\n"
                              "subprocess.run(cmd, shell=True)\n"
                              "eval(text)\n"
                              "pickle.loads(blob)\n"
                              "yaml.load(doc)\n"
                              "yaml.load(doc, Loader=yaml.SafeLoader)\n"
                              "yaml.safe_load(doc)\n")
    write(root, "web/page.js", "el.innerHTML = input;\n// eval(old)\n")
    caplog.set_level(logging.DEBUG)

    found = local.run("audit", Project.open(root, env={}), {})

    shown = json.dumps(found)
    for secret in (AWS_KEY, ANTHROPIC_KEY, GITHUB_TOKEN, PASSWORD, DB_SECRET):
        assert secret not in shown and secret not in caplog.text
        assert secret[:5] not in shown  # the hint is four characters at most
    where = {(v["file"], v["line"], v["kind"]) for v in found["vulnerabilities"]}
    assert where == {
        ("app/config.py", 1, "aws-access-key"), ("app/config.py", 2, "anthropic-key"),
        ("app/config.py", 3, "assigned-secret"), ("app/deploy.sh", 1, "github-token"),
        (".env", 1, "env-secret"), (".env.local", 1, "env-secret"),
        (".env", None, "dotenv-not-ignored"),
        ("app/run.py", 2, "shell-true"), ("app/run.py", 3, "eval"), ("app/run.py", 4, "pickle"),
        ("app/run.py", 5, "yaml-load"), ("web/page.js", 1, "inner-html")}
    assert all(set(v) == {"severity", "file", "line", "kind", "description"}
               for v in found["vulnerabilities"])
    assert found["mode"] == "local" and found["riskScore"] == 100
    assert found["by_severity"] == {"high": 3, "medium": 8, "low": 1}
    assert any("rotate" in r for r in found["recommendations"])


def test_audit_of_a_clean_tree_scores_zero(tmp_path):
    write(tmp_path, "app.py", 'import os\nKEY = os.environ["API_KEY"]\nsecret_env = "API_KEY"\n')
    found = local.run("audit", Project.open(tmp_path, env={}), {})
    assert (found["vulnerabilities"], found["riskScore"], found["recommendations"]) == \
        ([], 0, [])
    assert found["files_scanned"] == 1


def test_sensitive_hints_are_short():
    assert [sensitive.hint(v) for v in ("abcdefghijklmnop", "abcdefgh", "ab")] == \
        ["abcd…", "ab…", "…"]


# --- testgaps, document, predict --------------------------------------------------------------

def test_testgaps_lists_modules_no_test_imports_or_names(tmp_path):
    for name in ("imported", "named", "by_file_name", "untested"):
        write(tmp_path, f"pkg/{name}.py", "x = 1\n")
    write(tmp_path, "pkg/__init__.py", "")
    write(tmp_path, "tests/test_one.py", "from pkg import imported\n"
                                         "TARGET = 'pkg.named'\n")
    write(tmp_path, "tests/test_by_file_name.py", "def test(): pass\n")
    write(tmp_path, "web/util.ts", "export const u = 1;\n")
    write(tmp_path, "web/lonely.ts", "export const l = 1;\n")
    write(tmp_path, "web/__tests__/u.ts", "import { u } from '../util';\n")

    found = local.run("testgaps", Project.open(tmp_path, env={}), {})

    assert found["python"] == {"modules": 4, "untested_count": 1,
                               "untested": ["pkg/untested.py"]}
    assert found["javascript"] == {"modules": 2, "untested_count": 1,
                                   "untested": ["web/lonely.ts"]}
    assert (found["tests"], found["untested_total"]) == (3, 2)


def test_document_lists_public_definitions_without_docs(tmp_path):
    write(tmp_path, "lib.py", '''
def documented():
    """Yes."""


def bare():
    pass


def _private():
    pass


class Thing:
    def method(self):
        pass

    def _hidden(self):
        pass
''')
    write(tmp_path, "ui.ts", "/**\n * Adds.\n */\nexport function add(a, b) { return a + b; }\n\n"
                             "export const sub = (a, b) => a - b;\n"
                             "// plain comment\nexport async function load() {}\n"
                             "const internal = () => 1;\n")
    write(tmp_path, "tests/test_lib.py", "def test_x():\n    pass\n")

    found = local.run("document", Project.open(tmp_path, env={}), {})

    names = [(d["file"], d["name"], d["kind"]) for d in found["undocumented"]]
    assert names == [("lib.py", "bare", "function"), ("lib.py", "Thing", "class"),
                     ("lib.py", "Thing.method", "function"), ("ui.ts", "sub", "function"),
                     ("ui.ts", "load", "function")]
    assert found["python"] == {"public": 4, "undocumented": 3}
    assert found["javascript"] == {"exported": 3, "undocumented": 2}


def test_predict_ranks_recent_and_frequent_files_with_their_tests(tmp_path):
    root = repo(tmp_path / "r")
    commit(root, "one", {"app/core.py": "1\n", "tests/test_core.py": "t\n",
                         "app/gone.py": "g\n"})
    commit(root, "two", {"app/core.py": "2\n", "app/other.py": "o\n"})
    git(root, "rm", "-q", "app/gone.py")
    git(root, "commit", "-q", "-m", "three")
    write(root, "app/draft.py", "new\n")

    found = local.run("predict", Project.open(root, env={}), {})

    assert found["git"] is True and found["commits"] == 3
    assert found["recent"] == ["app/core.py", "app/other.py", "tests/test_core.py"]
    assert found["frequent"][0] == {"path": "app/core.py", "commits": 2}
    assert "app/gone.py" not in json.dumps(found)  # deleted files are no prediction
    assert found["uncommitted"] == ["app/draft.py"]
    assert found["tests"] == ["tests/test_core.py"]
    plain = tmp_path / "plain"
    plain.mkdir()
    assert local.predict(plain) == {"mode": "local", "git": False, "commits": 0, "recent": [],
                                    "frequent": [], "uncommitted": [], "tests": []}


# --- Redis and SQLite: consolidate, benchmark, preload --------------------------------------

def test_keys_kind_names_every_key_cfn_makes():
    task = "t-1"
    assert [keys.kind(k) for k in (
        keys.context(task, "k"), keys.signal(task, "c"), keys.signal_sent(task, "c", "s"),
        keys.appended(keys.results(task), "a"), keys.results(task),
        keys.completion(task, "sent"), keys.events(task), keys.orchestrator(task),
        keys.heartbeat(task, "a"), keys.provider_cooldown("p"), keys.lock(task, "n"),
        keys.lock_fence(task, "n"), keys.lock_wake(task, "n"), "cfn:failover", "mine:x")] == [
        "context", "coord", "sent", "sent", "coord", "coord", "events", "orchestrator",
        "heartbeat", "cooldown", "lock", "lock-fence", "lock-wake", None, None]


def test_consolidate_gives_lost_expiries_trims_events_and_keeps_live_data(project, env, r):
    with Project.open(project, env=env) as proj:
        proj.send_signal("t1", "go", "{}")
        proj.store_context("t1", "notes", "kept forever by design")
        held = proj.acquire_lock("t1", "l", ttl=60)
        signal = keys.signal("t1", "go")
        r.persist(signal)  # as an older version or a crash left it
        stream = keys.events("t1")
        over = defaults.EVENTS_MAXLEN + 150
        for start in range(0, over, 2000):
            pipe = r.pipeline(transaction=False)
            for number in range(start, min(start + 2000, over)):
                pipe.xadd(stream, {"type": "x", "n": str(number)})
            pipe.execute()
        r.set("someone-elses:key", "1")
        r.set("cfn:failover", "1")
        _ = proj.sqlite  # the database exists, so it is optimized too

        done = local.run("consolidate", proj, {})

        assert done["mode"] == "local"
        assert done["redis"]["expiry_given"] == {"coord": 1, "events": 1}
        assert 0 < r.ttl(signal) <= proj.key_ttl and 0 < r.ttl(stream) <= proj.key_ttl
        assert r.llen(signal) == 1  # the queued signal is still there
        assert r.xlen(stream) == defaults.EVENTS_MAXLEN
        assert r.xrange(stream, count=1)[0][1]["n"] == "150"  # the oldest went
        assert (done["redis"]["streams_trimmed"], done["redis"]["entries_trimmed"]) == (1, 150)
        assert done["redis"]["kept_without_expiry"] == {"context": 1, "lock-fence": 1}
        assert r.ttl(keys.context("t1", "notes")) == -1
        assert r.ttl(keys.lock_fence("t1", "l")) == -1 and r.get(keys.lock("t1", "l"))
        assert r.ttl("someone-elses:key") == -1 and r.ttl("cfn:failover") == -1
        assert done["sqlite"]["optimized"] is True
        assert done["history"]["rows_removed"] == 0
        again = local.run("consolidate", proj, {})
        assert again["redis"]["expiry_given_total"] == again["redis"]["entries_trimmed"] == 0
        proj.release_lock("t1", "l", held.token)


def test_consolidate_without_a_database_creates_none(project, env, r):
    with Project.open(project, env=env) as proj:
        done = local.run("consolidate", proj, {})
        assert done["sqlite"] is None and not (proj.home / "cfn.db").exists()


def test_benchmark_measures_each_operation_and_leaves_no_key(project, env, r):
    with Project.open(project, env=env) as proj:
        proj.store_context("other-task", "k", "v")

        done = local.run("benchmark", proj, {})

        assert done["mode"] == "local" and done["rounds"] == 50
        assert set(done["operations"]) == {"context_store", "context_get", "signal_send",
                                           "signal_wait", "report"}
        for figures in done["operations"].values():
            assert figures["n"] == 50
            assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["max_ms"]
        assert done["task_id"].startswith("daemon-benchmark-")
        assert done["keys_deleted"] > 0 and done["keys_left"] == 0
        assert not list(r.scan_iter(match=f"*{done['task_id']}*"))
        assert proj.get_context("other-task", "k") == "v"


def test_preload_warms_the_cache_of_enabled_headless_workers(project, env, r):
    write(project, "src/app.py", "print('hi')\n")
    write(project, "workers/mine.toml", 'description = "mine"\nmode = "headless"\n'
                                        'context_patterns = ["src/**/*.py"]\nprompt = "x"\n')
    write(project, "workers/optimize.toml", "enabled = false\n")
    defined = workers.load_all(project)
    with Project.open(project, env=env) as proj:
        first = local.run("preload", proj, defined)
        second = local.run("preload", proj, defined)
        cache = proj.home / "daemon" / "cache"

        headless = {n for n, w in defined.items() if w.enabled and w.mode == "headless"}
        assert set(first["workers"]) == headless and {"audit", "mine"} <= headless
        assert "optimize" not in headless
        assert first["workers"]["mine"] == {"files": 1, "matched": 1, "bytes": 12,
                                            "chars": len("--- src/app.py ---\nprint('hi')\n"),
                                            "cache_hits": 0}
        assert second["workers"]["mine"]["cache_hits"] == 1
        assert second["cache_hits"] == second["files"] == first["files"] > 1
        assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in cache.iterdir())
        assert stat.S_IMODE(proj.home.stat().st_mode) == 0o700


def test_run_refuses_a_worker_without_a_local_version(tmp_path):
    with pytest.raises(ValueError, match="no local worker 'optimize'"):
        local.run("optimize", Project.open(tmp_path, env={}), {})
    assert set(workers.LOCAL) <= {"map", "consolidate", "benchmark", "preload", "audit",
                                  "testgaps", "document", "predict"}


def test_the_state_directory_is_never_read(tmp_path):
    write(tmp_path, ".cfn/token.secret", f"{AWS_KEY}\n")
    write(tmp_path, "a.py", "a = 1\n")
    os.chmod(tmp_path / ".cfn", 0o700)
    assert local.run("audit", Project.open(tmp_path, env={}), {})["vulnerabilities"] == []
    assert context.build(tmp_path, ["**/*", ".cfn/*"]).text == "--- a.py ---\na = 1\n"
