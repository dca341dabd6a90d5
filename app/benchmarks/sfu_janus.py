"""Janus (Debian's package) as the other server of the side-by-side benchmark, on loopback.

Janus is started with a configuration of its own in a temporary folder: only the WebSocket
transport and the VideoRoom plugin (linked from the package), `event_loops` shared loops (its best
configuration here: the default thread per connection costs it twice the CPU), and ICE on `lo`.
Janus never gathers on a loopback interface (`ice.c` skips IFF_LOOPBACK), so a ten-line
`getifaddrs` shim, built with gcc at run time and preloaded, clears that flag for Janus alone.
Signaling is Janus's own JSON API over a WebSocket (subprotocol `janus-protocol`), synchronous:
the orchestrator waits anyway.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

JANUS = "/usr/bin/janus"
JANUS_LIBS = Path("/usr/lib/x86_64-linux-gnu/janus")
ROOM_ID = 4242
KEEPALIVE_S = 15.0
SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
int getifaddrs(struct ifaddrs **ifap) {
    static int (*real)(struct ifaddrs **) = 0;
    if (!real) real = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    int rc = real(ifap);
    if (rc == 0)
        for (struct ifaddrs *i = *ifap; i; i = i->ifa_next) i->ifa_flags &= ~IFF_LOOPBACK;
    return rc;
}
"""


class JanusError(RuntimeError):
    """Janus is missing, did not start, or refused a request."""


