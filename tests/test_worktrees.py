"""Worktrees: real git repositories, real port probes, a real compose stack through podman."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from cfn import embedded, keys
from cfn.db import open_db
from cfn.worktrees import compose, manage, ports
from conftest import redis_tool
from containers import build_test_image, podman_available

GIT_ID = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
          "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}

COMPOSE = """\
services:
  web:
    image: {image}
    stop_signal: SIGKILL  # busybox as PID 1 ignores SIGTERM: no 10 s grace period to wait out
    command:
      - /bin/sh
      - -c
      - >-
        mkdir -p /www && echo web-$$WORKTREE > /www/index.html
        && exec httpd -f -p 8080 -h /www
    environment:
      WORKTREE: "${{COMPOSE_PROJECT_NAME}}"
    ports: ["8080:8080"]
  api:
    image: {image}
    stop_signal: SIGKILL
    command:
      - /bin/sh
      - -c
      - >-
        mkdir -p /data/www && echo api > /data/www/index.html
        && exec httpd -f -p 9000 -h /data/www
    ports: ["127.0.0.1:9000:9000"]
    volumes: ["data:/data"]
  worker:
    image: {image}
    command: ["/bin/sleep", "3600"]
    stop_signal: SIGKILL
volumes:
  data: {{}}
  shared:
    external: true
"""


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ID}).stdout


def make_repo(path: Path, compose_text: str | None = None) -> Path:
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=path)
    (path / "README").write_text("a project\n")
    if compose_text is not None:
        (path / "compose.yaml").write_text(compose_text)
    git("add", ".", cwd=path)
    git("commit", "-q", "-m", "initial", cwd=path)
    return path


@pytest.fixture
def repo(tmp_path) -> Path:
    return make_repo(tmp_path / "repo", COMPOSE.format(image="localhost/none:latest"))


@pytest.fixture
def db(tmp_path):
    return open_db(tmp_path / "state")


def colliding(branch: str, count: int) -> list[str]:
    """`count` other branch names whose preferred block is the same as `branch`'s."""
    wanted, found, n = ports.preferred_block(branch), [], 0
    while len(found) < count:
        n += 1
        if ports.preferred_block(f"twin-{n}") == wanted:
            found.append(f"twin-{n}")
    return found


def block_of(port: int) -> int:
    return (port - ports.FIRST_PORT) // ports.BLOCK


def test_fifty_worktrees_never_share_a_port(db, repo):
    made = [manage.up(db, repo, f"feature/w{i}", start=False) for i in range(50)]
    made += [manage.up(db, repo, twin, start=False) for twin in colliding("feature/w0", 3)]
    every = [p for w in made for p in w.ports.values()]
    assert len(every) == len(set(every)) == len(made) * 2  # api and web: what compose publishes
    assert min(every) >= 1024
    blocks = [{block_of(p) for p in w.ports.values()} for w in made]
    assert all(len(b) == 1 for b in blocks), "a worktree's ports stay inside its own block"
    assert len({b.pop() for b in blocks}) == len(made), "no two worktrees share a block"
    listing = git("worktree", "list", "--porcelain", cwd=repo).splitlines()
    assert sum(line.startswith("worktree ") for line in listing) == 1 + len(made)


def test_a_taken_block_moves_to_the_next_free_one(db, repo):
    first = manage.up(db, repo, "feature/a", start=False)
    twin = manage.up(db, repo, colliding("feature/a", 1)[0], start=False)
    assert block_of(twin.ports["web"]) == (block_of(first.ports["web"]) + 1) % ports.BLOCKS


