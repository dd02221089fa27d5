"""Crash consistency at every named crash point (issue 16; the points are listed in mta-queue(8), CRASH
POINTS). For each point a fresh mtad runs with MTA_CRASH_POINT=<point> in its environment: the first
process that reaches the point logs event=crash_point and dies by SIGKILL, mtad restarts it without the
variable, and the restarted role recovers. A few messages go through, each in its own SMTP session; the
ones that got 250 are the acknowledged ones. Then, per point:
- the crash happened once, the role was restarted, and no other process died;
- every acknowledged message was delivered at least once, an unacknowledged one at most once, none more
  than twice; duplicates are counted (a Message-ID seen twice) and reported: they are expected only
  where the delivery was done and its result not yet recorded (smtp.after_remote_250, local.after_rename
  and a queue transaction that carried a delivery result);
- the queue is empty and consistent: `mtaqueue list` and `mtactl stats` agree on 0 messages, nothing is
  corrupt or quarantined, no body file is left without its record;
- mtad still runs and no sanitizer report is in the log.
One line per point sums it up: "point X: acknowledged A, delivered D, lost L, duplicated U".
MTA_CRASH_ONLY=point[,point...] runs only those (a point's name, or a label such as
queue.txn.before_commit(result)).
The points exist only in test builds (ASan+UBSan build-asan, or FAULT=1): against a normal build the
suite says so in a single PASS line and stops."""
import collections
import email
import json
import os
import re
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtatest import BIN, MTA, check, finish, free_port, wait_for  # noqa: E402
from queuetest import mtaqueue, queue_json  # noqa: E402
from smtpsink import Sink  # noqa: E402

MESSAGES = 5
# One process per role: a sibling started with the variable keeps it after mtad drops it, and would
# crash a second time at its own first pass (mtad drops the variable only for the processes it starts
# later). With one process per role, each scenario has exactly one crash at a known step.
BASE = "smtp_processes = 1\nmaximal_backoff_time = 2s\ndelay_warning_time = 0\n"
ID_RE = re.compile(rb"(?im)^Message-ID:\s*<(crash-[^>]+)>")


def compiled_in():
    """True if this build has the crash points (the normal build has none)."""
    try:
        with open(os.path.join(BIN, "mta-queue"), "rb") as f:
            return b"event=crash_point" in f.read()
    except OSError:
        return False


