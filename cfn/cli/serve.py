"""`cfn serve`: the web portal (cfn.web)."""

from __future__ import annotations

import ipaddress

import click

from cfn.cli._common import project_of
from cfn.errors import InvalidInput


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs TLS or --insecure-bind.")
@click.option("--port", type=click.IntRange(1, 65535), default=3000, show_default=True,
              help="Port to listen on.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False),
              help="TLS certificate (PEM) to serve HTTPS with.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False),
              help="The certificate's private key (PEM).")
@click.option("--insecure-bind", is_flag=True,
              help="Listen beyond loopback without TLS (tokens then cross the network in "
                   "the clear: only inside a private network, e.g. a compose stack).")
@click.pass_context
def serve(ctx, host, port, tls_cert, tls_key, insecure_bind) -> None:
    """Serve the portal: the REST API and live events over socket.io (docs/web.md); every
    route and socket needs a token (`cfn token issue --role operator` for an operator's)."""
    if bool(tls_cert) != bool(tls_key):
        raise InvalidInput("give --tls-cert and --tls-key together")
    if not _loopback(host) and not tls_cert and not insecure_bind:
        raise InvalidInput(f"{host} is reachable from other machines: serve it with "
                           "--tls-cert and --tls-key, or say --insecure-bind")
    import importlib.util

    if any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn", "socketio")):
        raise InvalidInput("cfn serve needs the portal's packages: pip install 'cfn[web]'")
    import uvicorn

    from cfn.web.app import create_server

    project = project_of(ctx)
    uvicorn.run(create_server(project.root), host=host, port=port, ssl_certfile=tls_cert,
                ssl_keyfile=tls_key, log_level="warning")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
