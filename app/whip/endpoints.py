"""WHIP over HTTP: operators mint tokens; encoders POST an SDP offer and DELETE when they stop.

The WHIP routes authenticate with a WHIP token, never a staff token, and speak SDP rather than JSON
(RFC 9725); their errors are still the one JSON error body every other route returns.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response

from app.auth.principal import OPERATORS, StaffPrincipal
from app.deps import Db, State, require
from app.errors import DiemcauError, PayloadTooLarge
from app.http_errors import error_response
from app.state import ServiceState
from app.whip import service
from app.whip.errors import (
    WhipPatchUnsupported,
    WhipUnauthorized,
    WhipUnsupportedMediaType,
    error_headers,
)
from app.whip.schemas import WhipTokenCreate, WhipTokenIssued, WhipTokenList
from app.whip.service import MAX_OFFER_BYTES, WhipIngests

router = APIRouter(tags=["whip"])
Operator = Annotated[StaffPrincipal, Depends(require(OPERATORS))]
SessionId = Annotated[int, Path(ge=1, le=2**62)]
TokenId = Annotated[int, Path(ge=1, le=2**62)]
ResourceId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
Authorization = Annotated[str | None, Header(include_in_schema=False)]

PUBLISH = "whip_publish"
RESOURCE = "whip_resource"
SDP = "application/sdp"


def get_ingests(request: Request, state: State) -> WhipIngests:
    """The WHIP resources of the running service, made on first use.

    Kept on the app beside the service state (and remade when a new lifespan made a new state),
    so the composition root only has to include this router.
    """
    ingests: WhipIngests | None = getattr(request.app.state, "diemcau_whip", None)
    if ingests is None or ingests.state is not state:
        ingests = WhipIngests(state)
        request.app.state.diemcau_whip = ingests
    return ingests


Ingests = Annotated[WhipIngests, Depends(get_ingests)]


def _whip_url(request: Request, state: ServiceState, session_id: int) -> str:
    path = request.app.url_path_for(PUBLISH, session_id=str(session_id))
    return f"{state.settings.effective_public_url}{path}"


def _with_headers(exc: DiemcauError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.details, error_headers(exc))


# ---- tokens --------------------------------------------------------------------------------


@router.post("/sessions/{session_id}/whip-tokens", response_model=WhipTokenIssued, status_code=201)
async def mint_token(
    session_id: SessionId,
    request: Request,
    response: Response,
    db: Db,
    state: State,
    principal: Operator,
    body: WhipTokenCreate,
) -> WhipTokenIssued:
    """Mint a bearer token for the session's WHIP endpoint; the only time it is shown."""
    response.headers["Cache-Control"] = "no-store"
    return await service.mint_token(
        db,
        session_id,
        body.label,
        actor=principal.actor,
        whip_url=_whip_url(request, state, session_id),
    )


@router.get("/sessions/{session_id}/whip-tokens", response_model=WhipTokenList)
async def list_tokens(
    session_id: SessionId,
    request: Request,
    db: Db,
    state: State,
    ingests: Ingests,
    _: Operator,
) -> WhipTokenList:
    """The session's tokens (never their secrets), revoked ones included, and the WHIP URL."""
    items = await service.list_tokens(db, session_id, in_use=ingests.token_in_use(session_id))
    return WhipTokenList(whip_url=_whip_url(request, state, session_id), items=items)


@router.delete("/sessions/{session_id}/whip-tokens/{token_id}", status_code=204)
async def revoke_token(
    session_id: SessionId, token_id: TokenId, db: Db, ingests: Ingests, principal: Operator
) -> None:
    """Revoke a token: it publishes nothing more, and a program it is publishing now ends."""
    in_use = ingests.token_in_use(session_id) == token_id
    revoked = await service.revoke_token(
        db, session_id, token_id, actor=principal.actor, in_use=in_use
    )
    if revoked:
        # Committed before the media is touched: a POST checking the token after this sees it
        # revoked, and one that checked before is current by now and ended here.
        await db.commit()
        await ingests.end_for_token(session_id, token_id, actor=principal.actor)


# ---- WHIP (RFC 9725) -----------------------------------------------------------------------