class Scenario:
    """One crash point against one fresh mtad. kind: "local" (Maildir recipients), "relay" (a sink as
    relayhost), "bounce" (the relayhost refuses every recipient: each message comes back as a DSN)."""

    def __init__(self, point, role, kind, skip=0, dups_allowed=False, label=None):
        self.point, self.role, self.kind, self.skip = point, role, kind, skip
        self.dups_allowed = dups_allowed
        self.label = label or point
        self.tag = re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")
        self.ids = ["crash-%s-%d@test" % (self.tag, i) for i in range(MESSAGES)]
        self.acked = {}
        self.sink = None
        self.m = None
        self.summary = None  # (acknowledged, delivered, lost, duplicated) once judged

    # -- setup ----------------------------------------------------------------------------------

    def env(self):
        e = {"MTA_CRASH_POINT": self.point}
        if self.skip:
            e["MTA_CRASH_SKIP"] = str(self.skip)
        return e

    def make(self, relay_port=None):
        extra = BASE
        if relay_port:
            extra += "relayhost = [127.0.0.1]:%d\n" % relay_port
        self.m = MTA(extra=extra, smtpd_processes=1, name=self.tag[:20])
        return self.m

    def start_sink(self, port):
        self.sink = Sink("127.0.0.1", port)

    # -- mail -----------------------------------------------------------------------------------

    def rcpt(self, i):
        if self.kind == "local":
            return "crash%d@localhost" % i
        if self.kind == "bounce":
            return "reject%d@remote.test" % i
        return "crash%d@remote.test" % i

    def sender(self):
        return "dsn-%s@localhost" % self.tag[:30] if self.kind == "bounce" else "sender@localhost"

    def submit(self, i):
        """One message in its own session: True when it got 250 (acknowledged)."""
        body = ("From: <%s>\r\nTo: <%s>\r\nSubject: crash %s %d\r\nMessage-ID: <%s>\r\n\r\nmessage %d of %s\r\n"
                % (self.sender(), self.rcpt(i), self.label, i, self.ids[i], i, self.label))
        try:
            with smtplib.SMTP("127.0.0.1", self.m.port, timeout=15) as s:
                s.sendmail(self.sender(), [self.rcpt(i)], body.encode())
            ok = True
        except (smtplib.SMTPException, OSError):
            ok = False
        self.acked[i] = ok
        return ok

    def copies(self):
        """Every delivered copy as (Message-ID or None, whole). Local: files in the Maildirs (new/ and
        cur/); relay: bodies the sink accepted; bounce: DSNs in the sender's Maildir, each naming the
        message it returns. Whole: a message ends with its own last line, a DSN is a multipart/report
        whose closing boundary is there."""
        out = []
        if self.kind == "relay":
            with self.sink.lock:
                datas = [t["data"] for t in self.sink.tx]
        else:
            datas = []
            for path in self.maildir_files():
                try:
                    with open(path, "rb") as f:
                        datas.append(f.read())
                except OSError:
                    continue
        for data in datas:
            if self.kind == "bounce":
                # The returned message (or its headers) carries the original Message-ID.
                mid = next((x for x in self.ids if ("<%s>" % x).encode() in data), None)
                msg = email.message_from_bytes(data)
                boundary = msg.get_param("boundary")
                whole = (msg.get_content_type() == "multipart/report" and boundary is not None and
                         ("\n--%s--" % boundary).encode() in data)  # Maildir files have LF line ends
            else:
                got = ID_RE.search(data)
                mid = got.group(1).decode() if got else None
                last = ("message %d of %s" % (self.ids.index(mid), self.label)).encode() if mid in self.ids else None
                whole = last is not None and data.rstrip(b"\r\n").endswith(last)
            out.append((mid, whole))
        return out

    def deliveries(self):
        """Message-ID -> times delivered."""
        return collections.Counter(mid for mid, _ in self.copies() if mid)

    def maildir_files(self):
        out = []
        root = self.m.maildir
        if not os.path.isdir(root):
            return out
        for user in os.listdir(root):
            if self.kind == "bounce" and user != self.sender().split("@")[0]:
                continue
            for sub in ("new", "cur"):
                d = os.path.join(root, user, sub)
                if os.path.isdir(d):
                    out.extend(os.path.join(d, x) for x in os.listdir(d))
        return out

    # -- the log --------------------------------------------------------------------------------

    def log_tail(self, n=3000):
        """The end of mtad's log without the lines of our own polling (mtaqueue list, mtactl stats)."""
        return "\n".join(l for l in self.m.log_text().splitlines()
                         if "event=control " not in l and "event=admin " not in l)[-n:]

    def crashes(self):
        return self.m.log_text().count("event=crash_point point=%s " % self.point)

    def restarted(self):
        """The role said ready again after the (first) crash."""
        log = self.m.log_text()
        at = log.find("event=crash_point point=%s " % self.point)
        return at >= 0 and re.search(r"event=ready role=%s " % self.role, log[at:]) is not None

    def send_all(self):
        """The messages one after another, each let through before the next, so that the crash hits the
        step of a known message; after the crash, the next one waits for the restarted role."""
        for i in range(MESSAGES):
            before = self.crashes()
            ok = self.submit(i)
            if ok:
                wait_for(lambda: self.deliveries()[self.ids[i]] or self.crashes() > before, 10)
            else:
                wait_for(lambda: self.crashes() > before, 2)
            if self.crashes() > before:
                wait_for(self.restarted, 15)

    # -- outcome --------------------------------------------------------------------------------

    def queue_count(self):
        return queue_json(self.m).get("count")

    def settle(self):
        """Until the crash happened, its role is back, every acknowledged message arrived and the queue
        is empty (so no retry, and no duplicate, is still on its way)."""
        wait_for(lambda: self.crashes() > 0, 10)
        wait_for(self.restarted, 15)
        acked = [self.ids[i] for i, ok in self.acked.items() if ok]
        wait_for(lambda: all(self.deliveries()[x] for x in acked), 30, 0.1)
        wait_for(lambda: self.queue_count() == 0, 20, 0.2)

    def stats_messages(self):
        r = self.m.ctl("stats")
        got = re.search(r"(?m)^mta_queue_messages (\d+)", r.stdout)
        return int(got.group(1)) if got else None

    def bodies_with_data(self):
        """Body files with data while the queue holds no message: bodies nothing refers to. (The queue
        keeps a pool of empty files ready for smtpd; those are not counted.)"""
        d = os.path.join(self.m.spool, "queue", "body")
        out = []
        try:
            for name in os.listdir(d):
                p = os.path.join(d, name)
                if name != "space-probe" and os.path.isfile(p) and os.path.getsize(p) > 0:
                    out.append(name)
        except OSError as e:
            out.append(str(e))
        return out

    def judge(self):
        name = self.label
        log = self.m.log_text()
        n_crash = self.crashes()
        check("%s: the crash point was reached and its process killed" % name,
              n_crash >= 1 and re.search(r"event=child_exit role=%s .*signal=9" % self.role, log) is not None,
              "crash lines %d; log end:\n%s" % (n_crash, self.log_tail()))
        check("%s: exactly one crash (no sibling or restarted process crashed again)" % name, n_crash == 1,
              "%d crash lines" % n_crash)
        check("%s: the %s role was restarted and is ready" % (name, self.role), self.restarted(),
              "\n".join(l for l in log.splitlines() if "role=%s" % self.role in l)[-2000:])
        # Every abnormal end of a role (a signal, or a non-zero exit) and every restart: the crash and its
        # one restart only, no restart loop.
        ended = re.findall(r"event=child_exit role=(\S+) instance=\S+ pid=\d+ (signal=\d+|status=[1-9]\d*)", log)
        restarts = re.findall(r"event=restart_scheduled role=(\S+)", log)
        check("%s: no other process ended, one restart" % name,
              ended == [(self.role, "signal=9")] * n_crash and restarts == [self.role] * n_crash,
              "ended %r, restarts %r" % (ended, restarts))
        counts = self.deliveries()
        acked = [x for i, x in enumerate(self.ids) if self.acked.get(i)]
        unacked = [x for i, x in enumerate(self.ids) if not self.acked.get(i)]
        lost = [x for x in acked if counts[x] == 0]
        broken = [c for c in self.copies() if not (c[0] and c[1])]
        check("%s: every delivered copy is whole and names its message" % name, not broken, broken)
        dups = sum(counts[x] - 1 for x in self.ids if counts[x] > 1)
        delivered = sum(1 for x in self.ids if counts[x] > 0)
        check("%s: every acknowledged message delivered at least once (%d of %d acknowledged)"
              % (name, len(acked) - len(lost), len(acked)), not lost and acked,
              "lost %r; counts %r; log end:\n%s" % (lost, dict(counts), self.log_tail()))
        check("%s: no unacknowledged message delivered more than once (%d unacknowledged, %d of them delivered)"
              % (name, len(unacked), sum(1 for x in unacked if counts[x])), all(counts[x] <= 1 for x in unacked),
              {x: counts[x] for x in unacked})
        if self.dups_allowed:
            check("%s: no message delivered more than twice (%d duplicate%s: the window after the delivery, "
                  "before the queue recorded it)" % (name, dups, "" if dups == 1 else "s"),
                  all(counts[x] <= 2 for x in self.ids), dict(counts))
        else:
            check("%s: no duplicates (%d)" % (name, dups), dups == 0, dict(counts))
        listed, stats = self.queue_count(), self.stats_messages()
        check("%s: the queue is empty: mtaqueue list and mtactl stats agree on 0 messages" % name,
              listed == 0 and stats == 0, "list count %r, stats mta_queue_messages %r; %r"
              % (listed, stats, queue_json(self.m)))
        r = mtaqueue(self.m, "list", "--corrupt", "--json")
        try:
            doc = json.loads(r.stdout)
        except ValueError:
            doc = {}
        check("%s: nothing corrupt or quarantined" % name,
              doc.get("count") == 0 and doc.get("quarantined_records") == 0 and "event=corrupt" not in log,
              r.stdout + r.stderr + "\n".join(l for l in log.splitlines() if "event=corrupt" in l))
        orphans = self.bodies_with_data()
        check("%s: no body file left without a record" % name, not orphans, orphans)
        check("%s: mtad still runs" % name, self.m.proc.poll() is None, self.m.proc.returncode)
        bad = [l for l in log.splitlines() if "ERROR: AddressSanitizer" in l or "runtime error:" in l
               or "Sanitizer" in l]
        check("%s: no sanitizer report in the log" % name, not bad, "\n".join(bad[:20]))
        self.summary = (len(acked), delivered, len(lost), dups)
        print("point %s: acknowledged %d, delivered %d, lost %d, duplicated %d" % ((name,) + self.summary), flush=True)

    def close(self):
        if self.m is not None:
            self.m.stop()
        if self.sink is not None:
            self.sink.close()


