"""Container fixtures: podman's Docker-API socket and an agent image built offline.

The image holds busybox (Debian's busybox-static) and redis-cli with the
libraries it links, imported into podman from a tarball: no registry needed.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from conftest import redis_tool

TEST_IMAGE = "localhost/cfn-test-agent:latest"
BUSYBOX_APPLETS = ("sh", "echo", "cat", "sleep", "env", "ls", "true", "false", "printf", "test",
                   "mkdir", "httpd", "wget")


def podman_available() -> bool:
    return shutil.which("podman") is not None and Path("/bin/busybox").exists()


def start_api(socket_path: Path) -> subprocess.Popen:
    """`podman system service` serving the Docker Engine API on a unix socket."""
    proc = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{socket_path}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while not socket_path.exists():
        assert time.monotonic() < deadline, "podman system service did not start"
        time.sleep(0.05)
    return proc


def _libraries(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    return re.findall(r"(/\S+\.so[.\d]*)", out)


def _inputs_digest(cli: str) -> str:
    """What the image is made of: rebuilt only when this changes."""
    parts = [*BUSYBOX_APPLETS, *(f"{f}:{Path(f).stat().st_mtime_ns}" for f in
                                  ("/bin/busybox", cli, __file__))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def build_test_image() -> str:
    """Import the test agent image into podman, unless the same one is there already."""
    cli = redis_tool("redis-cli")
    digest = _inputs_digest(cli)
    present = subprocess.run(["podman", "image", "inspect", "--format",
                              '{{.Id}} {{index .Config.Labels "cfn.inputs"}}', TEST_IMAGE],
                             capture_output=True, text=True)
    old_id, _, old_digest = present.stdout.strip().partition(" ")
    if present.returncode == 0 and old_digest == digest:
        return TEST_IMAGE
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        def add(source: str, target: str) -> None:
            tar.add(source, arcname=target.lstrip("/"), recursive=False)

        add("/bin/busybox", "/bin/busybox")
        for applet in BUSYBOX_APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        add(cli, "/bin/redis-cli")
        for library in _libraries(cli):
            add(str(Path(library).resolve()), library)
        for directory in ("workspace", "tmp", "run/cfn"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(info)
    subprocess.run(["podman", "import", "--change", f"LABEL cfn.inputs={digest}", "-",
                    TEST_IMAGE], input=buffer.getvalue(), check=True, capture_output=True)
    if old_id:  # the image this one replaced (kept if a container still uses it)
        subprocess.run(["podman", "rmi", old_id], capture_output=True)
    return TEST_IMAGE
