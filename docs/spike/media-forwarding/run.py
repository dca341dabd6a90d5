"""Clients process: 1 aiortc publisher (VP8 640x360 30 fps + Opus) and N decoding aiortc subscribers.

usage: python run.py [--subs 2] [--seconds 10] [--drop 0.02] [--skip-aiortc-handling]
"""
import argparse
import asyncio
import fractions
import json
import multiprocessing as mp
import os
import random
import time

import aioice.ice

aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]

from av import VideoFrame  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack  # noqa: E402

W, H = 640, 360


class MovingTexture(VideoStreamTrack):
    def __init__(self, w=640, h=360):
        super().__init__()
        global W, H
        W, H = w, h
        rnd = random.Random(1)
        row = bytes(rnd.randrange(256) for _ in range(W * 2))
        self.base = b"".join(row[(y * 7) % W:(y * 7) % W + W] for y in range(H))
        self.uv = bytes([128]) * (W * H // 4)
        self.w, self.h = W, H
        self.n = 0

    async def recv(self):
        pts, tb = await self.next_timestamp()
        off = (self.n * 4) % (self.w * self.h)
        self.n += 1
        f = VideoFrame(width=self.w, height=self.h, format="yuv420p")
        y = self.base[off:] + self.base[:off]
        f.planes[0].update(y)
        f.planes[1].update(self.uv)
        f.planes[2].update(self.uv)
        f.pts, f.time_base = pts, tb
        return f


class Subscriber:
    def __init__(self, name, decode=True):
        self.name = name
        self.decode = decode
        self.rtp = 0
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.frames = 0
        self.audio_frames = 0
        self.t_join = None
        self.first_frame_ms = None
        self.srs = []
        self.sizes = []  # (monotonic, width) at each change of decoded width

    async def join(self, conn, drop):
        self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.addTransceiver("video", direction="recvonly")

        @self.pc.on("track")
        def on_track(track):
            asyncio.ensure_future(self.consume(track))

        self.t_join = time.monotonic()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        conn.send(("subscribe", self.name, self.pc.localDescription.sdp, drop))
        answer = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        if not self.decode:  # load-only subscriber: counts RTP, no decoder thread (client CPU stays low)
            import fwd
            for t in self.pc.getTransceivers():
                fwd.no_decode_receive(t.receiver)
                orig_h = t.receiver._handle_rtp_packet

                async def count(p, arrival_time_ms, orig_h=orig_h):
                    self.rtp += 1
                    await orig_h(p, arrival_time_ms)

                t.receiver._handle_rtp_packet = count
        # watch sender reports arriving at the subscriber
        for t in self.pc.getTransceivers():
            r = t.receiver
            orig = r._handle_rtcp_packet

            async def h(p, orig=orig, kind=t.kind):
                if type(p).__name__ == "RtcpSrPacket":
                    self.srs.append((kind, p.ssrc, p.sender_info.ntp_timestamp,
                                     p.sender_info.rtp_timestamp, p.sender_info.packet_count))
                await orig(p)

            r._handle_rtcp_packet = h

    async def consume(self, track):
        try:
            while True:
                fr = await track.recv()
                if track.kind == "video":
                    if not self.sizes or self.sizes[-1][1] != fr.width:
                        self.sizes.append((time.monotonic(), fr.width))
                    if self.first_frame_ms is None:
                        self.first_frame_ms = (time.monotonic() - self.t_join) * 1000
                    self.frames += 1
                else:
                    self.audio_frames += 1
        except MediaStreamError:
            pass


def extras_proc(conn, ctl, n):
    """Load-only subscribers in their own process (so the decoding subscribers keep their CPU)."""
    async def go():
        extras = []
        for i in range(n):
            e = Subscriber(f"extra{i}", decode=False)
            await e.join(conn, 0.0)
            extras.append(e)
        ctl.send("joined")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, ctl.recv)
        ctl.send([e.rtp for e in extras])
        for e in extras:
            await e.pc.close()

    asyncio.run(go())


