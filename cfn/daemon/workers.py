"""Worker definitions: one TOML file per worker, as data a project can override.

The twelve workers of the seed ship in the repository's workers/ directory; a project's own
workers/NAME.toml overrides the shipped worker field by field (give only what changes), or
defines a new headless worker. Loading validates every field and names the file in any error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from importlib.resources import files
from pathlib import Path

from cfn.config import read_toml
from cfn.errors import InvalidInput
from cfn.ids import validate_id

MODES = ("local", "headless")
SANDBOXES = ("strict", "permissive", "disabled")
FORMATS = ("text", "json", "markdown")
PRIORITIES = ("critical", "high", "normal", "low")  # the queue takes them in this order
MODELS = ("haiku", "sonnet", "opus")
# workers whose local mode does real work: the local workers, and local versions of some
# headless ones (used when Claude Code is missing)
LOCAL = ("map", "consolidate", "benchmark", "preload", "audit", "testgaps", "document",
         "predict")


@dataclass(frozen=True)
class Worker:
    name: str
    description: str
    mode: str = "local"
    interval: float = 0.0  # seconds between scheduled runs; 0: on trigger only
    priority: str = "normal"
    enabled: bool = True
    sandbox: str = "strict"
    model: str | None = None
    output_format: str = "text"
    prompt: str = ""  # a jinja2 template: {{ context }}, {{ files }}, {{ recent_changes }}
    context_patterns: tuple[str, ...] = ()
    max_files: int = 20  # the seed's caps on the context a prompt carries
    max_chars_per_file: int = 5000
    timeout: float = 300.0
    max_output_tokens: int | None = None
    tools: tuple[str, ...] = ("Read", "Glob", "Grep")  # Claude Code tools a headless run has
    source: str = field(default="", compare=False)

    @property
    def has_local(self) -> bool:
        return self.name in LOCAL

    def to_dict(self) -> dict:
        data = asdict(self)
        data["context_patterns"], data["tools"] = list(self.context_patterns), list(self.tools)
        return data


_FIELDS = {f for f in Worker.__dataclass_fields__ if f != "source"}
_CHOICES = {"mode": MODES, "sandbox": SANDBOXES, "output_format": FORMATS,
            "priority": PRIORITIES, "model": MODELS}
_NUMBERS = {"interval": 0, "max_files": 1, "max_chars_per_file": 1, "timeout": 1,
            "max_output_tokens": 1}  # each one's least value


def _check(data: dict, source: str) -> dict:
    def fail(message: str) -> InvalidInput:
        return InvalidInput(f"worker {source}: {message}")

    unknown = set(data) - _FIELDS
    if unknown:
        raise fail(f"unknown field(s) {', '.join(sorted(unknown))}; known: "
                   f"{', '.join(sorted(_FIELDS))}")
    for name, choices in _CHOICES.items():
        if name in data and data[name] not in choices:
            raise fail(f"{name} must be one of {', '.join(choices)}")
    for name, least in _NUMBERS.items():
        value = data.get(name, least)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < least:
            raise fail(f"{name} must be a number of at least {least}")
    for name in ("context_patterns", "tools"):
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise fail(f"{name} must be a list of strings")
    for name in ("description", "prompt"):
        if not isinstance(data.get(name, ""), str):
            raise fail(f"{name} must be text")
    if not isinstance(data.get("enabled", True), bool):
        raise fail("enabled must be true or false")
    return data


def _build(data: dict, source: str) -> Worker:
    worker = Worker(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()},
                    source=source)
    if worker.mode == "headless" and not worker.prompt.strip():
        raise InvalidInput(f"worker {source}: a headless worker needs a prompt")
    if worker.mode == "local" and not worker.has_local:
        raise InvalidInput(f"worker {source}: no local worker is called {worker.name!r} "
                           f"(local ones: {', '.join(LOCAL)}); make it headless with a prompt")
    _compile(worker, source)
    return worker


def _compile(worker: Worker, source: str) -> None:
    """A prompt that is not a valid template fails at load, not at its first run."""
    import jinja2

    try:
        jinja2.Environment().parse(worker.prompt)
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidInput(f"worker {source}: prompt line {exc.lineno}: {exc.message}") from None


def shipped_dir() -> Path:
    return Path(str(files("cfn._workers")))


def _documents(directory: Path) -> dict[str, tuple[dict, str]]:
    found = {}
    for path in sorted(directory.glob("*.toml")):
        data = read_toml(path, "worker")
        name = data.setdefault("name", path.stem)
        if name != path.stem:
            raise InvalidInput(f"worker {path}: name {name!r} must match the file name")
        validate_id(path.stem, "worker name")
        found[path.stem] = (_check(data, str(path)), str(path))
    return found


def load_all(project_root: Path | None = None) -> dict[str, Worker]:
    """The shipped workers with the project's workers/*.toml over them, by name."""
    documents = _documents(shipped_dir())
    own = project_root / "workers" if project_root else None
    for name, (data, source) in (_documents(own) if own and own.is_dir() else {}).items():
        base = documents.get(name, ({}, ""))[0]
        documents[name] = ({**base, **data}, source)
    return {name: _build(data, source) for name, (data, source) in documents.items()}


def get(name: str, project_root: Path | None = None) -> Worker:
    workers = load_all(project_root)
    if name not in workers:
        raise InvalidInput(f"no worker {name!r}; known: {', '.join(sorted(workers))}")
    return workers[name]


def select(names: tuple[str, ...], project_root: Path | None) -> list[Worker]:
    """The named workers (all enabled ones when none is named); InvalidInput on an unknown
    name."""
    workers = load_all(project_root)
    unknown = [n for n in names if n not in workers]
    if unknown:
        raise InvalidInput(f"no worker {', '.join(unknown)}; known: "
                           f"{', '.join(sorted(workers))}")
    if names:
        return [workers[n] for n in names]
    return [w for w in workers.values() if w.enabled]


def with_sandbox(worker: Worker, sandbox: str | None) -> Worker:
    """`worker` under the daemon's --sandbox, when one was given."""
    return replace(worker, sandbox=sandbox) if sandbox else worker
