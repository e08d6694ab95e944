"""`cfn image`: the agent image container agents run in."""

from __future__ import annotations

import click

from cfn.cli._common import config_of, json_option, print_json
from cfn.errors import NegativeOutcome

image_option = click.option("--image", help="Image name (default: the agent_image setting).")


@click.group()
def image() -> None:
    """Build and check the agent image (cfn, its skills, Claude Code; a non-root user)."""


@image.command()
@image_option
@click.option("--rebuild-base", is_flag=True,
              help="Make the Debian base again even if the engine has it.")
@json_option
@click.pass_context
def build(ctx, image: str | None, rebuild_base: bool, as_json: bool) -> None:
    """Build the agent image offline: a Debian base from Debian's packages (mmdebstrap),
    then docker/Dockerfile.agent with a wheel of this cfn. Takes a few minutes; the
    build's output streams on stderr.

    \b
      cfn image build
      cfn spawn-agent coder-1 T --runtime container --prompt "..."
    """
    from cfn import images

    built = images.build(image or str(config_of(ctx).agent_image),
                         rebuild_base=rebuild_base, say=lambda m: click.echo(f"cfn: {m}",
                                                                             err=True))
    if as_json:
        print_json(built.to_dict())
        return
    size = f", {built.size_bytes / 1e6:.0f} MB" if built.size_bytes else ""
    click.echo(built.image)
    click.echo(f"cfn: built {built.image} in {built.seconds:.0f} s{size}", err=True)


@image.command()
@image_option
@json_option
@click.pass_context
def status(ctx, image: str | None, as_json: bool) -> None:
    """Say whether the agent image exists (exit 1, with how to build it, if not)."""
    from cfn import images

    name = image or str(config_of(ctx).agent_image)
    found = images.exists(name)
    if as_json:
        print_json({"image": name, "exists": found, "size_bytes": images.size(name)
                    if found else None})
    elif found:
        click.echo(f"{name}\tpresent")
    if not found:
        raise NegativeOutcome(f"image {name} is missing; build it with `cfn image build`")
