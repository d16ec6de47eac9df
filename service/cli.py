"""`mallrec`: the one command-line entry point.

The root only assembles subcommands; each side registers its own (`training.cli` for train,
evaluate, tune, synth; `training.report_cli` for report; `training.simulate_cli` for simulate; `service.cli_commands` for serve, sink,
recommend, demo, rules; `service.models_cli` for models list / rollback / pin / unpin; `service.eventlog.log_cli`
for log compact). Heavy imports (implicit, faiss, grpc) happen inside the commands, so
`mallrec --help` is instant.
"""

from __future__ import annotations

import os
import sys

# implicit/OpenBLAS oversubscribe cores when both thread pools spin; set before numpy loads BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402

from service.errors import MallrecError, MissingExtra  # noqa: E402

app = typer.Typer(
    name="mallrec",
    help="Recommendations for a brand's member mall: train models offline, serve slots over gRPC.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[/members]" must not be read as markup
)


def _register() -> None:
    from training import cli as training_cli
    from training import report_cli, simulate_cli

    training_cli.register(app)
    report_cli.register(app)
    simulate_cli.register(app)
    try:
        from service import cli_commands
    except ImportError as e:  # pragma: no cover - only while the service side is absent
        if "cli_commands" not in str(e):
            raise
    else:
        cli_commands.register(app)
    from service import models_cli
    from service.eventlog import log_cli

    models_cli.register(app)
    log_cli.register(app)


_register()


def _errors() -> Console:
    """stderr for one-line errors: soft wrap, so a long message stays one line in a pipe or a log."""
    return Console(stderr=True, soft_wrap=True)


def main() -> None:
    try:
        app()
    except MallrecError as e:
        _errors().print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        sys.exit(e.exit_code)
    except ModuleNotFoundError as e:  # a serve-only install running a training command
        missing = MissingExtra.of(e, sys.argv[1:])
        if missing is None:
            raise
        _errors().print(f"[bold red]error:[/] {escape(str(missing))}", highlight=False)
        sys.exit(missing.exit_code)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