def run(sc):
    """A point whose crash comes while new mail flows."""
    t0 = time.time()
    try:
        port = None
        if sc.kind in ("relay", "bounce"):
            port = free_port()
            sc.start_sink(port)
        sc.make(port).start(env=sc.env())
        sc.send_all()
        sc.settle()
        sc.judge()
    except Exception as e:  # noqa: BLE001 - one FAIL line, the other points still run
        check("%s: scenario ran" % sc.label, False, "%s: %s\n%s" % (type(e).__name__, e,
              sc.log_tail() if sc.m else ""))
    finally:
        sc.close()
        print("%s: %.1fs" % (sc.label, time.time() - t0), flush=True)


def run_recovery(sc):
    """queue.recovery: the queue must hold messages when it starts. They are queued for a relayhost that
    does not answer yet (deferred), mtad is stopped, the relayhost comes up, and mtad starts again with
    the crash point: the queue dies while walking its records, and its restart walks them again."""
    t0 = time.time()
    try:
        port = free_port()
        m = sc.make(port).start()
        for i in range(MESSAGES):
            sc.submit(i)
        acked = [x for i, x in enumerate(sc.ids) if sc.acked[i]]
        wait_for(lambda: queue_json(m).get("count") == len(acked), 10, 0.2)
        check("%s: messages queued before the restart (%d)" % (sc.label, len(acked)),
              queue_json(m).get("count") == len(acked) and acked, queue_json(m))
        # The same look that finds orphans later must see the bodies of the queued messages now.
        check("%s: the body files of the queued messages are seen" % sc.label,
              len(sc.bodies_with_data()) == len(acked), sc.bodies_with_data())
        m.stop()
        sc.start_sink(port)
        m.start(env=sc.env())
        sc.settle()
        sc.judge()
        recovered = re.findall(r"event=recovered messages=(\d+)", m.log_text())
        check("%s: the restarted queue recovered every queued message" % sc.label,
              len(recovered) >= 2 and int(recovered[-1]) == len(acked), recovered)
    except Exception as e:  # noqa: BLE001
        check("%s: scenario ran" % sc.label, False, "%s: %s\n%s" % (type(e).__name__, e,
              sc.log_tail() if sc.m else ""))
    finally:
        sc.close()
        print("%s: %.1fs" % (sc.label, time.time() - t0), flush=True)


