#!/usr/bin/python3
"""Benchmark harness: the same workloads against our MTA and a private Postfix instance on this machine,
both relaying to Postfix's smtp-sink on loopback. Prints a table; exits non-zero only when the harness
itself failed (a system did not start, a phase timed out, the sink count differs from what was accepted).
Timings are reported, never asserted. See tests/bench/README.md for what each figure means."""
import argparse
import ctypes
import json
import os
import platform
import re
import resource
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procstat  # noqa: E402
import smtpload  # noqa: E402
import systems  # noqa: E402
from systems import HarnessError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STALL = 30.0      # a phase fails when nothing moves for this long
PHASE_CAP = 240.0  # and in any case after this long
DEADLINE = [float("inf")]  # and when the run's time budget is used up (set in main)


def phase_end(start):
    return min(start + PHASE_CAP, DEADLINE[0])


# key, label, message size, concurrent sessions, recipients, messages via smtp-source, via the latency client;
# dkim: both systems sign (ours in mta-msgauth, Postfix through OpenDKIM) with one key of that type;
# milter: each system runs twice, without and then with accept_milter.py in smtpd_milters.
WORKLOADS = [
    dict(key="4k", label="4 KiB x 20 sessions, 1 rcpt", size=4096, sessions=20, rcpts=1, n=5000, nlat=1500),
    dict(key="100k", label="100 KiB x 20 sessions, 1 rcpt", size=102400, sessions=20, rcpts=1, n=1500, nlat=500),
    dict(key="4k-10rcpt", label="4 KiB x 20 sessions, 10 rcpts", size=4096, sessions=20, rcpts=10, n=2000,
         nlat=600),
    dict(key="4k-dkim-rsa", label="4 KiB x 20 sessions, DKIM RSA-2048", size=4096, sessions=20, rcpts=1, n=3000,
         nlat=1000, dkim="rsa"),
    dict(key="4k-dkim-ed25519", label="4 KiB x 20 sessions, DKIM Ed25519", size=4096, sessions=20, rcpts=1,
         n=3000, nlat=1000, dkim="ed25519"),
    dict(key="4k-milter", label="4 KiB x 20 sessions, 1 milter", size=4096, sessions=20, rcpts=1, n=1500,
         nlat=500, milter=True),
    dict(key="idle", label="1000 idle connections", conns=1000),
    # Ours only, run twice: as `4k`, then with metrics_listen set and /metrics fetched every second.
    dict(key="4k-metrics", label="4 KiB x 20 sessions, 1 rcpt", size=4096, sessions=20, rcpts=1, n=5000,
         nlat=1500, metrics=True),
    # Ours only: `queued` messages put into the stopped queue by fill-queue, then mtad restarted (the label
    # is set in main once the count is scaled).
    dict(key="backlog", label="backlog", queued=1000000, backlog=True),
]
# The columns of the metrics-cost workload: (result key, with metrics).
METRICS_VARIANTS = [("ours", False), ("ours+metrics", True)]
# The milter workload's result keys are the system's name, and with "+milter" for the run with the milter.
MILTER_SUFFIX = "+milter"
DKIM_DOMAIN = "client.test"  # the From: domain of smtp-source's messages (-f bench@client.test)


def log(msg):
    print("bench: %s" % msg, file=sys.stderr, flush=True)


