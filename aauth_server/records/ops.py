"""The record operations, bound to one server's ``issuer``.

Every method returns a :class:`~aauth_server.records.txn.Txn`; run it with
``store.run(txn)`` or ``await store.arun(txn)``, or yield ``store.op(txn)`` from protocol
steps.  Times are passed in (``now``): the caller's injected clock is the only clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)

from ..storage.base import StorageError
from . import schema as t
from .rows import IssuedToken, LogEntry, MissionRow, MissionUpdateRow, OutboxItem, log_columns
from .txn import InsertIgnore, Rows, Sql, Work, prepared, transaction

ACTIVE = "active"
SUSPENDED = "suspended"
TERMINATED = "terminated"
STATUSES = (ACTIVE, SUSPENDED, TERMINATED)
#: Outbox states: one open, the rest terminal.
PENDING = "pending"
OUTBOX_TERMINAL = ("revoked", "unsupported", "unavailable", "expired")


# Statements of the hot paths, built once with bind parameters (compiled once, cached).
_m = t.missions.c
_MISSION = prepared(
    select(t.missions).where(_m.issuer == bindparam("i"), _m.s256 == bindparam("s"))
)

_BUMP_LOG = prepared(
    update(t.missions)
    .where(_m.issuer == bindparam("i"), _m.s256 == bindparam("s"))
    .values(log_seq=_m.log_seq + literal_column("1"))
    .returning(_m.log_seq)
)

_INSERT_LOG = prepared(insert(t.mission_log))

_u = t.mission_updates.c
_UPDATES = prepared(
    select(t.mission_updates)
    .where(_u.issuer == bindparam("i"), _u.s256 == bindparam("s"))
    .order_by(_u.seq)
)

_r = t.revocations.c
_REVOKED = prepared(
    select(_r.jti).where(
        _r.issuer == bindparam("i"), _r.token_iss == bindparam("t"), _r.jti == bindparam("j")
    )
)

_b = t.bindings.c
_BOUND = prepared(
    select(_b.person).where(
        _b.issuer == bindparam("i"),
        _b.agent_issuer == bindparam("a"),
        _b.agent == bindparam("g"),
        _b.expires_at > bindparam("now"),
    )
)

_c = t.agent_cutoffs.c
_CUT = prepared(
    select(_c.at).where(
        _c.issuer == bindparam("i"),
        _c.agent_issuer == bindparam("a"),
        _c.agent == bindparam("g"),
        _c.at >= bindparam("since"),
    )
)

_s = t.seen_tokens.c
_SEEN = prepared(
    select(_s.sub).where(
        _s.issuer == bindparam("i"), _s.token_iss == bindparam("t"), _s.jti == bindparam("j")
    )
)


def _revoked_exists(iss: str, jti: str) -> Any:
    return exists().where(
        _r.issuer == bindparam("i"), _r.token_iss == bindparam(iss), _r.jti == bindparam(jti)
    )


#: Everything a token request at the PS asks the records, as one statement (one snapshot):
#: the agent token's revocation and the agent's binding (:meth:`RecordOps.agent_facts`), and
#: the two parameter tokens' revocations and the agent's cut-off (:meth:`revocation_facts`).
_REQUEST_FACTS = prepared(
    select(
        _revoked_exists("a", "aj").label("agent_revoked"),
        select(_b.person)
        .where(
            _b.issuer == bindparam("i"),
            _b.agent_issuer == bindparam("a"),
            _b.agent == bindparam("g"),
            _b.expires_at > bindparam("now"),
        )
        .scalar_subquery()
        .label("person"),
        _revoked_exists("t1", "j1").label("revoked1"),
        _revoked_exists("t2", "j2").label("revoked2"),
        exists()
        .where(
            _c.issuer == bindparam("i"),
            _c.agent_issuer == bindparam("a"),
            _c.agent == bindparam("g"),
            _c.at >= bindparam("since"),
        )
        .label("cut"),
    )
)


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What :meth:`RecordOps.request_facts` read, with the questions it answered."""

    #: The agent token ``(iss, jti)`` and the agent ``sub``.
    agent_issuer: str
    agent_jti: str
    agent: str
    #: The agent token is revoked; the person the agent is bound to (None: unbound).
    revoked: bool
    person: str | None
    #: The two parameter tokens ``(iss, jti)`` asked about, whether each is revoked, and
    #: whether the agent was cut off at or after ``since``.
    tokens: tuple[tuple[str, str], tuple[str, str]]
    tokens_revoked: tuple[bool, bool]
    since: float
    cut: bool

    def revocation_facts(
        self, tokens: Sequence[tuple[str, str]], agent: tuple[str, str], since: float
    ) -> tuple[list[bool], bool] | None:
        """:meth:`RecordOps.revocation_facts`'s answer for these very questions; None when
        they are not the ones this read answered."""
        if tuple(tokens) != self.tokens or agent != (self.agent_issuer, self.agent):
            return None
        if since != self.since:
            return None
        return list(self.tokens_revoked), self.cut


