"""`cfn config`: every resolved setting and where it came from."""

from __future__ import annotations

import click

from cfn.cli._common import config_of, json_option, print_json


@click.command()
@json_option
@click.pass_context
def config(ctx, as_json: bool) -> None:
    """Print each setting's value (secrets masked) and its source.

    \b
    Precedence: flag > environment variable > cfn.toml > default.
    Providers come last, as providers.NAME.FIELD (cfn.toml: [providers.NAME];
    environment: CFN_PROVIDER_<NAME>_BASE_URL, _MODEL, _KEY_ENV). key_env names
    the variable holding the key; keys themselves are never configuration.
    """
    resolved = config_of(ctx)
    names = [*resolved.values, *(name for name in resolved.sources
                                 if name.startswith("providers."))]
    if as_json:
        print_json(
            {n: {"value": resolved.shown(n), "source": resolved.sources[n]} for n in names}
        )
        return
    width = max(map(len, names))
    for name in names:
        shown = resolved.shown(name)
        click.echo(f"{name:<{width}}  {'(unset)' if shown in (None, '') else shown}  "
                   f"[{resolved.sources[name]}]")
