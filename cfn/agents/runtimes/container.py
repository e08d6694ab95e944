"""The container runtime: the Docker Engine API through the docker SDK.

Works against Docker and against podman's Docker-compatible socket
(DOCKER_HOST=unix:///run/podman/podman.sock). The agent gets memory and CPU
limits, the workspace mounted at /workspace, its secrets as environment
(never argv, never logged), cfn labels and no restart policy; the container
is removed after the supervisor has read its exit.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import DockerException, ImageNotFound, NotFound
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ReadTimeout

from cfn.agents import isolation
from cfn.agents.runtimes import RunRequest, open_log
from cfn.errors import BackendUnavailable, InvalidInput

STOP_GRACE_S = 5


def client(environ: Mapping[str, str] | None = None) -> docker.DockerClient:
    """A client for DOCKER_HOST of `environ` (default: this process's environment; else the
    default socket), with a clear error if none answers."""
    try:
        engine = docker.from_env(environment=environ)
        engine.ping()
        return engine
    except (DockerException, RequestsConnectionError) as exc:
        raise BackendUnavailable(
            f"no container engine answers ({exc}); start Docker, or podman with "
            "`podman system service --time=0 unix:///run/podman/podman.sock` and "
            "DOCKER_HOST=unix:///run/podman/podman.sock") from None


def check_image(image: str | None, environ: Mapping[str, str] | None = None) -> None:
    """The engine answers and has `image`; else a clear error naming how to get it."""
    try:
        client(environ).images.get(image)
    except ImageNotFound:
        raise InvalidInput(f"image {image} not found in the container engine; build the agent "
                           "image with `cfn image build`, or pass --image") from None


@dataclass
class ContainerRun:
    container: object  # docker.models.containers.Container
    log_thread: threading.Thread

    @property
    def handle(self) -> str:
        return self.container.id

    def wait(self, seconds: float) -> int | None:
        try:
            result = self.container.wait(timeout=max(seconds, 0.001))
        except (ReadTimeout, RequestsConnectionError):
            return None
        self.log_thread.join(timeout=5)  # the log stream ends with the container
        return int(result.get("StatusCode", -1))

    def kill(self) -> None:
        with contextlib.suppress(NotFound):
            self.container.stop(timeout=STOP_GRACE_S)

    def cleanup(self) -> None:
        with contextlib.suppress(NotFound):
            self.container.remove(force=True)


def remove(handle: str, environ: Mapping[str, str]) -> None:
    """Remove the container `handle` (its ID), running or not, if the engine still has it."""
    with contextlib.suppress(NotFound, BackendUnavailable):
        client(environ).containers.get(handle).remove(force=True)


def _copy_logs(container, log_path) -> None:
    with open_log(log_path) as log:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            log.write(chunk)
            log.flush()


def start(request: RunRequest) -> ContainerRun:
    engine = client(request.host_env or None)
    volumes = {str(request.workspace): {"bind": "/workspace",
                                        "mode": "ro" if request.read_only_workspace else "rw"}}
    if not request.read_only_workspace:  # cfn's and git's control files stay read-only
        volumes.update({str(path): {"bind": f"/workspace/{path.relative_to(request.workspace)}",
                                    "mode": "ro"}
                        for path in isolation.control_paths(request.workspace)})
    volumes.update({host: {"bind": inside, "mode": "rw"}
                    for host, inside in request.mounts.items()})
    volumes.update({host: {"bind": inside, "mode": "ro"}
                    for host, inside in request.ro_mounts.items()})
    # the state directory, when it lies in the workspace, is covered by an empty directory
    # (not a tmpfs: podman would copy the state directory, sockets and all, into it)
    for path in map(Path, request.hidden):
        if path.is_relative_to(request.workspace):
            empty = path / "empty"
            empty.mkdir(mode=0o700, exist_ok=True)
            inside = f"/workspace/{path.relative_to(request.workspace)}"
            volumes[str(empty)] = {"bind": inside, "mode": "ro"}
    try:
        container = engine.containers.run(
            request.image, request.argv, name=request.name, detach=True,
            environment=request.env, working_dir="/workspace", volumes=volumes,
            mem_limit=request.memory, nano_cpus=int(request.cpus * 1e9) if request.cpus else None,
            labels=request.labels, restart_policy={"Name": "no"},
            **({"network_mode": "none"} if request.no_network else {"network": request.network}),
            stdin_open=False,
        )
    except ImageNotFound:
        raise InvalidInput(f"image {request.image} not found; build it (docker/Dockerfile.agent)"
                           " or pass --image") from None
    thread = threading.Thread(target=_copy_logs, args=(container, request.log_path), daemon=True)
    thread.start()
    return ContainerRun(container, thread)
