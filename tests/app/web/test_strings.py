"""Every word of the web app exists in both languages, and every key a page or script uses exists."""

from __future__ import annotations

import re
from pathlib import Path

from app.web.routes import STATIC

I18N = STATIC / "js" / "i18n.js"


def tables() -> dict[str, dict[str, str]]:
    text = I18N.read_text(encoding="utf-8")
    found: dict[str, dict[str, str]] = {}
    for lang, body in re.findall(r"^  (vi|en): \{\n(.*?)^  \},", text, flags=re.S | re.M):
        found[lang] = dict(re.findall(r'^    "([\w.-]+)": "((?:[^"\\]|\\.)*)",$', body, flags=re.M))
    return found


def used_keys() -> set[str]:
    keys: set[str] = set()
    for path in STATIC.rglob("*"):
        if path.suffix == ".html":
            keys |= set(re.findall(r'data-i18n(?:-placeholder)?="([\w.-]+)"', path.read_text()))
        elif path.suffix == ".js" and path != I18N:
            keys |= set(re.findall(r'\bt\("([\w.-]+)"', path.read_text()))
    return keys


def test_both_languages_have_the_same_words() -> None:
    found = tables()
    assert set(found) == {"vi", "en"}
    assert len(found["vi"]) > 100
    assert set(found["vi"]) == set(found["en"])
    assert all(value.strip() for table in found.values() for value in table.values())


def test_every_key_used_exists() -> None:
    known = set(tables()["vi"])
    missing = used_keys() - known
    assert missing == set()


def test_vietnamese_is_the_default_and_written_with_diacritics() -> None:
    vi = tables()["vi"]
    assert vi["hand.raise"] == "Giơ tay xin phát biểu"
    assert vi["rollcall.prompt"].startswith("Điểm danh")
    pages = [p for p in Path(STATIC).glob("*.html")]
    assert len(pages) >= 5
    assert all('<html lang="vi">' in p.read_text(encoding="utf-8") for p in pages)
