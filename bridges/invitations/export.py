"""Join links as CSV for mail merge or print."""

from __future__ import annotations

import csv
import io

from bridges.invitations.schemas import JoinLinks

LINK_COLUMNS = ("code", "name", "district", "province", "link")


def links_csv(links: JoinLinks) -> bytes:
    """UTF-8 with a byte-order mark, so that Excel shows the diacritics."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(LINK_COLUMNS)
    for link in links.links:
        writer.writerow(
            (
                link.point_code,
                link.point_name,
                link.district_name or "",
                link.province_name or "",
                link.link,
            )
        )
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")
