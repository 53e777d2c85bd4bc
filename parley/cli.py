"""The ``parley`` command line: serve, db, token, journal, bench, post, read."""

from __future__ import annotations

import sys

import click

from . import cli_options
from .cli_errors import GuardedGroup, listen_failure
from .config import ConfigError, from_env


def _fail(message: str) -> None:
    click.echo(f"parley: {message}", err=True)
    sys.exit(1)


def _setup_logging(level: str = "INFO", fmt: str = "console") -> None:
    from .logs import configure

    configure(level, fmt)


@click.group(cls=GuardedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=None, package_name="parley", prog_name="parley", message="%(prog)s %(version)s")
def main() -> None:
    """parley: a durable coordination backbone for teams of AI agents."""


@main.command()
@click.option("--host", default=None, envvar=["PARLEY_HOST", "HOST"], show_envvar=True, help="Bind host (default 127.0.0.1).")
@click.option("--port", type=cli_options.PORT, default=None, envvar=["PARLEY_PORT", "PORT"], show_envvar=True,
              help="Bind port, 0 = ephemeral (default 4317).")
@cli_options.database_url_option(default=None)
@click.option("--read-auth", type=cli_options.READ_AUTH, default=None, envvar="PARLEY_READ_AUTH", show_envvar=True,
              help="Reads 'open' (default) or 'token'-gated.")
@cli_options.int_option("max_posts_per_minute", "Appends per minute per (channel, agent).")
@cli_options.int_option("max_messages_per_channel")
@cli_options.int_option("max_channels")
@cli_options.int_option("max_read_limit", "Largest read page.")
@cli_options.int_option("max_streams", "Concurrent SSE/WebSocket tails.")
@cli_options.int_option("workers", "Worker processes sharing the port; >1 needs Postgres.")
@click.option("--fd", "listen_fd", type=int, default=None, hidden=True)
@click.option("--log-level", default="INFO", show_default=True, type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--log-format", default="console", show_default=True, envvar="PARLEY_LOG_FORMAT", show_envvar=True,
              type=click.Choice(["console", "json"]), help="Log lines for a terminal, or one JSON object per line.")
@click.pass_context
def serve(ctx, host, port, database_url, read_auth, max_posts_per_minute, max_messages_per_channel, max_channels, max_read_limit, max_streams, workers, listen_fd, log_level, log_format) -> None:
    """Run the HTTP server (Hypercorn, trio worker)."""
    _setup_logging(log_level, log_format)
    try:
        settings = from_env(
            host=host,
            port=port,
            database_url=database_url,
            read_auth=read_auth,
            max_posts_per_minute=max_posts_per_minute,
            max_messages_per_channel=max_messages_per_channel,
            max_channels=max_channels,
            max_read_limit=max_read_limit,
            max_streams=max_streams,
            workers=1 if listen_fd is not None else workers,
            listen_fd=listen_fd,
        )
    except ConfigError as exc:
        _fail(str(exc))
    ctx.meta[cli_options.DATABASE_URL_META] = settings.database_url
    from .server import StartupError, serve as run

    # Flags a worker process must repeat (everything else arrives by environment).
    worker_argv = [
        f"--{name.replace('_', '-')}={value}"
        for name, value in [
            ("database_url", database_url),
            ("read_auth", None if read_auth is None else ("token" if read_auth else "open")),
            ("max_posts_per_minute", max_posts_per_minute),
            ("max_messages_per_channel", max_messages_per_channel),
            ("max_channels", max_channels),
            ("max_read_limit", max_read_limit),
            ("max_streams", max_streams),
            ("log_level", log_level),
            ("log_format", log_format),
        ]
        if value is not None
    ]
    try:
        code = run(settings, worker_argv)
    except StartupError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        code = 0
    except Exception as exc:  # noqa: BLE001 - one line for a socket that cannot be bound
        line = listen_failure(exc, settings.host, settings.port)
        if line is None:
            raise
        _fail(line)
    sys.exit(code)


@main.group()
def db() -> None:
    """Schema migrations (Alembic)."""


@db.command()
@cli_options.database_url_option
@click.option("--revision", default="head", show_default=True)
def upgrade(database_url, revision) -> None:
    """Upgrade the schema to REVISION."""
    from .journal import migrate

    migrate.upgrade(database_url, revision)
    click.echo(f"database at {migrate.current(database_url)}", err=True)


@db.command()
@cli_options.database_url_option
def current(database_url) -> None:
    """Print the schema revision."""
    from .journal import migrate

    click.echo(migrate.current(database_url) or "(none)")


@db.command()
@cli_options.database_url_option
@click.option("--revision", default="-1", show_default=True)
def downgrade(database_url, revision) -> None:
    """Downgrade the schema to REVISION."""
    from .journal import migrate

    migrate.downgrade(database_url, revision)


from . import cli_journal, cli_token  # noqa: E402  (operator command groups)

main.add_command(cli_journal.journal)
main.add_command(cli_token.token)
from .cli_bench import bench  # noqa: E402

main.add_command(bench)
from .cli_outbox import outbox  # noqa: E402

main.add_command(outbox)
from .cli_agent import hook, init  # noqa: E402  (Claude Code hook and scaffolder)

main.add_command(hook)
main.add_command(init)
from .cli_client import post, read  # noqa: E402  (talk to a running server)

main.add_command(post)
main.add_command(read)
from .mcp.cli import mcp_command  # noqa: E402

main.add_command(mcp_command)


if __name__ == "__main__":  # pragma: no cover
    main()
