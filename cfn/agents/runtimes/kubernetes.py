"""The kubernetes runtime: one Job per agent, through the official kubernetes client.

The agent's secrets go into a Secret the Job reads with envFrom, never into
the Job itself; the Secret is owned by its Job, so it goes when the Job goes. The Job is
created suspended, the Secret next (with the Job's UID as its owner), then the Job is
resumed, so its pod never starts without its Secret. Jobs have backoffLimit 0 (a failed
agent is reported, not retried behind our back), restartPolicy Never, an
activeDeadlineSeconds and a TTL after finishing; the agent runs as a non-root user with no
privilege escalation and no capabilities. The workspace, and the Redis socket when Redis
is one, are hostPath volumes (single-node clusters such as kind);
`cfn spawn-agent --runtime kubernetes --dry-run` prints the manifests a spawn submits, with
secret values redacted.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cfn.agents.runtimes import RunRequest, is_secret, open_log

NAMESPACE_ENV = "CFN_K8S_NAMESPACE"
TTL_AFTER_FINISHED_S = 600
AGENT_UID = 1000  # the agent image's user
SECURITY = {"runAsNonRoot": True, "runAsUser": AGENT_UID, "runAsGroup": AGENT_UID,
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}
def _split_env(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The plain variables, and the secrets (they travel in the Secret)."""
    secret = {k: v for k, v in env.items() if is_secret(k)}
    return {k: v for k, v in env.items() if k not in secret}, secret


def manifests(request: RunRequest, namespace: str = "default", redact: bool = False,
              job_uid: str = "<the Job's uid, once created>") -> list[dict]:
    """The Secret and the (suspended) Job that run `request`, as plain dicts."""
    plain, secret = _split_env(request.env)
    if redact:
        secret = {k: "<redacted>" for k in secret}
    name = dns_name(request.name)
    labels = {k.replace("cfn.", "cfn.dev/"): v[:63] for k, v in request.labels.items()}
    limits = {k: v for k, v in (("memory", _quantity(request.memory)),
                                ("cpu", str(request.cpus) if request.cpus else None)) if v}
    host_paths = [("workspace", str(request.workspace), "/workspace", "Directory", False)]
    host_paths += [(f"mount-{i}", host, inside, "", False)
                   for i, (host, inside) in enumerate(sorted(request.mounts.items()))]
    host_paths += [(f"ro-mount-{i}", host, inside, "", True)
                   for i, (host, inside) in enumerate(sorted(request.ro_mounts.items()))]
    container = {
        "name": "agent", "image": request.image, "command": request.argv,
        "imagePullPolicy": "IfNotPresent",  # local images (localhost/...) are not pulled
        "workingDir": "/workspace",
        "env": [{"name": k, "value": v} for k, v in sorted(plain.items())],
        "envFrom": [{"secretRef": {"name": name}}],
        "resources": {"limits": limits, "requests": limits},
        "securityContext": SECURITY,
        "volumeMounts": [{"name": volume, "mountPath": inside, "readOnly": readonly}
                         for volume, _, inside, _, readonly in host_paths],
    }
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "suspend": True,  # resumed once its Secret exists
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED_S,
            **({"activeDeadlineSeconds": int(request.deadline_s)} if request.deadline_s else {}),
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,  # agents get no cluster rights
                    "containers": [container],
                    "volumes": [{"name": volume, "hostPath": {"path": host, "type": kind}}
                                for volume, host, _, kind, _ in host_paths],
                },
            },
        },
    }
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job_uid}
    secret_doc = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                  "metadata": {"name": name, "namespace": namespace, "labels": dict(labels),
                               "ownerReferences": [owner]},
                  "stringData": secret}
    return [secret_doc, job]


