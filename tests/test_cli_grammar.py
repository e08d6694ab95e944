"""One grammar: sections in the top-level help, "did you mean" at every level, shell
completion under its conventional name (the barrier keeps its old spelling, unlisted),
no-ops on unknown tasks said as exit 1, and errors as JSON under --json."""

import json
import os
import subprocess
import sys

from cfn.cli.app import ALIASES, COMMANDS, SECTIONS


def test_every_command_is_in_one_section_of_the_help(cfn):
    listed = [name for names in SECTIONS.values() for name in names]
    assert sorted(listed) == sorted(set(COMMANDS) - set(ALIASES))  # each once, no alias
    shown = cfn("--help").stdout
    assert all(f"\n{section}:\n" in shown for section in SECTIONS)


def test_a_mistyped_command_gets_a_suggestion_at_every_level(cfn):
    top = cfn("sigal", "send")
    assert top.returncode == 2 and "Did you mean 'signal'?" in top.stderr
    sub = cfn("agents", "wiat")
    assert sub.returncode == 2 and sub.stderr.count("Did you mean 'wait'?") == 1


def test_shell_completion_has_the_conventional_name(cfn, env, project):
    script = cfn("completion", "bash")
    assert script.returncode == 0 and "_CFN_COMPLETE=bash_complete" in script.stdout
    got = subprocess.run([sys.executable, "-m", "cfn"], cwd=project, text=True,
                         capture_output=True, timeout=60,
                         env={**env, "COMP_WORDS": "cfn sig", "COMP_CWORD": "1",
                              "_CFN_COMPLETE": "bash_complete"})
    assert "plain,signal" in got.stdout.splitlines()


def test_the_barrier_answers_to_both_names_and_only_the_new_one_is_offered(cfn):
    assert cfn("completion", "signal", "--task-id", "T", "--agent-id", "a1").returncode == 0
    assert cfn("barrier", "signal", "--task-id", "T", "--agent-id", "a2").returncode == 0
    waited = cfn("barrier", "wait", "--task-id", "T", "--expected", "2", "--timeout", "5")
    assert waited.returncode == 0, waited.stderr
    listed = cfn("completion", "--help").stdout
    assert "bash" in listed and "signal" not in listed and "wait" not in listed


def test_waiting_for_or_stopping_agents_of_an_unknown_task_is_said(cfn):
    waited = cfn("agents", "wait", "--task-id", "TYPO", "--timeout", "1")
    assert waited.returncode == 1 and "no agent ever ran on task TYPO" in waited.stderr
    stopped = cfn("agents", "stop", "--task-id", "TYPO")
    assert stopped.returncode == 1 and "nothing running" in stopped.stderr


def test_under_json_an_error_is_a_json_object_on_stdout(cfn):
    missing = cfn("context", "get", "--task-id", "T", "--key", "nope", "--json")
    assert missing.returncode == 1
    assert json.loads(missing.stdout) == {"error": "task T has no context key 'nope'",
                                          "exit_code": 1}
    usage = cfn("collect-results", "--task-id", "T", "--expected", "0", "--json")
    assert usage.returncode == 2 and json.loads(usage.stdout)["exit_code"] == 2


def test_a_malformed_redis_url_is_bad_input(cfn, project):
    got = cfn("--redis-url", "notaurl", "signal", "send", "--task-id", "T", "--channel", "c",
              "--payload", "x", extra_env={"CFN_HOME": str(project / "fresh")})
    assert got.returncode == 2 and "use redis://" in got.stderr
    assert not os.path.exists(project / "fresh")  # nothing written, nothing started


def test_lists_have_headers_on_a_terminal_and_none_when_piped(cfn, env, project):
    import shlex

    piped = cfn("agents", "profiles").stdout.splitlines()
    assert piped[0].split("\t")[0] != "profile" and "\t" in piped[0]
    command = shlex.join([sys.executable, "-m", "cfn", "agents", "profiles"])
    on_terminal = subprocess.run(["script", "-qec", command, "/dev/null"], cwd=project,
                                 env=env, capture_output=True, text=True, timeout=60)
    lines = on_terminal.stdout.splitlines()
    assert lines[0].split() == ["profile", "role", "kind", "provider", "timeout"]
    assert "\t" not in on_terminal.stdout and len(lines) == len(piped) + 1


def test_completion_offers_the_projects_tasks_agents_and_profiles(cfn, env, project):
    assert cfn("spawn-agent", "t-1", "Tcomp", "--profile", "script", "--wait", "--",
               "true").returncode == 0

    def complete(words: str) -> list[str]:
        got = subprocess.run([sys.executable, "-m", "cfn"], cwd=project, text=True,
                             capture_output=True, timeout=60,
                             env={**env, "COMP_WORDS": words,
                                  "COMP_CWORD": str(len(words.split(" ")) - 1),
                                  "_CFN_COMPLETE": "bash_complete"})
        return [line.split(",", 1)[1] for line in got.stdout.splitlines()]

    assert complete("cfn agents wait --task-id Tc") == ["Tcomp"]
    assert complete("cfn agents logs t-") == ["t-1"]
    assert "script" in complete("cfn spawn-agent a T --profile scr")


def test_results_have_their_own_group_and_the_old_names_still_work(cfn):
    assert cfn("results", "report", "--task-id", "T", "--agent-id", "a1").returncode == 0
    assert cfn("report", "--task-id", "T", "--agent-id", "a2").returncode == 0
    for words in (("results", "collect"), ("collect-results",)):
        got = cfn(*words, "--task-id", "T", "--expected", "2", "--threshold", "1",
                  "--timeout", "5", "--json")
        assert got.returncode == 0 and json.loads(got.stdout)["count"] == 2
    listed = cfn("--help").stdout
    assert "  results " in listed and "collect-results" not in listed


def test_every_command_shows_an_example():
    import click

    from cfn.cli.app import cli

    ctx = click.Context(cli)

    def leaves(command, path):
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                yield from leaves(command.get_command(ctx, name), [*path, name])
        else:
            yield " ".join(path), command

    for name in sorted(set(COMMANDS) - set(ALIASES)):
        for path, command in leaves(cli.get_command(ctx, name), [name]):
            assert "cfn " in (command.help or "") + (command.epilog or ""), \
                f"cfn {path} has no example (cfn/cli/examples.py)"


def test_the_task_is_an_argument_or_an_option_alike(cfn):
    assert cfn("signal", "send", "P", "--channel", "c", "--payload", "x").returncode == 0
    got = cfn("signal", "wait", "--task-id", "P", "--channel", "c", "--timeout", "5")
    assert (got.returncode, got.stdout) == (0, "x\n")
    twice = cfn("context", "store", "P", "--task-id", "Q", "--key", "k", "--value", "v")
    assert twice.returncode == 2 and "given twice" in twice.stderr
    none = cfn("context", "store", "--key", "k", "--value", "v")
    assert none.returncode == 2 and "give it as TASK or --task-id" in none.stderr
    assert cfn("loop", "status", "--task-id", "NOPE").returncode == \
        cfn("loop", "status", "NOPE").returncode
