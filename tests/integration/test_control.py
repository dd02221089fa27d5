"""The control socket never makes mtad wait on a client (issue 11): local users run as `nobody` trickle
a byte every 1.5 s, send a huge request without a newline, or connect and say nothing, and open more
connections than mtad serves at once. Meanwhile `mtactl status` (as root) answers within a second or
two, the per-IP connection limit counted by mtad's anvil still refuses the connection over the limit
with 421 (and no smtpd gives up waiting for anvil), each misbehaving client is dropped (at the size
cap, at the deadline, or at the connection cap) with a log line, and mtad stays up."""
import os
import signal
import subprocess
import sys
import time

from mtatest import BIN, MTA, as_user, check, finish, wait_for
from test_smtpd import Client, attempt

HOST = "127.0.0.1"
CONN_LIMIT = 3
REQUEST_DEADLINE = 5   # man/mtad.8 CONTROL SOCKET: the request line must arrive within 5 s
MAX_UNPRIVILEGED = 48  # ... and users other than root hold at most 48 of its 64 connections

# Run as nobody. Prints one line per event, "<what> <seconds since the connection was made>".
#   trickle: one byte (never a newline) every 1.5 s; reconnects whenever mtad drops it
#   huge:    1 MiB without a newline, then waits for mtad to close
#   silent:  connects, sends nothing, waits for mtad to close
#   many N:  N silent connections at once; reports how many mtad closed at once and how many it kept
CLIENT = r"""
import select, socket, sys, time
path, mode = sys.argv[1], sys.argv[2]
def say(*a):
    print(*a, flush=True)
def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s, time.time()
def closed_by_peer(s, wait):
    r, _, _ = select.select([s], [], [], wait)
    if not r:
        return False
    try:
        return s.recv(4096) == b""
    except OSError:
        return True
if mode == "trickle":
    while True:
        s, t0 = connect()
        say("connected", 0)
        while True:
            try:
                s.send(b"x")
            except OSError:
                break
            if closed_by_peer(s, 1.5):
                break
        say("dropped %.2f" % (time.time() - t0))
        s.close()
elif mode in ("huge", "silent"):
    s, t0 = connect()
    say("connected", 0)
    if mode == "huge":
        try:
            s.sendall(b"a" * (1 << 20))
        except OSError:
            pass
    while not closed_by_peer(s, 30):
        pass
    say("dropped %.2f" % (time.time() - t0))
elif mode == "many":
    socks = [connect()[0] for _ in range(int(sys.argv[3]))]
    t0 = time.time()
    refused = 0
    for s in socks:
        if closed_by_peer(s, max(0.0, t0 + 2 - time.time())):
            refused += 1
    say("refused %d kept %d" % (refused, len(socks) - refused))
    time.sleep(30)
"""


class Nobody:
    """One client of CLIENT run as nobody; its lines go to a file the test reads."""

    def __init__(self, m, mode, *args):
        self.out = os.path.join(m.dir, "client-%s-%d.out" % (mode, time.monotonic_ns()))
        self.f = open(self.out, "w")
        cmd = as_user("nobody", ["/usr/bin/python3", "-c", CLIENT, m.sock, mode] + [str(a) for a in args])
        # Its own session: runuser forks, so stopping means signalling the whole group.
        self.proc = subprocess.Popen(cmd, stdout=self.f, stderr=subprocess.STDOUT, start_new_session=True)

    def lines(self):
        with open(self.out) as f:
            return f.read().splitlines()

    def events(self, what):
        return [float(l.split()[1]) for l in self.lines() if l.startswith(what + " ")]

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.f.close()


def timed_status(m):
    """(seconds, result) of `mtactl status` as root; a hung request is a result with returncode None."""
    t0 = time.monotonic()
    try:
        r = subprocess.run([os.path.join(BIN, "mtactl"), "-c", m.conf, "status"], capture_output=True, text=True,
                           timeout=15)
    except subprocess.TimeoutExpired:
        r = subprocess.CompletedProcess([], None, "", "no answer within 15 s")
    return time.monotonic() - t0, r


def nobody_uid():
    return int(subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True).stdout)


def status_while_trickling(m, clients):
    t = Nobody(m, "trickle")
    clients.append(t)
    check("trickle: the nobody client is connected", wait_for(lambda: t.events("connected"), 10), t.lines())
    # Spread over more than one request deadline, so answers are asked for while bytes trickle in.
    times, bad = [], []
    end = time.monotonic() + REQUEST_DEADLINE + 3
    while time.monotonic() < end or len(times) < 6:
        took, r = timed_status(m)
        times.append(round(took, 2))
        if r.returncode != 0 or "role=queue" not in r.stdout:
            bad.append(r.stdout + r.stderr)
        time.sleep(0.7)
    check("trickle: mtactl status answers every time", not bad, bad[:1])
    check("trickle: mtactl status answers within 1 s each time (%d asks, slowest %.2fs)" % (len(times), max(times)),
          max(times) < 1.0, times)
    dropped = wait_for(lambda: t.events("dropped"), REQUEST_DEADLINE + 5)
    check("trickle: the trickler is dropped at the request deadline, not after its 512 bytes",
          dropped and REQUEST_DEADLINE - 1 <= dropped[0] <= REQUEST_DEADLINE + 3, t.lines())
    want = 'event=control_drop uid=%d reason="no complete request in time"' % nobody_uid()
    check("trickle: mtad logs the drop with the client's uid", wait_for(lambda: want in m.log_text(), 5), want)


