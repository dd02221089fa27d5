"""Shared by the kill matrix (test_kill_matrix.py, in `make check`) and its long random version
(tests/torture, `make torture`): an MTA instance with one process per role, a relayhost sink and
Maildir users, a flow of messages (each in its own SMTP session) whose 250s are recorded, kills of a
role process or of mtad itself, and the count of what arrived.

Counting is by Message-ID: every message has its own, and a copy is a Maildir file (new/ or cur/)
or a body the sink received in full, whether or not its 250 reached mta-smtp. Acknowledged = got 250
at the end of DATA; lost = acknowledged and never arrived; duplicated = copies beyond the first."""
import collections
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtatest  # noqa: E402
from mtatest import MTA, free_port, wait_for  # noqa: E402
from queuetest import ScriptedServer, queue_json  # noqa: E402

# The role programs, in mtad's start order (mta-metrics only with metrics_listen), and mtad itself.
ROLES = ["mta-resolver", "mta-queue", "mta-local", "mta-msgauth", "mta-smtp", "mta-smtpd", "mta-metrics"]
MASTER = "mtad"
ID_RE = re.compile(rb"(?im)^Message-ID:\s*(<[^>]*>)")
SANITIZER_RE = re.compile(r"ERROR: AddressSanitizer|runtime error:|Sanitizer|LeakSanitizer")
LOCAL_USERS = 4


def role_of(program):
    """mtad's and mtactl's name for a role program: mta-queue -> queue."""
    return program[len("mta-"):]


def _stat(pid):
    """(comm, state, ppid, session, starttime) of a process, None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return None
    comm = st[st.index("(") + 1:st.rindex(")")]
    f = st[st.rindex(")") + 2:].split()
    # fields after comm: state(0) ppid(1) pgrp(2) session(3) ... starttime(19)
    return comm, f[0], int(f[1]), int(f[3]), int(f[19])


def session_members(sid):
    """{pid: (comm, starttime)} of the live (not zombie) processes of session sid, sid itself included."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        s = _stat(int(p))
        if s and s[3] == sid and s[1] != "Z":
            out[int(p)] = (s[0], s[4])
    return out


def still_running(recorded):
    """The processes of `recorded` ({pid: (comm, starttime)}) that still run: same pid and start time,
    not a zombie (an orphan's zombie waits for init to reap it, but it runs no more)."""
    out = {}
    for pid, (comm, start) in recorded.items():
        s = _stat(pid)
        if s and s[4] == start and s[1] != "Z":
            out[pid] = comm
    return out


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def port_listed(port):
    """The lines of `ss -ltn` with a socket listening on the port (any address)."""
    try:
        r = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return ["ss failed: %s" % e]
    return [l for l in r.stdout.splitlines() if len(l.split()) >= 4 and l.split()[3].endswith(":%d" % port)]


