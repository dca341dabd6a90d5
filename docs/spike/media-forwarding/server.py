"""Server process: one publisher PC (receive, no decode) + N subscriber PCs (forward, no encode)."""
import asyncio
import resource
import threading
import time

import aioice.ice

aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]

import aiortc.codecs as C  # noqa: E402
import aiortc.rtcrtpreceiver as R  # noqa: E402
import aiortc.rtcrtpsender as S  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription  # noqa: E402

import fwd  # noqa: E402
import os
if os.environ.get("SPIKE_DBG"): import dbg  # noqa

COUNTS = {"decoders": 0, "encoders": 0}


def _wrap(fn, key):
    def w(*a, **k):
        COUNTS[key] += 1
        return fn(*a, **k)
    return w


C.get_decoder = R.get_decoder = _wrap(C.get_decoder, "decoders")
C.get_encoder = S.get_encoder = _wrap(C.get_encoder, "encoders")


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Server:
    def __init__(self, skip_aiortc_handling=False):
        self.pcs = []
        self.sources = {}
        self.sinks = {}
        self.skip = skip_aiortc_handling
        self.max_threads = 0
        self.thread_names = set()

    async def publish(self, sdp, name="A"):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self.sources.setdefault(name, {})
        for t in pc.getTransceivers():  # created by setRemoteDescription, __connect not run yet
            self.sources[name][t.kind] = fwd.Source(t.receiver, t.kind, self.skip)
        await pc.setLocalDescription(await pc.createAnswer())
        self.pub_codecs = {t.kind: t._codecs for t in pc.getTransceivers()}
        return pc.localDescription.sdp

    async def subscribe(self, name, sdp, drop_rate):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)
        sinks = []
        for kind in ("audio", "video"):
            t = pc.addTransceiver(kind, direction="sendonly")
            # the subscriber gets exactly the publisher's codec
            pub = self.pub_codecs[kind][0]
            caps = [c for c in RTCRtpSender.getCapabilities(kind).codecs
                    if c.mimeType.lower() == pub.mimeType.lower() and c.parameters == pub.parameters]
            caps += [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower().endswith("/rtx")]
            t.setCodecPreferences(caps)
            sinks.append(fwd.Sink(f"{name}/{kind}", t, self.sources["A"][kind],
                                  drop_rate if kind == "video" else 0.0))
        self.sinks[name] = sinks
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState == "connected":
                for s in sinks:
                    s.activate()
                    s.source.sinks.append(s)
                await self.sources["A"]["video"].request_keyframe(f"{name} starts")

        return pc.localDescription.sdp

    def snapshot(self):
        st = fwd.STATS
        return dict(cpu=cpu(), wall=time.monotonic(), **vars(st), **COUNTS,
                    threads=sorted({t.name for t in threading.enumerate()} | self.thread_names))

    async def watch_threads(self):
        while True:
            names = {t.name for t in threading.enumerate()}
            self.thread_names |= names
            await asyncio.sleep(0.2)


def serve(conns, skip):
    async def main():
        srv = Server(skip)
        asyncio.ensure_future(srv.watch_threads())
        done = asyncio.get_running_loop().create_future()
        for conn in conns:
            asyncio.ensure_future(handle(srv, conn, done))
        await done

    async def handle(srv, conn, done):
        loop = asyncio.get_running_loop()
        while True:
            msg = await loop.run_in_executor(None, conn.recv)
            cmd = msg[0]
            if cmd == "publish":
                conn.send(await srv.publish(*msg[1:]))
            elif cmd == "route":  # route(sub, publisher): both kinds
                t0 = time.monotonic()
                for sink in srv.sinks[msg[1]]:
                    await sink.set_source(srv.sources[msg[2]][sink.kind])
                conn.send(time.monotonic() - t0)
            elif cmd == "subscribe":
                conn.send(await srv.subscribe(msg[1], msg[2], msg[3]))
            elif cmd == "stats":
                conn.send(srv.snapshot())
            elif cmd == "stop":
                for pc in srv.pcs:
                    await pc.close()
                conn.send(srv.snapshot())
                done.set_result(None)
                return

    asyncio.run(main())
