"""The search key: what an operator types without a Vietnamese keyboard must find the stored name."""

from __future__ import annotations

import unicodedata

import pytest

from bridges.directory.text import fold


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Phường Phúc Xá", "phuong phuc xa"),
        ("Xã Đông Anh", "xa dong anh"),
        ("ĐẶC KHU CÔN ĐẢO", "dac khu con dao"),
        ("Thị trấn Đông Anh", "thi tran dong anh"),
        ("Quận Hoàn Kiếm", "quan hoan kiem"),
        ("Phường Ngọc Hà", "phuong ngoc ha"),
        ("Xã Ứng Hòa", "xa ung hoa"),
        ("Phường Thượng Đình", "phuong thuong dinh"),
        ("Xã Yên Thường", "xa yen thuong"),
        ("plain ascii", "plain ascii"),
        ("", ""),
    ],
)
def test_fold_removes_diacritics_and_case(text: str, key: str) -> None:
    assert fold(text) == key


def test_d_with_stroke_becomes_d_in_both_cases() -> None:
    assert fold("đ") == "d"
    assert fold("Đ") == "d"
    assert fold("ĐđĐđ") == "dddd"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("  Phường   Phúc\tXá \n", "phuong phuc xa"),
        ("\u00a0Xã\u2003Đông\u00a0", "xa dong"),
        ("a \r\n b", "a b"),
        ("   ", ""),
    ],
)
def test_fold_collapses_and_trims_whitespace(text: str, key: str) -> None:
    assert fold(text) == key


def test_precomposed_and_decomposed_input_fold_alike() -> None:
    name = "Phường Nghĩa Đô"
    nfc = unicodedata.normalize("NFC", name)
    nfd = unicodedata.normalize("NFD", name)
    assert nfc != nfd
    assert fold(nfc) == fold(nfd) == "phuong nghia do"


def test_fold_is_idempotent_and_ascii_for_vietnamese() -> None:
    text = "Ắ Ằ Ẳ Ẵ Ặ ắ ằ ẳ ẵ ặ Ấ Ầ Ẩ Ẫ Ậ ư ơ Ư Ơ Ỳ Ý Ỷ Ỹ Ỵ"
    key = fold(text)
    assert key.isascii()
    assert key == "a a a a a a a a a a a a a a a u o u o y y y y y"
    assert fold(key) == key
