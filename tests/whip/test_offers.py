"""Malformed offers get a typed 4xx, never a 500: real aiortc offers, mutated, through the endpoint.

The named cases are ones where aiortc (and so the media backend) failed untyped before the WHIP
checks existed: an assert in its parser, a StopIteration, a BUNDLE group naming a missing section
(AttributeError, half-built peer), a section of an unknown kind, a repeated mid (ValueError from
setLocalDescription). Two more are refused by WHIP's own rules though aiortc would take them: a
section without a mid (RFC 9725 clients BUNDLE, which needs mids) and a data channel (WHIP
publishes media only).
"""

from __future__ import annotations

import random

import pytest

from media.loadgen import PublisherClient
from tests.whip.conftest import Whip

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
MUTATIONS = 120


def named_cases(sdp: str) -> dict[str, str]:
    lines = sdp.split("\r\n")
    audio = next(i for i, line in enumerate(lines) if line.startswith("m=audio"))
    video = next(i for i, line in enumerate(lines) if line.startswith("m=video"))
    rtx_map = next(line for line in lines if "rtx/90000" in line)
    return {
        "parser assert": sdp.replace(lines[audio], "m=audio x"),
        "fmtp without rtpmap": "\r\n".join(line for line in lines if line != rtx_map),
        "bundle names a missing section": "\r\n".join(lines[:audio] + lines[video:]),
        "unknown kind": sdp.replace("m=video ", "m=vide-o "),
        "repeated mid": sdp.replace("a=mid:1", "a=mid:0"),
        "no mid": sdp.replace("a=mid:1\r\n", ""),
        "data channel": sdp.replace("m=video ", "m=application "),
    }


def mutate(lines: list[str], rnd: random.Random) -> str:
    changed = list(lines)
    for _ in range(rnd.randrange(1, 4)):
        k = rnd.randrange(len(changed))
        op = rnd.randrange(6)
        if op == 0:
            del changed[k]
        elif op == 1:
            changed[k] = changed[k][: rnd.randrange(len(changed[k]) + 1)]
        elif op == 2:
            changed[k] += rnd.choice([" x", ":", "=", " 99999999999999999999", " -1"])
        elif op == 3:
            at = rnd.randrange(len(changed[k]) + 1)
            changed[k] = changed[k][:at] + rnd.choice("x: =/0-9") + changed[k][at:]
        elif op == 4:
            changed.insert(k, rnd.choice(lines))
        else:
            j = rnd.randrange(len(changed))
            changed[k], changed[j] = changed[j], changed[k]
    return "\r\n".join(changed)


@SQLITE_ONLY
async def test_malformed_offers_are_typed(whip: Whip) -> None:
    session_id = await whip.session()
    token = (await whip.mint(session_id))["token"]
    peer = PublisherClient(width=160, height=96)
    try:
        sdp = await peer.offer()
    finally:
        await peer.close()

    for name, bad in named_cases(sdp).items():
        response = await whip.post_offer(session_id, bad, token)
        assert response.status_code == 400, (name, response.text)
        assert response.json()["code"] == "media_offer_invalid", name

    rnd = random.Random(20261130)
    lines = sdp.split("\r\n")
    seen: dict[int, int] = {}
    for _ in range(MUTATIONS):
        offer = mutate(lines, rnd)
        response = await whip.post_offer(session_id, offer, token)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code in (201, 400, 422), (offer, response.text)
        if response.status_code != 201:
            assert response.json()["code"] in ("media_offer_invalid", "media_codec_unsupported")
    # The mutations exercised both sides.
    assert seen.get(201, 0) > 10
    assert seen.get(400, 0) > 10
