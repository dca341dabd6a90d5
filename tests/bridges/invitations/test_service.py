"""The invitations service on SQLite and PostgreSQL: inviting, minting, rotating, revoking, resolving."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Coroutine
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import InvalidTransition, NotFound, Unauthenticated, ValidationFailed
from app.sessions import service as sessions
from app.sessions.lifecycle import LifecycleCommand
from app.sessions.schemas import SessionCreate
from bridges.directory import service as directory
from bridges.directory.csv_format import parse_points_csv
from bridges.directory.schemas import PointCreate, PointUpdate
from bridges.invitations import service
from bridges.invitations.credentials import looks_like_credential
from bridges.invitations.schemas import (
    InviteRequest,
    InviteResult,
    JoinIdentity,
    JoinLinks,
    JoinLinksRequest,
)
from models import ConferenceSession, Invitation, Point, SessionEvent
from tests.conftest import HANOI_CSV

Factory = async_sessionmaker[AsyncSession]
PUBLIC = "http://diemcau.test"
ACTOR = "account:operator"
# Ba Đình has 13 wards, Nam Từ Liêm (268) has 15 in the 2024 list.
BA_DINH, NAM_TU_LIEM = "001", "268"


@pytest.fixture
async def hanoi(db_factory: Factory) -> Factory:
    """The 526 Hanoi wards in the directory (committed)."""
    parsed = parse_points_csv(HANOI_CSV.read_bytes(), max_rows=20_000)
    async with db_factory() as db:
        report = await directory.import_points(db, parsed, skip_invalid=False)
        await db.commit()
    assert report.created == 526
    return db_factory


async def new_session(factory: Factory, title: str = "Đối thoại với Nhân dân") -> int:
    async with factory() as db:
        session = await sessions.create_session(
            db, SessionCreate(title=title, hall_name="Hội trường"), actor=ACTOR, account_id=None
        )
        await db.commit()
        return session.id


async def step(factory: Factory, session_id: int, *commands: str) -> None:
    async with factory() as db:
        for command in commands:
            await sessions.apply_command(db, session_id, LifecycleCommand(command), actor=ACTOR)
        await db.commit()


async def invite(factory: Factory, session_id: int, **selector: object) -> InviteResult:
    async with factory() as db:
        result = await service.invite(
            db, session_id, InviteRequest.model_validate(selector), actor=ACTOR
        )
        await db.commit()
        return result


async def links(factory: Factory, session_id: int, **request: object) -> JoinLinks:
    async with factory() as db:
        result = await service.issue_join_links(
            db,
            session_id,
            JoinLinksRequest.model_validate(request),
            public_url=PUBLIC,
            actor=ACTOR,
        )
        await db.commit()
        return result


async def invitation_count(factory: Factory, session_id: int) -> int:
    async with factory() as db:
        return int(
            await db.scalar(
                select(func.count())
                .select_from(Invitation)
                .where(Invitation.session_id == session_id)
            )
            or 0
        )


async def last_seq(factory: Factory, session_id: int) -> int:
    async with factory() as db:
        return int(
            await db.scalar(
                select(ConferenceSession.last_seq).where(ConferenceSession.id == session_id)
            )
            or 0
        )


async def events(factory: Factory, session_id: int) -> list[SessionEvent]:
    async with factory() as db:
        rows = await db.scalars(
            select(SessionEvent)
            .where(SessionEvent.session_id == session_id)
            .order_by(SessionEvent.seq)
        )
        return list(rows)


async def hashes(factory: Factory, session_id: int) -> dict[str, str | None]:
    async with factory() as db:
        rows = await db.execute(
            select(Point.code, Invitation.credential_hash)
            .join(Point, Point.id == Invitation.point_id)
            .where(Invitation.session_id == session_id)
        )
        return {code: digest for code, digest in rows}


async def resolve(factory: Factory, credential: str) -> JoinIdentity:
    async with factory() as db:
        return await service.resolve_credential(db, credential)


async def refused_and_nothing_written(
    factory: Factory, session_id: int, error: type[Exception], **selector: object
) -> Exception:
    """Run an invite that must fail; commit anyway, and check nothing reached the database."""
    before_count = await invitation_count(factory, session_id)
    before_seq = await last_seq(factory, session_id)
    async with factory() as db:
        with pytest.raises(error) as caught:
            await service.invite(
                db, session_id, InviteRequest.model_validate(selector), actor=ACTOR
            )
        # Even a careless caller that commits after the error must not persist a partial invite.
        await db.commit()
    assert await invitation_count(factory, session_id) == before_count
    assert await last_seq(factory, session_id) == before_seq
    return caught.value


async def add_point(factory: Factory, code: str, **fields: object) -> None:
    async with factory() as db:
        await directory.create_point(
            db, PointCreate.model_validate({"code": code, "name": f"Xã {code}", **fields})
        )
        await db.commit()


async def update_point(factory: Factory, code: str, **fields: object) -> None:
    async with factory() as db:
        await directory.update_point(db, code, PointUpdate.model_validate(fields))
        await db.commit()


# ---- inviting ------------------------------------------------------------------------------


async def test_invite_all_then_again_is_idempotent(hanoi: Factory) -> None:
    session_id = await new_session(hanoi)
    first = await invite(hanoi, session_id, all=True)
    assert (first.invited, first.already_invited, first.reinstated, first.total_invited) == (
        526,
        0,
        0,
        526,
    )
    second = await invite(hanoi, session_id, all=True)
    assert (second.invited, second.already_invited, second.reinstated, second.total_invited) == (
        0,
        526,
        0,
        526,
    )
    assert await invitation_count(hanoi, session_id) == 526
    types = [e.type for e in await events(hanoi, session_id)]
    # The second, no-op invite logs nothing.
    assert types == ["session.created", "invitations.added"]


async def test_invite_by_district_codes(hanoi: Factory) -> None:
    session_id = await new_session(hanoi)
    result = await invite(hanoi, session_id, district_codes=[BA_DINH, NAM_TU_LIEM])
    assert (result.invited, result.total_invited) == (13 + 15, 28)
    async with hanoi() as db:
        items, total = await service.list_invitations(db, session_id, limit=1000)
    assert total == 28
    assert {i.district_code for i in items} == {BA_DINH, NAM_TU_LIEM}
    # Widening the selection adds only the new district.
    wider = await invite(hanoi, session_id, district_codes=[BA_DINH, "002"])
    assert (wider.invited, wider.already_invited, wider.total_invited) == (18, 13, 46)


async def test_invite_by_province_codes(hanoi: Factory) -> None:
    await add_point(
        hanoi,
        "26734",
        name="Phường Bến Thành",
        province_code="79",
        province_name="Thành phố Hồ Chí Minh",
    )
    session_id = await new_session(hanoi)
    result = await invite(hanoi, session_id, province_codes=["79"])
    assert (result.invited, result.total_invited) == (1, 1)
    async with hanoi() as db:
        only = await service.get_invitation(db, session_id, "26734")
    assert only.point_name == "Phường Bến Thành"
    result = await invite(hanoi, session_id, province_codes=["01", "79"])
    assert (result.invited, result.already_invited, result.total_invited) == (526, 1, 527)


async def test_invite_by_point_codes(hanoi: Factory) -> None:
    session_id = await new_session(hanoi)
    result = await invite(hanoi, session_id, point_codes=["00001", "00004", "00001"])
    assert (result.invited, result.already_invited, result.total_invited) == (2, 0, 2)
    result = await invite(hanoi, session_id, point_codes=["00004", "00006"])
    assert (result.invited, result.already_invited, result.total_invited) == (1, 1, 3)
    added = [e.payload for e in await events(hanoi, session_id) if e.type == "invitations.added"]
    assert added == [
        {"point_codes": ["00001", "00004"], "count": 2},
        {"point_codes": ["00006"], "count": 1},
    ]


async def test_unknown_point_codes_are_listed_and_nothing_is_written(hanoi: Factory) -> None:
    session_id = await new_session(hanoi)
    exc = await refused_and_nothing_written(
        hanoi, session_id, ValidationFailed, point_codes=["00001", "99998", "00004", "99999"]
    )
    assert isinstance(exc, ValidationFailed)
    assert exc.code == "validation_error"
    assert exc.details == {"unknown_codes": ["99998", "99999"]}


async def test_unknown_district_codes_are_listed_and_nothing_is_written(hanoi: Factory) -> None:
    session_id = await new_session(hanoi)
    exc = await refused_and_nothing_written(
        hanoi, session_id, ValidationFailed, district_codes=[BA_DINH, "998", "999"]
    )
    assert isinstance(exc, ValidationFailed)
    assert exc.details == {"unknown_district_codes": ["998", "999"]}
    exc = await refused_and_nothing_written(
        hanoi, session_id, ValidationFailed, province_codes=["01", "98"]
    )
    assert isinstance(exc, ValidationFailed)
    assert exc.details == {"unknown_province_codes": ["98"]}


async def test_inactive_points_are_excluded_and_refused_by_code(hanoi: Factory) -> None:
    await update_point(hanoi, "00001", active=False)
    session_id = await new_session(hanoi)
    by_district = await invite(hanoi, session_id, district_codes=[BA_DINH])
    assert by_district.invited == 12
    everything = await invite(hanoi, session_id, all=True)
    assert (everything.invited, everything.already_invited, everything.total_invited) == (
        513,
        12,
        525,
    )
    async with hanoi() as db:
        with pytest.raises(NotFound):
            await service.get_invitation(db, session_id, "00001")
    exc = await refused_and_nothing_written(
        hanoi, session_id, ValidationFailed, point_codes=["00001", "00004"]
    )
    assert isinstance(exc, ValidationFailed)
    assert exc.details == {"inactive_codes": ["00001"]}


async def test_expected_attendees_defaults_to_capacity(hanoi: Factory) -> None:
    await update_point(hanoi, "00001", capacity=40)
    session_id = await new_session(hanoi)
    await invite(hanoi, session_id, point_codes=["00001", "00004"])
    async with hanoi() as db:
        first = await service.get_invitation(db, session_id, "00001")
        second = await service.get_invitation(db, session_id, "00004")
    assert first.expected_attendees == 40
    assert second.expected_attendees is None
    await invite(hanoi, session_id, point_codes=["00006"], expected_attendees=25)
    async with hanoi() as db:
        third = await service.get_invitation(db, session_id, "00006")
    assert third.expected_attendees == 25


async def test_selector_must_choose_something() -> None:
    with pytest.raises(ValueError, match="choose"):
        InviteRequest.model_validate({})
    with pytest.raises(ValueError, match="not both"):
        InviteRequest.model_validate({"all": True, "district_codes": ["001"]})


async def test_invitations_are_scoped_to_their_session(hanoi: Factory) -> None:
    first = await new_session(hanoi, "Phiên thứ nhất")
    second = await new_session(hanoi, "Phiên thứ hai")
    await invite(hanoi, first, point_codes=["00001"])
    issued = await links(hanoi, first)
    async with hanoi() as db:
        with pytest.raises(NotFound):
            await service.get_invitation(db, second, "00001")
        with pytest.raises(NotFound):
            await service.rotate_credential(db, second, "00001", public_url=PUBLIC, actor=ACTOR)
    identity = await resolve(hanoi, issued.links[0].credential)
    assert (identity.session_id, identity.session_title) == (first, "Phiên thứ nhất")


# ---- join links and credentials -----------------------------------------------------------


async def test_issue_join_links_mints_only_missing_unless_rotate(hanoi: Factory) -> None:
    session_id = await new_session(hanoi)
    await invite(hanoi, session_id, point_codes=["00001", "00004", "00006"])
    first = await links(hanoi, session_id)
    assert (first.issued, first.skipped_with_credential) == (3, 0)
    assert [link.point_code for link in first.links] == ["00001", "00004", "00006"]
    assert first.links[0].point_name == "Phường Phúc Xá"
    assert first.links[0].district_name == "Quận Ba Đình"
    for link in first.links:
        assert looks_like_credential(link.credential)
        assert link.link == f"{PUBLIC}/join#{link.credential}"

    again = await links(hanoi, session_id)
    assert (again.issued, again.skipped_with_credential, again.links) == (0, 3, [])

    await invite(hanoi, session_id, point_codes=["00007"])
    only_new = await links(hanoi, session_id)
    assert [link.point_code for link in only_new.links] == ["00007"]
    assert only_new.skipped_with_credential == 3

    before = await hashes(hanoi, session_id)
    rotated = await links(hanoi, session_id, rotate=True, point_codes=["00001", "00004"])
    assert (rotated.issued, rotated.skipped_with_credential) == (2, 0)
    after = await hashes(hanoi, session_id)
    assert after["00001"] != before["00001"]
    assert after["00006"] == before["00006"]
    with pytest.raises(Unauthenticated):
        await resolve(hanoi, first.links[0].credential)
    assert (await resolve(hanoi, rotated.links[0].credential)).point_code == "00001"
    assert (await resolve(hanoi, first.links[2].credential)).point_code == "00006"

    issued = [e.payload for e in await events(hanoi, session_id) if e.type == "credentials.issued"]
    assert [(p["count"], p["rotated"]) for p in issued] == [(3, 0), (1, 0), (2, 2)]


async def test_issue_join_links_filters_and_unknown_codes(hanoi: Factory) -> None:
    session_id = await new_session(hanoi)
    await invite(hanoi, session_id, district_codes=[BA_DINH, NAM_TU_LIEM])
    some = await links(hanoi, session_id, district_codes=[NAM_TU_LIEM])
    assert some.issued == 15
    before_seq = await last_seq(hanoi, session_id)
    async with hanoi() as db:
        with pytest.raises(NotFound) as caught:
            await service.issue_join_links(
                db,
                session_id,
                JoinLinksRequest(point_codes=["00001", "00002"], rotate=True),
                public_url=PUBLIC,
                actor=ACTOR,
            )
    assert caught.value.details == {"point_codes": ["00002"]}
    assert await last_seq(hanoi, session_id) == before_seq
    rest = await links(hanoi, session_id)
    assert (rest.issued, rest.skipped_with_credential) == (13, 15)


async def test_database_never_holds_a_credential_in_plain_text(hanoi: Factory) -> None:
    session_id = await new_session(hanoi)
    await invite(hanoi, session_id, district_codes=[BA_DINH])
    issued = await links(hanoi, session_id)
    async with hanoi() as db:
        rotated = await service.rotate_credential(
            db, session_id, "00004", public_url=PUBLIC, actor=ACTOR
        )
        await db.commit()
    credentials = {link.point_code: link.credential for link in issued.links}
    credentials["00004"] = rotated.credential
    everything = [link.credential for link in issued.links] + [rotated.credential]

    table = Invitation.__table__
    async with hanoi() as db:
        result = await db.execute(
            select(table, Point.code.label("point_code")).join(Point, Point.id == table.c.point_id)
        )
        rows = list(result.mappings())
        events_rows = list((await db.execute(select(SessionEvent.__table__))).mappings())
    assert len(rows) == 13
    for row in rows:
        expected = hashlib.sha256(credentials[row["point_code"]].encode()).hexdigest()
        assert row["credential_hash"] == expected
        for column, value in row.items():
            text = str(value)
            assert "dc1_" not in text, column
            for credential in everything:
                assert text != credential
                assert credential not in text
    for row in events_rows:
        dumped = json.dumps(row["payload"], ensure_ascii=False)
        assert "dc1_" not in dumped
        assert not any(credential in dumped for credential in everything)


async def test_rotate_credential_replaces_the_old_one(hanoi: Factory) -> None:
    session_id = await new_session(hanoi)
    await invite(hanoi, session_id, point_codes=["00001"])
    old = (await links(hanoi, session_id)).links[0].credential
    async with hanoi() as db:
        new = await service.rotate_credential(
            db, session_id, "00001", public_url=PUBLIC, actor=ACTOR
        )
        await db.commit()
    assert new.credential != old
    assert new.link == f"{PUBLIC}/join#{new.credential}"
    with pytest.raises(Unauthenticated) as caught:
        await resolve(hanoi, old)
    assert caught.value.code == "unauthenticated"
    identity = await resolve(hanoi, new.credential)
    assert (identity.point_code, identity.point_name) == ("00001", "Phường Phúc Xá")
    rotated = [e.payload for e in await events(hanoi, session_id) if e.type == "credential.rotated"]
    assert rotated == [{"point_code": "00001", "reinstated": False}]


async def test_revoke_is_idempotent_and_rotate_reinstates(hanoi: Factory) -> None:
    session_id = await new_session(hanoi)
    await invite(hanoi, session_id, point_codes=["00001", "00004"])
    issued = await links(hanoi, session_id)
    credential = issued.links[0].credential
    assert (await resolve(hanoi, credential)).point_code == "00001"

    async with hanoi() as db:
        revoked = await service.revoke_invitation(db, session_id, "00001", actor=ACTOR)
        await db.commit()
    assert revoked.revoked is True
    assert revoked.has_credential is False
    assert (await hashes(hanoi, session_id))["00001"] is None
    with pytest.raises(Unauthenticated):
        await resolve(hanoi, credential)
    # The other point is untouched.
    assert (await resolve(hanoi, issued.links[1].credential)).point_code == "00004"

    seq = await last_seq(hanoi, session_id)
    async with hanoi() as db:
        again = await service.revoke_invitation(db, session_id, "00001", actor=ACTOR)
        await db.commit()
    assert again.revoked is True
    assert await last_seq(hanoi, session_id) == seq  # no second event

    # A revoked invitation gets no link from a bulk issue, and counts out of the session total.
    bulk = await links(hanoi, session_id, rotate=True)
    assert [link.point_code for link in bulk.links] == ["00004"]

    async with hanoi() as db:
        back = await service.rotate_credential(
            db, session_id, "00001", public_url=PUBLIC, actor=ACTOR
        )
        await db.commit()
        state = await service.get_invitation(db, session_id, "00001")
    assert state.revoked is False
    assert state.has_credential is True
    assert (await resolve(hanoi, back.credential)).point_code == "00001"
    with pytest.raises(Unauthenticated):
        await resolve(hanoi, credential)
    types = [e.type for e in await events(hanoi, session_id)]
    assert types.count("invitation.revoked") == 1
    rotated = [e.payload for e in await events(hanoi, session_id) if e.type == "credential.rotated"]
    assert rotated == [{"point_code": "00001", "reinstated": True}]


async def test_inviting_again_reinstates_a_revoked_invitation(hanoi: Factory) -> None:
    session_id = await new_session(hanoi)
    await invite(hanoi, session_id, point_codes=["00001", "00004"])
    async with hanoi() as db:
        await service.revoke_invitation(db, session_id, "00001", actor=ACTOR)
        await db.commit()
    result = await invite(hanoi, session_id, point_codes=["00001", "00004"], expected_attendees=7)
    assert (result.invited, result.reinstated, result.already_invited, result.total_invited) == (
        0,
        1,
        1,
        2,
    )
    async with hanoi() as db:
        state = await service.get_invitation(db, session_id, "00001")
    assert (state.revoked, state.has_credential, state.expected_attendees) == (False, False, 7)


async def test_resolve_credential_admits_only_when_open_or_live(hanoi: Factory) -> None:
    session_id = await new_session(hanoi, "Hội nghị trực tuyến")
    await invite(hanoi, session_id, point_codes=["00001"])
    credential = (await links(hanoi, session_id)).links[0].credential
    seen = []
    identity = await resolve(hanoi, credential)
    seen.append((identity.session_status, identity.admitted))
    for command in ("open", "go-live", "end"):
        await step(hanoi, session_id, command)
        identity = await resolve(hanoi, credential)
        seen.append((identity.session_status, identity.admitted))
    assert seen == [("draft", False), ("open", True), ("live", True), ("ended", False)]
    assert identity.session_title == "Hội nghị trực tuyến"
    assert identity.hall_name == "Hội trường"
    assert identity.district_name == "Quận Ba Đình"
    assert identity.province_name == "Thành phố Hà Nội"

    cancelled = await new_session(hanoi)
    await invite(hanoi, cancelled, point_codes=["00001"])
    other = (await links(hanoi, cancelled)).links[0].credential
    await step(hanoi, cancelled, "open", "cancel")
    identity = await resolve(hanoi, other)
    assert (identity.session_status, identity.admitted) == ("cancelled", False)


async def test_resolve_credential_rejects_garbage(hanoi: Factory) -> None:
    session_id = await new_session(hanoi)
    await invite(hanoi, session_id, point_codes=["00001"])
    real = (await links(hanoi, session_id)).links[0].credential
    for garbage in ("", "dc1_", "dc1_" + "A" * 43, "not a credential", "ồ" * 50, real[:-1]):
        with pytest.raises(Unauthenticated):
            await resolve(hanoi, garbage)
    assert (await resolve(hanoi, real)).point_code == "00001"


@pytest.mark.parametrize("final", [("end",), ("cancel",)])
async def test_no_changes_once_the_session_is_over(hanoi: Factory, final: tuple[str]) -> None:
    session_id = await new_session(hanoi)
    await invite(hanoi, session_id, point_codes=["00001", "00004"])
    issued = await links(hanoi, session_id, point_codes=["00001"])
    await step(hanoi, session_id, "open", *final)
    status = "ended" if final == ("end",) else "cancelled"
    before_hashes = await hashes(hanoi, session_id)
    before_seq = await last_seq(hanoi, session_id)

    def attempts(db: AsyncSession) -> list[Coroutine[Any, Any, object]]:
        return [
            service.invite(db, session_id, InviteRequest(all=True), actor=ACTOR),
            service.issue_join_links(
                db, session_id, JoinLinksRequest(), public_url=PUBLIC, actor=ACTOR
            ),
            service.issue_join_links(
                db, session_id, JoinLinksRequest(rotate=True), public_url=PUBLIC, actor=ACTOR
            ),
            service.rotate_credential(db, session_id, "00001", public_url=PUBLIC, actor=ACTOR),
            service.revoke_invitation(db, session_id, "00001", actor=ACTOR),
        ]

    commands = ["invite", "issue join links", "issue join links", "rotate credential"]
    commands.append("revoke invitation")
    async with hanoi() as db:
        for attempt, command in zip(attempts(db), commands, strict=True):
            with pytest.raises(InvalidTransition) as caught:
                await attempt
            assert caught.value.code == "invalid_transition"
            assert caught.value.details == {
                "machine": "session",
                "state": status,
                "command": command,
            }
        await db.commit()
    assert await invitation_count(hanoi, session_id) == 2
    assert await hashes(hanoi, session_id) == before_hashes
    assert await last_seq(hanoi, session_id) == before_seq
    # The credential still resolves (to say the session is over), it is not admitted.
    identity = await resolve(hanoi, issued.links[0].credential)
    assert (identity.session_status, identity.admitted) == (status, False)


async def test_events_are_logged_and_never_carry_a_credential(hanoi: Factory) -> None:
    session_id = await new_session(hanoi)
    await invite(hanoi, session_id, district_codes=[BA_DINH])
    issued = await links(hanoi, session_id)
    async with hanoi() as db:
        rotated = await service.rotate_credential(
            db, session_id, "00004", public_url=PUBLIC, actor=ACTOR
        )
        await service.revoke_invitation(db, session_id, "00006", actor=ACTOR)
        await db.commit()
    logged = await events(hanoi, session_id)
    assert [e.type for e in logged] == [
        "session.created",
        "invitations.added",
        "credentials.issued",
        "credential.rotated",
        "invitation.revoked",
    ]
    assert [e.seq for e in logged] == [1, 2, 3, 4, 5]
    assert all(e.actor == ACTOR for e in logged)
    assert logged[2].payload["count"] == 13
    assert logged[2].payload["point_codes"][0] == "00001"
    assert logged[4].payload == {"point_code": "00006"}
    secrets = [link.credential for link in issued.links] + [rotated.credential]
    for event in logged:
        dumped = json.dumps(event.payload, ensure_ascii=False)
        assert "dc1_" not in dumped
        for credential in secrets:
            assert credential not in dumped
            assert hashlib.sha256(credential.encode()).hexdigest() not in dumped


async def test_list_invitations_filters_and_pages(hanoi: Factory) -> None:
    session_id = await new_session(hanoi)
    await invite(hanoi, session_id, district_codes=[BA_DINH, NAM_TU_LIEM])
    async with hanoi() as db:
        found, total = await service.list_invitations(db, session_id, q="phuc xa")
        assert (total, [i.point_name for i in found]) == (1, ["Phường Phúc Xá"])
        found, total = await service.list_invitations(db, session_id, q="00004")
        assert [i.point_code for i in found] == ["00004"]
        found, total = await service.list_invitations(db, session_id, district_code=NAM_TU_LIEM)
        assert total == 15
        assert {i.district_code for i in found} == {NAM_TU_LIEM}
        page_one, total = await service.list_invitations(db, session_id, limit=10, offset=0)
        page_three, _ = await service.list_invitations(db, session_id, limit=10, offset=20)
        assert total == 28
        assert len(page_one) == 10
        assert len(page_three) == 8
        assert page_one[0].point_code < page_three[0].point_code
        with pytest.raises(NotFound):
            await service.list_invitations(db, 9999)
