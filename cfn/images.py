"""The agent image, built offline: a Debian base from Debian's own packages (mmdebstrap,
imported into the engine), then docker/Dockerfile.agent on top with a wheel of this cfn.

No image registry is needed. The registries the build fetches from (Debian, npm, PyPI) may
sit behind a TLS-intercepting proxy, so the host's certificate authorities are handed to
the build as a secret (never copied into a layer).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from cfn.errors import InvalidInput, NegativeOutcome

log = logging.getLogger(__name__)

BASE_IMAGE = "localhost/cfn-agent-base:bookworm"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class Built:
    image: str
    base: str
    seconds: float
    size_bytes: int | None

    def to_dict(self) -> dict:
        return asdict(self)


def engine_cli() -> str:
    """podman, else docker: the CLI that builds (the Docker SDK cannot pass build secrets)."""
    for name in ("podman", "docker"):
        if shutil.which(name):
            return name
    raise NegativeOutcome("no container engine CLI found: apt-get install podman (or docker)")


def source_root() -> Path:
    """The cfn source tree this cfn runs from (the build packs it into a wheel)."""
    import cfn

    root = Path(cfn.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file() or not (root / "docker").is_dir():
        raise InvalidInput(f"cfn runs from {root}, not from a source checkout; build the image "
                           "from one (git clone, then pip install -e . and cfn image build)")
    return root


def exists(image: str, cli: str | None = None) -> bool:
    return _run([cli or engine_cli(), "image", "inspect", image]).returncode == 0


def size(image: str) -> int | None:
    done = _run([engine_cli(), "image", "inspect", "--format", "{{.Size}}", image])
    return int(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else None


def build(image: str, *, rebuild_base: bool = False,
          say: Callable[[str], None] = log.info) -> Built:
    """Build the agent image (and its base, unless the engine has it already)."""
    cli, root, started = engine_cli(), source_root(), time.monotonic()
    if rebuild_base or not exists(BASE_IMAGE, cli):
        build_base(cli, say)
    with tempfile.TemporaryDirectory(prefix="cfn-image-") as context:
        say("packing cfn into a wheel")
        _check(_run([_python(), "-m", "pip", "wheel", "--no-deps", "-q", "-w", context,
                     str(root)]), "building the cfn wheel")
        command = [cli, "build", "--network", "host", "-f", str(root / "docker" /
                                                                  "Dockerfile.agent"),
                   "--build-arg", f"BASE={BASE_IMAGE}", "-t", image]
        if HOST_CA.is_file():
            command += ["--secret", f"id=host-ca,src={HOST_CA}"]
        say(f"building {image} on {BASE_IMAGE}")
        _check(_run([*command, context], stream=True), f"building {image}")
    return Built(image, BASE_IMAGE, time.monotonic() - started, size(image))


def build_base(cli: str, say: Callable[[str], None]) -> None:
    """A minimal Debian root filesystem from Debian's packages, imported as BASE_IMAGE."""
    if shutil.which("mmdebstrap") is None:
        raise NegativeOutcome("the base image needs mmdebstrap: apt-get install mmdebstrap")
    with tempfile.TemporaryDirectory(prefix="cfn-base-") as directory:
        tarball = Path(directory) / "rootfs.tar"
        say(f"making a Debian {SUITE} base with mmdebstrap")
        _check(_run(["mmdebstrap", "--quiet", "--variant=minbase", "--include=ca-certificates",
                     SUITE, str(tarball), MIRROR], stream=True), "mmdebstrap")
        _check(_run([cli, "import", str(tarball), BASE_IMAGE]),
               f"importing {BASE_IMAGE}")


def _python() -> str:
    import sys

    return sys.executable


def _run(command: list[str], *, stream: bool = False) -> subprocess.CompletedProcess:
    """Run a build step; `stream` shows its output on stderr as it comes (it can be long)."""
    import sys

    return subprocess.run(command, stdin=subprocess.DEVNULL, text=True,
                          stdout=sys.stderr if stream else subprocess.PIPE,
                          stderr=sys.stderr if stream else subprocess.PIPE)


def _check(done: subprocess.CompletedProcess, doing: str) -> None:
    if done.returncode != 0:
        said = ((done.stderr or "") + (done.stdout or "")).strip().splitlines()[-3:]
        raise NegativeOutcome(f"{doing} failed (exit {done.returncode})"
                              + (f": {' | '.join(said)}" if said else "; its output is above"))
