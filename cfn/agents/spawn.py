"""Spawning: validate, route, give the agent its credentials, and hand it to the project's
supervisor.

Everything that can be wrong with a request is checked before anything is
written or started. The supervisor is a long-lived process per project
(cfn.agents.supervisor) that gets the agent's spec, secrets included, on its private unix
socket; `spawn` returns as soon as the supervisor has taken it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cfn import keys, routing, tokens, validate
from cfn.agents import profiles, runs, runtimes, supervision
from cfn.agents.runtimes import RUNTIMES
from cfn.config import Config, ensure_home, mask_url, without_credentials
from cfn.coordination import agents as agent_state
from cfn.errors import InvalidInput
from cfn.ids import validate_id

if TYPE_CHECKING:
    import redis

    from cfn.project import Project

log = logging.getLogger(__name__)

# strict: read-only workspace, no network but the provider's; permissive: the same with the
# workspace writable; disabled: no sandbox at all (docs/security.md#sandbox-modes)
SANDBOX_MODES = ("strict", "permissive", "disabled")
FENCED = ("strict", "permissive")


@dataclass(frozen=True)
class SpawnRequest:
    agent_id: str
    task_id: str
    mode: str = "cli"
    provider: str | None = None  # explicit: wins over routing
    profile: str | None = None
    runtime: str = "process"
    memory: str | None = None
    cpus: float | None = None
    image: str | None = None
    network: str | None = None
    workspace: Path | None = None
    timeout: float | None = None
    prompt: str = ""
    command: tuple[str, ...] = ()  # for scripted profiles: the argv to run
    complexity: str | None = None
    cost_sensitive: bool = False
    phase: str | None = None  # completion phase, e.g. loop3
    iteration: int | None = None
    sandbox_mode: str | None = None  # one of SANDBOX_MODES; None: the agent_sandbox setting
    # False: a Claude run whose result event is not an error succeeds without the JSON
    # confidence report (workers answer in free text)
    report_required: bool = True
    profile_object: profiles.Profile | None = None  # used as is, instead of `profile`


@dataclass(frozen=True)
class Spawned:
    run_id: int
    task_id: str
    agent_id: str
    profile: str
    runtime: str
    provider: str | None
    chain: tuple[str, ...]
    supervisor_pid: int
    log_path: str
    route_reasons: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return asdict(self)


def _check(request: SpawnRequest, config: Config) -> tuple[profiles.Profile, Path]:
    validate_id(request.agent_id, "agent ID")
    validate_id(request.task_id, "task ID")
    validate_id(request.mode, "mode")
    validate.choice(request.runtime, RUNTIMES, "runtime")
    _check_sandbox_mode(request)
    profile = _given_profile(request.profile_object) if request.profile_object is not None \
        else profiles.profile_for_agent(request.agent_id, request.profile, config.root)
    if request.timeout is not None:
        validate.positive_seconds(request.timeout, "timeout")
    if request.cpus is not None:
        validate.positive_seconds(request.cpus, "cpus")
    if profile.kind == "scripted" and not (request.command or profile.command):
        raise InvalidInput(f"profile {profile.id} runs a command: give it after `--`, "
                           "e.g. cfn spawn-agent tests-1 T --profile script -- pytest -q")
    if profile.kind == "claude" and not request.prompt:
        raise InvalidInput("a Claude agent needs a --prompt (its task)")
    if profile.skills:
        from cfn.mcp.agents import server_names

        try:
            server_names(config, profile.skills)
        except InvalidInput as exc:
            raise InvalidInput(f"agent profile {profile.id}: {exc}") from None
    workspace = (request.workspace or config.root).resolve()
    if not workspace.is_dir():
        raise InvalidInput(f"workspace {workspace} is not a directory")
    return profile, workspace


def _check_sandbox_mode(request: SpawnRequest) -> None:
    if request.sandbox_mode is None:
        return
    validate.choice(request.sandbox_mode, SANDBOX_MODES, "sandbox mode")
    if request.sandbox_mode not in FENCED:
        return
    if request.runtime == "kubernetes":
        raise InvalidInput(f"sandbox mode {request.sandbox_mode} is not available on the "
                           "kubernetes runtime (its pods' network is the cluster's to fence, "
                           "with network policies): use the process or container runtime, or "
                           "--sandbox disabled")
    if request.network:
        raise InvalidInput(f"sandbox mode {request.sandbox_mode} gives the agent no network "
                           "but its provider's: drop --network, or use --sandbox disabled")


def _given_profile(profile: object) -> profiles.Profile:
    """A ready-made profile, checked as a profile file would be: it travels to the
    supervisor as its TOML data."""
    if not isinstance(profile, profiles.Profile):
        raise InvalidInput(f"profile_object must be a Profile, got {type(profile).__name__}")
    source = profile.source or f"<given profile {profile.id}>"
    return profiles.parse(profile.to_data(), source)


def sandboxed(request: SpawnRequest, config: Config) -> bool:
    """Whether a process agent runs under bubblewrap: its sandbox mode says, else the
    agent_sandbox setting."""
    if request.runtime != "process":
        return False
    if request.sandbox_mode is not None:
        return request.sandbox_mode in FENCED
    return bool(config.agent_sandbox)


def _network(request: SpawnRequest, config: Config) -> str | None:
    """The container network; none for a fenced agent (its provider's relay is its road)."""
    return None if request.sandbox_mode in FENCED else request.network or config.agent_network


def _route(project: Project, request: SpawnRequest, profile: profiles.Profile,
           cooling: Callable[[tuple[str, ...]], list[str]] = lambda _chain: [],
           preview: bool = False) -> routing.Route:
    """The provider chain (none for scripted agents), providers in cooldown moved last."""
    if profile.kind != "claude":
        return routing.Route(())
    route = routing.select(
        project.config, os.environ, profile_provider=profile.provider, explicit=request.provider,
        complexity=request.complexity, cost_sensitive=request.cost_sensitive,
        profile_fallback=profile.fallback, preview=preview,
    )
    cooled = cooling(route.chain)
    if not cooled or len(cooled) == len(route.chain):
        return route
    chain = tuple(p for p in route.chain if p not in cooled) + tuple(cooled)
    return routing.Route(chain, (*route.reasons, f"in cooldown: {', '.join(cooled)}"),
                         route.skipped, route.missing_key)


def _context(request: SpawnRequest, workspace: Path, profile: profiles.Profile,
             timeout: float) -> dict:
    """The seed's agent context document."""
    t, a = request.task_id, request.agent_id
    return {
        "task_id": t, "agent_id": a, "mode": request.mode, "workspace": str(workspace),
        "coordination": {"channels": {
            "complete": keys.completion(t, request.phase), "results": keys.results(t),
            "signal": keys.signal(t, a), "context": keys.context_prefix(t) + "*",
        }},
        "resources": {"memory_limit": request.memory or profile.memory,
                      "cpus": request.cpus or profile.cpus, "timeout": timeout},
    }


def preflight(project: Project, request: SpawnRequest) -> tuple[profiles.Profile, Path]:
    """Every check a spawn makes before it writes anything (InvalidInput when one fails);
    the loop makes them for all its agents before it starts."""
    config = project.config
    profile, workspace = _check(request, config)
    sandbox = sandboxed(request, config)
    for url in project.target.urls:  # refuses a Redis the agents could not reach
        _agent_redis_url(url, request.runtime, sandbox, _network(request, config))
    runtimes.check(request.runtime, request.image or config.agent_image, sandbox, os.environ,
                   warn=request.sandbox_mode is None)  # a disabled one: the supervisor says
    return profile, workspace


def spawn(project: Project, request: SpawnRequest) -> Spawned:
    """Start an agent under a supervisor; returns once the supervisor has its spec."""
    config = project.config
    profile, workspace = preflight(project, request)
    r = project.redis
    if config.redis_fallback_1 and config.agent_acl and not agent_state.has_read_selectors(r):
        raise InvalidInput(  # agents follow a failover by reading cfn:failover
            "agents with their own Redis users follow REDIS_FALLBACK_1 only on Redis 7 or "
            "later (read-only ACL selectors); upgrade both servers, or unset the fallback")
    route = _route(project, request, profile, lambda chain: agent_state.cooling(r, chain))
    if request.sandbox_mode in FENCED:  # each provider must be one the relay can carry
        from cfn.agents import relay

        for name in route.chain:
            relay.plan(config.providers[name].base_url)
    provider = route.chain[0] if route.chain else None
    secret = tokens.signing_secret(config.token_secret, config.home)
    if not agent_state.claim(r, request.task_id, request.agent_id, os.getpid()):
        raise InvalidInput(f"agent {request.agent_id} of task {request.task_id} is already "
                           "running; stop it first or use another agent ID")
    acl_user = None
    try:  # whatever fails from here, the claim and the agent's Redis user go with it
        if config.agent_acl:
            acl_user = agent_state.create_user(r, request.task_id, request.agent_id)
            if agent_state.lets_anyone_in(project.redis_url):
                _warn_open_redis(project.redis_url)
        return _launch(project, request, profile, workspace, route, provider, secret, acl_user)
    except BaseException:
        if acl_user:
            agent_state.delete_user(r, acl_user.username)
        agent_state.unclaim(r, request.task_id, request.agent_id)
        raise


@functools.lru_cache(maxsize=8)  # once per Redis and process
def _warn_open_redis(url: str) -> None:
    log.warning("cfn: Redis at %s lets anyone in without a password (its default user), so "
                "agents can step around their ACL users; give it a password "
                "(docs/security.md)", mask_url(url))


def _launch(project: Project, request: SpawnRequest, profile: profiles.Profile,
            workspace: Path, route: routing.Route, provider: str | None, secret: str,
            acl_user: agent_state.RedisUser | None) -> Spawned:
    config, r = project.config, project.redis
    log_dir = ensure_home(config.home) / "agents" / request.task_id
    log_dir.mkdir(parents=True, exist_ok=True)
    model = routing.model_for(provider, profile.provider, profile.model, config.providers) \
        if provider else None
    run_id, log_path = runs.start(
        project.db, task_id=request.task_id, agent_id=request.agent_id, agent_type=profile.id,
        runtime=request.runtime, provider=provider, model=model, log_dir=log_dir,
        iteration=request.iteration, phase=request.phase,
        acl_user=acl_user.username if acl_user else None)
    # with a fallback, the agent gets the primary and the fallback, in that order
    redis_url = project.target.urls[0] if config.redis_fallback_1 else project.redis_url
    spec = build_spec(config, request, profile, workspace, route, redis_url,
                      run_id=run_id, log_path=log_path, acl_user=acl_user, secret=secret,
                      spawned_at=_server_time(r))
    spec["target"] = project.target.preferring(project.redis_url).to_dict()
    pid = supervision.submit(config.home, spec)
    return Spawned(run_id, request.task_id, request.agent_id, profile.id, request.runtime,
                   provider, route.chain, pid, str(log_path), route.reasons)


def build_spec(config: Config, request: SpawnRequest, profile: profiles.Profile,
               workspace: Path, route: routing.Route, redis_url: str, *, run_id: int,
               log_path: Path, acl_user, secret: str, spawned_at: float) -> dict:
    """Everything the supervisor needs to run the agent (secrets included: it travels on the
    supervisor's private socket), with the spawner's environment, where provider keys and
    container engines are found."""
    timeout = float(request.timeout or profile.timeout)
    sandbox = sandboxed(request, config)
    network = _network(request, config)
    agent_redis_url, mounts = _agent_redis_url(redis_url, request.runtime, sandbox, network)
    fallback = None
    if config.redis_fallback_1:  # the agent follows the home between the two (cfn.failover)
        fallback, more = _agent_redis_url(str(config.redis_fallback_1), request.runtime,
                                          sandbox, network, at="/run/cfn-fallback")
        mounts = {**mounts, **more}
    agent_env = {
        "CFN_TASK_ID": request.task_id, "CFN_AGENT_ID": request.agent_id,
        "CFN_RUN_ID": str(run_id), "CFN_MODE": request.mode,
        "CFN_CONTEXT": json.dumps(_context(request, workspace, profile, timeout)),
        "REDIS_URL": agent_redis_url,
        "CFN_TOKEN": tokens.issue(secret, agent_id=request.agent_id, task_id=request.task_id,
                                  ttl=timeout + 600, role=profile.role),
        "CFN_KEY_TTL": str(config.key_ttl),
        # the seed's names, for agents following its instructions
        "AGENT_ID": request.agent_id, "TASK_ID": request.task_id, "MODE": request.mode,
    }
    if fallback:
        agent_env["REDIS_FALLBACK_1"] = fallback
    if acl_user:
        agent_env.update(REDIS_USERNAME=acl_user.username, REDIS_PASSWORD=acl_user.password)
    if request.iteration is not None:
        agent_env["CFN_ITERATION"] = str(request.iteration)
    if profile.kind == "scripted" and request.prompt:
        agent_env["CFN_PROMPT"] = request.prompt  # scripted agents read their task here
    if profile.temperature is not None:
        agent_env["CFN_TEMPERATURE"] = str(profile.temperature)  # for agents that can use it
    if request.runtime != "process":
        agent_env["CFN_HOME"] = "/tmp/cfn"  # the host's state dir is not the agent's
    mcp_servers = None
    if profile.runs_claude_code and not request.command:
        from cfn.mcp import agents as mcp

        mcp_servers = mcp.document(config, profile.skills, request.runtime)
        agent_env.update(mcp.token_env(config, profile.skills, secret=secret,
                                       agent_id=request.agent_id, task_id=request.task_id,
                                       role=profile.role, ttl=timeout + 600))
    return {
        "run_id": run_id, "task_id": request.task_id, "agent_id": request.agent_id,
        "profile": profile.to_data(), "profile_source": profile.source,
        "runtime": request.runtime, "workspace": str(workspace), "log_path": str(log_path),
        "timeout": timeout, "memory": request.memory or profile.memory,
        "cpus": request.cpus or profile.cpus, "image": request.image or config.agent_image,
        "network": network, "ro_mounts": mounts, "prompt": request.prompt,
        "sandbox": sandbox, "sandbox_mode": request.sandbox_mode,
        "report_required": request.report_required, "hidden": [str(config.home)],
        "instructions": profile.instructions.strip(), "command": list(request.command),
        "chain": list(route.chain), "phase": request.phase, "config": config.to_dict(),
        "agent_env": agent_env, "acl_user": acl_user.username if acl_user else None,
        "mcp_servers": mcp_servers,
        "spawned_at": spawned_at, "environ": dict(os.environ),
        "record_nonce": secrets.token_hex(12),
    }


@dataclass(frozen=True)
class DryRun:
    """What a spawn would submit, secrets redacted: the kubernetes Secret and Job, or for
    the other runtimes one document with the agent's argv and environment."""

    documents: list[dict]
    missing_keys: tuple[str, ...]  # variables a spawn needs that the environment lacks


def dry_run(project: Project, request: SpawnRequest) -> DryRun:
    """What spawning `request` would run; starts nothing, writes nothing and needs no
    provider key (the key's variable is named in `missing_keys` instead)."""
    route, run_request = _preview(project, request)
    keys = tuple(project.config.providers[name].key_env for name in route.missing_key)
    if request.runtime == "kubernetes":
        from cfn.agents.runtimes.kubernetes import manifests

        return DryRun(manifests(run_request, redact=True), keys)
    document = {
        "runtime": request.runtime, "name": run_request.name, "chain": list(route.chain),
        "route": list(route.reasons), "argv": run_request.argv, "env": run_request.env,
        "workspace": str(run_request.workspace), "ro_mounts": run_request.ro_mounts,
        "memory": run_request.memory, "cpus": run_request.cpus,
        "timeout": run_request.deadline_s,
    }
    if request.runtime == "container":
        document.update(image=run_request.image, network=run_request.network)
    else:
        document.update(sandbox=run_request.sandbox)
    if run_request.no_network:  # a fenced mode (strict, permissive)
        document.update(network="none (its provider through the relay)",
                        workspace_read_only=run_request.read_only_workspace)
    return DryRun([document], keys)


def _preview(project: Project, request: SpawnRequest
             ) -> tuple[routing.Route, runtimes.RunRequest]:
    """The route and the runtime's request a spawn would make, with every secret redacted
    (stand-ins sign nothing and reach no one)."""
    from cfn import embedded
    from cfn.agents.supervisor import AgentRun

    config = project.config
    profile, workspace = _check(request, config)
    route = _route(project, request, profile, preview=True)
    spec = build_spec(config, request, profile, workspace, route,
                      str(config.redis_url or embedded.url(config.home)), run_id=0,
                      log_path=Path("/dev/null"),
                      acl_user=agent_state.RedisUser("<created-at-spawn>", "x"),
                      secret="x" * tokens.MIN_SECRET_BYTES, spawned_at=0.0)
    # a key that is not set gets a stand-in, so the preview shows where it would go
    spec["environ"].update({config.providers[name].key_env: "<not set>"
                            for name in route.missing_key})
    run_request = AgentRun(spec, project).request(route.chain[0] if route.chain else None, 0)
    return route, replace(run_request, env=runtimes.redacted(run_request.env), host_env={})


def _server_time(r: redis.Redis) -> float:
    seconds, micros = r.time()
    return seconds + micros / 1e6


def _agent_redis_url(url: str, runtime: str, sandbox: bool, network: str | None, *,
                     at: str = "/run/cfn") -> tuple[str, dict[str, str]]:
    """The Redis URL as the agent sees it, and the read-only mounts that make it work: a
    unix socket (which may sit in the hidden state directory) is mounted into containers and
    sandboxes under /run/cfn. A socket alone in its directory has the directory mounted, so
    the agent finds the new socket of a Redis that restarted; otherwise the file is (at
    /run/cfn/redis.sock either way for the embedded server). A Redis
    on this machine's loopback is out of reach of containers and pods on their own network."""
    if runtime != "process" and network != "host" and _on_loopback(url):
        from cfn.config import mask_url

        raise InvalidInput(
            f"Redis at {mask_url(url)} listens on this machine's loopback, which {runtime} "
            "agents on their own network cannot reach: use the embedded Redis (its socket is "
            "mounted in), a Redis on the agents' network (--network), or --network host")
    url = without_credentials(url)  # the agent connects as its own ACL user
    if (runtime == "process" and not sandbox) or not url.startswith("unix://"):
        return url, {}
    socket_path = Path(url[len("unix://"):])
    if _alone_in_reachable_dir(socket_path, runtime):
        return f"unix://{at}/{socket_path.name}", {str(socket_path.parent): at}
    return f"unix://{at}/redis.sock", {str(socket_path): f"{at}/redis.sock"}


def _alone_in_reachable_dir(socket_path: Path, runtime: str) -> bool:
    """True if the socket is the only thing in its directory (a directory of sockets could
    hold a container engine's: never hand an agent that), and the agent can pass through it
    (a container's user is not ours)."""
    try:
        if runtime != "process" and not socket_path.parent.stat().st_mode & 0o001:
            return False
        return [entry.name for entry in socket_path.parent.iterdir()] == [socket_path.name]
    except OSError:
        return False


def _on_loopback(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if url.startswith("unix://") or not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
