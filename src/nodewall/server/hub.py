"""Long-poll waiters, change notification, and the answer cache of the policy endpoint.

Agents hold `GET /v1/node/{node}/policy?version=V&wait=S`; each holder waits on a future in the
`PolicyHub`. When node policies change, the hub loads the new rows of the nodes that have
waiters in one query, builds each answer once, and resolves every waiting future of those
nodes with it. With SQLite (one server process) the writer tells the hub directly after commit;
with PostgreSQL the writer sends NOTIFY inside its transaction and every server process (this one
included) hears it on a LISTEN connection, so a change made through one process wakes the
waiters of all.

The hub also caches each node's answer (the version and the ready body), so the policy
endpoint is a dictionary lookup: a notification drops the nodes it names (all of them after the
LISTEN connection is re-opened), and an entry lives at most CACHE_SECONDS in any case, which
bounds how stale an answer can be if a notification were ever lost.

When the database cannot be read (restarting, locked), a wake-up is tried again a second later
while the polls stay held; the LISTEN connection is re-opened with a growing delay (0.1 s to 5 s)
and, once back, wakes every held poll (anything may have changed meanwhile).

It never decides what changed (see `policies`) and never writes to the store.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from nodewall.server import metrics
from nodewall.server.policies import policy_body
from nodewall.server.unavailable import log_unavailable, unavailable_reason
from nodewall.store import Store
from nodewall.store.models import NodePolicyRow

log = logging.getLogger("nodewall.server.hub")

CHANNEL = "nodewall_policy"
#: NOTIFY payloads must stay under 8000 bytes.
PAYLOAD_LIMIT = 7000
_CHUNK = 500
CACHE_SECONDS = 30.0
#: A wake-up that could not read the new answers (database unavailable) is tried again after.
WAKE_RETRY_SECONDS = 1.0
#: The LISTEN connection is re-opened after 0.1 s, 0.2, 0.4 ... at most 5 s apart.
LISTEN_RETRY_FIRST, LISTEN_RETRY_CAP = 0.1, 5.0
CACHE_LIMIT = 50_000


@dataclass(frozen=True)
class Answer:
    version: str
    body: bytes


def load_answers(store: Store, nodes: Iterable[str]) -> dict[str, Answer]:
    """Current answers of `nodes` (absent: no policy, e.g. removed)."""
    names = list(nodes)
    result: dict[str, Answer] = {}
    with store.read_session() as session:
        for i in range(0, len(names), _CHUNK):
            chunk = names[i:i + _CHUNK]
            rows = session.execute(
                select(NodePolicyRow.node_name, NodePolicyRow.version, NodePolicyRow.policy,
                       NodePolicyRow.updated_at)
                .where(NodePolicyRow.node_name.in_(chunk))
            )
            for name, version, policy, changed in rows:
                result[name] = Answer(version, policy_body(version, policy, changed))
    return result


def publish_in_transaction(session: Session, nodes: list[str]) -> None:
    """PostgreSQL: queue NOTIFYs for `nodes`; delivered to all listeners at commit."""
    batch: list[str] = []
    size = 0
    for name in nodes:
        if batch and size + len(name) + 1 > PAYLOAD_LIMIT:
            session.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": ",".join(batch)})
            batch, size = [], 0
        batch.append(name)
        size += len(name) + 1
    if batch:
        session.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": ",".join(batch)})


class PolicyHub:
    """Futures of held long-polls, by node, resolved with the node's new answer."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiters: dict[str, set[asyncio.Future[Answer | None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self._cache: dict[str, tuple[float, Answer | None]] = {}
        self._epoch = 0  # bumped by every invalidation; a read started before one is not kept
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle -------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self._store.is_postgres:
            self._listener = threading.Thread(target=self._listen, name="nodewall-listen",
                                              daemon=True)
            self._listener.start()

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)

    # --- answers ---------------------------------------------------------------------------
    async def answer(self, node: str) -> Answer | None:
        """The node's current answer (None: no policy), from the cache when fresh."""
        now = asyncio.get_running_loop().time()
        hit = self._cache.get(node)
        if hit is not None and hit[0] > now:
            return hit[1]
        epoch = self._epoch
        found = (await asyncio.to_thread(load_answers, self._store, [node])).get(node)
        self._remember(epoch, {node: found})
        return found

    def _remember(self, epoch: int, answers: dict[str, Answer | None]) -> None:
        if epoch != self._epoch:
            return  # something changed while we read: do not keep what we read
        if len(self._cache) + len(answers) > CACHE_LIMIT:
            self._cache.clear()
        expires = asyncio.get_running_loop().time() + CACHE_SECONDS
        for node, found in answers.items():
            self._cache[node] = (expires, found)

    def _invalidate(self, nodes: list[str] | None) -> None:
        self._epoch += 1
        if nodes is None:
            self._cache.clear()
        else:
            for node in nodes:
                self._cache.pop(node, None)

    # --- waiting ---------------------------------------------------------------------------
    def register(self, node: str) -> asyncio.Future[Answer | None]:
        fut: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(node, set()).add(fut)
        metrics.WAITERS.inc()
        return fut

    def unregister(self, node: str, fut: asyncio.Future[Answer | None]) -> None:
        waiting = self._waiters.get(node)
        if waiting is not None and fut in waiting:
            waiting.discard(fut)
            metrics.WAITERS.dec()
            if not waiting:
                del self._waiters[node]

    # --- waking ----------------------------------------------------------------------------
    def notify_threadsafe(self, nodes: Iterable[str] | None) -> None:
        """From any thread: `nodes` changed (None: anything may have changed)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        names = None if nodes is None else list(nodes)
        loop.call_soon_threadsafe(self._changed, names)

    def _changed(self, nodes: list[str] | None) -> None:
        """On the loop: drop the cached answers at once (before the writer's HTTP answer goes
        out, which was queued after us), then wake the held polls."""
        self._invalidate(nodes)
        task = asyncio.get_running_loop().create_task(self.wake(nodes))
        self._tasks.add(task)  # the loop keeps only a weak reference to tasks
        task.add_done_callback(self._tasks.discard)

    async def wake(self, nodes: list[str] | None) -> None:
        targets = list(self._waiters) if nodes is None else [
            n for n in dict.fromkeys(nodes) if n in self._waiters
        ]
        if not targets:
            return
        epoch = self._epoch
        try:
            answers = await asyncio.to_thread(load_answers, self._store, targets)
        except Exception as exc:
            reason = unavailable_reason(exc)
            if reason is None:
                raise
            # The polls stay held; try again shortly (they end by their own wait otherwise).
            log_unavailable(exc, reason)
            asyncio.get_running_loop().call_later(WAKE_RETRY_SECONDS, self._changed, nodes)
            return
        self._remember(epoch, {n: answers.get(n) for n in targets})
        for node in targets:
            futures = self._waiters.pop(node, set())
            answer = answers.get(node)
            for fut in futures:
                metrics.WAITERS.dec()
                if not fut.done():
                    fut.set_result(answer)
                    metrics.WAKEUPS.inc()

    # --- PostgreSQL LISTEN -----------------------------------------------------------------
    def _listen(self) -> None:
        import psycopg

        dsn = self._store.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)
        delay, failures = LISTEN_RETRY_FIRST, 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    metrics.NOTIFY_RECONNECTS.inc()
                    if failures:
                        log.warning("LISTEN connection back after %d attempts", failures)
                    delay, failures = LISTEN_RETRY_FIRST, 0
                    # Anything may have changed while we were not listening.
                    self.notify_threadsafe(None)
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self.notify_threadsafe(note.payload.split(","))
                            if self._stop.is_set():
                                break
            except Exception as exc:
                if not failures:
                    log.warning("LISTEN connection lost (%s); reconnecting",
                                type(exc).__name__)
                failures += 1
                self._stop.wait(delay)
                delay = min(LISTEN_RETRY_CAP, delay * 2)