def become_subreaper():
    """Daemons started by `postfix start` detach; as a child subreaper we can still reap them."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def interrupted(signum, frame):
    raise KeyboardInterrupt()


def wait_sink(sink, expected, what):
    """Until the sink has `expected` messages; fails after STALL seconds without progress."""
    start = last_change = time.time()
    last = -1
    while True:
        c = sink.count()
        now = time.time()
        if c >= expected:
            return now, c
        if c != last:
            last, last_change = c, now
        if now - last_change > STALL or now > phase_end(start):
            why = ("no progress for %.0fs" % (now - last_change) if now - last_change > STALL
                   else "phase time limit or run budget reached")
            raise HarnessError("%s: timeout waiting for the sink: it has %d of %d messages (%s)"
                               % (what, c, expected, why))
        time.sleep(0.02)


def check_exact(sink, expected, what):
    """After the expected count arrived, nothing more may trickle in (duplicates, split transactions)."""
    time.sleep(1.0)
    c = sink.count()
    if c != expected:
        raise HarnessError("%s: sink received %d messages but %d were accepted" % (what, c, expected))


def read_counter(path):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 64))
            parts = f.read().replace(b"\n", b"\r").split(b"\r")
    except OSError:
        return 0
    for p in reversed(parts):
        if p.strip().isdigit():
            return int(p.strip())
    return 0


def smtp_source(system, wl, workdir):
    """Runs smtp-source to completion; returns (accepted, seconds). Killed when it stalls."""
    out_path = os.path.join(workdir, "source-%s-%s.out" % (system.name, wl["key"]))
    cmd = ["smtp-source", "-c", "-N", "-m", str(wl["n"]), "-s", str(wl["sessions"]), "-l", str(wl["size"]),
           "-r", str(wl["rcpts"]), "-f", "bench@" + DKIM_DOMAIN, "-t", "rcpt@sink.test", "-M", "client.test",
           "-S", "bench", "127.0.0.1:%d" % system.port]
    with open(out_path, "wb") as out:
        t0 = time.time()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        last, last_change = -1, t0
        try:
            while p.poll() is None:
                time.sleep(0.05)
                c, now = read_counter(out_path), time.time()
                if c != last:
                    last, last_change = c, now
                if now - last_change > STALL or now > phase_end(t0):
                    raise HarnessError("smtp-source stalled at %d of %d messages; killed" % (c, wl["n"]))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        elapsed = time.time() - t0
    accepted = read_counter(out_path)
    if p.returncode != 0:
        with open(out_path, "rb") as f:
            tail = f.read().decode("latin-1").replace("\r", "\n").strip().splitlines()[-3:]
        raise HarnessError("smtp-source failed (rc=%d) after %d messages: %s" % (p.returncode, accepted,
                                                                                " | ".join(tail)))
    return wl["n"], elapsed


def throughput_workload(system, sink, wl, workdir):
    res = {}
    what = "%s/%s" % (system.name, wl["key"])
    # Phase 1: smtp-source for the throughput, CPU and memory figures.
    procs0 = system.procs()
    with procstat.PeakMemory(system.procs) as peak:
        t0 = time.time()
        accepted, src_secs = smtp_source(system, wl, workdir)
        t_done, _ = wait_sink(sink, accepted, what + " smtp-source phase")
        procs1 = system.procs()
        if not procs1:
            raise HarnessError("%s: the system died during the run" % what)
    check_exact(sink, accepted, what)
    res["accepted_per_s"] = accepted / src_secs
    res["e2e_per_s"] = accepted / (t_done - t0)
    res["cpu_s_per_1000"] = (procstat.cpu_seconds(procs1) - procstat.cpu_seconds(procs0)) / accepted * 1000.0
    # The same split by process name (JSON only): which role a change in the total comes from.
    by = {}
    for procs, sign in ((procs1, 1), (procs0, -1)):
        for p in procs.values():
            by[p.comm] = by.get(p.comm, 0.0) + sign * p.ticks / procstat.HZ
    res["cpu_s_per_1000_by_process"] = {c: round(v / accepted * 1000.0, 3) for c, v in sorted(by.items()) if v}
    if wl.get("dkim"):
        # The signer alone: mta-msgauth for ours, the opendkim milter for Postfix.
        def signer(procs):
            return procstat.cpu_seconds({k: p for k, p in procs.items() if p.comm == system.signer_comm})
        res["sign_cpu_ms"] = (signer(procs1) - signer(procs0)) / accepted * 1000.0
        res["signed"], res["verified"] = systems.check_signed(sink.dump_dir, wl["key_obj"])
    if system.milter:
        # The milter process alone (it is part of the CPU figure above, for both systems).
        mpid = system.milter.pid()

        def milter_cpu(procs):
            return procstat.cpu_seconds({k: p for k, p in procs.items() if k == mpid})
        res["milter_cpu_ms"] = (milter_cpu(procs1) - milter_cpu(procs0)) / accepted * 1000.0
    res["peak_rss_mib"] = peak.peak_rss / 1048576.0
    res["peak_pss_mib"] = peak.peak_pss / 1048576.0
    res["messages"] = accepted
    # Phase 2: our own client, same shape, for the final-dot latency.
    if wl["nlat"]:
        r = smtpload.run_load("127.0.0.1", system.port, wl["nlat"], wl["sessions"], wl["size"], wl["rcpts"],
                              timeout=STALL, deadline=phase_end(time.time()))
        if r["failed"] or r["accepted"] != wl["nlat"]:
            raise HarnessError("%s latency phase: %d accepted, %d failed: %s" % (what, r["accepted"], r["failed"],
                                                                                "; ".join(r["errors"])))
        wait_sink(sink, accepted + r["accepted"], what + " latency phase")
        check_exact(sink, accepted + r["accepted"], what + " latency phase")
        res["p50_ms"] = smtpload.percentile(r["latencies"], 50) * 1000
        res["p99_ms"] = smtpload.percentile(r["latencies"], 99) * 1000
        res["lat_client_per_s"] = r["accepted"] / r["elapsed"]
    if system.milter:
        res.update(check_milter(system.milter, accepted + (wl["nlat"] or 0), wl["rcpts"], what))
    return res


def check_milter(milter, expected, rcpts, what):
    """Every message of both phases went through every stage of the milter: exactly one end of message
    each, and at least one MAIL, DATA, header field, end of header and body chunk each (and a RCPT per
    recipient). Returns the milter's figures; raises HarnessError otherwise."""
    end = time.time() + 5.0  # the milter writes its counts a few times a second
    st = milter.stats()
    while st.get("eom", 0) < expected and time.time() < end:
        time.sleep(0.1)
        st = milter.stats()
    time.sleep(0.5)  # and nothing more may come
    st = milter.stats()
    want = dict(eom=expected, envfrom=expected, envrcpt=expected * rcpts, data=expected, header=expected,
                eoh=expected, body=expected, connect=1, helo=1)
    short = ["%s %d (want %s%d)" % (k, st.get(k, 0), "" if k == "eom" else ">= ", v) for k, v in want.items()
             if st.get(k, 0) < v or (k == "eom" and st.get(k, 0) != v)]
    if short:
        raise HarnessError("%s: the milter did not see every message at every stage (%d accepted): %s"
                           % (what, expected, ", ".join(short)))
    return dict(milter_connect=st["connect"], milter_eom=st["eom"],
                milter_headers_per_msg=st["header"] / float(expected),
                milter_body_kib_per_msg=st.get("body_bytes", 0) / 1024.0 / expected, milter_stats=st)


def idle_workload(system, wl):
    snap = system.procs()
    before = dict(smtpd_rss=procstat.rss_bytes(snap, system.smtpd_comm),
                  smtpd_pss=procstat.pss_bytes(snap, system.smtpd_comm),
                  tree_rss=procstat.rss_bytes(snap), tree_pss=procstat.pss_bytes(snap))
    timeout = max(5.0, min(90.0, DEADLINE[0] - time.time()))
    conns = smtpload.IdleConnections("127.0.0.1", system.port, wl["conns"], timeout=timeout)
    try:
        t0 = time.time()
        try:
            ready = conns.open()
        except smtpload.SmtpError as e:
            raise HarnessError("%s/idle: %s" % (system.name, e))
        if ready != wl["conns"]:
            raise HarnessError("%s/idle: only %d of %d connections got their 220 and EHLO reply within %.0fs"
                               % (system.name, ready, wl["conns"], timeout))
        open_secs = time.time() - t0
        time.sleep(1.0)
        snap = system.procs()
        after = dict(smtpd_rss=procstat.rss_bytes(snap, system.smtpd_comm),
                     smtpd_pss=procstat.pss_bytes(snap, system.smtpd_comm),
                     tree_rss=procstat.rss_bytes(snap), tree_pss=procstat.pss_bytes(snap))
        nsmtpd = sum(1 for p in snap.values() if p.comm == system.smtpd_comm)
    finally:
        conns.close()
    n = float(wl["conns"])
    return dict(smtpd_rss_before_mib=before["smtpd_rss"] / 1048576.0, smtpd_rss_after_mib=after["smtpd_rss"] / 1048576.0,
                rss_kib_per_conn=(after["smtpd_rss"] - before["smtpd_rss"]) / n / 1024,
                pss_kib_per_conn=(after["smtpd_pss"] - before["smtpd_pss"]) / n / 1024,
                tree_pss_kib_per_conn=(after["tree_pss"] - before["tree_pss"]) / n / 1024,
                smtpd_processes=nsmtpd, open_secs=open_secs)


