"""The trio actor runtime: mailboxes, ask/tell, activation, passivation, supervision.

An actor owns one piece of state and sees one batch of commands at a time
from its mailbox (a bounded ``trio.open_memory_channel``), so check-then-act
inside an actor can never interleave with another command for the same key.
An actor receives *every* command already waiting in its mailbox as one batch
(:meth:`Actor.handle_batch`), which lets it decide them all against a
pending view of its state and commit them in one journal append (ADR-0003).

Lifecycle of a key in the :class:`Registry`:

* **activation** on first use: the cell task runs :meth:`Actor.activate`
  (snapshot + replay of the tail) before serving the mailbox;
* **passivation** after ``idle_timeout`` seconds without a command: the cell
  leaves the registry synchronously (no ``await`` between the emptiness
  check and the removal), so a sender can never reach a departed cell;
* **supervision**: if ``handle_batch`` raises, the actor is re-activated
  (state rebuilt from the journal) and the unanswered commands are retried
  one by one; the one that raises again is answered ``internal_error`` and
  the others are served.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import trio

from ..errors import InternalError, Unavailable
from .failures import wire_error

log = logging.getLogger("parley.actors")

T = TypeVar("T")


class Reply:
    """A one-shot reply slot that a waiter can await from trio."""

    __slots__ = ("_event", "_value", "_error", "done")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        self.done = False

    def set_result(self, value: Any) -> None:
        if not self.done:
            self.done = True
            self._value = value
            self._event.set()

    def set_error(self, error: BaseException) -> None:
        if not self.done:
            self.done = True
            self._error = error
            self._event.set()

    def outcome(self) -> Any:
        """The answer of a reply that is ``done`` (or raise its error), without a
        checkpoint: a bulk caller reads hundreds answered by one commit."""
        if self._error is not None:
            raise self._error
        return self._value

    async def wait(self) -> Any:
        await self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value


@dataclass(slots=True)
class Envelope(Generic[T]):
    """A command on its way into a mailbox, with the slot for its answer."""

    command: T
    reply: Reply = field(default_factory=Reply)


class Actor:
    """Base class: subclasses implement :meth:`activate` and :meth:`handle_batch`."""

    key: str

    async def activate(self) -> None:
        """(Re)build state from the journal; called before the first batch."""

    async def handle_batch(self, batch: list[Envelope[Any]]) -> None:
        """Decide every command in ``batch`` and answer each ``reply``."""
        raise NotImplementedError

    async def passivate(self) -> None:
        """Called when the actor leaves memory (e.g. to save a snapshot)."""

    def busy(self) -> bool:
        """True while idleness must not passivate the actor (work it started will report back)."""
        return False

    def take_waiting(self) -> list[Envelope[Any]]:
        """The commands waiting in this actor's mailbox right now (at most one
        batch), taken without a checkpoint; set by the registry's cell.

        An actor that calls it from :meth:`handle_batch` (the channel actor
        deciding its next batch while the current one commits, ADR-0057) must
        answer what it took before it returns; the cell counts them as part
        of the batch it is handling, so supervision answers them too.
        """
        return []


@dataclass(frozen=True, slots=True)
class RegistryStatistics:
    """What :meth:`Registry.statistics` reports, read at ``/metrics`` scrape time.

    Levels: ``active`` (actors in memory), ``mailbox_depth`` (commands
    waiting in all their mailboxes), ``largest_mailbox`` (the deepest one:
    a hot key shows here long before the sum moves). Monotonic counts since
    start: ``activations``, ``passivations`` (idle actors that left memory),
    ``restarts`` (supervised re-activations after a failure), ``batches``
    and ``commands`` handed to :meth:`Actor.handle_batch` (``commands /
    batches`` is the mean batch size the commit grouping achieves).
    """

    active: int
    activations: int
    passivations: int
    restarts: int
    mailbox_depth: int
    largest_mailbox: int = 0
    batches: int = 0
    commands: int = 0


class _StateLost(Exception):
    """A supervised restart could not rebuild the actor's state: the cell ends."""

    def __init__(self, cause: Exception, unanswered: list[Envelope[Any]]) -> None:
        super().__init__(f"restart failed: {type(cause).__name__}")
        self.cause = cause
        self.unanswered = unanswered