class Instance:
    """One mtad with one process per role (smtpd_processes = smtp_processes = 1, so a kill hits the one
    process that carries the mail), mta-metrics on a free loopback port, remote mail relayed to a
    ScriptedServer on loopback that takes `sink_delay` seconds per message (so deliveries are in flight
    while mail flows), local mail to Maildirs."""

    def __init__(self, name="kill", sink_delay=0.03, extra=""):
        self.sink = ScriptedServer()
        self.sink_delay = sink_delay  # may be changed at any time
        self.sink.data_fault = lambda accepted, n: time.sleep(self.sink_delay)  # None: accept
        self.metrics_port = free_port()
        self.m = MTA(extra="smtp_processes = 1\nrelayhost = [127.0.0.1]:%d\nmaximal_backoff_time = 2s\n"
                           "delay_warning_time = 0\nmetrics_listen = 127.0.0.1:%d\n%s"
                           % (self.sink.port, self.metrics_port, extra), smtpd_processes=1, name=name)
        self.env = None

    def start(self, env=None):
        self.env = env
        self.m.start(env=env)
        return self

    def close(self):
        try:
            if self.m.proc and self.m.proc.poll() is None:
                self.m.stop()
            elif self.m.proc and not self.m.log.closed:
                self.m.log.close()
        finally:
            self.sink.stop()

    def remove(self):
        shutil.rmtree(self.m.dir, ignore_errors=True)

    # -- processes ------------------------------------------------------------------------------

    def master_running(self):
        return self.m.proc is not None and self.m.proc.poll() is None

    def pids(self, program):
        return self.m.pids(program)

    def status(self):
        """mtactl status as a list of dicts (role, instance, pid, state, restarts ...); [] on failure."""
        try:
            r = self.m.ctl("status")
        except Exception:  # noqa: BLE001 - a timeout counts as no answer
            return []
        rows = []
        for line in r.stdout.splitlines():
            if line.startswith("role="):
                rows.append(dict(kv.split("=", 1) for kv in line.split() if "=" in kv))
        return rows

    def role_rows(self, program):
        return [r for r in self.status() if r.get("role") == role_of(program)]

    def restarted(self, program, old_pids):
        """The role runs again in a new process: mtactl status shows every slot of it running with a pid
        that is none of the killed ones, and that pid is a live child of mtad."""
        rows = self.role_rows(program)
        live = self.pids(program)
        return bool(rows) and all(r.get("state") == "running" and r.get("pid", "-1").isdigit() and
                                  int(r["pid"]) not in old_pids and int(r["pid"]) in live for r in rows)

    def kill_role(self, program, rng=random):
        """SIGKILLs one process of the role; its pid, or None when none runs right now."""
        pids = self.pids(program)
        if not pids:
            return None
        pid = rng.choice(pids)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        return pid

    def kill_master(self, gone_within=5.0):
        """SIGKILLs mtad and watches its children: the result says how long they took to exit, which of
        them (pid -> name) still ran after gone_within seconds, and whether anything still listens on
        the SMTP or the metrics port (a connection is accepted, or ss -ltn lists the port)."""
        mpid = self.m.proc.pid
        before = session_members(mpid)
        before.pop(mpid, None)
        os.kill(mpid, signal.SIGKILL)
        self.m.proc.wait()
        self.m.log.close()
        t0 = time.time()
        left_gone = wait_for(lambda: not still_running(before), gone_within, 0.02)
        took = time.time() - t0
        leftovers = still_running(before)
        # Anything else of the session (a process started after our look, e.g. a restart in flight).
        for pid, (comm, _) in session_members(mpid).items():
            leftovers.setdefault(pid, comm)
        ports = {}
        for label, port in (("smtp", self.m.port), ("metrics", self.metrics_port)):
            ports[label] = {"port": port, "accepts": port_accepts(port), "ss": port_listed(port)}
        return {"children": dict((p, c) for p, (c, _) in before.items()), "took": took if left_gone else None,
                "leftovers": leftovers, "ports": ports}

    def restart_master(self):
        """A new mtad on the same configuration and spool (its log is appended to the same file)."""
        self.m.start(env=self.env)

    # -- what arrived ---------------------------------------------------------------------------

    def deliveries(self):
        """Message-ID -> copies delivered: Maildir files (new/ and cur/) and bodies the sink received."""
        counts = collections.Counter()
        root = self.m.maildir
        if os.path.isdir(root):
            for user in os.listdir(root):
                for sub in ("new", "cur"):
                    d = os.path.join(root, user, sub)
                    try:
                        names = os.listdir(d)
                    except OSError:
                        continue
                    for n in names:
                        try:
                            with open(os.path.join(d, n), "rb") as f:
                                got = ID_RE.search(f.read(8192))
                        except OSError:
                            continue
                        if got:
                            counts[got.group(1).decode()] += 1
        with self.sink.lock:
            counts.update(self.sink.message_ids)
        return counts

    def queue_count(self):
        return queue_json(self.m).get("count")

    def settle(self, acked, timeout=40):
        """Until every acknowledged message arrived and the queue is empty (no retry, so no late
        duplicate, still on its way). True when both happened in time."""
        end = time.time() + timeout
        all_in = wait_for(lambda: all(self.deliveries()[x] for x in acked), max(1, end - time.time()), 0.1)
        empty = wait_for(lambda: self.queue_count() == 0, max(1, end - time.time()), 0.25)
        return bool(all_in) and bool(empty)

    # -- the log --------------------------------------------------------------------------------

    def log_size(self):
        try:
            return os.path.getsize(self.m.log_path)
        except OSError:
            return 0

    def log_since(self, offset):
        return self.m.log_text().encode("utf-8", "replace")[offset:].decode("utf-8", "replace")

    def log_tail(self, offset=0, n=3000):
        """The end of the log since offset, without the lines of our own polling."""
        return "\n".join(l for l in self.log_since(offset).splitlines()
                         if "event=control " not in l and "event=admin " not in l)[-n:]


def sanitizer_lines(text):
    return [l for l in text.splitlines() if SANITIZER_RE.search(l)]


def abnormal_exits(text):
    """(role, how) per role process that ended by a signal or a non-zero status, in log order."""
    return re.findall(r"event=child_exit role=(\S+) instance=\S+ pid=\d+ (signal=\d+|status=[1-9]\d*)", text)


def restarts_scheduled(text):
    return re.findall(r"event=restart_scheduled role=(\S+)", text)


