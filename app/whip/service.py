"""WHIP tokens in the database, and the live WHIP resource of each session in this process.

The program of a session is the media participant `hall` (signaling/media.py routes every point's
`program` slot to it). A WHIP POST publishes as that participant, so the program reaches points
exactly as one published from the hall page does; a new POST replaces the previous publisher, so
an encoder that lost its connection (and never sent DELETE) can always come back.

Which WHIP resource is current is kept in memory: media peers live in this process's backend and
die with it, so a record that outlived them would only lie.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidTransition
from app.events.service import PENDING_EVENTS, append_event
from app.sessions import lifecycle
from app.sessions.service import get_session
from app.state import ServiceState
from app.whip.errors import (
    WhipMediaUnavailable,
    WhipResourceNotFound,
    WhipSessionNotOpen,
    WhipTokenLimit,
    WhipTokenNotFound,
    WhipUnauthorized,
)
from app.whip.schemas import WhipTokenIssued, WhipTokenRead
from app.whip.tokens import hash_token, looks_like_token, new_token
from media.embedded.backend import SUPPORTED_AUDIO, SUPPORTED_VIDEO, parse_offer
from media.errors import MediaCodecUnsupported, MediaOfferInvalid
from media.ice import IceServer, ice_servers_for
from media.interface import KINDS, PeerAnswer
from models import ConferenceSession, WhipToken
from models.base import utcnow
from signaling.media import HALL, PUB, MediaGateway

logger = logging.getLogger("diemcau.whip")

# Enough for a main and a backup encoder and a rotation of each; a cap keeps the list readable
# and stops a script from filling the table.
MAX_ACTIVE_TOKENS = 10
# The same cap the media backend applies; checked while reading, before the body is all in memory.
MAX_OFFER_BYTES = 64 * 1024
REFUSED = "the bearer token is not valid for this WHIP endpoint"


# ---- tokens (operator endpoints) -----------------------------------------------------------


def _read(token: WhipToken, in_use: bool) -> WhipTokenRead:
    return WhipTokenRead(
        id=token.id,
        label=token.label,
        created_at=token.created_at,
        created_by=token.created_by,
        last_used_at=token.last_used_at,
        revoked=token.revoked_at is not None,
        revoked_at=token.revoked_at,
        in_use=in_use,
    )


async def mint_token(
    db: AsyncSession, session_id: int, label: str, *, actor: str, whip_url: str
) -> WhipTokenIssued:
    """A new token; this response is the only time it is ever shown."""
    session = await get_session(db, session_id, for_update=True)
    if session.status not in lifecycle.EDITABLE:
        raise InvalidTransition("session", session.status.value, "mint WHIP token")
    active = await db.scalar(
        select(func.count()).where(
            WhipToken.session_id == session_id, WhipToken.revoked_at.is_(None)
        )
    )
    if int(active or 0) >= MAX_ACTIVE_TOKENS:
        raise WhipTokenLimit(
            f"a session has at most {MAX_ACTIVE_TOKENS} WHIP tokens that are not revoked: "
            "revoke one first",
            details={"limit": MAX_ACTIVE_TOKENS},
        )
    secret = new_token()
    token = WhipToken(
        session_id=session_id,
        label=label,
        token_hash=hash_token(secret),
        created_at=utcnow(),
        created_by=actor,
    )
    db.add(token)
    await db.flush()
    await append_event(
        db, session_id, "whip_token.issued", actor, {"token_id": token.id, "label": token.label}
    )
    read = _read(token, in_use=False)
    return WhipTokenIssued(**read.model_dump(), token=secret, whip_url=whip_url)


async def list_tokens(
    db: AsyncSession, session_id: int, *, in_use: int | None
) -> list[WhipTokenRead]:
    await get_session(db, session_id)
    rows = await db.scalars(
        select(WhipToken).where(WhipToken.session_id == session_id).order_by(WhipToken.id)
    )
    return [_read(token, token.id == in_use) for token in rows]


async def revoke_token(
    db: AsyncSession, session_id: int, token_id: int, *, actor: str, in_use: bool
) -> bool:
    """Revoke (idempotent); True when this call revoked it. The row stays, for the record."""
    await get_session(db, session_id)
    token = await db.scalar(
        select(WhipToken)
        .where(WhipToken.id == token_id, WhipToken.session_id == session_id)
        .with_for_update()
    )
    if token is None:
        raise WhipTokenNotFound(
            "no such WHIP token in this session",
            details={"session_id": session_id, "token_id": token_id},
        )
    if token.revoked_at is not None:
        return False
    token.revoked_at = utcnow()
    await append_event(
        db,
        session_id,
        "whip_token.revoked",
        actor,
        {"token_id": token.id, "label": token.label, "ended_ingest": in_use},
    )
    return True


# ---- authentication of WHIP requests -------------------------------------------------------


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer …` header, or a 401 with the matching challenge."""
    if not authorization:
        raise WhipUnauthorized("a WHIP bearer token is required", invalid_token=False)
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise WhipUnauthorized(
            "send the WHIP token as Authorization: Bearer <token>", invalid_token=False
        )
    token = value.strip()
    if not looks_like_token(token):
        raise WhipUnauthorized(REFUSED, invalid_token=True)
    return token


