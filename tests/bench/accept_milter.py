#!/usr/bin/python3
"""The benchmark's accept-all milter (Debian's python3-milter, i.e. Sendmail's libmilter): it asks for
every common stage of a session and of a message (connect, HELO, MAIL, RCPT, DATA, each header field,
end of header, the body chunks, end of message), answers CONTINUE to each and ACCEPT at the end of the
message, and changes nothing. None of these stages is negotiated away (no SMFIP_NO*) and none is
unanswered (no SMFIP_NR*), so the MTA waits for a reply at every step, as with a real filter.

It counts the calls of each callback and writes the counts as JSON to STATS (atomically, a few times a
second while they change, and once more on exit), so the harness can check that every accepted message
went through it. Stops on SIGTERM (libmilter's own signal handling).

Usage: /usr/bin/python3 accept_milter.py SOCKET STATS
  SOCKET as libmilter spells it: inet:PORT@127.0.0.1 or unix:/path/to/socket"""
import json
import os
import sys
import threading

import Milter

STAGES = ("negotiate", "connect", "helo", "envfrom", "envrcpt", "data", "header", "eoh", "body", "body_bytes",
          "eom", "abort", "close")
_counts = dict.fromkeys(STAGES, 0)
_lock = threading.Lock()


def count(stage, n=1):
    with _lock:
        _counts[stage] += n


def snapshot():
    with _lock:
        return dict(_counts)


class AcceptAll(Milter.Base):
    """Every stage CONTINUE, ACCEPT at the end of the message. Overriding a callback of Milter.Base is
    what keeps it in the negotiated protocol; the values are taken as bytes, nothing is decoded."""

    def negotiate(self, opts):
        count("negotiate")
        return Milter.Base.negotiate(self, opts)

    def connect(self, hostname, family, hostaddr):
        count("connect")
        return Milter.CONTINUE

    def hello(self, hostname):
        count("helo")
        return Milter.CONTINUE

    @Milter.decode("bytes")
    def envfrom(self, mailfrom, *params):
        count("envfrom")
        return Milter.CONTINUE

    @Milter.decode("bytes")
    def envrcpt(self, rcpt, *params):
        count("envrcpt")
        return Milter.CONTINUE

    def data(self):
        count("data")
        return Milter.CONTINUE

    @Milter.decode("bytes")
    def header(self, name, value):
        count("header")
        return Milter.CONTINUE

    def eoh(self):
        count("eoh")
        return Milter.CONTINUE

    def body(self, chunk):
        with _lock:
            _counts["body"] += 1
            _counts["body_bytes"] += len(chunk)
        return Milter.CONTINUE

    def eom(self):
        count("eom")
        return Milter.ACCEPT

    def abort(self):
        count("abort")
        return Milter.CONTINUE

    def close(self):
        count("close")
        return Milter.CONTINUE


def write_stats(path, counts):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(counts, f)
    os.replace(tmp, path)


def writer(path, stop):
    last = None
    while not stop.wait(0.2):
        now = snapshot()
        if now != last:
            write_stats(path, now)
            last = now


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    sock, stats = sys.argv[1], sys.argv[2]
    write_stats(stats, snapshot())
    stop = threading.Event()
    t = threading.Thread(target=writer, args=(stats, stop), daemon=True)
    t.start()
    Milter.factory = AcceptAll
    try:
        Milter.runmilter("bench-accept", sock, timeout=300)
    finally:
        stop.set()
        t.join()
        write_stats(stats, snapshot())
    return 0


if __name__ == "__main__":
    sys.exit(main())