def dns_name(name: str) -> str:
    """A valid Kubernetes object name (DNS-1123 label) from a cfn run name."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower())[:63].strip("-")


def _quantity(memory: str | None) -> str | None:
    """Docker-style sizes (1g, 512m) as Kubernetes quantities (1Gi, 512Mi)."""
    if not memory:
        return None
    units = {"k": "Ki", "m": "Mi", "g": "Gi", "t": "Ti"}
    suffix = memory[-1].lower()
    return memory[:-1] + units[suffix] if suffix in units else memory


def to_yaml(documents: list[dict]) -> str:
    import yaml

    return yaml.safe_dump_all(documents, sort_keys=False)


@dataclass
class KubernetesRun:
    name: str
    namespace: str
    log_path: str

    @property
    def handle(self) -> str:
        return f"job/{self.namespace}/{self.name}"

    def wait(self, seconds: float) -> int | None:
        import time

        from kubernetes import client

        batch, core = client.BatchV1Api(), client.CoreV1Api()
        deadline = time.monotonic() + seconds
        while True:
            status = batch.read_namespaced_job_status(self.name, self.namespace).status
            if status.succeeded or status.failed:
                self._copy_logs(core)
                return 0 if status.succeeded else self._exit_code(core)
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def _pods(self, core):
        return core.list_namespaced_pod(self.namespace, label_selector=f"job-name={self.name}")

    def _exit_code(self, core) -> int:
        for pod in self._pods(core).items:
            for state in pod.status.container_statuses or ():
                if state.state.terminated:
                    return state.state.terminated.exit_code
        return 1

    def _copy_logs(self, core) -> None:
        for pod in self._pods(core).items:
            with contextlib.suppress(Exception), open_log(Path(self.log_path), text=True) as log:
                log.write(core.read_namespaced_pod_log(pod.metadata.name, self.namespace))

    def kill(self) -> None:
        from kubernetes import client

        with contextlib.suppress(client.ApiException):
            client.BatchV1Api().delete_namespaced_job(
                self.name, self.namespace, propagation_policy="Foreground")

    def cleanup(self) -> None:
        from kubernetes import client

        self.kill()
        with contextlib.suppress(client.ApiException):
            client.CoreV1Api().delete_namespaced_secret(self.name, self.namespace)


def delete(handle: str, environ: Mapping[str, str]) -> None:
    """Delete the Job `handle` (job/NAMESPACE/NAME) and its Secret, if they still exist."""
    _, namespace, name = handle.split("/", 2)
    load_cluster_config(environ)
    KubernetesRun(name, namespace, log_path="").cleanup()


def load_cluster_config(environ: Mapping[str, str] | None = None) -> None:
    """The current context of KUBECONFIG in `environ` (default: this process's environment),
    or the in-cluster config; a clear error if none."""
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    from cfn.errors import BackendUnavailable

    try:
        config.load_kube_config(config_file=(environ or os.environ).get("KUBECONFIG"))
    except (ConfigException, OSError):
        try:
            config.load_incluster_config()
        except ConfigException as exc:
            raise BackendUnavailable(f"no Kubernetes cluster configured ({exc}); set "
                                     "KUBECONFIG or run inside a cluster") from None


def start(request: RunRequest) -> KubernetesRun:
    """Create the Secret and the Job in the cluster of the current kubeconfig context."""
    from kubernetes import client

    environ = request.host_env or os.environ
    load_cluster_config(environ)
    namespace = environ.get(NAMESPACE_ENV, "default")
    _, job = manifests(request, namespace)
    batch = client.BatchV1Api()
    created = batch.create_namespaced_job(namespace, job)
    run = KubernetesRun(job["metadata"]["name"], namespace, str(request.log_path))
    try:
        secret, _ = manifests(request, namespace, job_uid=created.metadata.uid)
        client.CoreV1Api().create_namespaced_secret(namespace, secret)
        batch.patch_namespaced_job(run.name, namespace, {"spec": {"suspend": False}})
    except BaseException:
        run.cleanup()  # a suspended Job would never finish, nor its TTL run out
        raise
    return run
