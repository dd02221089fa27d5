"""Clock steps (issue 16, item 5): a wall clock that jumps a day back or forward, while the queue runs
or while it is stopped, neither freezes retries nor expires mail early.

libfaketime (Debian's faketime package) is preloaded into mtad and its roles with
FAKETIME_TIMESTAMP_FILE=clockstep, a relative path read at every call; the file exists only in the
queue directory (mta-queue's working directory, then its chroot) and in <spool>/empty (the chroot of
mta-smtpd and mta-smtp), so those see the stepped wall clock and mtad sees the real one. The monotonic clocks are left alone (FAKETIME_DONT_FAKE_MONOTONIC),
as a real step leaves them. The relayhost answers 451 until the test lets it take the message; retries
come every second or two (minimal and maximal backoff 1-2 s).
- a day back while a message waits for its retry: the queue logs the step, mtaqueue shows the times
  on the (stepped) wall clock, and the retry comes within seconds, not a day later;
- a day forward with maximal_queue_lifetime = 1h: the message is not bounced as expired, and is
  delivered when the relayhost takes it;
- three days back while mtad is stopped: the next start logs the step and the retry comes at once;
- throughout, new mail is delivered and nothing is bounced.
It runs the normal build also in make check's ASan pass: libfaketime and the sanitizer runtime do not
start together."""
import json
import os
import re
import smtplib
import sys
import time