def test_concurrent_ups_of_colliding_branches_get_different_blocks(cfn, repo, env):
    names = ["feature/race", *colliding("feature/race", 3)]
    racing = [subprocess.Popen([sys.executable, "-m", "cfn", "worktree", "up", name,
                                "--no-start", "--json"], cwd=repo, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for name in names]
    made = []
    for proc in racing:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        made.append(json.loads(out))
    blocks = [{block_of(p) for p in w["ports"].values()} for w in made]
    assert all(len(b) == 1 for b in blocks)
    assert len({b.pop() for b in blocks}) == len(names)


def test_a_port_bound_by_another_process_is_skipped(db, repo):
    preferred = ports.FIRST_PORT + ports.preferred_block("feature/busy") * ports.BLOCK
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", preferred + 1))  # the web port of the preferred block
        squatter.listen()
        made = manage.up(db, repo, "feature/busy", start=False)
    assert preferred + 1 not in made.ports.values()
    assert block_of(made.ports["web"]) != block_of(preferred)


def test_same_ports_after_down_and_up_and_down_releases(db, repo):
    made = manage.up(db, repo, "feature/stable", start=False)
    manage.down(db, repo, "feature/stable")
    assert manage.get(db, "feature/stable").ports == {}
    # released: a branch that prefers the same block now gets it
    twin = manage.up(db, repo, colliding("feature/stable", 1)[0], start=False)
    assert twin.ports == made.ports
    manage.down(db, repo, twin.branch)
    assert manage.up(db, repo, "feature/stable", start=False).ports == made.ports


def test_up_is_idempotent(cfn, repo):
    first = cfn("worktree", "up", "feature/auth", "--no-start", "--json", cwd=repo)
    assert first.returncode == 0, first.stderr
    files = {name: (Path(json.loads(first.stdout)["path"]) / name).read_text()
             for name in (manage.ENV_FILE, manage.OVERRIDE_FILE)}
    again = cfn("worktree", "up", "feature/auth", "--no-start", "--json", cwd=repo)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == json.loads(first.stdout)
    assert files == {name: (Path(json.loads(again.stdout)["path"]) / name).read_text()
                     for name in files}
    listed = json.loads(cfn("worktree", "ls", "--json", cwd=repo).stdout)
    assert [w["branch"] for w in listed] == ["feature/auth"]
    # cfn's files stay out of the agents' commits, and excluding them once is enough
    assert git("status", "--porcelain", cwd=Path(listed[0]["path"])) == ""
    assert (repo / ".git/info/exclude").read_text().count("/.cfn/") == 1


@pytest.mark.parametrize("branch", ["feature/auth", "release/v1.2.3", "Feature/CamelCase",
                                    "fix/ünïcödé-名前", "\"q\"/${HOME}#it's"])
def test_branch_names_git_accepts_work(cfn, repo, branch):
    made = cfn("worktree", "up", branch, "--no-start", "--json", cwd=repo)
    assert made.returncode == 0, made.stderr
    worktree = json.loads(made.stdout)
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=Path(worktree["path"])).strip() == branch
    assert worktree["project"].startswith("cfn-")
    assert set(worktree["project"]) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    evaluated = subprocess.run(
        ["sh", "-c", 'eval "$(cat)"; echo "$WORKTREE_BRANCH|$COMPOSE_PROJECT_NAME|$REDIS_URL"'],
        input=cfn("worktree", "env", branch, cwd=repo).stdout, capture_output=True, text=True)
    # the compose file defines no redis: no REDIS_URL
    assert evaluated.stdout.strip() == f"{branch}|{worktree['project']}|"


@pytest.mark.parametrize("branch", ["bad..name", "ends.lock", "has space", "trailing/", "a~b"])
def test_a_name_git_rejects_gets_its_reason_and_exit_2(cfn, repo, tmp_path, branch):
    done = cfn("worktree", "up", branch, "--no-start", cwd=repo)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not a valid branch name" in done.stderr
    assert [p.name for p in tmp_path.glob("repo-*")] == []  # no worktree directory
    assert json.loads(cfn("worktree", "ls", "--json", cwd=repo).stdout) == []


def test_unknown_branch_and_no_repository_are_clear(cfn, repo, tmp_path):
    missing = cfn("worktree", "ports", "nope", cwd=repo)
    assert missing.returncode == 1 and "cfn worktree up nope" in missing.stderr
    outside = tmp_path / "plain"
    outside.mkdir()
    done = cfn("worktree", "up", "x", cwd=outside)
    assert done.returncode == 2 and "not in a git repository" in done.stderr