class MissionUpdatesFull(StorageError):
    """:meth:`RecordOps.add_mission_update` refused: the mission is active but holds
    ``limit`` accepted updates already.  A storage error, like a lost compare-and-set, so
    the drivers hand it to the steps that ran the operation (they answer for it)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the mission holds {limit} accepted updates already")
        self.limit = limit


class RecordOps:
    """Operations on the rows of one issuer (``RecordOps("https://ps.example")``)."""

    def __init__(self, issuer: str) -> None:
        if not isinstance(issuer, str) or not issuer:
            raise ValueError("records need the issuer they belong to")
        self.issuer = issuer

    # -- missions -----------------------------------------------------------------------------

    def _mission_key(self, s256: str) -> Any:
        return and_(t.missions.c.issuer == self.issuer, t.missions.c.s256 == s256)

    def _get_mission(self, s256: str) -> Work[MissionRow | None]:
        row = (yield Sql(_MISSION, {"i": self.issuer, "s": s256})).first()
        return None if row is None else MissionRow.of(row)

    def _append(self, s256: str, entry: Mapping[str, Any], now: float) -> Work[int | None]:
        # The row's lock orders appends: each takes the next number, and the entry commits
        # with it or not at all, so numbers are contiguous and none is taken twice.
        bumped = yield Sql(_BUMP_LOG, {"i": self.issuer, "s": s256})
        seq = bumped.scalar()
        if seq is None:
            return None
        values = log_columns(entry)
        yield Sql(
            _INSERT_LOG, {"issuer": self.issuer, "s256": s256, "seq": seq, "at": now, **values}
        )
        return int(seq)

    @transaction()
    def create_mission(
        self,
        *,
        s256: str,
        blob: bytes,
        agent_issuer: str,
        agent: str,
        person: str,
        approved_at: float,
        expires_at: float | None,
        first_entry: Mapping[str, Any] | None = None,
    ) -> Work[tuple[MissionRow, bool]]:
        """Store an approved mission; ``(row, created)`` (an identical mission already
        stored is returned as it is, ``created`` False)."""
        inserted = yield InsertIgnore(
            t.missions,
            {
                "issuer": self.issuer,
                "s256": s256,
                "blob": blob,
                "agent_issuer": agent_issuer,
                "agent": agent,
                "person": person,
                "status": ACTIVE,
                "termination_reason": None,
                "approved_at": approved_at,
                "expires_at": expires_at,
                "status_at": approved_at,
                "log_seq": 0,
                "update_seq": 0,
            },
        )
        if inserted.rowcount and first_entry is not None:
            yield from self._append(s256, first_entry, approved_at)
        row = yield from self._get_mission(s256)
        assert row is not None
        return row, bool(inserted.rowcount)

    @transaction(write=False)
    def get_mission(self, s256: str) -> Work[MissionRow | None]:
        return (yield from self._get_mission(s256))

    @transaction(write=False)
    def missions_of(
        self, person: str, *, limit: int = 50, before: float | None = None
    ) -> Work[list[MissionRow]]:
        """A person's missions, newest approval first."""
        query = select(t.missions).where(
            t.missions.c.issuer == self.issuer, t.missions.c.person == person
        )
        if before is not None:
            query = query.where(t.missions.c.approved_at < before)
        query = query.order_by(t.missions.c.approved_at.desc()).limit(limit)
        rows = yield Sql(query)
        return [MissionRow.of(r) for r in rows.rows]

    @transaction()
    def set_mission_status(
        self,
        s256: str,
        status: str,
        *,
        now: float,
        allowed_from: Sequence[str],
        reason: str | None = None,
        entry: Mapping[str, Any] | None = None,
    ) -> Work[tuple[MissionRow | None, bool]]:
        """Move a mission to ``status`` if it is in one of ``allowed_from``; log ``entry``
        in the same transaction when it moved.  ``(row as it now is, moved)``."""
        if status not in STATUSES:
            raise ValueError(f"unknown mission status {status!r}")
        values: dict[str, Any] = {"status": status, "status_at": now}
        if status == TERMINATED:
            values["termination_reason"] = reason
        moved = yield Sql(
            update(t.missions)
            .where(self._mission_key(s256), t.missions.c.status.in_(list(allowed_from)))
            .values(**values)
        )
        if moved.rowcount and entry is not None:
            yield from self._append(s256, entry, now)
        row = yield from self._get_mission(s256)
        return row, bool(moved.rowcount)

    @transaction()
    def add_mission_update(
        self,
        s256: str,
        *,
        blob: bytes,
        digest: str,
        now: float,
        accepted_by: str,
        entry: Mapping[str, Any] | None = None,
        max_updates: int | None = None,
    ) -> Work[int | None]:
        """Append an accepted update (its bytes exactly as hashed); its number, or None
        when the mission is not active.  :class:`MissionUpdatesFull` when the mission
        holds ``max_updates`` accepted updates already (None: no cap).

        The cap is checked by the statement that takes the number (the row's lock orders
        them), so parallel updates at ``max_updates - 1`` cannot both get in."""
        missions = t.missions.c
        where = [self._mission_key(s256), missions.status == ACTIVE]
        if max_updates is not None:
            where.append(missions.update_seq < max_updates)
        bumped = yield Sql(
            update(t.missions)
            .where(*where)
            .values(update_seq=missions.update_seq + 1)
            .returning(missions.update_seq)
        )
        seq = bumped.scalar()
        if seq is None:
            if max_updates is not None:
                # Why not: ended or suspended (None), or full.  ``update_seq`` only grows, so
                # an active mission read full now stays full: that answer cannot go stale.
                row = yield from self._get_mission(s256)
                if row is not None and row.status == ACTIVE and row.update_seq >= max_updates:
                    raise MissionUpdatesFull(max_updates)
            return None
        yield Sql(
            insert(t.mission_updates).values(
                issuer=self.issuer,
                s256=s256,
                seq=seq,
                blob=blob,
                digest=digest,
                accepted_at=now,
                accepted_by=accepted_by,
            )
        )
        if entry is not None:
            yield from self._append(s256, entry, now)
        return int(seq)

    @transaction(write=False)
    def mission_updates(self, s256: str) -> Work[list[MissionUpdateRow]]:
        rows = yield Sql(
            select(t.mission_updates)
            .where(t.mission_updates.c.issuer == self.issuer, t.mission_updates.c.s256 == s256)
            .order_by(t.mission_updates.c.seq)
        )
        return [MissionUpdateRow.of(r) for r in rows.rows]

    @transaction(write=False)
    def mission_with_updates(
        self, s256: str
    ) -> Work[tuple[MissionRow | None, list[MissionUpdateRow]]]:
        """The mission and its accepted updates, read together."""
        row = yield from self._get_mission(s256)
        if row is None or row.update_seq == 0:
            return row, []
        rows = yield Sql(_UPDATES, {"i": self.issuer, "s": s256})
        return row, [MissionUpdateRow.of(r) for r in rows.rows]

    # -- the mission log ----------------------------------------------------------------------

    @transaction()
    def append_log(self, s256: str, entry: Mapping[str, Any], *, now: float) -> Work[int | None]:
        """Append ``entry`` (``event`` required) to the log; its ``seq``, or None when there
        is no such mission."""
        return (yield from self._append(s256, entry, now))

    def _log_query(self, s256: str, filters: Mapping[str, Any]) -> Any:
        log = t.mission_log.c
        query = select(t.mission_log).where(log.issuer == self.issuer, log.s256 == s256)
        for name, value in filters.items():
            if name not in ("event", "agent", "resource", "decision", "actor"):
                raise ValueError(f"the log cannot be filtered on {name!r}")
            if isinstance(value, list | tuple | set | frozenset):
                query = query.where(log[name].in_(list(value)))
            else:
                query = query.where(log[name] == value)
        return query

    @transaction(write=False)
    def log_page(
        self, s256: str, *, before: int | None = None, limit: int = 50, **filters: Any
    ) -> Work[list[LogEntry]]:
        """Entries newest first: up to ``limit`` with ``seq`` below ``before``."""
        query = self._log_query(s256, filters)
        if before is not None:
            query = query.where(t.mission_log.c.seq < before)
        rows = yield Sql(query.order_by(t.mission_log.c.seq.desc()).limit(limit))
        return [LogEntry.of(r) for r in rows.rows]

    @transaction(write=False)
    def log_since(self, s256: str, *, after: int = 0, limit: int = 1000) -> Work[list[LogEntry]]:
        """Entries oldest first, ``seq`` above ``after``."""
        rows = yield Sql(
            self._log_query(s256, {})
            .where(t.mission_log.c.seq > after)
            .order_by(t.mission_log.c.seq)
            .limit(limit)
        )
        return [LogEntry.of(r) for r in rows.rows]

    @transaction(write=False)
    def log_count(self, s256: str, **filters: Any) -> Work[int]:
        query = self._log_query(s256, filters).with_only_columns(func.count())
        return int((yield Sql(query)).scalar() or 0)

    # -- agent-person bindings ----------------------------------------------------------------

    def _binding_key(self, agent_issuer: str, agent: str) -> Any:
        b = t.bindings.c
        return and_(b.issuer == self.issuer, b.agent_issuer == agent_issuer, b.agent == agent)

    @transaction()
    def bind(
        self, agent_issuer: str, agent: str, person: str, *, now: float, ttl: float
    ) -> Work[bool]:
        """Bind the agent to ``person`` (1:1); False when it is bound to someone else."""
        # An expired binding no longer counts: it gives way to the new one.
        yield Sql(
            delete(t.bindings).where(
                self._binding_key(agent_issuer, agent), t.bindings.c.expires_at <= now
            )
        )
        yield InsertIgnore(
            t.bindings,
            {
                "issuer": self.issuer,
                "agent_issuer": agent_issuer,
                "agent": agent,
                "person": person,
                "created_at": now,
                "expires_at": now + ttl,
            },
        )
        row = yield Sql(select(t.bindings.c.person).where(self._binding_key(agent_issuer, agent)))
        return bool(row.scalar() == person)

    @transaction(write=False)
    def bound_person(self, agent_issuer: str, agent: str, *, now: float) -> Work[str | None]:
        params = {"i": self.issuer, "a": agent_issuer, "g": agent, "now": now}
        rows = yield Sql(_BOUND, params)
        value = rows.scalar()
        return None if value is None else str(value)

    @transaction(write=False)
    def agent_facts(
        self, agent_issuer: str, jti: str, agent: str, *, now: float
    ) -> Work[tuple[bool, str | None]]:
        """In one transaction: is this agent token revoked, and who is the agent bound to?"""
        revoked = yield Sql(_REVOKED, {"i": self.issuer, "t": agent_issuer, "j": jti})
        params = {"i": self.issuer, "a": agent_issuer, "g": agent, "now": now}
        person = (yield Sql(_BOUND, params)).scalar()
        return revoked.first() is not None, None if person is None else str(person)

    @transaction(write=False)
    def request_facts(
        self,
        agent_issuer: str,
        jti: str,
        agent: str,
        *,
        now: float,
        tokens: tuple[tuple[str, str], tuple[str, str]],
        since: float,
    ) -> Work[RequestFacts]:
        """:meth:`agent_facts` and :meth:`revocation_facts` (for the agent's own cut-off)
        in one transaction, one statement: the token request's reads at the PS."""
        (t1, j1), (t2, j2) = tokens
        params = {
            "i": self.issuer,
            "a": agent_issuer,
            "aj": jti,
            "g": agent,
            "now": now,
            "t1": t1,
            "j1": j1,
            "t2": t2,
            "j2": j2,
            "since": since,
        }
        row = (yield Sql(_REQUEST_FACTS, params)).first()
        assert row is not None  # a SELECT without FROM answers one row
        person = row["person"]
        return RequestFacts(
            agent_issuer,
            jti,
            agent,
            revoked=bool(row["agent_revoked"]),
            person=None if person is None else str(person),
            tokens=((t1, j1), (t2, j2)),
            tokens_revoked=(bool(row["revoked1"]), bool(row["revoked2"])),
            since=since,
            cut=bool(row["cut"]),
        )

    @transaction()
    def unbind(self, agent_issuer: str, agent: str) -> Work[bool]:
        gone = yield Sql(delete(t.bindings).where(self._binding_key(agent_issuer, agent)))
        return bool(gone.rowcount)

    # -- issued tokens ------------------------------------------------------------------------

    @transaction()
    def record_issued(
        self,
        token: IssuedToken,
        *,
        log: Sequence[Mapping[str, Any]] = (),
        now: float | None = None,
    ) -> Work[bool]:
        """Record an issued token; with ``log``, append those entries to the log of the
        token's mission in the same transaction (a decision and its token, written once)."""
        inserted = yield InsertIgnore(t.issued_tokens, {"issuer": self.issuer, **token.values()})
        if log and token.mission is not None:
            at = token.iat if now is None else now
            for entry in log:
                yield from self._append(token.mission, entry, at)
        return bool(inserted.rowcount)

    @transaction(write=False)
    def issued(self, jti: str) -> Work[IssuedToken | None]:
        c = t.issued_tokens.c
        row = yield Sql(select(t.issued_tokens).where(c.issuer == self.issuer, c.jti == jti))
        found = row.first()
        return None if found is None else IssuedToken.of(found)

    @transaction(write=False)
    def issued_where(
        self,
        *,
        unexpired_at: float | None = None,
        unrevoked: bool = False,
        limit: int = 10_000,
        **match: str,
    ) -> Work[list[IssuedToken]]:
        """Issued tokens whose columns equal ``match`` (``mission=``, ``agent=``,
        ``presented_jti=``...), optionally only those with ``exp`` after ``unexpired_at``
        and only those not yet revoked."""
        c = t.issued_tokens.c
        query = select(t.issued_tokens).where(c.issuer == self.issuer)
        for name, value in match.items():
            if name not in IssuedToken.__slots__:
                raise ValueError(f"no issued-token column {name!r}")
            query = query.where(c[name] == value)
        if unexpired_at is not None:
            query = query.where(c.exp > unexpired_at)
        if unrevoked:
            query = query.where(c.revoked_at.is_(None))
        rows = yield Sql(query.order_by(c.iat).limit(limit))
        return [IssuedToken.of(r) for r in rows.rows]

    @transaction()
    def presented_to(self, jti: str, recipient: str) -> Work[bool]:
        """Note the Access Server an issued person token was presented to (the PS's
        federation): revoking the token revokes it there too (digest 5.7)."""
        c = t.issued_tokens.c
        done = yield Sql(
            update(t.issued_tokens)
            .where(c.issuer == self.issuer, c.jti == jti)
            .values(presented_to=recipient)
        )
        return bool(done.rowcount)

    @transaction()
    def mark_revoked(self, jtis: Iterable[str], *, now: float) -> Work[int]:
        c = t.issued_tokens.c
        wanted = list(jtis)
        if not wanted:
            return 0
        done = yield Sql(
            update(t.issued_tokens)
            .where(c.issuer == self.issuer, c.jti.in_(wanted), c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int(done.rowcount)

    # -- revocations --------------------------------------------------------------------------

    def _revocation_key(self, token_iss: str, jti: str) -> Any:
        r = t.revocations.c
        return and_(r.issuer == self.issuer, r.token_iss == token_iss, r.jti == jti)

    @transaction()
    def revoke(
        self, token_iss: str, jti: str, *, exp: float, now: float, source: str | None = None
    ) -> Work[bool]:
        """Record that ``(token_iss, jti)`` is revoked until ``exp``; True when new."""
        inserted = yield InsertIgnore(
            t.revocations,
            {
                "issuer": self.issuer,
                "token_iss": token_iss,
                "jti": jti,
                "exp": exp,
                "revoked_at": now,
                "source": source,
            },
        )
        return bool(inserted.rowcount)

    @transaction(write=False)
    def is_revoked(self, token_iss: str, jti: str) -> Work[bool]:
        rows = yield Sql(_REVOKED, {"i": self.issuer, "t": token_iss, "j": jti})
        return rows.first() is not None

    @transaction(write=False)
    def revocation_facts(
        self, tokens: Sequence[tuple[str, str]], agent: tuple[str, str] | None, since: float
    ) -> Work[tuple[list[bool], bool]]:
        """In one transaction: which of ``tokens`` (``(iss, jti)``) are revoked, and whether
        ``agent`` (``(iss, sub)``) was cut off at or after ``since``."""
        revoked = []
        for token_iss, jti in tokens:
            rows = yield Sql(_REVOKED, {"i": self.issuer, "t": token_iss, "j": jti})
            revoked.append(rows.first() is not None)
        cut = False
        if agent is not None:
            params = {"i": self.issuer, "a": agent[0], "g": agent[1], "since": since}
            cut = (yield Sql(_CUT, params)).first() is not None
        return revoked, cut

    @transaction()
    def cut_off(self, agent_issuer: str, agent: str, *, at: float, expires_at: float) -> Work[None]:
        """Tokens and requests of this agent from before ``at`` are revoked (kept until
        ``expires_at``); a later cut-off replaces an earlier one."""
        c = t.agent_cutoffs.c
        key = and_(c.issuer == self.issuer, c.agent_issuer == agent_issuer, c.agent == agent)
        inserted = yield InsertIgnore(
            t.agent_cutoffs,
            {
                "issuer": self.issuer,
                "agent_issuer": agent_issuer,
                "agent": agent,
                "at": at,
                "expires_at": expires_at,
            },
        )
        if not inserted.rowcount:
            yield Sql(update(t.agent_cutoffs).where(key, c.at < at).values(at=at))
            yield Sql(
                update(t.agent_cutoffs)
                .where(key, c.expires_at < expires_at)
                .values(expires_at=expires_at)
            )

    @transaction(write=False)
    def cut_off_since(self, agent_issuer: str, agent: str, since: float) -> Work[bool]:
        """Was this agent cut off at or after ``since``?"""
        params = {"i": self.issuer, "a": agent_issuer, "g": agent, "since": since}
        rows = yield Sql(_CUT, params)
        return rows.first() is not None

    @transaction()
    def remember_seen(self, token_iss: str, jti: str, *, sub: str, exp: float) -> Work[bool]:
        """Which subject an accepted token named (an agent token's ``sub``), for a later
        revocation's cascade."""
        inserted = yield InsertIgnore(
            t.seen_tokens,
            {"issuer": self.issuer, "token_iss": token_iss, "jti": jti, "sub": sub, "exp": exp},
        )
        return bool(inserted.rowcount)

    @transaction(write=False)
    def seen_sub(self, token_iss: str, jti: str) -> Work[str | None]:
        rows = yield Sql(_SEEN, {"i": self.issuer, "t": token_iss, "j": jti})
        value = rows.scalar()
        return None if value is None else str(value)

    # -- the outbox ---------------------------------------------------------------------------

    @transaction()
    def enqueue(
        self,
        items: Sequence[Mapping[str, Any]],
        *,
        now: float,
        kind: str = "revoke",
    ) -> Work[int]:
        """Queue messages (``recipient``, ``jti``, ``exp``, optional ``mission``,
        ``token_type``); one per ``(kind, recipient, jti)``: repeats are ignored, a
        repeat of a finished one that failed is queued again.  The number newly queued."""
        queued = 0
        c = t.outbox.c
        for item in items:
            inserted = yield InsertIgnore(
                t.outbox,
                {
                    "issuer": self.issuer,
                    "kind": kind,
                    "recipient": item["recipient"],
                    "jti": item["jti"],
                    "exp": item["exp"],
                    "mission": item.get("mission"),
                    "token_type": item.get("token_type"),
                    "status": PENDING,
                    "detail": None,
                    "attempts": 0,
                    "next_at": now,
                    "lease_until": None,
                    "poll_url": None,
                    "created_at": now,
                    "finished_at": None,
                },
            )
            if inserted.rowcount:
                queued += 1
                continue
            # Idempotent repeats re-attempt failures (digest 5.7).
            again = yield Sql(
                update(t.outbox)
                .where(
                    c.issuer == self.issuer,
                    c.kind == kind,
                    c.recipient == item["recipient"],
                    c.jti == item["jti"],
                    c.status == "unavailable",
                    c.exp > now,
                )
                .values(status=PENDING, next_at=now, attempts=0, finished_at=None, poll_url=None)
            )
            queued += int(again.rowcount)
        return queued

    @transaction()
    def claim_due(self, *, now: float, lease: float, limit: int = 20) -> Work[list[OutboxItem]]:
        """Lease up to ``limit`` pending messages that are due; a crashed worker's lease
        runs out and another worker takes the message over."""
        c = t.outbox.c
        query = (
            select(t.outbox)
            .where(
                c.issuer == self.issuer,
                c.status == PENDING,
                c.next_at <= now,
                or_(c.lease_until.is_(None), c.lease_until <= now),
            )
            .order_by(c.next_at, c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = yield Sql(query)
        items = [OutboxItem.of(r) for r in rows.rows]
        if items:
            yield Sql(
                update(t.outbox)
                .where(c.id.in_([i.id for i in items]))
                .values(lease_until=now + lease, attempts=c.attempts + 1)
            )
        return [
            OutboxItem(**{**_fields(i), "attempts": i.attempts + 1})  # as leased
            for i in items
        ]

    @transaction()
    def finish(
        self, item_id: int, *, status: str, now: float, detail: str | None = None
    ) -> Work[bool]:
        if status not in OUTBOX_TERMINAL:
            raise ValueError(f"{status!r} is not a terminal outbox status")
        c = t.outbox.c
        done = yield Sql(
            update(t.outbox)
            .where(c.issuer == self.issuer, c.id == item_id, c.status == PENDING)
            .values(status=status, detail=detail, finished_at=now, lease_until=None)
        )
        return bool(done.rowcount)

    @transaction()
    def retry_later(
        self,
        item_id: int,
        *,
        next_at: float,
        detail: str | None = None,
        poll_url: str | None = None,
    ) -> Work[bool]:
        c = t.outbox.c
        done = yield Sql(
            update(t.outbox)
            .where(c.issuer == self.issuer, c.id == item_id, c.status == PENDING)
            .values(next_at=next_at, detail=detail, poll_url=poll_url, lease_until=None)
        )
        return bool(done.rowcount)

    @transaction(write=False)
    def outbox_items(self, *, limit: int = 10_000, **match: Any) -> Work[list[OutboxItem]]:
        """Messages whose columns equal ``match`` (``mission=``, ``status=``...), oldest first."""
        c = t.outbox.c
        query = select(t.outbox).where(c.issuer == self.issuer)
        for name, value in match.items():
            query = query.where(c[name] == value)
        rows = yield Sql(query.order_by(c.id).limit(limit))
        return [OutboxItem.of(r) for r in rows.rows]

    @transaction(write=False)
    def outbox_for(self, keys: Sequence[tuple[str, str, str]]) -> Work[list[OutboxItem]]:
        """The messages ``(kind, recipient, jti)`` (those queued), read in one transaction:
        what a revocation endpoint waits on before it answers (digest 5.7)."""
        c = t.outbox.c
        found: list[OutboxItem] = []
        wanted = list(keys)
        for start in range(0, len(wanted), 200):
            chunk = wanted[start : start + 200]
            jtis = sorted({jti for _, _, jti in chunk})
            rows = yield Sql(select(t.outbox).where(c.issuer == self.issuer, c.jti.in_(jtis)))
            want = set(chunk)
            found += [
                item
                for item in (OutboxItem.of(r) for r in rows.rows)
                if (item.kind, item.recipient, item.jti) in want
            ]
        return found

    @transaction(write=False)
    def next_due(self) -> Work[float | None]:
        """When the earliest pending message is due (None: nothing pending)."""
        c = t.outbox.c
        rows = yield Sql(
            select(func.min(c.next_at)).where(c.issuer == self.issuer, c.status == PENDING)
        )
        value = rows.scalar()
        return None if value is None else float(value)

    # -- upkeep -------------------------------------------------------------------------------

    @transaction()
    def prune(self, *, now: float, grace: float = 300.0, outbox_days: float = 30) -> Work[int]:
        """Delete what nobody needs any more: revocations, seen tokens and issued-token
        records past ``exp`` + ``grace``, expired bindings and cut-offs, and finished
        outbox messages older than ``outbox_days``.  Missions and their logs are kept."""
        removed = 0
        limit = now - grace
        for table, column in (
            (t.revocations, t.revocations.c.exp),
            (t.seen_tokens, t.seen_tokens.c.exp),
            (t.issued_tokens, t.issued_tokens.c.exp),
            (t.bindings, t.bindings.c.expires_at),
            (t.agent_cutoffs, t.agent_cutoffs.c.expires_at),
        ):
            gone: Rows = yield Sql(
                delete(table).where(table.c.issuer == self.issuer, column < limit)
            )
            removed += gone.rowcount
        c = t.outbox.c
        gone = yield Sql(
            delete(t.outbox).where(
                c.issuer == self.issuer,
                c.status != PENDING,
                c.finished_at < now - outbox_days * 86400,
            )
        )
        return removed + gone.rowcount


def _fields(item: OutboxItem) -> dict[str, Any]:
    return {name: getattr(item, name) for name in OutboxItem.__slots__}


__all__ = [
    "ACTIVE",
    "OUTBOX_TERMINAL",
    "PENDING",
    "STATUSES",
    "SUSPENDED",
    "TERMINATED",
    "MissionUpdatesFull",
    "RecordOps",
    "RequestFacts",
]