class Direct:
    """smtp-source straight into the sink: the client's own ceiling for a workload."""
    name = "direct"

    def __init__(self, port):
        self.port = port


def client_ceiling(wl, workdir, live):
    sink = systems.Sink(workdir)
    live.append(sink)
    try:
        sink.start()
        accepted, secs = smtp_source(Direct(sink.port), wl, workdir)
        wait_sink(sink, accepted, "direct/%s" % wl["key"])
        return accepted / secs
    finally:
        sink.stop()
        live.remove(sink)


def scraped_workload(system, sink, wl, workdir):
    """throughput_workload while a scraper GETs /metrics every second; every GET must succeed."""
    with smtpload.MetricsScraper(system.metrics_port) as scraper:
        res = throughput_workload(system, sink, wl, workdir)
    if scraper.errors or not scraper.times:
        raise HarnessError("%s/%s: %d of %d GET /metrics failed: %s"
                           % (system.name, wl["key"], len(scraper.errors), len(scraper.errors) + len(scraper.times),
                              "; ".join(scraper.errors[:3]) or "none was made"))
    res["scrapes"] = len(scraper.times)
    res["scrape_p50_ms"] = smtpload.percentile(scraper.times, 50) * 1000
    res["scrape_max_ms"] = max(scraper.times) * 1000
    res["scrape_samples"] = scraper.samples
    return res


# The backlog workload (ours only): a queue with `queued` messages deferred for a day, restarted.
FILL_QUEUE = os.path.join(ROOT, "build", "tests", "fill-queue")  # tests/tools/fill_queue.cpp, `make test-tools`
PROBE_LIMIT = 120.0  # a probe must get its 250 within this long of the (re)start, and reach the sink as long after
PROBE_FROM, PROBE_TO = "bench@" + DKIM_DOMAIN, "probe@remote.test"  # relayed to the sink like everything else


def proc_status_kib(pid, fields=("RssAnon", "RssFile")):
    """Those fields of /proc/PID/status, in KiB ({} when the process is gone)."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in fields:
                    out[k] = int(v.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out


def queue_pid(system):
    """The live mta-queue among mtad's children (by comm, as procstat names processes)."""
    root = system.root_pid()
    pids = [p.pid for p in procstat.tree(root).values() if p.comm == "mta-queue" and p.state not in ("Z", "X")] \
        if root else []
    if not pids:
        raise HarnessError("ours/backlog: no mta-queue process below mtad")
    return pids[0]


class LogWatch:
    """The first line of our mtad.log that contains `needle` and was written after `offset` (the log's size
    just before the start or crash being timed); each poll() reads only what is new."""

    def __init__(self, path, offset, needle):
        self.path, self.pos, self.needle = path, offset, needle.encode()
        self.partial, self.line = b"", None

    def poll(self):
        if self.line is None:
            try:
                with open(self.path, "rb") as f:
                    f.seek(self.pos)
                    data = f.read()
            except OSError:
                return None
            self.pos += len(data)
            lines = (self.partial + data).split(b"\n")
            self.partial = lines.pop()
            for line in lines:
                if self.needle in line:
                    self.line = line.decode("utf-8", "replace")
                    break
        return self.line


class FirstTimes:
    """Polls named conditions in a background thread every `interval` until each has held once;
    .at[name] is the time it was first seen to hold."""

    def __init__(self, conds, interval=0.02):
        self.conds, self.interval, self.at = conds, interval, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set() and len(self.at) < len(self.conds):
            for name, cond in self.conds.items():
                if name not in self.at and cond():
                    self.at[name] = time.time()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


class Prober:
    """Sends one probe message per attempt with smtplib until one gets 250 to its final dot. `sent` counts
    the probes accepted, `unclear` the attempts that broke off without a reply (one of those may still
    have been accepted, so the sink may have it)."""

    def __init__(self, port):
        self.port, self.sent, self.unclear, self.attempts = port, 0, 0, 0

    def send_until_accepted(self, tag, t0, limit, alive, interval=0.05):
        """Returns the time the 250 arrived. Connection refused, a 4xx or 5xx reply or a broken-off
        session count as "not yet"; HarnessError when mtad exits or `limit` passes."""
        last = "no attempt made"
        while True:
            if not alive():
                raise HarnessError("ours/backlog: mtad exited while probe %s was being sent" % tag)
            if time.time() > limit:
                raise HarnessError("ours/backlog: probe %s got no 250 to its final dot within %.0fs (%d attempts, "
                                   "last: %s)" % (tag, limit - t0, self.attempts, last))
            self.attempts += 1
            msg = ("From: <%s>\r\nTo: <%s>\r\nSubject: backlog probe %s\r\nMessage-ID: <probe-%s.%d@%s>\r\n\r\n"
                   "Sent while the backlog is being recovered.\r\n"
                   % (PROBE_FROM, PROBE_TO, tag, tag, self.attempts, DKIM_DOMAIN))
            c = smtplib.SMTP(local_hostname=DKIM_DOMAIN, timeout=10)
            try:
                c.connect("127.0.0.1", self.port)
                c.sendmail(PROBE_FROM, [PROBE_TO], msg)
                t = time.time()
                self.sent += 1
                try:
                    c.quit()
                except (OSError, smtplib.SMTPException):
                    pass
                return t
            except ConnectionRefusedError as e:
                last = "connection refused (%s)" % e
            except smtplib.SMTPResponseException as e:
                last = "%d %s" % (e.smtp_code, e.smtp_error.decode("latin-1", "replace")
                                  if isinstance(e.smtp_error, bytes) else e.smtp_error)
            except smtplib.SMTPRecipientsRefused as e:
                last = "recipient refused: %s" % e.recipients
            except (OSError, smtplib.SMTPException) as e:
                self.unclear += 1
                last = "%s: %s" % (type(e).__name__, e)
            finally:
                c.close()
            time.sleep(interval)