def test_override_is_valid_compose_with_leased_ports_and_isolated_volumes(db, repo):
    made = manage.up(db, repo, "feature/override", start=False)
    override = compose.load_yaml((Path(made.path) / manage.OVERRIDE_FILE).read_text())
    assert override["services"] == {
        "web": {"ports": [f"{made.ports['web']}:8080/tcp"]},
        "api": {"ports": [f"127.0.0.1:{made.ports['api']}:9000/tcp"]},  # address kept
    }
    # the project's own volume gets the worktree's name; the external one stays shared
    assert override["volumes"] == {"data": {"name": f"{made.project}_data"}}
    env = dict(line.split("=", 1) for line in
               (Path(made.path) / manage.ENV_FILE).read_text().splitlines())
    assert env["COMPOSE_PROJECT_NAME"] == made.project
    assert env["CFN_WEB_PORT"] == str(made.ports["web"])
    other = manage.up(db, repo, "feature/other", start=False)
    assert compose.load_yaml((Path(other.path) / manage.OVERRIDE_FILE).read_text())[
        "volumes"]["data"]["name"] != override["volumes"]["data"]["name"]


@pytest.mark.skipif(shutil.which("podman-compose") is None, reason="needs podman-compose")
def test_compose_tool_accepts_the_merged_files(db, repo):
    branch = "\"q\"/${HOME}#it's"  # git allows all this; compose must take it literally
    made = manage.up(db, repo, branch, start=False)
    where = Path(made.path)
    merged = subprocess.run(
        ["podman-compose", "-p", made.project, "-f", "compose.yaml", "-f",
         manage.OVERRIDE_FILE, "--env-file", manage.ENV_FILE, "config"],
        cwd=where, capture_output=True, text=True, timeout=60)
    assert merged.returncode == 0, merged.stderr
    config = compose.load_yaml(merged.stdout)
    web_ports = [str(p) for p in config["services"]["web"]["ports"]]
    assert web_ports == [f"{made.ports['web']}:8080/tcp"], "the base file's 8080 is replaced"
    assert config["volumes"]["data"]["name"] == f"{made.project}_data"
    assert config["services"]["web"]["environment"]["WORKTREE"] == made.project
    # nothing compose could interpolate or unquote goes into the env file
    assert re.fullmatch(r"([A-Z0-9_]+=[\w./:-]+\n)+",
                        (where / manage.ENV_FILE).read_text(), flags=re.ASCII)


@pytest.mark.parametrize("text", ["services: [", "services:\n  a:\n    ports: [{published: 1}]\n",
                                  "services:\n  a:\n    ports: ['8000-8010:8000-8010']\n"])
def test_a_compose_file_cfn_cannot_read_is_bad_input(cfn, tmp_path, text):
    repo = make_repo(tmp_path / "broken", text)
    done = cfn("worktree", "up", "feature/x", "--no-start", cwd=repo)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "compose" in done.stderr


def test_down_remove_removes_the_worktree(cfn, repo):
    made = json.loads(cfn("worktree", "up", "feature/gone", "--no-start", "--json",
                          cwd=repo).stdout)
    done = cfn("worktree", "down", "feature/gone", "--remove", cwd=repo)
    assert done.returncode == 0, done.stderr
    assert not Path(made["path"]).exists()
    assert "feature/gone" not in git("worktree", "list", cwd=repo)
    assert json.loads(cfn("worktree", "ls", "--json", cwd=repo).stdout) == []