# Always the normal build: libfaketime cannot be preloaded into the ASan+UBSan one (the sanitizer runtime
# calls clock_gettime before libfaketime is initialised, and every process hangs at its start).
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ["MTA_BIN_DIR"] = os.path.join(_ROOT, "build", "bin")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtatest import MTA, Guard, check, finish, wait_for  # noqa: E402
from queuetest import ScriptedServer, mtaqueue, relay_config  # noqa: E402

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def faketime_env():
    # A relative path: mta-queue reads it from its queue directory before and after its chroot there.
    return {"LD_PRELOAD": LIBFAKETIME, "FAKETIME_TIMESTAMP_FILE": "clockstep", "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def set_clock(m, offset):
    """The wall clock of mta-queue, mta-smtpd and mta-smtp: libfaketime's offset ("+0", "-1d", ...)."""
    for d in ("queue", "empty"):
        path = os.path.join(m.spool, d, "clockstep")
        with open(path + ".new", "w") as f:
            f.write(offset + "\n")
        os.chmod(path + ".new", 0o644)
        os.rename(path + ".new", path)


def send(m, rcpt, subject):
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        s.sendmail("clock@localhost", [rcpt], ("Subject: %s\r\nMessage-ID: <%s@clock.test>\r\n\r\nhi\r\n"
                                              % (subject, subject)).encode())


def delivered(srv, subject):
    return any(("Subject: %s" % subject).encode() in data for _, _, data in srv.delivered)


def listed(m):
    r = mtaqueue(m, "list", "--json")
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {"error": r.stdout + r.stderr}


def step_while_waiting(m, srv, subject, offset, seconds, what):
    """A message to wait-SUBJECT@remote.test is deferred, then the clock steps by `offset`: the queue logs a
    step matching `seconds` and retries go on. Returns the log offset from before the message."""
    rcpt = "wait-%s@remote.test" % subject
    since = len(m.log_text())
    send(m, rcpt, subject)
    check("%s: the first attempt was deferred" % subject, wait_for(lambda: srv.attempts[rcpt] >= 1, 20))
    set_clock(m, offset)
    stepped = wait_for(lambda: re.search(r"event=clock_step seconds=%s " % seconds, m.log_text()[since:]), 20)
    check("%s: mta-queue logs the step of %s" % (subject, what), stepped, m.log_text()[since:][-1500:])
    attempts = srv.attempts[rcpt]
    check("%s: retries go on after the step" % subject, wait_for(lambda: srv.attempts[rcpt] >= attempts + 2, 20),
          srv.attempts)
    return since


def main(g):
    if not os.path.exists(LIBFAKETIME):
        check("libfaketime is installed (Debian package faketime)", False, LIBFAKETIME)
        return
    taking = set()
    srv = ScriptedServer(lambda rcpt, n: "250 2.1.5 ok" if rcpt in taking or not rcpt.startswith("wait")
                         else "451 4.3.0 not yet")
    m = MTA(name="clock", extra=relay_config(srv) + "maximal_queue_lifetime = 1h\n")
    g.log = m
    g.cleanups += [m.stop, srv.stop]
    m.start()
    m.stop()  # the spool and its chroot directories exist now
    m.proc = None
    set_clock(m, "+0")
    m.start(env=faketime_env())

    # A day back while a message waits for its retry.
    step_while_waiting(m, srv, "back", "-1d", r"-86\d\d\d", "a day back")
    doc = listed(m)
    msg = (doc.get("messages") or [{}])[0]
    now = doc.get("now", 0)
    check("back: mtaqueue's now is the stepped wall clock", abs(now - (time.time() - 86400)) < 60, (now, time.time()))
    check("back: the arrival is shown on that clock (a little before now)", now - 120 <= msg.get("arrival", 0) <= now + 2,
          (msg.get("arrival"), now))
    nxt = [r.get("next_attempt", 0) for r in msg.get("recipients", [])]
    check("back: the next attempt is shown seconds ahead, not a day", nxt and all(now - 5 <= t <= now + 10 for t in nxt),
          (nxt, now))
    taking.add("wait-back@remote.test")
    check("back: the message is delivered within seconds of the relayhost taking it",
          wait_for(lambda: delivered(srv, "back"), 20), srv.attempts)
    send(m, "fresh@remote.test", "fresh-after-back")
    check("back: new mail is delivered", wait_for(lambda: delivered(srv, "fresh-after-back"), 20))

    # A day forward (two from where it was) while a message waits, with a lifetime of an hour.
    since = step_while_waiting(m, srv, "fwd", "+1d", r"17\d\d\d\d", "two days forward")
    log = m.log_text()[since:]
    check("fwd: the message is not bounced as expired", "event=bounced" not in log and "expired" not in log,
          [line for line in log.splitlines() if "bounced" in line or "expired" in line][:3])
    taking.add("wait-fwd@remote.test")
    check("fwd: the message is delivered when the relayhost takes it", wait_for(lambda: delivered(srv, "fwd"), 20))

    # Three days back while mtad is stopped.
    send(m, "wait-down@remote.test", "down")
    check("stopped: the first attempt was deferred", wait_for(lambda: srv.attempts["wait-down@remote.test"] >= 1, 20))
    time.sleep(6)  # the queue saves its clock's anchor at least every 5 s when it changed, and at stop
    m.stop()
    set_clock(m, "-2d")
    since = len(m.log_text())
    m.proc = None
    m.start(env=faketime_env())
    log = m.log_text()[since:]
    check("stopped: the next start logs the step made while it was stopped",
          re.search(r"event=clock_step seconds=-25\d\d\d\d offset=\S+ reason=\"the wall clock jumped while the queue "
                    r"was stopped\"", log) is not None, log[-1500:])
    taking.add("wait-down@remote.test")
    check("stopped: the deferred message is retried and delivered at once", wait_for(lambda: delivered(srv, "down"), 20),
          srv.attempts)
    send(m, "fresh@remote.test", "fresh-after-restart")
    check("stopped: new mail is delivered", wait_for(lambda: delivered(srv, "fresh-after-restart"), 20))
    doc = listed(m)
    check("the queue is empty at the end", doc.get("count") == 0, doc)
    log = m.log_text()
    check("nothing was bounced", "event=bounced" not in log and "event=dsn_queued" not in log, "")
    check("no sanitizer report", "ERROR: AddressSanitizer" not in log and "runtime error:" not in log, "")


if __name__ == "__main__":
    with Guard("clock_step") as guard:
        main(guard)
    finish()
