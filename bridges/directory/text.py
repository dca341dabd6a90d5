"""Search keys for Vietnamese names: lower case, diacritics folded, đ → d.

Stored names stay exactly as imported; only the search column is folded, so an operator typing
"phuc xa" on a laptop without a Vietnamese keyboard finds "Phường Phúc Xá".
"""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    stripped = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return " ".join(stripped.casefold().split())
