"""The ``parley`` command line: serve, db, token, journal, bench."""

from __future__ import annotations

import logging
import sys

import click

from .config import ConfigError, from_env


def _fail(message: str) -> None:
    click.echo(f"parley: {message}", err=True)
    sys.exit(1)


def _setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper(), logging.INFO), format="%(message)s")
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


@click.group()
def main() -> None:
    """parley: a durable coordination backbone for teams of AI agents."""


@main.command()
@click.option("--host", default=None, help="Bind host (env HOST / PARLEY_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Bind port, 0 = ephemeral (env PORT / PARLEY_PORT, default 4317).")
@click.option("--database-url", default=None, help="SQLAlchemy URL (env PARLEY_DATABASE_URL, default sqlite:///parley.db).")
@click.option("--read-auth", type=click.Choice(["open", "token"]), default=None, help="Reads open or token-gated (env PARLEY_READ_AUTH).")
@click.option("--max-posts-per-minute", type=int, default=None)
@click.option("--max-messages-per-channel", type=int, default=None)
@click.option("--max-channels", type=int, default=None)
@click.option("--max-read-limit", type=int, default=None)
@click.option("--max-streams", type=int, default=None)
@click.option("--workers", type=int, default=None, help="Worker processes sharing the port (env PARLEY_WORKERS; >1 needs Postgres).")
@click.option("--fd", "listen_fd", type=int, default=None, hidden=True)
@click.option("--log-level", default="INFO", show_default=True)
def serve(host, port, database_url, read_auth, max_posts_per_minute, max_messages_per_channel, max_channels, max_read_limit, max_streams, workers, listen_fd, log_level) -> None:
    """Run the HTTP server (Hypercorn, trio worker)."""
    _setup_logging(log_level)
    if port is not None and not 0 <= port <= 65535:
        _fail(f'invalid --port "{port}": must be an integer in [0, 65535]')
    try:
        settings = from_env(
            host=host,
            port=port,
            database_url=database_url,
            read_auth=None if read_auth is None else read_auth == "token",
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
    from .server import StartupError, serve as run

    # Flags a worker process must repeat (everything else arrives by environment).
    worker_argv = [
        f"--{name.replace('_', '-')}={value}"
        for name, value in [
            ("database_url", database_url),
            ("read_auth", read_auth),
            ("max_posts_per_minute", max_posts_per_minute),
            ("max_messages_per_channel", max_messages_per_channel),
            ("max_channels", max_channels),
            ("max_read_limit", max_read_limit),
            ("max_streams", max_streams),
            ("log_level", log_level),
        ]
        if value is not None
    ]
    try:
        code = run(settings, worker_argv)
    except StartupError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


def _database_url(url: str | None) -> str:
    try:
        return from_env(database_url=url).database_url
    except ConfigError as exc:
        _fail(str(exc))
        raise


@main.group()
def db() -> None:
    """Schema migrations (Alembic)."""


@db.command()
@click.option("--database-url", default=None)
@click.option("--revision", default="head", show_default=True)
def upgrade(database_url, revision) -> None:
    """Upgrade the schema to REVISION."""
    from .journal import migrate

    migrate.upgrade(_database_url(database_url), revision)
    click.echo(f"database at {migrate.current(_database_url(database_url))}", err=True)


@db.command()
@click.option("--database-url", default=None)
def current(database_url) -> None:
    """Print the schema revision."""
    from .journal import migrate

    click.echo(migrate.current(_database_url(database_url)) or "(none)")


@db.command()
@click.option("--database-url", default=None)
@click.option("--revision", default="-1", show_default=True)
def downgrade(database_url, revision) -> None:
    """Downgrade the schema to REVISION."""
    from .journal import migrate

    migrate.downgrade(_database_url(database_url), revision)


from . import cli_journal, cli_token  # noqa: E402  (operator command groups)

main.add_command(cli_journal.journal)
main.add_command(cli_token.token)
from .cli_bench import bench  # noqa: E402

main.add_command(bench)
from .mcp.cli import mcp_command  # noqa: E402

main.add_command(mcp_command)


if __name__ == "__main__":  # pragma: no cover
    main()