class Flow:
    """Messages, each in its own SMTP session and with its own Message-ID, from `threads` senders at
    once, until `count` of them got 250 (or `max_tries` were tried, or stop()): the even ones to
    Maildir users (klN@localhost), the odd ones relayed (krN@remote.test). A message is acknowledged
    when its DATA got 250; a failed one (refused connection, 421/451, dropped session) is not sent
    again: the next one has a new Message-ID. So the flow goes on through an outage and after it.
    on_ack(flow, n) is called with the number acknowledged so far after each 250 (to time a kill)."""

    def __init__(self, inst, tag, count, threads=2, pace=0.0, on_ack=None, max_tries=None):
        self.inst, self.tag, self.count, self.pace = inst, tag, count, pace
        self.max_tries = max_tries or 4 * count
        self.ids, self.acked, self.failed = [], [], []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.on_ack = on_ack
        self._threads = [threading.Thread(target=self._sender, daemon=True) for _ in range(threads)]

    def rcpt(self, i):
        return "kl%d@localhost" % (i // 2 % LOCAL_USERS) if i % 2 == 0 else "kr%d@remote.test" % (i // 2 % 7)

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        """No new message after the ones being sent now."""
        self.stopped.set()

    def join(self, timeout=120):
        end = time.time() + timeout
        for t in self._threads:
            t.join(max(0.1, end - time.time()))
        return not any(t.is_alive() for t in self._threads)

    def sent(self):
        with self.lock:
            return len(self.ids)

    def _next(self):
        """The number of the next message, or None when the flow is done."""
        with self.lock:
            # Messages being sent now count toward the target: no more than `count` are acknowledged
            # unless some of those fail.
            busy = len(self.ids) - len(self.acked) - len(self.failed)
            if self.stopped.is_set() or len(self.acked) + busy >= self.count or len(self.ids) >= self.max_tries:
                return None
            i = len(self.ids)
            self.ids.append("<kill-%s-%d@test>" % (self.tag, i))
            return i

    def _sender(self):
        while True:
            i = self._next()
            if i is None:
                with self.lock:
                    busy = len(self.ids) - len(self.acked) - len(self.failed)
                    done = self.stopped.is_set() or len(self.acked) >= self.count or len(self.ids) >= self.max_tries
                if done or not busy:
                    return
                self.stopped.wait(0.02)  # the other sender's message may still fail: then one more
                continue
            ok = self.submit(i)
            if not ok or self.pace:
                # After a failure (the role or mtad is down) wait a little, so that the flow does not
                # spend its tries on refusals.
                self.stopped.wait(self.pace if ok else max(self.pace, 0.1))

    def submit(self, i):
        mid, rcpt = self.ids[i], self.rcpt(i)
        body = ("From: <sender@localhost>\r\nTo: <%s>\r\nSubject: kill %s %d\r\nMessage-ID: %s\r\n\r\n"
                "message %d of %s\r\n" % (rcpt, self.tag, i, mid, i, self.tag))
        ok = False
        s = None
        try:
            s = smtplib.SMTP("127.0.0.1", self.inst.m.port, timeout=20)
            s.sendmail("sender@localhost", [rcpt], body.encode())
            ok = True
        except (smtplib.SMTPException, OSError):
            ok = False
        finally:
            if s is not None:
                try:
                    s.quit()
                except (smtplib.SMTPException, OSError):
                    pass
                s.close()
        with self.lock:
            (self.acked if ok else self.failed).append(mid)
            n = len(self.acked)
        if ok and self.on_ack:
            self.on_ack(self, n)
        return ok


def tally(ids, acked, counts):
    """(acknowledged, delivered, lost, duplicated, lost ids) for messages `ids` of which `acked` got
    250, given the copies per Message-ID. Delivered counts messages (acknowledged or not) that arrived
    at least once; duplicated counts the copies beyond the first."""
    lost = [x for x in acked if counts[x] == 0]
    delivered = sum(1 for x in ids if counts[x] > 0)
    dups = sum(counts[x] - 1 for x in ids if counts[x] > 1)
    return len(acked), delivered, len(lost), dups, lost


def summary_line(victim, t):
    return "kill %s: acknowledged %d, delivered %d, lost %d, duplicated %d" % ((victim,) + tuple(t[:4]))


def recycle_ports():
    """Lets the next MTA take the first free port of this process's block again: a long run (the
    torture) starts far more instances than the block has ports, one after the other, each closed
    before the next. (mtatest hands each port out once; free_port still skips any that is bound.)"""
    mtatest._next_port = 10000 + (mtatest._slot % 113) * mtatest.PORTS_PER_SLOT
