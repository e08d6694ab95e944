"""The kubernetes runtime's manifests: validated, secret-free, and run for real with podman."""

import json
import subprocess

import pytest
import yaml
from kubernetes.client import ApiClient

from containers import build_test_image, podman_available

KEY = "sk-ant-must-not-appear-0123456789"


@pytest.fixture
def manifest(cfn):
    got = cfn("spawn-agent", "coder_1", "T.5", "--profile", "coder", "--runtime", "kubernetes",
              "--dry-run",
              "--prompt", "Add login", "--memory", "2g", "--cpus", "1.5",
              extra_env={"ANTHROPIC_API_KEY": KEY})
    assert got.returncode == 0, got.stderr
    assert KEY not in got.stdout
    return got.stdout


def test_dry_run_prints_a_valid_job_and_its_secret(manifest, project, redis_socket):
    secret, job = yaml.safe_load_all(manifest)
    model = ApiClient()._ApiClient__deserialize(job, "V1Job")  # the client's own validation
    assert model.spec.backoff_limit == 0 and model.spec.ttl_seconds_after_finished > 0
    assert model.spec.active_deadline_seconds == 900
    assert model.spec.suspend is True  # resumed once its Secret exists
    # the Secret goes with its Job
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "Job"
    assert secret["metadata"]["ownerReferences"][0]["name"] == job["metadata"]["name"]
    pod = model.spec.template.spec
    assert pod.restart_policy == "Never"
    container = pod.containers[0]
    assert container.resources.limits == {"memory": "2Gi", "cpu": "1.5"}
    assert container.env_from[0].secret_ref.name == secret["metadata"]["name"] == \
        job["metadata"]["name"] == "cfn-t-5-coder-1-0"
    assert container.image_pull_policy == "IfNotPresent"  # a local image is not pulled
    assert container.security_context.run_as_non_root is True
    assert container.security_context.allow_privilege_escalation is False
    assert container.security_context.capabilities.drop == ["ALL"]
    # the Redis socket reaches the pod as a hostPath volume (the file: its directory is
    # closed to the pod's user)
    mounts = {m.mount_path: m.name for m in container.volume_mounts}
    volumes = {v.name: v.host_path.path for v in pod.volumes}
    assert volumes[mounts["/run/cfn/redis.sock"]] == str(redis_socket)
    env = {e.name: e.value for e in container.env}
    assert env["REDIS_URL"] == "unix:///run/cfn/redis.sock"
    assert env["ANTHROPIC_BASE_URL"] == "https://api.anthropic.com"
    assert "ANTHROPIC_API_KEY" not in env and "REDIS_PASSWORD" not in env
    assert set(secret["stringData"]) == {"ANTHROPIC_API_KEY", "REDIS_PASSWORD", "CFN_TOKEN"}
    assert set(secret["stringData"].values()) == {"<redacted>"}
    assert container.command[-1] == "Add login"
    assert not (project / ".cfn" / "agents").exists()  # a dry run starts nothing


@pytest.mark.parametrize("runtime", ["process", "container", "kubernetes"])
def test_a_dry_run_needs_no_key_and_names_the_one_a_spawn_needs(cfn, project, runtime):
    got = cfn("spawn-agent", "coder-1", "T1", "--runtime", runtime, "--dry-run", "--json",
              "--prompt", "Add login")
    assert got.returncode == 0, got.stderr
    assert "ANTHROPIC_API_KEY, which is not set" in got.stderr
    documents = json.loads(got.stdout)
    env = documents[0]["stringData"] if runtime == "kubernetes" else documents[0]["env"]
    assert env["ANTHROPIC_API_KEY"] == "<redacted>"  # where the key would go
    if runtime != "kubernetes":
        assert documents[0]["argv"][-1] == "Add login"
        assert documents[0]["chain"] == ["anthropic"]
        assert env["REDIS_PASSWORD"] == env["CFN_TOKEN"] == "<redacted>"
    assert not (project / ".cfn" / "agents").exists()  # a dry run starts nothing
    # a real spawn still refuses the missing key, before anything starts
    spawned = cfn("spawn-agent", "coder-1", "T1", "--runtime", "process", "--prompt", "x")
    assert spawned.returncode == 2
    assert "needs its API key in ANTHROPIC_API_KEY" in spawned.stderr
    assert not (project / ".cfn" / "agents").exists()