def timed_recovery(system, sink, prober, tag, t0, offset):
    """After the start or crash at t0 (the log had `offset` bytes then): the seconds until a probe gets its
    250 (accepting), until the sink has it (delivered) and until this start's `event=recovered` line
    (indexed), and that line's messages= and seconds=."""
    watch = LogWatch(system.log_path, offset, "event=recovered ")
    want = sink.count() + 1

    def alive():
        return system.proc is not None and system.proc.poll() is None
    with FirstTimes({"delivered": lambda: sink.count() >= want, "indexed": lambda: watch.poll() is not None}) as ft:
        accepted = prober.send_until_accepted(tag, t0, min(t0 + PROBE_LIMIT, DEADLINE[0]), alive)
        deliver_by, index_by = min(accepted + PROBE_LIMIT, DEADLINE[0]), phase_end(t0)
        while "delivered" not in ft.at or "indexed" not in ft.at:
            now = time.time()
            if not alive():
                raise HarnessError("ours/backlog: mtad exited after probe %s was accepted" % tag)
            if "delivered" not in ft.at and now > deliver_by:
                raise HarnessError("ours/backlog: probe %s was accepted but the sink did not get it within %.0fs"
                                   % (tag, now - accepted))
            if "indexed" not in ft.at and now > index_by:
                raise HarnessError("ours/backlog: no event=recovered in the log %.0fs after the %s (phase time limit "
                                   "or run budget reached)" % (now - t0, "restart" if tag == "1" else "kill -9"))
            time.sleep(0.02)
    m = re.search(r"\bmessages=(\d+)\b.*\bseconds=([0-9.]+)", watch.line)
    if not m:
        raise HarnessError("ours/backlog: cannot read messages= and seconds= from: %s" % watch.line)
    # The sink is polled every 20 ms by another thread, which may see the probe before this one has taken
    # the time of its 250 (the relay takes a few ms): delivered is never before accepted.
    delivered = max(ft.at["delivered"], accepted)
    return dict(accepting=accepted - t0, delivered=delivered - t0, indexed=ft.at["indexed"] - t0,
                before=delivered < ft.at["indexed"], messages=int(m.group(1)), seconds=float(m.group(2)))


def run_listing(system, extra, collect, limit):
    """Runs `mtaqueue -c CONF list EXTRA...` and reads its output as it comes, counting lines (and keeping
    the text with `collect`), while a thread samples the RssAnon of mtad, mta-queue and mtaqueue every
    50 ms. Returns the figures; HarnessError when it fails or runs past `limit`."""
    cmd = [os.path.join(system.bindir, "mtaqueue"), "-c", system.conf, "list"] + extra
    pids = {"mtad": system.root_pid(), "mta-queue": queue_pid(system)}
    base = {k: proc_status_kib(p).get("RssAnon", 0) for k, p in pids.items()}
    peak = dict(base, mtaqueue=0)
    err_path = os.path.join(system.dir, "mtaqueue.err")
    done, killed = threading.Event(), []
    with open(err_path, "wb") as err:
        t0 = time.time()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)

        def sample():
            while not done.is_set():
                for k, pid in list(pids.items()) + [("mtaqueue", p.pid)]:
                    peak[k] = max(peak[k], proc_status_kib(pid).get("RssAnon", 0))
                if time.time() > limit and p.poll() is None:
                    killed.append(True)
                    p.kill()
                done.wait(0.05)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        first, lines, chunks = None, 0, []
        try:
            while True:
                b = p.stdout.read1(1 << 16)
                if not b:
                    break
                if first is None and b"\n" in b:
                    first = time.time()
                lines += b.count(b"\n")
                if collect:
                    chunks.append(b)
            rc = p.wait()
            total = time.time() - t0
        finally:
            done.set()
            sampler.join()
            if p.poll() is None:
                p.kill()
                p.wait()
    if killed or rc != 0:
        with open(err_path, "rb") as f:
            tail = f.read().decode("latin-1")[-500:].strip()
        raise HarnessError("ours/backlog: %s %s after %.0fs and %d lines (%s)" % (
            " ".join(cmd[3:]), "was killed at the phase time limit or run budget" if killed else "failed (rc=%d)" % rc,
            total, lines, tail or "no error output"))
    return dict(first_s=(first or time.time()) - t0, total_s=total, lines=lines,
                mtad_growth_mib=(peak["mtad"] - base["mtad"]) / 1024.0,
                queue_growth_mib=(peak["mta-queue"] - base["mta-queue"]) / 1024.0,
                mtaqueue_peak_mib=peak["mtaqueue"] / 1024.0, text=b"".join(chunks) if collect else None)


def stop_clean(system):
    """SIGTERM to mtad and wait; then no role of it may be left (the queue has one writer: fill-queue)."""
    proc = system.proc
    system.stop()
    if proc.returncode == -signal.SIGKILL:
        raise HarnessError("ours/backlog: mtad did not stop within 30s of SIGTERM (killed)")
    me = os.getpid()

    def leftovers():  # roles mtad left behind are re-parented to us (we are a child subreaper)
        return [p.comm for p in procstat.snapshot().values()
                if p.ppid == me and p.comm.startswith("mta") and p.state not in ("Z", "X")]
    if not systems.wait_until(lambda: not leftovers(), 10, 0.1):
        raise HarnessError("ours/backlog: processes of mtad still running 10s after it stopped: %s"
                           % ", ".join(leftovers()))
    procstat.reap_orphans()


