#!/usr/bin/python3
"""Milters that misbehave, in plain Python sockets (no libmilter), for the MTA's milter_default_action:
  --mode silent         accepts the connection, reads everything, never writes a byte (not even the
                        option negotiation: milter_connect_timeout)
  --mode mute           negotiates, answers continue until --stage, then reads on and never answers
                        (milter_command_timeout, or milter_content_timeout at header..eom)
  --mode close-mid-body negotiates, answers continue, and closes the socket when the first body chunk
                        arrives (with --partial: first writes 3 bytes of a reply packet, EOF mid-reply)
  --mode huge-reply     negotiates, continue until --stage, then a 10 MB reply (at eom an ADDHEADER with a
                        10 MB value, elsewhere a REPLYCODE "550 " + 10 MB of text), written until the peer
                        stops reading
  --mode unknown-reply  negotiates, continue until --stage, then answers with reply code 'Z' (none exists)
  --mode unnegotiated   negotiates no actions at all, then sends ADDHEADER at eom (a modification it did
                        not negotiate)
  --mode shutdown       negotiates, continue until --stage, then SMFIR_SHUTDOWN ('4')
  --mode conn-fail      negotiates, continue until --stage, then SMFIR_CONN_FAIL ('f')
(libmilter has no call for the last two.)
Every connection and every command is logged as a JSON line to --record: {"milter", "conn", "event",
"cmd"}. Default --stage: mail."""
import argparse
import json
import os
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire  # noqa: E402

HUGE = 10 * 1024 * 1024
ARGS = None
_lock = threading.Lock()
_conns = [0]


def record(**e):
    e.update(milter=ARGS.name, pid=os.getpid(), time=time.time())
    with _lock:
        with open(ARGS.record, "a") as f:
            f.write(json.dumps(e) + "\n")


def send(sock, cmd, data=b""):
    sock.sendall(wire.packet(cmd, data))


def negotiate_reply(sock, data, actions):
    _ver, _act, _proto = struct.unpack(">III", data[:12])
    send(sock, wire.C_OPTNEG, struct.pack(">III", wire.VERSION, actions, 0))


def huge(sock, stage):
    """One reply packet of over 10 MB, its length announced truthfully, written until the peer gives up."""
    if stage == "eom":
        payload = wire.cstr("X-Huge", "x" * HUGE)
        code = wire.R_ADDHEADER
    else:
        payload = wire.cstr("550 5.7.1 " + "y" * HUGE)
        code = wire.R_REPLYCODE
    pkt = wire.packet(code, payload)
    sent = 0
    try:
        while sent < len(pkt):
            sent += sock.send(pkt[sent:sent + 65536])
        if stage == "eom":
            send(sock, wire.R_CONTINUE)
    except OSError as e:
        record(conn=None, event="huge_write_stopped", sent=sent, error=str(e))
        return
    record(conn=None, event="huge_written", sent=sent)


def serve(sock, n):
    record(conn=n, event="connected")
    mode, stage = ARGS.mode, ARGS.stage
    try:
        if mode == "silent":
            while sock.recv(65536):
                pass
            return
        while True:
            cmd, data = wire.read_packet(sock)
            record(conn=n, event="command", cmd=cmd.decode("latin-1"), len=len(data))
            if cmd == wire.C_OPTNEG:
                negotiate_reply(sock, data, 0 if mode == "unnegotiated" else wire.F_ALL)
                continue
            if cmd in (wire.C_QUIT, wire.C_QUIT_NC):
                return
            if cmd not in wire.STAGE_OF:
                continue  # macros, abort: no answer
            here = wire.STAGE_OF[cmd]
            if mode == "close-mid-body" and cmd == wire.C_BODY:
                if ARGS.partial:
                    sock.sendall(struct.pack(">I", 5)[:3])
                record(conn=n, event="closing", stage=here)
                return
            if mode == "unnegotiated" and cmd == wire.C_BODYEOB:
                send(sock, wire.R_ADDHEADER, wire.cstr("X-Not-Negotiated", "yes"))
                send(sock, wire.R_CONTINUE)
                continue
            if here == stage and mode == "mute":
                record(conn=n, event="muted", stage=here)
                while sock.recv(65536):
                    pass
                return
            if here == stage and mode == "huge-reply":
                huge(sock, here)
                while sock.recv(65536):
                    pass
                return
            if here == stage and mode in ("unknown-reply", "shutdown", "conn-fail"):
                code = {"unknown-reply": b"Z", "shutdown": wire.R_SHUTDOWN, "conn-fail": wire.R_CONN_FAIL}[mode]
                send(sock, code, b"what?\0" if mode == "unknown-reply" else b"")
                continue
            send(sock, wire.R_CONTINUE)
    except (EOFError, OSError, ValueError) as e:
        record(conn=n, event="ended", error=str(e))
    finally:
        record(conn=n, event="closed")
        try:
            sock.close()
        except OSError:
            pass


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--socket", required=True, help="unix:/path or inet:PORT@HOST (or inet:HOST:PORT)")
    p.add_argument("--record", required=True)
    p.add_argument("--name", default="hostile")
    p.add_argument("--mode", required=True,
                   choices=["silent", "mute", "close-mid-body", "huge-reply", "unknown-reply", "unnegotiated",
                            "shutdown", "conn-fail"])
    p.add_argument("--stage", default="mail", choices=sorted(set(wire.STAGE_OF.values())))
    p.add_argument("--partial", action="store_true")
    ARGS = p.parse_args()
    srv = wire.listen(ARGS.socket)
    record(conn=None, event="listening", mode=ARGS.mode, stage=ARGS.stage)
    while True:
        s, _ = srv.accept()
        s.settimeout(None)
        _conns[0] += 1
        threading.Thread(target=serve, args=(s, _conns[0]), daemon=True).start()


if __name__ == "__main__":
    main()