def test_a_process_dry_run_shows_no_secret(cfn):
    got = cfn("spawn-agent", "coder-1", "T1", "--dry-run", "--prompt", "x",
              extra_env={"ANTHROPIC_API_KEY": KEY, "CFN_AGENT_ENV": "DEPLOY_TOKEN",
                         "DEPLOY_TOKEN": "tok-passed-through-0123"})
    assert got.returncode == 0, got.stderr
    assert KEY not in got.stdout + got.stderr
    assert "tok-passed-through-0123" not in got.stdout + got.stderr
    env = yaml.safe_load(got.stdout)["env"]
    assert env["ANTHROPIC_API_KEY"] == env["DEPLOY_TOKEN"] == "<redacted>"


@pytest.mark.skipif(not podman_available(), reason="needs podman and busybox-static")
def test_the_pod_spec_runs_with_podman_kube_play(manifest, tmp_path):
    _, job = yaml.safe_load_all(manifest)
    image = build_test_image()
    spec = job["spec"]["template"]["spec"]
    container = spec["containers"][0]
    container.update(image=image, command=["/bin/sh", "-c", "echo ran-as-$CFN_AGENT_ID > "
                                           "/workspace/proof.txt"])
    container.pop("envFrom")  # podman kube play runs the pod; secrets are the cluster's job
    spec["volumes"] = spec["volumes"][:1]  # the workspace (no Redis in this test)
    spec["volumes"][0]["hostPath"]["path"] = str(tmp_path)
    container["volumeMounts"] = container["volumeMounts"][:1]
    tmp_path.chmod(0o777)  # the agent runs as a non-root user
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "cfn-kube-play-test", "labels": job["metadata"]["labels"]},
           "spec": spec}
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    try:
        played = subprocess.run(["podman", "kube", "play", str(tmp_path / "pod.yaml")],
                                capture_output=True, text=True, timeout=120)
        assert played.returncode == 0, played.stderr
        subprocess.run(["podman", "wait", "cfn-kube-play-test-agent"], capture_output=True,
                       timeout=120)
        assert (tmp_path / "proof.txt").read_text() == "ran-as-coder_1\n"
        assert (tmp_path / "proof.txt").stat().st_uid == 1000  # as the non-root user
        inspect = json.loads(subprocess.run(
            ["podman", "inspect", "cfn-kube-play-test-agent"], capture_output=True,
            text=True).stdout)
        assert inspect[0]["State"]["ExitCode"] == 0
        assert inspect[0]["HostConfig"]["Memory"] == 2 * 1024 ** 3
    finally:
        subprocess.run(["podman", "pod", "rm", "-f", "cfn-kube-play-test"],
                       capture_output=True, timeout=120)


def test_no_cluster_is_refused_before_anything_starts(cfn, tmp_path, project):
    got = cfn("spawn-agent", "pod-1", "T1", "--profile", "script", "--runtime", "kubernetes",
              "--", "true", extra_env={"KUBECONFIG": str(tmp_path / "none"),
                                       "HOME": str(tmp_path)})
    assert got.returncode == 4 and "no Kubernetes cluster configured" in got.stderr
    assert not (project / ".cfn" / "agents").exists()


@pytest.mark.parametrize("runtime", ["container", "kubernetes"])
def test_a_loopback_redis_that_agents_cannot_reach_is_refused_before_spawning(cfn, runtime,
                                                                            project):
    got = cfn("spawn-agent", "box-1", "T1", "--profile", "script", "--runtime", runtime,
              "--", "true", extra_env={"REDIS_URL": "redis://:pw@127.0.0.1:6399/0"})
    assert got.returncode == 2 and "loopback" in got.stderr and "pw@" not in got.stderr
    assert not (project / ".cfn" / "agents").exists()
