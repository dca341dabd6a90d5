"""Where the rooms' credentials come from: files as the console exports them, bad files refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.simulate.links import LinksError, read_links, read_points
from app.simulate.run import SimulateError, ws_url
from tests.conftest import HANOI_CSV


def test_points_file_keeps_order_and_vietnamese_names() -> None:
    points = read_points(HANOI_CSV)
    assert len(points) == 526
    assert points[0] == ("00001", "Phường Phúc Xá")


def test_a_points_file_with_a_bad_row_is_refused_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("code,name\n00001,Phường Phúc Xá\n,Không có mã\n", encoding="utf-8")
    with pytest.raises(LinksError, match="line 3"):
        read_points(bad)
    with pytest.raises(LinksError, match="cannot read"):
        read_points(tmp_path / "missing.csv")


def test_join_links_export_gives_code_and_credential(tmp_path: Path) -> None:
    export = tmp_path / "links.csv"
    export.write_bytes(
        "\ufeffcode,name,district,province,link\r\n"
        "00001,Phường Phúc Xá,Quận Ba Đình,Thành phố Hà Nội,https://x.test/join#dc1_abc\r\n"
        "00004,Phường Trúc Bạch,Quận Ba Đình,Thành phố Hà Nội,https://x.test/join#dc1_def\r\n".encode()
    )
    assert read_links(export) == [("00001", "dc1_abc"), ("00004", "dc1_def")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name,link\nx,https://x/join#a\n", "not a join-links file"),
        ("code,name,district,province,link\n00001,x,,,https://x/join\n", "line 2"),
        ("code,name,district,province,link\n", "no join links"),
    ],
)
def test_bad_join_links_files_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "links.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LinksError, match=message):
        read_links(path)


def test_websocket_address_follows_the_server_address() -> None:
    assert ws_url("http://127.0.0.1:8000") == "ws://127.0.0.1:8000/api/v1/ws"
    assert ws_url("https://dc.hanoi.gov.vn/") == "wss://dc.hanoi.gov.vn/api/v1/ws"
    with pytest.raises(SimulateError):
        ws_url("ftp://x")
    with pytest.raises(SimulateError):
        ws_url("127.0.0.1:8000")
