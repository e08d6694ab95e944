import json

import pytest

from cfn.config import mask_url, resolve
from cfn.errors import InvalidInput


def test_precedence_flag_over_env_over_file_over_default(tmp_path):
    (tmp_path / "cfn.toml").write_text('redis_url = "redis://file:6379"\nretries = 5\n')
    env = {"REDIS_URL": "redis://env:6379"}
    cfg = resolve(flags={"redis_url": "redis://flag:6379"}, env=env, cwd=tmp_path)
    assert (cfg.redis_url, cfg.sources["redis_url"]) == ("redis://flag:6379", "flag --redis-url")
    cfg = resolve(env=env, cwd=tmp_path)
    assert (cfg.redis_url, cfg.sources["redis_url"]) == ("redis://env:6379", "env REDIS_URL")
    cfg = resolve(env={}, cwd=tmp_path)
    assert cfg.redis_url == "redis://file:6379" and cfg.retries == 5
    assert cfg.sources["retries"].startswith("file ")


def test_cfn_redis_url_wins_over_redis_url(tmp_path):
    cfg = resolve(env={"REDIS_URL": "redis://b", "CFN_REDIS_URL": "redis://a"}, cwd=tmp_path)
    assert cfg.redis_url == "redis://a"


def test_project_root_is_found_from_a_subdirectory(tmp_path):
    (tmp_path / ".git").mkdir()
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    cfg = resolve(env={}, cwd=sub)
    assert cfg.root == tmp_path and cfg.home == tmp_path / ".cfn"
    assert resolve(env={"CFN_HOME": str(tmp_path / "x")}, cwd=sub).home == tmp_path / "x"


@pytest.mark.parametrize("env", [{"CFN_CONNECT_TIMEOUT": "soon"}, {"CFN_RETRIES": "-1"},
                                 {"CFN_KEY_TTL": "0"}])
def test_bad_values_are_rejected_naming_their_source(tmp_path, env):
    with pytest.raises(InvalidInput, match="env "):
        resolve(env=env, cwd=tmp_path)


def test_unknown_file_setting_is_rejected(tmp_path):
    (tmp_path / "cfn.toml").write_text('redis_ur = "x"\n')
    with pytest.raises(InvalidInput, match="unknown setting"):
        resolve(env={}, cwd=tmp_path)


def test_mask_url():
    assert mask_url("redis://user:s3cret@host:6380/2") == "redis://user:****@host:6380/2"
    assert mask_url("redis://:s3cret@host") == "redis://:****@host"
    assert mask_url("unix:///tmp/x.sock") == "unix:///tmp/x.sock"


def test_cfn_config_masks_secrets_and_names_sources(cfn):
    got = cfn("config", "--json", extra_env={
        "REDIS_PASSWORD": "hunter2", "REDIS_FALLBACK_1": "redis://:fallbackpw@h:1"})
    assert got.returncode == 0
    assert "hunter2" not in got.stdout and "fallbackpw" not in got.stdout
    doc = json.loads(got.stdout)
    assert doc["redis_password"] == {"value": "****", "source": "env REDIS_PASSWORD"}
    assert doc["redis_fallback_1"]["value"] == "redis://:****@h:1"
    assert doc["connect_timeout"] == {"value": 10.0, "source": "default"}
    text = cfn("config").stdout
    assert "hunter2" not in text and "redis_password" in text


def test_broken_config_file_exits_2(cfn, project):
    (project / "cfn.toml").write_text("redis_url = [unclosed\n")
    got = cfn("signal", "send", "--task-id", "t", "--channel", "c")
    assert got.returncode == 2 and "cfn.toml" in got.stderr