def limit_holds_while_trickling(m, clients):
    ts = [Nobody(m, "trickle") for _ in range(6)]
    clients.extend(ts)
    check("limit: six tricklers connected", wait_for(lambda: all(t.events("connected") for t in ts), 10),
          [t.lines() for t in ts])
    # Rounds spread over more than one request deadline, so some verdicts are asked for while tricklers
    # are being dropped and reconnect. Two smtpd processes accept, so which connection is the one over
    # the limit may vary; the count may not.
    rounds = []
    end = time.monotonic() + REQUEST_DEADLINE + 3
    while time.monotonic() < end or len(rounds) < 3:
        cs = []
        try:
            t0 = time.monotonic()
            for _ in range(CONN_LIMIT + 1):
                cs.append(Client(m.port, HOST, timeout=20))
            replies = sorted(c.last()[:9] for c in cs)
            rounds.append((replies, round(time.monotonic() - t0, 2)))
        finally:
            for c in cs:
                c.close()
        idle = wait_for(lambda: "anvil clients=0 connections=0" in timed_status(m)[1].stdout, 10, 0.1)
        if not idle:
            rounds.append(("anvil never idle", timed_status(m)[1].stdout))
            break
        time.sleep(0.5)
    want = ["220 mx.te"] * CONN_LIMIT + ["421 4.7.0"]
    check("limit: with tricklers connected, %d greeted and the connection over the per-IP limit gets 421 "
          "(%d rounds)" % (CONN_LIMIT, len(rounds)), all(r == want for r, _ in rounds), rounds)
    check("limit: every verdict came at once (under 2 s per round)", all(isinstance(s, float) and s < 2 for _, s in rounds),
          rounds)
    check("limit: no smtpd ever gave up waiting for mtad's anvil", "event=anvil_timeout" not in m.log_text(),
          [l for l in m.log_text().splitlines() if "anvil_timeout" in l][:3])
    check("limit: the tricklers were dropped and came back meanwhile",
          wait_for(lambda: all(t.events("dropped") for t in ts), REQUEST_DEADLINE + 5), [t.lines() for t in ts])
    for t in ts:
        t.stop()


def huge_request(m):
    mark = len(m.log_text())
    h = Nobody(m, "huge")
    try:
        dropped = wait_for(lambda: h.events("dropped"), REQUEST_DEADLINE + 10)
        check("huge: a 1 MiB request without a newline is dropped at the size cap, before the deadline",
              dropped and dropped[0] < REQUEST_DEADLINE - 1, h.lines())
        want = 'event=control_drop uid=%d reason="request too long"' % nobody_uid()
        check("huge: mtad logs it", wait_for(lambda: want in m.log_text()[mark:], 5), m.log_text()[mark:][-1000:])
    finally:
        h.stop()
    took, r = timed_status(m)
    check("huge: mtad still answers", r.returncode == 0 and "role=smtpd" in r.stdout and took < 1.0, (took, r.stderr))


def silent_client(m):
    mark = len(m.log_text())
    s = Nobody(m, "silent")
    try:
        dropped = wait_for(lambda: s.events("dropped"), REQUEST_DEADLINE + 10)
        check("silent: a client that sends nothing is dropped at the deadline",
              dropped and REQUEST_DEADLINE - 1 <= dropped[0] <= REQUEST_DEADLINE + 3, s.lines())
        want = 'event=control_drop uid=%d reason="no complete request in time"' % nobody_uid()
        check("silent: mtad logs it", wait_for(lambda: want in m.log_text()[mark:], 5), m.log_text()[mark:][-1000:])
    finally:
        s.stop()
    took, r = timed_status(m)
    check("silent: mtad is up and answers", m.proc.poll() is None and r.returncode == 0 and took < 1.0,
          (took, r.stderr))


def connection_cap(m):
    mark = len(m.log_text())
    n = MAX_UNPRIVILEGED + 12
    many = Nobody(m, "many", n)
    try:
        got = wait_for(lambda: [l for l in many.lines() if l.startswith("refused ")], 20)
        check("cap: of %d connections by one user, mtad keeps %d and closes the rest at once" % (n, MAX_UNPRIVILEGED),
              got == ["refused %d kept %d" % (n - MAX_UNPRIVILEGED, MAX_UNPRIVILEGED)], many.lines())
        refusals = m.log_text()[mark:].count('reason="too many control clients"')
        check("cap: each refused connection is logged", refusals == n - MAX_UNPRIVILEGED, refusals)
        took, r = timed_status(m)
        check("cap: root still gets its answer while users hold their share", r.returncode == 0 and took < 1.0,
              (took, r.stderr))
        # After the deadline the held connections are gone and users are served again.
        user_ctl = as_user("nobody", [os.path.join(BIN, "mtactl"), "-c", m.conf, "status"])
        ok = wait_for(lambda: subprocess.run(user_ctl, capture_output=True, timeout=30).returncode == 0,
                      REQUEST_DEADLINE + 10, 0.5)
        check("cap: once mtad dropped them at the deadline, a user's mtactl status is answered again", ok, "")
    finally:
        many.stop()


def main():
    m = MTA(name="control", extra="mynetworks = 127.0.0.1/32\nsmtpd_client_connection_limit = %d\n"
            "smtpd_client_event_limit_exceptions =\n" % CONN_LIMIT)
    m.sock = os.path.join(m.spool, "mtad.sock")
    m.start()
    clients = []
    try:
        check("setup: the control socket is where the man page says", os.path.exists(m.sock), m.sock)
        attempt(lambda: status_while_trickling(m, clients), "trickle")
        attempt(lambda: limit_holds_while_trickling(m, clients), "limit")
        for c in clients:
            c.stop()
        attempt(lambda: huge_request(m), "huge")
        attempt(lambda: silent_client(m), "silent")
        attempt(lambda: connection_cap(m), "cap")
        check("mtad survived every client", m.proc.poll() is None, m.proc.returncode)
    finally:
        for c in clients:
            c.stop()
        m.stop()
    finish()


if __name__ == "__main__":
    sys.exit(main())