def janus_version() -> str | None:
    if not Path(JANUS).exists():
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(  # noqa: S603 - a fixed path and argument
            [JANUS, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        for line in out.splitlines():
            if line.startswith("Janus version:"):
                return line.split("(", 1)[-1].rstrip(")").strip()
    return None


def render_config(folder: Path, ws_port: int, event_loops: int, rtp_ports: tuple[int, int]) -> None:
    """janus.jcfg, the WebSocket transport and the VideoRoom plugin, nothing else."""
    (folder / "janus.jcfg").write_text(
        f"""general: {{
    configs_folder = "{folder}"
    plugins_folder = "{folder}/plugins"
    transports_folder = "{folder}/transports"
    events_folder = "{folder}/events"
    loggers_folder = "{folder}/loggers"
    debug_level = 3
    server_name = "diemcau-side-by-side"
    session_timeout = 60
    event_loops = {event_loops}
}}
certificates: {{}}
media: {{
    rtp_port_range = "{rtp_ports[0]}-{rtp_ports[1]}"
}}
nat: {{
    ice_enforce_list = "lo"
    ignore_mdns = true
}}
plugins: {{}}
transports: {{}}
events: {{
    broadcast = false
}}
loggers: {{}}
""",
        encoding="utf-8",
    )
    (folder / "janus.transport.websockets.jcfg").write_text(
        f"""general: {{
    json = "compact"
    ws = true
    ws_port = {ws_port}
    ws_ip = "127.0.0.1"
    wss = false
}}
admin: {{
    admin_ws = false
    admin_wss = false
}}
""",
        encoding="utf-8",
    )
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {}\n", encoding="utf-8")
    for kind, library in (
        ("plugins", "libjanus_videoroom.so"),
        ("transports", "libjanus_websockets.so"),
    ):
        (folder / kind).mkdir(exist_ok=True)
        (folder / kind / library).symlink_to(JANUS_LIBS / kind / library)
    for kind in ("events", "loggers"):
        (folder / kind).mkdir(exist_ok=True)


def build_shim(folder: Path) -> Path:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise JanusError("gcc is needed to build the getifaddrs shim (apt-get install gcc)")
    source = folder / "loopback_shim.c"
    library = folder / "loopback_shim.so"
    source.write_text(SHIM_C, encoding="utf-8")
    result = subprocess.run(  # noqa: S603 - the compiler found on PATH, our own files
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise JanusError(f"building the shim failed: {result.stderr[-500:]}")
    return library


class JanusServer:
    """One Janus process; `start()` returns once its WebSocket port answers."""

    def __init__(self, folder: Path, ws_port: int, event_loops: int, rtp_ports: tuple[int, int]):
        self.folder = folder
        self.ws_port = ws_port
        self.event_loops = event_loops
        self.rtp_ports = rtp_ports
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = folder / "janus.log"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        if not Path(JANUS).exists():
            raise JanusError(f"{JANUS} is missing (apt-get install janus)")
        self.folder.mkdir(parents=True, exist_ok=True)
        render_config(self.folder, self.ws_port, self.event_loops, self.rtp_ports)
        shim = build_shim(self.folder)
        env = {**os.environ, "LD_PRELOAD": str(shim)}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own fixed command line
                [JANUS, "-F", str(self.folder), "-C", str(self.folder / "janus.jcfg"), "-o"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise JanusError(f"janus exited with {self.process.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError):
                import socket

                with socket.create_connection(("127.0.0.1", self.ws_port), timeout=0.2):
                    return
            time.sleep(0.05)
        raise JanusError(f"janus did not open its WebSocket port within 20 s: {self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
        return ""


class JanusClient:
    """A Janus API session over one WebSocket; a thread keeps the session alive."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(
            connect(
                url,
                subprotocols=["janus-protocol"],  # type: ignore[list-item]
                open_timeout=10,
                max_size=1 << 22,
            )
        )
        self.session_id = 0
        self.session_id = int(self._call({"janus": "create"})["data"]["id"])
        self.stopping = threading.Event()
        self.keeper = threading.Thread(target=self._keepalive, daemon=True)
        self.keeper.start()

    def _keepalive(self) -> None:
        while not self.stopping.wait(KEEPALIVE_S):
            with contextlib.suppress(Exception):
                self.ws.send(
                    json.dumps(
                        {
                            "janus": "keepalive",
                            "session_id": self.session_id,
                            "transaction": uuid.uuid4().hex,
                        }
                    )
                )

    def _call(
        self, body: dict[str, Any], handle: int | None = None, want_event: bool = False
    ) -> dict[str, Any]:
        """Send; the `success` (or, with `want_event`, the plugin's `event`) for it."""
        transaction = uuid.uuid4().hex
        message = {**body, "transaction": transaction}
        if self.session_id:
            message["session_id"] = self.session_id
        if handle is not None:
            message["handle_id"] = handle
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + 30
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise JanusError(f"no answer from janus to {body.get('janus')}")
            reply: dict[str, Any] = json.loads(self.ws.recv(timeout=remaining))
            if reply.get("transaction") != transaction:
                continue
            kind = reply.get("janus")
            if kind == "error":
                raise JanusError(f"janus refused {body}: {reply.get('error')}")
            if kind == "ack" and want_event:
                continue
            if kind == "success" or (want_event and kind == "event"):
                data = reply.get("plugindata", {}).get("data", {})
                if data.get("error"):
                    raise JanusError(f"videoroom refused: {data.get('error')}")
                return reply

    def attach(self) -> int:
        return int(
            self._call({"janus": "attach", "plugin": "janus.plugin.videoroom"})["data"]["id"]
        )

    def create_room(self, handle: int) -> None:
        self._call(
            {
                "janus": "message",
                "body": {
                    "request": "create",
                    "room": ROOM_ID,
                    "publishers": 1,
                    "bitrate": 0,
                    "audiocodec": "opus",
                    "videocodec": "vp8",
                    "notify_joining": False,
                },
            },
            handle,
        )

    def publish(self, handle: int, offer_sdp: str) -> tuple[int, str]:
        """The publisher's offer in; (its feed id, Janus's answer) out."""
        reply = self._call(
            {
                "janus": "message",
                "body": {
                    "request": "joinandconfigure",
                    "room": ROOM_ID,
                    "ptype": "publisher",
                    "display": "hall",
                },
                "jsep": {"type": "offer", "sdp": offer_sdp},
            },
            handle,
            want_event=True,
        )
        return int(reply["plugindata"]["data"]["id"]), str(reply["jsep"]["sdp"])

    def subscribe(self, handle: int, feed: int) -> str:
        """Janus's offer to a new subscriber of `feed`."""
        reply = self._call(
            {
                "janus": "message",
                "body": {
                    "request": "join",
                    "room": ROOM_ID,
                    "ptype": "subscriber",
                    "streams": [{"feed": feed}],
                },
            },
            handle,
            want_event=True,
        )
        return str(reply["jsep"]["sdp"])

    def start(self, handle: int, answer_sdp: str) -> None:
        self._call(
            {
                "janus": "message",
                "body": {"request": "start"},
                "jsep": {"type": "answer", "sdp": answer_sdp},
            },
            handle,
            want_event=True,
        )

    def close(self) -> None:
        self.stopping.set()
        with contextlib.suppress(Exception):
            self.stack.close()
