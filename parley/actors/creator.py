"""Channel create as an actor: one mailbox orders every create of this process.

A create is decided against everything created before it: whether the slug is free,
whether the channel count is under its cap, and the owner's create throttle. A
``trio.Lock`` in the directory used to order them. Now they are the commands of
one actor, like every other decision in parley (ADR-0047), so the same runtime
gives them back-pressure, statistics and shutdown draining. Across processes,
``UNIQUE(stream_id, seq)`` on the first event of the channel's stream still
decides who created it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..domain import channel as rules
from ..domain.identity import Identity
from ..domain.outcomes import Created, Outcome
from ..errors import ChannelExists, ParleyError
from ..journal.errors import ConcurrencyError, JournalUnavailable, WindowFull
from ..journal.types import NewEvent
from .channel_actor import stream_id, window_side_effect
from .failures import journal_unavailable, wire_error
from .runtime import Actor, Envelope

if TYPE_CHECKING:
    from .backbone import Backbone

log = logging.getLogger("parley.channels")

#: The one key of the creator registry: every create goes through one actor.
CREATOR = "channels"


@dataclass(frozen=True, slots=True)
class CreateChannel:
    body: dict[str, Any]
    identity: Identity
    idem_key: str | None = None


class ChannelCreator(Actor):
    """Decides and commits channel creates one at a time; its state is the backbone's directory."""

    def __init__(self, backbone: Backbone) -> None:
        self.backbone = backbone

    async def activate(self) -> None:
        """Nothing to load: the directory is loaded when the backbone starts."""

    async def handle_batch(self, batch: list[Envelope[Any]]) -> None:
        for envelope in batch:
            try:
                envelope.reply.set_result(await self._create(envelope.command))
            except ParleyError as error:
                envelope.reply.set_error(error)
            except Exception as exc:  # a bug: one 500 for this create, the others go on
                envelope.reply.set_error(wire_error(exc, log=log, during="channel create"))

    async def _create(self, command: CreateChannel) -> Outcome:
        backbone, directory = self.backbone, self.backbone.directory
        body, identity, idem_key = command.body, command.identity, command.idem_key
        if idem_key is not None:
            replay = directory.replay_create(identity, idem_key, body)
            if replay is not None:
                return replay
        while True:
            # The create throttle is charged only once the create has
            # committed (ADR-0037): a failed one leaves the sheet unused.
            with backbone.seatbelt.pending() as charges:
                slug, descriptor = rules.decide_create(
                    body.get("channel"),
                    body,
                    identity,
                    exists=directory.exists,
                    channel_count=directory.count(),
                    max_channels=backbone.settings.max_channels,
                    now_ms=backbone.clock.now_ms(),
                    stamp=backbone.stamper.next,
                    seatbelt=charges,
                )
                data: dict[str, Any] = {"descriptor": descriptor}
                if idem_key is not None:
                    data["idem"] = {"key": idem_key, "fp": directory.create_fingerprint(identity, body), "route": "create"}
                effect = window_side_effect(charges) if backbone.shared_windows else None
                try:
                    committed = await backbone.journal.append(
                        stream_id(slug), [NewEvent("channel_created", data)], 0, side_effect=effect
                    )
                except WindowFull as full:
                    # Another process spent this owner's create budget: decide
                    # again against every process's stamps (raises rate_limited).
                    backbone.seatbelt.adopt(full.scope, full.key, full.stamps)
                    continue
                except ConcurrencyError:
                    raise ChannelExists(f"Channel already exists: {rules.js_quote(rules.fragment(slug))}") from None
                except JournalUnavailable:
                    raise journal_unavailable() from None
                backbone.seatbelt.charge(charges)
                break
        directory.add(descriptor, owner=identity.owner, idem=data.get("idem"))
        backbone.stamper.observe(committed[-1].position)
        return Created({**descriptor, "head": 0})
