"""The parley client SDK.

    from parley.client import AsyncParley, Parley, ChannelFull

    async with AsyncParley("http://127.0.0.1:4317", "tok-a") as client:
        await client.create_channel("war-room")
        await client.append("war-room", body="hello")          # type note, msg_id minted
        async for message in client.iter_messages("war-room"):   # read_all: pages
            ...
        async with client.tail("war-room") as tail:             # SSE, resumes on reconnect
            async for item in tail:                              # {"cursor", "message"}
                ...

Errors are the classes of :mod:`parley.errors` rebuilt from the wire code, so
``except ChannelFull`` works across the network; each keeps ``.code``,
``.status``, ``.message``, ``.issues`` and ``.retry_after``.

Results are the server's JSON bodies as plain dicts, typed as the
:class:`typing.TypedDict` s of :mod:`parley.client.types` (``Message``,
``ReadPage``, ``AppendResult``, ``SessionTurn``…), re-exported here.

Sessions: ``start_session`` / ``continue_session`` on both clients, and
``ResumableSession.open(path, client)`` which persists
``(sessionId, continuationToken)`` to a JSON file after every turn.

Outbox: ``Outbox(path).enqueue(channel, message)`` keeps a post on disk until
``drain(client)`` delivers it exactly once (docs/outbox.md, ADR-0018).
"""

from ._async import AsyncParley, SSETail, WSTail, new_idempotency_key, new_ulid
from ._errors import *  # noqa: F403 - the error tree, re-exported
from ._errors import __all__ as _error_names
from ._outbox import Accepted, Delivery, DrainResult, Outbox, OutboxConflict, OutboxStateError
from ._sessions import (
    Actions,
    AsyncResumableSession,
    Pending,
    ResumableSession,
    SessionFile,
    SessionState,
    turn_body,
)
from ._sync import Parley
from .types import *  # noqa: F403 - the result types, re-exported
from .types import __all__ as _type_names

__all__ = [
    "Accepted",
    "Actions",
    "AsyncParley",
    "AsyncResumableSession",
    "Delivery",
    "DrainResult",
    "Outbox",
    "OutboxConflict",
    "OutboxStateError",
    "Parley",
    "Pending",
    "ResumableSession",
    "SSETail",
    "SessionFile",
    "SessionState",
    "WSTail",
    "new_idempotency_key",
    "new_ulid",
    "turn_body",
    *_error_names,
    *_type_names,
]