def test_down_remove_keeps_uncommitted_work(cfn, repo):
    made = json.loads(cfn("worktree", "up", "feature/dirty", "--no-start", "--json",
                          cwd=repo).stdout)
    (Path(made["path"]) / "notes.txt").write_text("not committed yet\n")
    refused = cfn("worktree", "down", "feature/dirty", "--remove", cwd=repo)
    assert refused.returncode == 1 and "commit or stash" in refused.stderr
    assert (Path(made["path"]) / "notes.txt").read_text() == "not committed yet\n"
    (Path(made["path"]) / "notes.txt").unlink()
    assert cfn("worktree", "down", "feature/dirty", "--remove", cwd=repo).returncode == 0
    assert not Path(made["path"]).exists()


def test_down_remove_of_a_worktree_deleted_by_hand(cfn, repo):
    made = json.loads(cfn("worktree", "up", "feature/lost", "--no-start", "--json",
                          cwd=repo).stdout)
    shutil.rmtree(made["path"])
    done = cfn("worktree", "down", "feature/lost", "--remove", cwd=repo)
    assert done.returncode == 0, done.stderr
    assert "feature/lost" not in git("worktree", "list", cwd=repo)
    again = cfn("worktree", "up", "feature/lost", "--no-start", "--json", cwd=repo)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["ports"] == made["ports"]


def test_up_recreates_a_worktree_deleted_by_hand(cfn, repo):
    made = json.loads(cfn("worktree", "up", "feature/redo", "--no-start", "--json",
                          cwd=repo).stdout)
    shutil.rmtree(made["path"])
    again = cfn("worktree", "up", "feature/redo", "--no-start", "--json", cwd=repo)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == made
    assert (Path(made["path"]) / "README").is_file()


def test_commands_work_from_inside_a_worktree(cfn, repo):
    made = json.loads(cfn("worktree", "up", "feature/inside", "--no-start", "--json",
                          cwd=repo).stdout)
    listed = cfn("worktree", "ports", "feature/inside", "--json", cwd=Path(made["path"]))
    assert json.loads(listed.stdout) == made["ports"]