def backlog_workload(system, sink, wl):
    """Stop the fresh instance, fill its queue with fill-queue, restart it and time what the README's
    "Backlog recovery" lists; then the listings and a kill -9 of mta-queue. Partial figures travel with a
    HarnessError as its .partial."""
    res = dict(queued=wl["queued"])
    try:
        backlog_steps(system, sink, wl["queued"], res)
    except HarnessError as e:
        e.partial = res
        raise
    return res


def backlog_steps(system, sink, n, res):
    if not os.access(FILL_QUEUE, os.X_OK):
        raise HarnessError("%s is missing (run make test-tools)" % FILL_QUEUE)
    # 1. The instance ran once (run_one started it: it made its spool); stop it cleanly.
    stop_clean(system)
    # 2. Fill the stopped queue: every message deferred for a day (fill-queue's defaults), so none of
    #    the backlog is sent during the run and the probes are the only mail the sink gets.
    qdir = os.path.join(system.dir, "spool", "queue")
    out_path = os.path.join(system.dir, "fill-queue.out")
    log("ours/backlog: fill-queue -n %d %s" % (n, qdir))
    with open(out_path, "wb") as out:
        t = time.time()
        p = subprocess.Popen([FILL_QUEUE, "-n", str(n), qdir], stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        try:
            p.wait(max(1.0, phase_end(t) - t))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise HarnessError("ours/backlog: fill-queue killed after %.0fs (phase time limit or run budget reached)"
                               % (time.time() - t))
        res["fill_s"] = time.time() - t
    if p.returncode != 0:
        with open(out_path, "rb") as f:
            raise HarnessError("ours/backlog: fill-queue failed (rc=%d): %s"
                               % (p.returncode, f.read().decode("latin-1")[-500:].strip()))
    # 3. Restart, t0 just before the Popen; probe 1 until 250, the sink, this start's event=recovered.
    prober = Prober(system.port)
    log("ours/backlog: %d messages queued in %.1fs; restarting mtad" % (n, res["fill_s"]))
    offset = os.path.getsize(system.log_path)
    t0 = time.time()
    system.launch()
    r = timed_recovery(system, sink, prober, "1", t0, offset)
    res.update(accepting_s=r["accepting"], delivered_s=r["delivered"], indexed_s=r["indexed"],
               recovery_s=r["seconds"], delivered_before_indexed=int(r["before"]), recovered_messages=r["messages"])
    if r["messages"] != n:
        raise HarnessError("ours/backlog: event=recovered says messages=%d, but %d were queued" % (r["messages"], n))
    # 4. The queue's memory per queued message, now that everything is indexed.
    st = proc_status_kib(queue_pid(system))
    res.update(rss_anon_per_msg=st.get("RssAnon", 0) * 1024.0 / n, rss_file_per_msg=st.get("RssFile", 0) * 1024.0 / n,
               queue_rss_anon_mib=st.get("RssAnon", 0) / 1024.0, queue_rss_file_mib=st.get("RssFile", 0) / 1024.0)
    # 5. mtaqueue list over the whole queue, read as it streams; then --json, parsed.
    log("ours/backlog: indexed %.1fs after the restart; mtaqueue list" % r["indexed"])
    ls = run_listing(system, [], False, phase_end(time.time()))
    res.update(list_first_s=ls["first_s"], list_total_s=ls["total_s"], list_lines=ls["lines"],
               list_mtad_growth_mib=ls["mtad_growth_mib"], list_queue_growth_mib=ls["queue_growth_mib"],
               list_mtaqueue_peak_mib=ls["mtaqueue_peak_mib"])
    log("ours/backlog: %d lines in %.1fs; mtaqueue list --json" % (ls["lines"], ls["total_s"]))
    js = run_listing(system, ["--json"], True, phase_end(time.time()))
    res.update(list_json_s=js["total_s"], list_json_first_s=js["first_s"],
               list_json_mtad_growth_mib=js["mtad_growth_mib"], list_json_queue_growth_mib=js["queue_growth_mib"],
               list_json_mib=len(js["text"]) / 1048576.0)
    try:
        doc = json.loads(js.pop("text"))
    except ValueError as e:
        raise HarnessError("ours/backlog: mtaqueue list --json is not JSON: %s" % e)
    count, listed = doc.get("count"), len(doc.get("messages") or ())
    del doc
    if count != n or listed != n:
        raise HarnessError("ours/backlog: mtaqueue list --json has count %s and %d messages, %d were queued"
                           % (count, listed, n))
    # 6. kill -9 of mta-queue; mtad restarts it. Probe 2 until 250, the sink, that start's event=recovered.
    qpid = queue_pid(system)
    log("ours/backlog: kill -9 mta-queue (pid %d)" % qpid)
    offset = os.path.getsize(system.log_path)
    t0 = time.time()
    os.kill(qpid, signal.SIGKILL)
    systems.wait_until(lambda: not procstat.alive(qpid), 5, 0.005)  # so that no probe reaches the old one
    r = timed_recovery(system, sink, prober, "2", t0, offset)
    res.update(kill_accepting_s=r["accepting"], kill_delivered_s=r["delivered"], kill_indexed_s=r["indexed"],
               kill_recovery_s=r["seconds"], kill_delivered_before_indexed=int(r["before"]),
               kill_recovered_messages=r["messages"])
    if r["messages"] < n:
        raise HarnessError("ours/backlog: after kill -9 event=recovered says messages=%d, but %d were queued"
                           % (r["messages"], n))
    # Nothing but the probes may have reached the sink: the backlog is deferred for a day.
    time.sleep(1.0)
    c = sink.count()
    res["probes"], res["sink_messages"] = prober.sent, c
    if not prober.sent <= c <= prober.sent + prober.unclear:
        raise HarnessError("ours/backlog: the sink has %d messages, but %d probes were accepted (%d attempts broke "
                           "off without a reply); the backlog is deferred and must not be sent"
                           % (c, prober.sent, prober.unclear))


def run_one(sysname, wl, workdir, args, live, variant=None):
    """One (workload, system) run on a fresh sink and instance; variant: None, "metrics" (ours with
    /metrics scraped) or "milter" (the system with accept_milter.py in front)."""
    metrics, milter = variant == "metrics", variant == "milter"
    sink = systems.Sink(workdir, dump=bool(wl.get("dkim")))
    system = None
    live.append(sink)
    try:
        sink.start()
        key = wl.get("key_obj")
        if sysname == "ours":
            system = systems.OurMTA(workdir, sink.port, args.bin, dkim=key, metrics=metrics, milter=milter)
        else:
            system = systems.Postfix(workdir, sink.port, dkim=key, milter=milter)
        live.append(system)
        log("%s%s: %s (port %d, sink %d%s)" % (sysname, "+" + variant if variant else "", wl["label"], system.port,
                                               sink.port, ", milter %d" % system.milter.port if milter else ""))
        system.start()
        try:
            if wl.get("backlog"):
                return backlog_workload(system, sink, wl)
            if "conns" in wl:
                return idle_workload(system, wl)
            if metrics:
                return scraped_workload(system, sink, wl, workdir)
            return throughput_workload(system, sink, wl, workdir)
        except HarnessError as e:
            err = HarnessError("%s\n%s" % (e, system.diagnose()))
            err.partial = getattr(e, "partial", None)  # the backlog's figures up to the failure
            raise err
    finally:
        for obj in (system, sink):
            if obj is not None:
                obj.stop()
                live.remove(obj)
        procstat.reap_orphans()


ROWS_TP = [("accepted msg/s", "accepted_per_s", "%.0f"), ("end-to-end msg/s", "e2e_per_s", "%.0f"),
           ("final-dot p50 ms", "p50_ms", "%.2f"), ("final-dot p99 ms", "p99_ms", "%.2f"),
           ("CPU s / 1000 msgs", "cpu_s_per_1000", "%.2f"), ("peak RSS MiB (sum)", "peak_rss_mib", "%.1f"),
           ("peak PSS MiB (sum)", "peak_pss_mib", "%.1f")]
ROWS_DKIM = [("signer CPU ms / msg", "sign_cpu_ms", "%.3f"), ("messages signed", "signed", "%d"),
             ("verified by dkimpy", "verified", "%d")]
ROWS_MILTER = [("milter CPU ms / msg", "milter_cpu_ms", "%.3f"), ("milter sessions", "milter_connect", "%d"),
               ("milter messages (eom)", "milter_eom", "%d"),
               ("milter headers / msg", "milter_headers_per_msg", "%.1f"),
               ("milter body KiB / msg", "milter_body_kib_per_msg", "%.1f")]
ROWS_SCRAPE = [("scrapes (1/s, all 200)", "scrapes", "%d"), ("scrape p50 ms", "scrape_p50_ms", "%.2f"),
               ("scrape max ms", "scrape_max_ms", "%.2f"), ("samples per scrape", "scrape_samples", "%d")]
ROWS_BACKLOG = [("fill s (fill-queue, informational)", "fill_s", "%.1f"),
                ("restart to accepting s", "accepting_s", "%.2f"),
                ("restart to delivered s", "delivered_s", "%.2f"),
                ("restart to indexed s", "indexed_s", "%.2f"),
                ("recovery s (queue's own)", "recovery_s", "%.2f"),
                ("delivered before indexed", "delivered_before_indexed", lambda v: "yes" if v else "no"),
                ("mta-queue RssAnon B / queued msg", "rss_anon_per_msg", "%.1f"),
                ("mta-queue RssFile B / queued msg", "rss_file_per_msg", "%.1f"),
                ("list: first line s", "list_first_s", "%.3f"),
                ("list: total s", "list_total_s", "%.1f"),
                ("list: lines read", "list_lines", "%d"),
                ("list: mtad RssAnon growth MiB", "list_mtad_growth_mib", "%.1f"),
                ("list: mta-queue RssAnon growth MiB", "list_queue_growth_mib", "%.1f"),
                ("list --json: total s", "list_json_s", "%.1f"),
                ("kill -9 to accepting s", "kill_accepting_s", "%.2f"),
                ("kill -9 to delivered s", "kill_delivered_s", "%.2f"),
                ("kill -9 to indexed s", "kill_indexed_s", "%.2f")]
ROWS_IDLE = [("smtpd RSS before MiB", "smtpd_rss_before_mib", "%.1f"),
             ("smtpd RSS after MiB", "smtpd_rss_after_mib", "%.1f"),
             ("smtpd RSS KiB / conn", "rss_kib_per_conn", "%.1f"),
             ("smtpd PSS KiB / conn", "pss_kib_per_conn", "%.1f"),
             ("all procs PSS KiB / conn", "tree_pss_kib_per_conn", "%.1f"),
             ("smtpd processes", "smtpd_processes", "%d")]


def table(results, sysnames, head, select, invert=False):
    """The figures of the workloads `select` takes, in two columns and their ratio. select(wl) gives the
    two result keys to show for a workload (None: not in this table): ours and Postfix in the main
    table, or one system without and with a variant (metrics, milter). The ratio is the first column
    over the second, or with `invert` the second over the first (with/without). A column whose system
    is not in `sysnames` shows "-"."""
    lines = []
    w = (36, 24, 10, 10, 14)
    lines.append("".join(h.ljust(x) if i < 2 else h.rjust(x) for i, (h, x) in enumerate(zip(head, w))))
    lines.append("-" * sum(w))
    for wl in WORKLOADS:
        cols = select(wl)
        if wl["key"] not in results or not cols:
            continue
        variant_rows = (ROWS_SCRAPE if wl.get("metrics") else []) + (ROWS_MILTER if wl.get("milter") else [])
        rows = ROWS_IDLE if "conns" in wl else ROWS_TP + (ROWS_DKIM if wl.get("dkim") else []) + variant_rows
        per = results[wl["key"]]
        for i, row in enumerate(rows):
            label, key, fmt = row
            cells = []
            for s in cols:
                r = per.get(s)
                if s.split("+")[0] not in sysnames:
                    cells.append("-")
                elif r is None or "error" in r:
                    cells.append("FAILED" if i == 0 else "")
                elif r.get(key) is None:
                    # no scrapes without metrics, no milter figures without the milter
                    cells.append("-" if row in variant_rows and "+" not in s else "n/a")
                else:
                    cells.append(fmt % r[key])
            o, p = per.get(cols[0]) or {}, per.get(cols[1]) or {}
            if invert:
                o, p = p, o
            ratio = ""
            if isinstance(o.get(key), (int, float)) and isinstance(p.get(key), (int, float)) and p[key]:
                q = o[key] / p[key]
                ratio = "%.2f" % q if q >= 0.1 else "%.2g" % q
            lines.append((wl["label"] if i == 0 else "").ljust(w[0]) + label.ljust(w[1])
                         + "".join(c.rjust(x) for c, x in zip(cells + [ratio], w[2:])))
        lines.append("")
    return "\n".join(lines)


def backlog_table(results):
    """The backlog workload's figures, one column (ours). Figures measured before a failure are shown;
    the ones it prevented say FAILED."""
    lines = []
    w = (36, 34, 10)
    lines.append("workload".ljust(w[0]) + "figure".ljust(w[1]) + "ours".rjust(w[2]))
    lines.append("-" * sum(w))
    for wl in WORKLOADS:
        r = (results.get(wl["key"]) or {}).get("ours") if wl.get("backlog") else None
        if r is None:
            continue
        for i, (label, key, fmt) in enumerate(ROWS_BACKLOG):
            if r.get(key) is None:
                cell = "FAILED" if "error" in r else "n/a"
            else:
                cell = fmt(r[key]) if callable(fmt) else fmt % r[key]
            lines.append((wl["label"] if i == 0 else "").ljust(w[0]) + label.ljust(w[1]) + cell.rjust(w[2]))
        lines.append("")
    return "\n".join(lines)


def milter_cost(results, sysnames):
    """For each milter workload and each system, with-milter msg/s over without: the share of its own
    throughput a system keeps with one milter in front. Returns {workload: {figure: {system: ratio}}}."""
    out = {}
    for wl in WORKLOADS:
        per = results.get(wl["key"])
        if not wl.get("milter") or not per:
            continue
        for key in ("accepted_per_s", "e2e_per_s"):
            for s in sysnames:
                without, with_ = per.get(s) or {}, per.get(s + MILTER_SUFFIX) or {}
                if without.get(key) and with_.get(key) is not None:
                    out.setdefault(wl["key"], {}).setdefault(key, {})[s] = with_[key] / without[key]
    return out


def describe_env(workdir):
    fs = subprocess.run(["stat", "-f", "-c", "%T", workdir], capture_output=True, text=True).stdout.strip()
    pf = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True).stdout.strip()
    rev = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True,
                         text=True).stdout.strip()
    return dict(cpus=os.cpu_count(), kernel=platform.release(), fs=fs, postfix=pf, ours=rev or "?")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--systems", default="ours,postfix", help="comma list of: ours, postfix")
    ap.add_argument("--workloads", default=",".join(w["key"] for w in WORKLOADS),
                    help="comma list of: " + ", ".join(w["key"] for w in WORKLOADS))
    ap.add_argument("--scale", type=float, default=float(os.environ.get("BENCH_SCALE", "1")),
                    help="multiply every message count (default 1, or $BENCH_SCALE)")
    ap.add_argument("--bin", default=os.environ.get("MTA_BIN_DIR", os.path.join(ROOT, "build", "bin")))
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, spools) even on success")
    ap.add_argument("--budget", type=float, default=540.0,
                    help="time budget in seconds for the whole run: phases end by then, workloads not started are "
                         "skipped (default 540)")
    args = ap.parse_args()

    sysnames = [s for s in args.systems.split(",") if s]
    keys = [k for k in args.workloads.split(",") if k]
    bad = [s for s in sysnames if s not in ("ours", "postfix")] + [k for k in keys if k not in [w["key"] for w in WORKLOADS]]
    if bad:
        ap.error("unknown system/workload: %s" % ", ".join(bad))
    if "eatmydata" in os.environ.get("LD_PRELOAD", ""):
        print("bench: refusing to run under eatmydata: durability must stay on", file=sys.stderr)
        return 2
    for wl in WORKLOADS:
        for k in ("n", "nlat", "queued"):
            if k in wl:
                wl[k] = max(1, int(wl[k] * args.scale))
        if wl.get("backlog"):
            wl["label"] = "{:,} queued, deferred 1 day".format(wl["queued"])

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    become_subreaper()
    signal.signal(signal.SIGTERM, interrupted)

    workdir = tempfile.mkdtemp(prefix="mta-bench-")
    os.chmod(workdir, 0o755)
    env = describe_env(workdir)
    log("workdir %s (%s), %d CPUs, kernel %s, postfix %s, ours %s"
        % (workdir, env["fs"], env["cpus"], env["kernel"], env["postfix"], env["ours"]))
    if env["fs"] in ("tmpfs", "ramfs"):
        log("WARNING: %s is on %s: fsync costs nothing there, numbers are not durable-disk numbers"
            % (workdir, env["fs"]))

    results, errors, live = {}, [], []
    ours_dead = None
    started = time.time()
    DEADLINE[0] = started + args.budget
    try:
        for wl in [w for w in WORKLOADS if w["key"] in keys]:
            results[wl["key"]] = {}
            if wl.get("dkim") and "key_obj" not in wl:
                try:
                    wl["key_obj"] = systems.DkimKey(workdir, wl["dkim"], DKIM_DOMAIN)
                except HarnessError as e:
                    errors.append("%s: %s" % (wl["key"], e))
                    continue
            # The metrics and milter workloads have the shape of `4k`, whose client ceiling is the same.
            if "n" in wl and not wl.get("metrics") and not wl.get("milter") and time.time() < DEADLINE[0] - 20:
                try:
                    results[wl["key"]]["direct"] = {"accepted_per_s": client_ceiling(wl, workdir, live)}
                except HarnessError as e:
                    errors.append("direct/%s: %s" % (wl["key"], e))
            # (result key, system, variant)
            runs = [(s, s, None) for s in sysnames]
            if wl.get("metrics"):
                runs = [(k, "ours", "metrics" if m else None) for k, m in METRICS_VARIANTS
                        if "ours" in sysnames]
            elif wl.get("backlog"):
                runs = [("ours", "ours", None)] if "ours" in sysnames else []
            elif wl.get("milter"):
                # Each system is its own baseline: without the milter, then right after with it.
                runs = [r for s in sysnames for r in ((s, s, None), (s + MILTER_SUFFIX, s, "milter"))]
            for col, s, variant in runs:
                if time.time() > DEADLINE[0] - 20:
                    results[wl["key"]][col] = {"error": "skipped: time budget used up"}
                    errors.append("%s/%s: skipped (time budget)" % (col, wl["key"]))
                    continue
                if s == "ours" and ours_dead:
                    results[wl["key"]][col] = {"error": ours_dead}
                    continue
                t0 = time.time()
                try:
                    results[wl["key"]][col] = run_one(s, wl, workdir, args, live, variant)
                    log("%s/%s done in %.1fs" % (col, wl["key"], time.time() - t0))
                except HarnessError as e:
                    msg = str(e)
                    results[wl["key"]][col] = dict(getattr(e, "partial", None) or {}, error=msg)
                    errors.append("%s/%s: %s" % (col, wl["key"], msg))
                    log("FAILED %s/%s: %s" % (col, wl["key"], msg.splitlines()[0]))
                    if col == "ours" and not wl.get("metrics") and ("did not answer 220" in msg or "is missing" in msg):
                        ours_dead = "not started: " + msg.splitlines()[0]
    except KeyboardInterrupt:
        errors.append("interrupted")
    finally:
        for obj in reversed(live):
            try:
                obj.stop()
            except Exception as e:  # cleanup must go on
                log("cleanup of %r failed: %s" % (obj, e))
        procstat.reap_orphans()

    print()
    print("MTA benchmark: %d CPUs, kernel %s, spool on %s, Postfix %s, ours %s, %.0fs"
          % (env["cpus"], env["kernel"], env["fs"], env["postfix"], env["ours"], time.time() - started))
    print("(msg/s: higher is better; latency, CPU and memory: lower is better)")
    print()
    # The milter workload shows both systems with the milter here; without it, in its own table below.
    if any(results.get(w["key"]) for w in WORKLOADS if not w.get("metrics") and not w.get("backlog")):
        print(table(results, sysnames, ("workload", "figure", "ours", "postfix", "ours/postfix"),
                    lambda wl: None if wl.get("metrics") or wl.get("backlog") else
                    tuple(s + MILTER_SUFFIX if wl.get("milter") else s for s in ("ours", "postfix"))))
    ceil = ["%s %.0f" % (k, r["direct"]["accepted_per_s"]) for k, r in results.items() if "direct" in r]
    if ceil:
        print("Client ceiling, smtp-source straight into smtp-sink without an MTA (msg/s): " + ", ".join(ceil))
        print()
    if any(w.get("metrics") and results.get(w["key"]) for w in WORKLOADS):
        variants = [v for v, _ in METRICS_VARIANTS]
        print("Cost of metrics, ours only: without, and with metrics_listen and /metrics fetched every second")
        print()
        print(table(results, sysnames, ("workload", "figure", "ours", "+metrics", "+metrics/ours"),
                    lambda wl: variants if wl.get("metrics") else None, invert=True))
    if any(w.get("backlog") and results.get(w["key"]) for w in WORKLOADS):
        print("Backlog recovery, ours only: the stopped queue filled by fill-queue (every message deferred for a")
        print("day), mtad restarted; then mtaqueue list over the whole queue, and mta-queue killed with -9")
        print()
        print(backlog_table(results))
    cost = milter_cost(results, sysnames)
    if any(w.get("milter") and results.get(w["key"]) for w in WORKLOADS):
        print("Cost of one milter (tests/bench/accept_milter.py, accept-all, python3-milter): each system without it,")
        print("then right after with it in smtpd_milters")
        print()
        for s in sysnames:
            print(table(results, sysnames, ("workload", "figure", s, "+milter", "with/without"),
                        lambda wl: (s, s + MILTER_SUFFIX) if wl.get("milter") else None, invert=True))
        for wk, figs in cost.items():
            print("%s: the share of its own msg/s each system keeps with the milter (with/without; higher is better):"
                  % wk)
            for key, label in (("accepted_per_s", "accepted msg/s"), ("e2e_per_s", "end-to-end msg/s")):
                r = figs.get(key, {})
                cells = ["%s %.2f" % (s, r[s]) for s in sysnames if s in r]
                if "ours" in r and "postfix" in r and r["postfix"]:
                    cells.append("ours/postfix %.2f" % (r["ours"] / r["postfix"]))
                print("  %-18s %s" % (label, "   ".join(cells) or "n/a"))
            print()
    if errors:
        print("Problems:")
        for e in errors:
            print("  - " + e.replace("\n", "\n    "))
    out = dict(env=env, workloads={w["key"]: {k: v for k, v in w.items() if k != "key_obj"} for w in WORKLOADS},
               results=results, milter_cost=cost, errors=errors)
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(out, f, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if errors or args.keep:
        print("logs, spools and results.json kept in %s" % workdir)
    else:
        subprocess.run(["rm", "-rf", workdir])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
