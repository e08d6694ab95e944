import json
import socket

import pytest

from conftest import start_redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_redis_exits_4_naming_url_with_password_masked(cfn):
    url = f"redis://agent:s3cretpw@127.0.0.1:{free_port()}/0"
    got = cfn("signal", "send", "--task-id", "t", "--channel", "c", "--payload", "p",
              extra_env={"REDIS_URL": url, "CFN_RETRIES": "0"})
    assert got.returncode == 4
    assert "redis://agent:****@127.0.0.1" in got.stderr
    assert "s3cretpw" not in got.stderr + got.stdout
    assert "Traceback" not in got.stderr


def test_wait_on_unreachable_redis_is_never_a_success(cfn):
    got = cfn("signal", "wait", "--task-id", "t", "--channel", "c", "--timeout", "1",
              extra_env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}", "CFN_RETRIES": "0"})
    assert got.returncode == 4


def test_fallback_is_used_when_primary_is_down(cfn, redis_url, r):
    dead = f"redis://:pw@127.0.0.1:{free_port()}"
    sent = cfn("signal", "send", "--task-id", "t", "--channel", "c", "--payload", "via-fallback",
               extra_env={"REDIS_URL": dead, "REDIS_FALLBACK_1": redis_url, "CFN_RETRIES": "0"})
    assert sent.returncode == 0, sent.stderr
    assert "takes over" in sent.stderr and ":****@" in sent.stderr
    assert r.lpop("coord:{t}:signal:c") == "via-fallback"  # it landed on the fallback server


def test_fallback_down_too_exits_4(cfn):
    got = cfn("signal", "send", "--task-id", "t", "--channel", "c",
              extra_env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}",
                         "REDIS_FALLBACK_1": f"redis://127.0.0.1:{free_port()}",
                         "CFN_RETRIES": "0"})
    assert got.returncode == 4


@pytest.fixture
def acl_server(tmp_path):
    proc, sock = start_redis(tmp_path / "acl")
    import redis
    admin = redis.Redis(unix_socket_path=str(sock), decode_responses=True)
    admin.acl_setuser("agent", enabled=True, passwords=["+right-pw"],
                      keys=["coord:{t1}:*"], commands=["+@all"])
    yield f"unix://{sock}"
    proc.terminate()
    proc.wait(timeout=10)


def test_wrong_password_exits_4_and_is_never_shown(cfn, acl_server):
    got = cfn("signal", "send", "--task-id", "t1", "--channel", "c",
              extra_env={"REDIS_URL": acl_server, "REDIS_USERNAME": "agent",
                         "REDIS_PASSWORD": "wrong-pw", "CFN_RETRIES": "0"})
    assert got.returncode == 4 and "refused us" in got.stderr
    assert "wrong-pw" not in got.stderr


def test_acl_user_is_refused_other_tasks_keys(cfn, acl_server):
    creds = {"REDIS_URL": acl_server, "REDIS_USERNAME": "agent", "REDIS_PASSWORD": "right-pw"}
    own = cfn("signal", "send", "--task-id", "t1", "--channel", "c", extra_env=creds)
    assert own.returncode == 0, own.stderr
    other = cfn("signal", "send", "--task-id", "t2", "--channel", "c", extra_env=creds)
    assert other.returncode == 4 and "ACL does not allow" in other.stderr


@pytest.mark.usefixtures("reap_supervisors")
def test_an_agent_spawned_on_the_fallback_runs_and_completes_there(cfn, redis_url, r):
    """The supervisor and the agent use the fallback that took over, not the dead primary."""
    dead = f"redis://127.0.0.1:{free_port()}"
    got = cfn("spawn-agent", "t-1", "T", "--profile", "script", "--wait", "--json", "--",
              "sh", "-c", 'cfn signal send --task-id T --channel done '
              '--payload "$REDIS_URL $REDIS_FALLBACK_1"',
              extra_env={"REDIS_URL": dead, "REDIS_FALLBACK_1": redis_url, "CFN_RETRIES": "0"})
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["records"]["t-1"]["status"] == "success"
    assert r.xlen("coord:{T}:complete") == 1  # the completion record is on the fallback
    # the agent was given both, in order (the fallback's socket mounted into its sandbox),
    # and followed the one that took over
    assert r.lpop("coord:{T}:signal:done") == f"{dead} unix:///run/cfn-fallback/redis.sock"


def test_project_remembers_the_redis_it_reached(project, redis_url):
    from cfn import Project

    dead = f"redis://127.0.0.1:{free_port()}"
    with Project.open(project, env={}, redis_url=dead, redis_fallback_1=redis_url,
                      retries=0) as opened:
        assert opened.send_signal("T", "c", "x") == 1
        assert opened.redis_url == redis_url
        # with a fallback the order stays: it names the primary (cfn.failover)
        assert opened.target.preferring(redis_url).urls == (dead, redis_url)


def test_the_embedded_admins_password_never_goes_to_the_fallback(project, tmp_path):
    from cfn import Project, embedded

    # a fallback of its own: one that took over elsewhere would be home (cfn.failover)
    proc, sock = start_redis(tmp_path / "fallback")
    redis_url = f"unix://{sock}"
    with Project.open(project, env={"CFN_HOME": str(project / ".cfn")},
                      redis_fallback_1=redis_url) as opened:
        try:
            assert opened.send_signal("T", "c", "x") == 1  # the embedded server answers
            primary, fallback = opened.target.urls
            assert primary.startswith(f"unix://{embedded.ADMIN_USER}:") and fallback == redis_url
            assert opened.target.password is None  # what the fallback would be sent
        finally:
            embedded.stop(project / ".cfn")
            proc.terminate()
            proc.wait(timeout=10)