def exported(exports: str) -> dict[str, str]:
    """The variables `eval "$(cfn worktree env BRANCH)"` sets in a shell."""
    shown = subprocess.run(["sh", "-c", 'eval "$(cat)" && env -0'], input=exports, text=True,
                           env={"PATH": os.environ["PATH"]}, capture_output=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    found = dict(item.split("=", 1) for item in shown.stdout.split("\0") if item)
    return {k: v for k, v in found.items() if k not in ("PATH", "PWD", "SHLVL", "_")}


def test_only_the_ports_the_compose_file_publishes_are_leased_and_exported(cfn, repo):
    made = json.loads(cfn("worktree", "up", "feature/own", "--no-start", "--json",
                          cwd=repo).stdout)
    assert set(made["ports"]) == {"api", "web"}  # worker publishes nothing; no redis defined
    env = cfn("worktree", "env", "feature/own", cwd=repo)
    assert env.returncode == 0, env.stderr
    assert exported(env.stdout) == {
        "WORKTREE_BRANCH": "feature/own", "COMPOSE_PROJECT_NAME": made["project"],
        "CFN_API_PORT": str(made["ports"]["api"]), "CFN_WEB_PORT": str(made["ports"]["web"])}


def test_a_service_gone_from_the_compose_file_gives_its_port_back(db, repo):
    made = manage.up(db, repo, "feature/shrink", start=False)
    compose_file = Path(made.path) / "compose.yaml"
    compose_file.write_text(compose_file.read_text().replace(
        'ports: ["127.0.0.1:9000:9000"]', ""))  # api publishes nothing now
    again = manage.up(db, repo, "feature/shrink", start=False)
    assert again.ports == manage.get(db, "feature/shrink").ports == {"web": made.ports["web"]}


def test_without_a_compose_file_up_starts_nothing_leases_nothing_and_says_so(cfn, tmp_path):
    repo = make_repo(tmp_path / "plain")
    made = cfn("worktree", "up", "feature/plain", cwd=repo)
    assert made.returncode == 0, made.stderr
    assert made.stdout == f"{tmp_path / 'plain-feature-plain'}\n"  # data only: the path
    assert "no compose file: nothing started" in made.stderr
    assert "add compose.yaml" in made.stderr  # and how to give it a stack
    assert json.loads(cfn("worktree", "ports", "feature/plain", "--json", cwd=repo).stdout) == {}
    listed = json.loads(cfn("worktree", "ls", "--json", cwd=repo).stdout)
    assert [(w["branch"], w["stack"], w["ports"]) for w in listed] == [
        ("feature/plain", "down", {})]
    env = cfn("worktree", "env", "feature/plain", cwd=repo)
    assert env.returncode == 0, env.stderr
    assert exported(env.stdout) == {"WORKTREE_BRANCH": "feature/plain",
                                    "COMPOSE_PROJECT_NAME": "cfn-feature-plain"}


def test_cfn_commands_work_after_eval_of_the_env_of_a_worktree_without_compose(cfn, project,
                                                                               tmp_path):
    """A new user's first steps: up, eval its env, use cfn. A REDIS_URL to a Redis nobody
    started would make every later command exit 4."""
    repo = make_repo(tmp_path / "plain")
    assert cfn("worktree", "up", "feature/auth", cwd=repo).returncode == 0
    home = project / ".cfn"
    shell = subprocess.run(
        ["sh", "-ec", 'eval "$("$PY" -m cfn worktree env feature/auth)"\n'
                      '"$PY" -m cfn context store --task-id t --key k --value v\n'
                      '"$PY" -m cfn context get --task-id t --key k'],
        cwd=repo, env={**os.environ, "PY": sys.executable, "CFN_HOME": str(home)},  # no REDIS_URL
        capture_output=True, text=True, timeout=120)
    try:
        assert (shell.returncode, shell.stdout) == (0, "v\n"), shell.stderr
    finally:
        embedded.stop(home)  # the command started the project's own redis-server


def http_get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return response.read().decode().strip()


def wait_for_http(port: int, deadline_s: float = 60) -> str:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return http_get(port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def podman_volumes() -> set[str]:
    return set(subprocess.run(["podman", "volume", "ls", "-q"], capture_output=True, text=True,
                              check=True).stdout.split())


def compose_said(stderr: str, project: str) -> list[str]:
    """The lines of compose's own output (not cfn's) that name the project's containers."""
    return [line for line in stderr.splitlines()
            if project in line and not line.startswith("cfn:")]


@pytest.mark.skipif(not (podman_available() and shutil.which("podman-compose")),
                    reason="needs podman, podman-compose and busybox-static")
def test_a_real_stack_comes_up_on_its_leased_ports_and_down(cfn, tmp_path):
    image = build_test_image()
    repo = make_repo(tmp_path / "stacked", COMPOSE.format(image=image).replace(
        "  shared:\n    external: true\n", ""))
    made = cfn("worktree", "up", "feature/stack", "--json", cwd=repo, timeout=180)
    assert made.returncode == 0, made.stderr
    worktree = json.loads(made.stdout)  # stdout holds one JSON document, nothing of compose's
    try:
        assert compose_said(made.stderr, worktree["project"]), "compose's progress is shown"
        assert worktree["stack"] == "up"
        assert wait_for_http(worktree["ports"]["web"]) == f"web-{worktree['project']}"
        assert wait_for_http(worktree["ports"]["api"]) == "api"
        with pytest.raises(OSError):
            http_get(8080)  # the base file's port is not published
        assert f"{worktree['project']}_data" in podman_volumes()
    finally:
        down = cfn("worktree", "down", "feature/stack", "--volumes", cwd=repo, timeout=180)
    assert down.returncode == 0, down.stderr
    assert compose_said(down.stderr, worktree["project"])
    with pytest.raises(OSError):
        http_get(worktree["ports"]["web"])
    assert f"{worktree['project']}_data" not in podman_volumes()
    assert json.loads(cfn("worktree", "ls", "--json", cwd=repo).stdout)[0]["stack"] == "down"


def project_containers(project: str) -> list[str]:
    return subprocess.run(["podman", "ps", "-a", "-q", "--filter",
                           f"label=com.docker.compose.project={project}"],
                          capture_output=True, text=True, check=True).stdout.split()


@pytest.mark.skipif(not (podman_available() and shutil.which("podman-compose")),
                    reason="needs podman, podman-compose and busybox-static")
def test_a_stack_that_fails_half_way_is_still_taken_down(cfn, tmp_path):
    repo = make_repo(tmp_path / "half", f"""\
services:
  good:
    image: {build_test_image()}
    command: ["/bin/sleep", "3600"]
    stop_signal: SIGKILL
  bad:
    image: localhost/cfn-no-such-image:latest
    depends_on: [good]
    ports: ["9000:9000"]
""")
    try:
        failed = cfn("worktree", "up", "feature/half", cwd=repo, timeout=180)
        assert failed.returncode == 1
        assert "starting stack cfn-feature-half failed" in failed.stderr
        assert "cfn-no-such-image" in failed.stderr  # compose's own words say why
        assert project_containers("cfn-feature-half"), "the good service was started"
        down = cfn("worktree", "down", "feature/half", cwd=repo, timeout=180)
        assert down.returncode == 0, down.stderr
        assert project_containers("cfn-feature-half") == []
    finally:  # whatever a failure left behind
        subprocess.run(["podman", "rm", "-f", *project_containers("cfn-feature-half")],
                       capture_output=True)


def redis_compose(image: str) -> str:
    """A stack whose `redis` service runs this machine's redis-server in the test image."""
    server = Path(redis_tool("redis-server"))  # as named: Debian's links to redis-check-rdb
    return f"""\
services:
  redis:
    image: {image}
    command: ["/opt/redis/{server.name}", "--port", "6379", "--protected-mode", "no",
              "--save", "", "--appendonly", "no"]
    volumes: ["/usr:/usr:ro", "{server.parent}:/opt/redis:ro"]  # the binary and its libraries
    stop_signal: SIGKILL
    ports: ["127.0.0.1:6379:6379"]
"""


def wait_for_port(port: int, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while not ports.listening(port):
        assert time.monotonic() < deadline, f"nothing listens on port {port}"
        time.sleep(0.1)


@pytest.mark.skipif(not (podman_available() and shutil.which("podman-compose")),
                    reason="needs podman, podman-compose and busybox-static")
def test_env_gives_a_redis_url_only_while_the_worktrees_own_redis_runs(cfn, tmp_path):
    repo = make_repo(tmp_path / "redis", redis_compose(build_test_image()))
    made = json.loads(cfn("worktree", "up", "feature/cache", "--no-start", "--json",
                          cwd=repo).stdout)
    port = made["ports"]["redis"]
    defined = cfn("worktree", "env", "feature/cache", cwd=repo)
    assert exported(defined.stdout)["CFN_REDIS_PORT"] == str(port)
    assert "REDIS_URL" not in exported(defined.stdout), "defined, but not started"
    assert "redis is not running" in defined.stderr
    try:
        started = cfn("worktree", "up", "feature/cache", cwd=repo, timeout=180)
        assert started.returncode == 0, started.stderr
        wait_for_port(port)
        running = exported(cfn("worktree", "env", "feature/cache", cwd=repo).stdout)
        assert running["REDIS_URL"] == f"redis://127.0.0.1:{port}/0"
        stored = cfn("context", "store", "--task-id", "t", "--key", "k", "--value", "v",
                     cwd=repo, extra_env={"REDIS_URL": running["REDIS_URL"]})
        assert stored.returncode == 0, stored.stderr
        with redis.Redis(port=port, decode_responses=True) as client:  # the worktree's own
            assert client.get(keys.context("t", "k")) == "v"
    finally:
        down = cfn("worktree", "down", "feature/cache", cwd=repo, timeout=180)
    assert down.returncode == 0, down.stderr
    stopped = cfn("worktree", "env", "feature/cache", cwd=repo)
    assert "REDIS_URL" not in exported(stopped.stdout)
