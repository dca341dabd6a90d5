"""The main operator journey through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io

import httpx

from tests.conftest import HANOI_CSV


async def test_operator_journey(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    op = staff["operator"]
    response = await client.post(
        "/api/v1/points/import",
        content=HANOI_CSV.read_bytes(),
        headers={**op, "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["format"], report["created"], report["errors"]) == ("hanoi-wards-2024", 526, [])

    response = await client.post(
        "/api/v1/sessions",
        json={"title": "Đối thoại trực tuyến", "hall_name": "Hội trường Thành ủy"},
        headers=op,
    )
    assert response.status_code == 201, response.text
    session_id = response.json()["id"]

    response = await client.post(
        f"/api/v1/sessions/{session_id}/invitations",
        json={"district_codes": ["001", "268"]},
        headers=op,
    )
    assert response.status_code == 200, response.text
    invited = response.json()["invited"]
    assert invited > 10

    response = await client.post(
        f"/api/v1/sessions/{session_id}/join-links?format=csv", json={}, headers=op
    )
    assert response.status_code == 200
    assert response.content.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert len(rows) == invited
    assert rows[0]["name"] == "Phường Phúc Xá"
    assert rows[0]["link"].startswith("http://diemcau.test/join#dc1_")

    credential = rows[0]["link"].split("#", 1)[1]
    response = await client.post("/api/v1/join/verify", json={"credential": credential})
    assert response.status_code == 200
    assert response.json()["point_name"] == "Phường Phúc Xá"
    assert response.json()["admitted"] is False

    for action, status in (("open", "open"), ("go-live", "live"), ("end", "ended")):
        response = await client.post(f"/api/v1/sessions/{session_id}/actions/{action}", headers=op)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status

    response = await client.get(f"/api/v1/sessions/{session_id}/events", headers=staff["observer"])
    types = [e["type"] for e in response.json()["items"]]
    assert types == [
        "session.created",
        "invitations.added",
        "credentials.issued",
        "session.status_changed",
        "session.status_changed",
        "session.status_changed",
    ]
    seqs = [e["seq"] for e in response.json()["items"]]
    assert seqs == list(range(1, 7))