async def main(args):
    import server

    parent, child = mp.Pipe()
    parent2, child2 = mp.Pipe()
    proc = mp.Process(target=server.serve, args=([child, child2], args.skip_aiortc_handling), daemon=True)
    proc.start()
    loop = asyncio.get_running_loop()

    async def call(*msg):
        parent.send(msg)
        return await loop.run_in_executor(None, parent.recv)

    pub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pub.addTrack(AudioStreamTrack())
    vs = pub.addTrack(MovingTexture())
    if args.h264:
        from aiortc import RTCRtpSender
        vt = next(t for t in pub.getTransceivers() if t.sender is vs)
        vt.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                if c.mimeType == "video/H264"])
    await pub.setLocalDescription(await pub.createOffer())
    answer = await call("publish", pub.localDescription.sdp)
    await pub.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    t_pub = time.monotonic()
    await asyncio.sleep(3)  # publisher running alone; its first keyframe is long gone

    subs = []
    for i in range(args.subs):
        s = Subscriber(f"sub{i}")
        await s.join(parent, args.drop if i == 1 else 0.0)
        subs.append(s)
        await asyncio.sleep(1.0)
    extras = []
    if args.extra:
        ctl, ctl_child = mp.Pipe()
        xp = mp.Process(target=extras_proc, args=(parent2, ctl_child, args.extra), daemon=True)
        xp.start()
        await loop.run_in_executor(None, ctl.recv)
        extras = [None] * args.extra
        await asyncio.sleep(3)
    await asyncio.sleep(2)

    a = await call("stats")
    f0 = [s.frames for s in subs]
    await asyncio.sleep(args.seconds)
    b = await call("stats")
    f1 = [s.frames for s in subs]

    switch = None
    if args.switch:
        pub2 = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pub2.addTrack(AudioStreamTrack())
        pub2.addTrack(MovingTexture(320, 180))
        await pub2.setLocalDescription(await pub2.createOffer())
        ans2 = await call("publish", pub2.localDescription.sdp, "B")
        await pub2.setRemoteDescription(RTCSessionDescription(sdp=ans2, type="answer"))
        await asyncio.sleep(3)
        switch = []
        for target in ("B", "A", "B"):
            t_sw = time.monotonic()
            took = await call("route", "sub0", target)
            want = 320 if target == "B" else 640
            while not (subs[0].sizes and subs[0].sizes[-1][1] == want and subs[0].sizes[-1][0] > t_sw):
                await asyncio.sleep(0.005)
                if time.monotonic() - t_sw > 5:
                    break
            switch.append({"to": target, "route_call_ms": round(took * 1000, 1),
                           "switch_to_first_new_frame_ms": round((subs[0].sizes[-1][0] - t_sw) * 1000)})
            await asyncio.sleep(2)
        f_after = subs[0].frames
        await asyncio.sleep(3)
        switch.append({"sub0_fps_after_switches": round((subs[0].frames - f_after) / 3, 1)})
        await pub2.close()

    pstats = await pub.getStats()
    out_rtp = {v.kind: v.packetsSent for v in pstats.values() if v.type == "outbound-rtp"}
    out_bytes = {v.kind: v.bytesSent for v in pstats.values() if v.type == "outbound-rtp"}
    sub_stats = []
    for s in subs:
        st = await s.pc.getStats()
        sub_stats.append({v.kind: (v.packetsReceived, v.packetsLost) for v in st.values() if v.type == "inbound-rtp"})
    extra_rtp = []
    if extras:
        ctl.send("stop")
        extra_rtp = await loop.run_in_executor(None, ctl.recv)
    for s in subs:
        await s.pc.close()
    await pub.close()
    c = await call("stop")
    proc.join(5)

    fwd_pk = b["fwd_packets"] - a["fwd_packets"]
    res = {
        "switch": switch,
        "codec_at_subscribers": [[t._codecs[0].mimeType + "/" + str(t._codecs[0].payloadType) for t in s.pc.getTransceivers()] for s in subs],
        "window_s": round(b["wall"] - a["wall"], 2),
        "fps_per_subscriber": [round((x1 - x0) / (b["wall"] - a["wall"]), 1) for x0, x1 in zip(f0, f1)],
        "join_to_first_frame_ms": [round(s.first_frame_ms or -1) for s in subs],
        "server_decoders_created": c["decoders"],
        "server_encoders_created": c["encoders"],
        "server_threads_seen": c["threads"],
        "server_cpu_s_window": round(b["cpu"] - a["cpu"], 3),
        "server_cpu_pct": round(100 * (b["cpu"] - a["cpu"]) / (b["wall"] - a["wall"]), 1),
        "in_packets_window": b["in_packets"] - a["in_packets"],
        "forwarded_packets_window": fwd_pk,
        "server_cpu_us_per_forwarded_packet": round(1e6 * (b["cpu"] - a["cpu"]) / max(fwd_pk, 1), 1),
        "fanout_us_per_forwarded_packet": round(1e6 * (b["fwd_seconds"] - a["fwd_seconds"]) / max(fwd_pk, 1), 1),
        "tap_incl_aiortc_us_per_in_packet": round(1e6 * (b["tap_seconds"] - a["tap_seconds"]) / max(b["in_packets"] - a["in_packets"], 1), 1),
        "publisher_packets_sent": out_rtp,
        "publisher_video_kbps_avg": round(8 * out_bytes.get("video", 0) / 1000 / (time.monotonic() - t_pub), 1),
        "subscriber_inbound (received, lost)": sub_stats,
        "subscriber_srs_last": [s.srs[-2:] for s in subs],
        "extra_subscribers": len(extras),
        "extra_rtp_received_min_max": [min(extra_rtp), max(extra_rtp)] if extra_rtp else None,
        "totals": {k: c[k] for k in ("plis_in", "plis_up", "nacks_in", "retransmits", "rtx_in", "rtx_suppressed", "nack_miss", "sim_dropped", "keyframes", "fwd_packets", "in_packets")},
    }
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--subs", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--switch", action="store_true")
    ap.add_argument("--h264", action="store_true")
    ap.add_argument("--extra", type=int, default=0)
    ap.add_argument("--drop", type=float, default=0.0)
    ap.add_argument("--skip-aiortc-handling", action="store_true")
    mp.set_start_method("spawn")
    asyncio.run(main(ap.parse_args()))
