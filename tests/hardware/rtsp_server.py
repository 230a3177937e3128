"""A real RTSP server for the network-audio tests: GStreamer's (gst-rtsp-server), from Debian.

Run with the system python3, which has the GObject bindings (python3-gi)::

    /usr/bin/python3 tests/hardware/rtsp_server.py --wav FILE --port N [--user U --password P]

It serves the 16-bit PCM WAV at ``rtsp://127.0.0.1:N/audio`` as L16 (lossless, big-endian PCM
over RTP, mono), in real time, one shared stream for every client. With ``--user`` and
``--password`` it asks for HTTP basic authentication. It prints ``ready PORT`` once listening,
``playing`` when a client starts the stream, then ``position SECONDS`` five times a second.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def say(line: str) -> None:
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wav", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    Gst.init(None)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( filesrc location="{args.wav}" ! wavparse ! audioconvert '
        "! audio/x-raw,format=S16BE,channels=1 ! rtpL16pay name=pay0 pt=96 )"
    )
    factory.set_shared(True)
    if args.user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()  # the role the factory lets in (below)
        token.set_string("media.factory.role", "listener")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        factory.add_role_from_structure(
            Gst.Structure.from_string(
                "listener, media.factory.access=(boolean)true, "
                "media.factory.construct=(boolean)true"
            )[0]
        )

    pipelines: list[Any] = []

    def on_configure(_factory: Any, media: Any) -> None:
        pipelines.append(media.get_element())
        media.connect("new-state", on_state)

    def on_state(_media: Any, state: Any) -> None:
        if state == Gst.State.PLAYING:
            say("playing")

    def report() -> bool:
        for element in pipelines:
            ok, position = element.query_position(Gst.Format.TIME)
            if ok:
                say(f"position {position / Gst.SECOND:.3f}")
        return True

    factory.connect("media-configure", on_configure)
    server.get_mount_points().add_factory("/audio", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")
    say(f"ready {server.get_bound_port()}")
    GLib.timeout_add(200, report)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