class _Cell:
    def __init__(self, registry: Registry, key: str, actor: Actor, mailbox_size: int) -> None:
        self.registry = registry
        self.key = key
        self.actor = actor
        self.send, self.receive = trio.open_memory_channel[Envelope[Any]](mailbox_size)
        #: The batch being handled: what :meth:`_take_waiting` takes joins it.
        self._current: list[Envelope[Any]] = []
        actor.take_waiting = self._take_waiting  # type: ignore[method-assign]

    async def run(self) -> None:
        reg = self.registry
        try:
            await self.actor.activate()
        except BaseException as exc:
            reg._forget(self)
            # The database went away while the state was loading: the same
            # 503 every write path answers, not a 500 (ADR-0034).
            self._refuse_all(exc, [], during=f"activation of {self.key}")
            if isinstance(exc, trio.Cancelled):
                raise
            return
        lost: _StateLost | None = None
        try:
            await self._serve()
        except _StateLost as exc:
            lost = exc
        finally:
            reg._forget(self)
            if lost is None:
                with trio.CancelScope(shield=True):
                    try:
                        await self.actor.passivate()
                    except Exception:
                        log.exception("passivation of %s failed", self.key)
        if lost is not None:
            # A restart could not rebuild the state: nothing to passivate, and
            # the next command activates a fresh cell (issue 17 review).
            self._refuse_all(lost.cause, lost.unanswered, during=f"restart of {self.key}")

    def _refuse_all(self, exc: BaseException, unanswered: list[Envelope[Any]], *, during: str) -> None:
        """Close the mailbox and answer ``unanswered`` and everything queued with ``exc``'s wire error."""
        self.send.close()
        error = wire_error(exc, log=log, during=during)
        for envelope in [*unanswered, *self._drain()]:
            envelope.reply.set_error(error)

    def _drain(self) -> list[Envelope[Any]]:
        waiting = []
        while True:
            try:
                waiting.append(self.receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return waiting

    def _take_waiting(self) -> list[Envelope[Any]]:
        reg = self.registry
        taken: list[Envelope[Any]] = []
        while len(taken) < reg.batch_max:
            try:
                taken.append(self.receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        if taken:
            self._current.extend(taken)
            reg.batches += 1
            reg.commands += len(taken)
        return taken

    async def _serve(self) -> None:
        reg = self.registry
        while True:
            first: Envelope[Any] | None = None
            with trio.move_on_after(reg.idle_timeout):
                try:
                    first = await self.receive.receive()
                except trio.EndOfChannel:
                    return
            if first is None:
                # Idle: leave the registry synchronously, so no sender can
                # find this cell between the check and the removal.
                if self.receive.statistics().current_buffer_used == 0 and not self.actor.busy():
                    reg._forget(self)
                    reg.passivations += 1
                    return
                continue
            batch = [first]
            while len(batch) < reg.batch_max:
                try:
                    batch.append(self.receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            reg.batches += 1
            reg.commands += len(batch)
            self._current = batch
            try:
                await self._handle(batch)
            finally:
                self._current = []

    async def _handle(self, batch: list[Envelope[Any]]) -> None:
        try:
            # The actor gets its own list: what it takes with ``take_waiting``
            # joins ``batch`` (for supervision below), never the list it decides.
            await self.actor.handle_batch(list(batch))
            return
        except Exception:
            log.exception("actor %s failed a batch of %d; restarting", self.key, len(batch))
        # Supervision: rebuild from the journal, then retry one at a time.
        try:
            for envelope in batch:
                if envelope.reply.done:
                    continue
                await self._restart()
                try:
                    await self.actor.handle_batch([envelope])
                except Exception:
                    log.exception("actor %s failed a command; answering internal_error", self.key)
                    envelope.reply.set_error(InternalError())
            await self._restart()
        except Exception as exc:  # the rebuild itself failed (e.g. the database went away)
            raise _StateLost(exc, [e for e in batch if not e.reply.done]) from exc

    async def _restart(self) -> None:
        self.registry.restarts += 1
        await self.actor.activate()


class Registry:
    """Finds or activates the actor for a key and delivers commands to it."""

    def __init__(
        self,
        factory: Callable[[str], Actor],
        *,
        mailbox_size: int = 1024,
        idle_timeout: float = 300.0,
        batch_max: int = 256,
        ask_timeout: float = 30.0,
    ) -> None:
        self._factory = factory
        self._cells: dict[str, _Cell] = {}
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._drained = trio.Event()
        self.mailbox_size = mailbox_size
        self.idle_timeout = idle_timeout
        self.batch_max = batch_max
        self.ask_timeout = ask_timeout
        self.activations = 0
        self.passivations = 0
        self.restarts = 0
        self.batches = 0
        self.commands = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the actor tasks until :meth:`shutdown` has drained them all."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def _cell(self, key: str) -> _Cell:
        cell = self._cells.get(key)
        if cell is None:
            if self._closing or self._nursery is None:
                raise Unavailable("server is shutting down", retry_after=1)
            cell = _Cell(self, key, self._factory(key), self.mailbox_size)
            self._cells[key] = cell
            self.activations += 1
            self._nursery.start_soon(cell.run, name=f"actor:{key}")
        return cell

    def _forget(self, cell: _Cell) -> None:
        if self._cells.get(cell.key) is cell:
            del self._cells[cell.key]
        if self._closing and not self._cells:
            self._drained.set()

    def tell(self, key: str, command: Any) -> Reply:
        """Deliver without waiting; raises :class:`Unavailable` when the mailbox is full."""
        envelope: Envelope[Any] = Envelope(command)
        cell = self._cell(key)
        try:
            cell.send.send_nowait(envelope)
        except trio.WouldBlock:
            raise Unavailable("too many commands waiting; retry shortly", retry_after=1) from None
        except trio.ClosedResourceError:
            raise Unavailable("server is shutting down", retry_after=1) from None
        return envelope.reply

    async def deliver(self, key: str, command: Any) -> Reply:
        """Like :meth:`tell`, but a full mailbox makes the sender wait for room
        (back-pressure for bulk senders) instead of refusing. Without a wait it
        does not yield, so commands delivered in a row land in one batch."""
        envelope: Envelope[Any] = Envelope(command)
        cell = self._cell(key)
        try:
            cell.send.send_nowait(envelope)
        except trio.WouldBlock:
            try:
                await cell.send.send(envelope)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                raise Unavailable("server is shutting down", retry_after=1) from None
        except trio.ClosedResourceError:
            raise Unavailable("server is shutting down", retry_after=1) from None
        return envelope.reply

    async def ask(self, key: str, command: Any, timeout: float | None = None) -> Any:
        """Deliver ``command`` and wait for its answer (or raise its error)."""
        reply = self.tell(key, command)
        limit = self.ask_timeout if timeout is None else timeout
        with trio.move_on_after(limit if limit is not None else math.inf):
            return await reply.wait()
        raise Unavailable("the actor did not answer in time", retry_after=1)

    def peek(self, key: str) -> Actor | None:
        """The actor for ``key`` if it is in memory (no activation)."""
        cell = self._cells.get(key)
        return None if cell is None else cell.actor

    def is_active(self, key: str) -> bool:
        return key in self._cells

    def active_keys(self) -> list[str]:
        return list(self._cells)

    def statistics(self) -> RegistryStatistics:
        """This registry's counts (trio's ``statistics()`` habit; see :class:`RegistryStatistics`)."""
        depths = [c.receive.statistics().current_buffer_used for c in self._cells.values()]
        return RegistryStatistics(
            active=len(self._cells),
            activations=self.activations,
            passivations=self.passivations,
            restarts=self.restarts,
            mailbox_depth=sum(depths),
            largest_mailbox=max(depths, default=0),
            batches=self.batches,
            commands=self.commands,
        )

    async def shutdown(self) -> None:
        """Stop taking commands, let every mailbox drain, then stop."""
        self._closing = True
        for cell in list(self._cells.values()):
            cell.send.close()
        if self._cells:
            await self._drained.wait()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