SCENARIOS = [
    Scenario("smtpd.body.written", "smtpd", "local"),
    Scenario("smtpd.before_250", "smtpd", "local"),
    Scenario("queue.commit.after_sync", "queue", "local"),
    # Pass 0 is the first message's commit; pass 1 its delivery result (delivered, not yet recorded).
    Scenario("queue.txn.before_commit", "queue", "local", label="queue.txn.before_commit(commit)"),
    Scenario("queue.txn.before_commit", "queue", "local", skip=1, dups_allowed=True,
             label="queue.txn.before_commit(result)"),
    Scenario("queue.commit.before_ok", "queue", "local"),
    Scenario("queue.dsn.mid_write", "queue", "bounce"),
    Scenario("queue.recovery", "queue", "relay"),
    Scenario("smtp.after_remote_250", "smtp", "relay", dups_allowed=True),
    Scenario("local.after_rename", "local", "local", dups_allowed=True),
]


def main():
    if not compiled_in():
        check("crash points not compiled in (normal build: %s): skipped" % BIN, True)
        finish()
    t0 = time.time()
    only = [x for x in os.environ.get("MTA_CRASH_ONLY", "").split(",") if x]  # e.g. local.after_rename
    ran = [sc for sc in SCENARIOS if not only or sc.point in only or sc.label in only]
    if only:
        check("crash points: MTA_CRASH_ONLY names known points", ran, only)
    for sc in ran:
        (run_recovery if sc.point == "queue.recovery" else run)(sc)
    judged = [sc.summary for sc in ran if sc.summary]
    print("crash points: %d scenarios (%d judged), acknowledged %d, delivered %d, lost %d, duplicated %d, %.1fs"
          % ((len(ran), len(judged)) + tuple(sum(x[k] for x in judged) for k in range(4)) + (time.time() - t0,)),
          flush=True)
    finish()


if __name__ == "__main__":
    main()