async def _read_body(request: Request) -> bytes:
    """The body, refused as soon as it passes the limit rather than after it is all read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_OFFER_BYTES:
        raise PayloadTooLarge(
            f"an SDP offer is at most {MAX_OFFER_BYTES} bytes", details={"limit": MAX_OFFER_BYTES}
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_OFFER_BYTES:
            raise PayloadTooLarge(
                f"an SDP offer is at most {MAX_OFFER_BYTES} bytes",
                details={"limit": MAX_OFFER_BYTES},
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _content_type(request: Request) -> None:
    given = request.headers.get("content-type", "")
    if given.split(";", 1)[0].strip().lower() != SDP:
        raise WhipUnsupportedMediaType(given)


_SDP_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The SDP offer, every ICE candidate included (no trickle).",
        "content": {SDP: {"schema": {"type": "string"}}},
    }
}


@router.post(
    "/whip/{session_id}",
    name=PUBLISH,
    status_code=201,
    response_class=Response,
    openapi_extra=_SDP_BODY,
    responses={
        201: {
            "description": "The SDP answer; `Location` is the resource to DELETE when done.",
            "content": {SDP: {"schema": {"type": "string"}}},
            "headers": {
                "Location": {"schema": {"type": "string"}},
                "ETag": {"schema": {"type": "string"}},
                "Link": {"description": "ICE servers (RFC 9725 §4.6), when configured"},
            },
        },
        415: {"description": "Content-Type is not application/sdp"},
        503: {"description": "Media is not available"},
    },
)
async def publish(
    session_id: SessionId, request: Request, ingests: Ingests, authorization: Authorization = None
) -> Response:
    """Publish the session's hall program with a WHIP token (OBS Studio: Service "WHIP").

    A new POST replaces the program published before, whoever published it.
    """
    try:
        # The token first: a caller without one learns nothing about the session or its state.
        token_id = await ingests.authorize(session_id, authorization, publishing=True)
        _content_type(request)
        body = await _read_body(request)
        published = await ingests.publish(session_id, token_id, body)
    except WhipUnauthorized as exc:
        return _with_headers(exc)
    location = request.scope.get("root_path", "") + request.app.url_path_for(
        RESOURCE, session_id=str(session_id), resource_id=published.ingest.resource_id
    )
    response = Response(
        published.answer.sdp,
        status_code=201,
        media_type=SDP,
        headers={"Location": location, "ETag": published.ingest.etag, "Cache-Control": "no-store"},
    )
    for link in service.ice_link_headers(published.ice_servers):
        response.headers.append("Link", link)
    return response


@router.delete("/whip/{session_id}/resources/{resource_id}", name=RESOURCE)
async def delete_resource(
    session_id: SessionId,
    resource_id: ResourceId,
    ingests: Ingests,
    authorization: Authorization = None,
) -> Response:
    """Stop publishing: the program ends (points see nothing until a new POST)."""
    try:
        token_id = await ingests.authorize(session_id, authorization, publishing=False)
        await ingests.delete(session_id, token_id, resource_id)
    except WhipUnauthorized as exc:
        return _with_headers(exc)
    return Response(status_code=200)


@router.patch("/whip/{session_id}/resources/{resource_id}", status_code=405)
async def patch_resource(session_id: SessionId, resource_id: ResourceId) -> Response:
    """Trickle ICE and ICE restart are not supported (aiortc has neither): always 405."""
    return _with_headers(WhipPatchUnsupported())


@router.options("/whip/{session_id}", status_code=204)
async def options_endpoint(session_id: SessionId) -> Response:
    """What the endpoint accepts. Browsers' CORS preflights are answered before this, by the
    app's CORS middleware."""
    return Response(status_code=204, headers={"Allow": "OPTIONS, POST", "Accept-Post": SDP})


@router.options("/whip/{session_id}/resources/{resource_id}", status_code=204)
async def options_resource(session_id: SessionId, resource_id: ResourceId) -> Response:
    """No PATCH in `Allow`: a client that asks learns there is no trickle ICE before trying."""
    return Response(status_code=204, headers={"Allow": "DELETE, OPTIONS"})