async def authenticate(
    db: AsyncSession, session_id: int, authorization: str | None
) -> tuple[WhipToken, ConferenceSession]:
    """The token must be this session's and not revoked.

    One query, one answer for every failure: a token of another session, an unknown one and a
    revoked one are all the same 401, so the endpoint never says which sessions exist.
    """
    token = bearer_token(authorization)
    row = (
        await db.execute(
            select(WhipToken, ConferenceSession)
            .join(ConferenceSession, ConferenceSession.id == WhipToken.session_id)
            .where(
                WhipToken.token_hash == hash_token(token),
                WhipToken.session_id == session_id,
                WhipToken.revoked_at.is_(None),
            )
        )
    ).first()
    if row is None:
        raise WhipUnauthorized(REFUSED, invalid_token=True)
    return row[0], row[1]


def require_open(session: ConferenceSession) -> None:
    if session.status not in lifecycle.ADMITS_POINTS:
        raise WhipSessionNotOpen(session.id, session.status.value)


# ---- the offer -----------------------------------------------------------------------------


def decode_offer(body: bytes) -> str:
    if not body.strip():
        raise MediaOfferInvalid("the request body is empty: send the SDP offer")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise MediaOfferInvalid("the SDP offer is not UTF-8 text") from None


def check_offer(sdp: str) -> None:
    """Refuse, before the backend sees it, an offer that would fail there.

    The backend closes the running publisher before it negotiates the new one, so without this
    check an encoder misconfigured for AV1 or HEVC would take the program down on every retry.
    The structural checks turn aiortc's untyped failures on malformed offers into a typed 400
    (found by mutating real offers: tests/whip/test_offers.py).
    """
    try:
        description = parse_offer(sdp)
    except (AssertionError, StopIteration):
        # aiortc's parser asserts on some malformed lines (`m=audio x`) and raises StopIteration
        # for an `a=fmtp` whose payload type has no `a=rtpmap`; parse_offer lets both through.
        raise MediaOfferInvalid("the offer is not valid SDP") from None
    # aiortc fails untyped (and leaves a half-built peer behind) on an offer with a section of
    # another kind, sections without a mid or repeating one, or a BUNDLE group naming a section
    # that is not there.
    kinds = sorted({media.kind for media in description.media} - set(KINDS))
    if kinds:
        raise MediaOfferInvalid(
            "a WHIP offer holds audio and video sections only", details={"kinds": kinds[:10]}
        )
    mids = [media.rtp.muxId for media in description.media]
    if any(not mid for mid in mids) or len(set(mids)) != len(mids):
        raise MediaOfferInvalid("every media section of the offer needs its own a=mid")
    for group in description.group:
        missing = [item for item in group.items if item not in mids]
        if missing:
            raise MediaOfferInvalid(
                f"the offer's {group.semantic} group names media sections it does not have",
                details={"missing_mids": missing[:10]},
            )
    for media in description.media:
        keep = SUPPORTED_AUDIO if media.kind == "audio" else SUPPORTED_VIDEO
        offered = sorted({codec.mimeType for codec in media.rtp.codecs})
        if not any(mime.lower() in keep for mime in offered):
            raise MediaCodecUnsupported(
                f"no {media.kind} codec in common: the server forwards VP8 or H264 video and "
                "Opus audio, never transcoded",
                details={"kind": media.kind, "offered": offered[:20], "supported": list(keep)},
            )


def ice_link_headers(servers: list[IceServer]) -> list[str]:
    """RFC 9725 §4.6 `Link` headers: the STUN/TURN servers a WHIP client may use."""
    links: list[str] = []
    for server in servers:
        for url in server.urls:
            link = f'<{url}>; rel="ice-server"'
            if server.username is not None and server.credential is not None:
                link += (
                    f'; username="{server.username}"; credential="{server.credential}"'
                    '; credential-type="password"'
                )
            links.append(link)
    return links


# ---- the live resources --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ingest:
    """The current WHIP resource of one session."""

    session_id: int
    resource_id: str
    token_id: int
    room: str

    @property
    def etag(self) -> str:
        return f'"{self.resource_id}"'


@dataclass(frozen=True, slots=True)
class Published:
    ingest: Ingest
    answer: PeerAnswer
    ice_servers: list[IceServer]


