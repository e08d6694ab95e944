"""`cfn completion bash|zsh|fish`: shell completion, by click. The completion barrier that
used to be `cfn completion signal|wait` is `cfn barrier`; its old spelling still works here
(for the design documents' scripts), without being offered."""

from __future__ import annotations

import click

SHELLS = ("bash", "zsh", "fish")


class CompletionGroup(click.Group):
    """The shells, plus the barrier's commands under their old names, unlisted."""

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in SHELLS:
            return super().get_command(ctx, name)
        from cfn.cli.completion import completion as barrier

        return barrier.get_command(ctx, name)


@click.group(cls=CompletionGroup)
def completion() -> None:
    """Print shell completion for cfn (commands, options, choices).

    \b
    eval "$(cfn completion bash)"     # in ~/.bashrc
    eval "$(cfn completion zsh)"      # in ~/.zshrc
    cfn completion fish | source      # in ~/.config/fish/config.fish
    """


def _shell_command(shell: str) -> click.Command:
    @click.command(name=shell, help=f"The {shell} completion script.")
    def script() -> None:
        from click.shell_completion import get_completion_class

        from cfn.cli.app import cli

        source = get_completion_class(shell)(cli, {}, "cfn", "_CFN_COMPLETE").source()
        click.echo(source)

    return script


for _shell in SHELLS:
    completion.add_command(_shell_command(_shell))