class WhipIngests:
    """The current WHIP resource per session, for the media backend of one running service.

    POST and DELETE of one session take its lock, so a replacement and a delete never interleave
    halfway. Revocation does not take it (it holds a database transaction, which a POST waiting
    for its own write would deadlock against); it ends the resource by identity instead.
    """

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.current: dict[int, Ingest] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    def _lock(self, session_id: int) -> asyncio.Lock:
        return self._locks.setdefault(session_id, asyncio.Lock())

    def _gateway(self) -> MediaGateway:
        gateway = self.state.signaling.media
        if gateway is None:
            raise WhipMediaUnavailable("media is not enabled on this server")
        return gateway

    def token_in_use(self, session_id: int) -> int | None:
        ingest = self.current.get(session_id)
        return ingest.token_id if ingest is not None else None

    async def authorize(
        self, session_id: int, authorization: str | None, *, publishing: bool
    ) -> int:
        """The id of the request's token; publishing also needs the session open or live."""
        async with self.state.sessions() as db:
            token, session = await authenticate(db, session_id, authorization)
            if publishing:
                require_open(session)
            return token.id

    async def publish(self, session_id: int, token_id: int, body: bytes) -> Published:
        sdp = decode_offer(body)
        check_offer(sdp)
        gateway = self._gateway()
        async with self._lock(session_id):
            room = await gateway.ensure_room(session_id)
            answer = await self.state.media.add_publisher(room, HALL, sdp, role="hall")
            # The program is WHIP's now: the hall page's connection leaving must not end it.
            gateway.disown(session_id, HALL, PUB)
            previous = self.current.get(session_id)
            ingest = Ingest(session_id, secrets.token_urlsafe(16), token_id, room)
            # Current before the token is checked again, so that a revocation committing in
            # between finds it and ends it (see `end_for_token`).
            self.current[session_id] = ingest
            try:
                await self._record_start(ingest, previous, answer)
            except BaseException:
                if self.current.get(session_id) is ingest:
                    del self.current[session_id]
                    await self._remove(room)
                raise
        servers = ice_servers_for(gateway.ice, HALL, now=time.time(), not_after=None)
        logger.info("WHIP ingest %s started for session %s", ingest.resource_id, session_id)
        return Published(ingest, answer, servers)

    async def _record_start(
        self, ingest: Ingest, previous: Ingest | None, answer: PeerAnswer
    ) -> None:
        """Check the token and the session once more (negotiation takes a while), then log it."""
        async with self.state.sessions() as db:
            token = await db.get(WhipToken, ingest.token_id)
            session = await db.get(ConferenceSession, ingest.session_id)
            if token is None or token.revoked_at is not None or session is None:
                raise WhipUnauthorized(REFUSED, invalid_token=True)
            require_open(session)
            token.last_used_at = utcnow()
            await append_event(
                db,
                ingest.session_id,
                "whip.started",
                f"whip:{ingest.token_id}",
                {
                    "token_id": ingest.token_id,
                    "resource_id": ingest.resource_id,
                    "replaced": previous is not None,
                    "kinds": list(answer.kinds),
                    "codecs": dict(answer.codecs),
                },
            )
            await db.commit()
            self._publish_events(db)

    async def delete(self, session_id: int, token_id: int, resource_id: str) -> None:
        async with self._lock(session_id):
            ingest = self.current.get(session_id)
            if ingest is None or not secrets.compare_digest(ingest.resource_id, resource_id):
                raise WhipResourceNotFound(
                    "no such WHIP resource: it ended, or a newer POST replaced it",
                    details={"session_id": session_id},
                )
            del self.current[session_id]
            await self._remove(ingest.room)
        await self._record_end(ingest, "deleted", f"whip:{token_id}")

    async def end_for_token(self, session_id: int, token_id: int, *, actor: str) -> bool:
        """End the session's resource if it was published with this (just revoked) token."""
        ingest = self.current.get(session_id)
        if ingest is None or ingest.token_id != token_id:
            return False
        del self.current[session_id]
        await self._remove(ingest.room)
        await self._record_end(ingest, "token_revoked", actor)
        return True

    async def _remove(self, room: str) -> None:
        # Only the program: the hall page keeps receiving the floor and its preview.
        await self.state.media.remove_publisher(room, HALL)

    async def _record_end(self, ingest: Ingest, reason: str, actor: str) -> None:
        logger.info(
            "WHIP ingest %s of session %s ended: %s", ingest.resource_id, ingest.session_id, reason
        )
        async with self.state.sessions() as db:
            await append_event(
                db,
                ingest.session_id,
                "whip.ended",
                actor,
                {
                    "token_id": ingest.token_id,
                    "resource_id": ingest.resource_id,
                    "reason": reason,
                },
            )
            await db.commit()
            self._publish_events(db)

    def _publish_events(self, db: AsyncSession) -> None:
        committed = db.info.pop(PENDING_EVENTS, None)
        if committed:
            self.state.signaling.publish_committed(committed)
