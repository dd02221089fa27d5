"""The kill matrix (issue 16): every role program and mtad itself SIGKILLed once while mail flows.

One mtad with one process per role (smtpd_processes = smtp_processes = 1) and mta-metrics on a free
loopback port; half the mail goes to local Maildir users, half is relayed to a loopback sink that
takes a little time per message, so deliveries are in flight. Per victim a flow of messages, each in
its own SMTP session with its own Message-ID, two at a time, until MESSAGES of them got 250 (a failed
one is not sent again); when a third of them got 250 the victim is killed. For mtad the flow stops at
the kill, and the relayhost is slower, so that relayed mail is still queued when mtad dies.

For a role (mta-smtpd, mta-queue, mta-smtp, mta-local, mta-resolver, mta-msgauth, mta-metrics):
- it is restarted: `mtactl status` shows it running with a new pid, a live child of mtad; only the
  victim ended and it was restarted once (no other process died, no restart loop);
- every message that got 250 arrived at least once (by Message-ID, in a Maildir or at the sink) and
  the queue is empty; duplicates are counted and reported, none delivered more than twice;
- mtad still runs and there is no sanitizer report in the log.
For mtad: SIGKILL while mail flows; within a few seconds every process of the instance (the pids
recorded before the kill: the roles and whatever they started) has exited, nothing listens on the
SMTP or the metrics port any more (no connection accepted, nothing in `ss -ltn`); a new mtad on the
same configuration and spool starts, delivers every acknowledged message, and takes new mail.

One line per victim sums it up: "kill X: acknowledged A, delivered D, lost L, duplicated U".
MTA_KILL_ONLY=mta-queue,mtad (program names) runs only those victims."""
import http.client
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtatest import check, finish, wait_for  # noqa: E402
from killtest import (MASTER, ROLES, Flow, Instance, abnormal_exits, restarts_scheduled, role_of,  # noqa: E402
                      sanitizer_lines, summary_line, tally)

MESSAGES = 30
KILL_AT = MESSAGES // 3  # acknowledged messages before the kill
# The order of the victims: the roles mail passes through first, mtad last (it ends the instance's life).
VICTIMS = ["mta-smtpd", "mta-msgauth", "mta-queue", "mta-smtp", "mta-local", "mta-resolver", "mta-metrics", MASTER]


def metrics_answer(inst):
    """The HTTP status of GET /metrics on the metrics port, or the error."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", inst.metrics_port, timeout=5)
        c.request("GET", "/metrics")
        r = c.getresponse()
        r.read()
        c.close()
        return r.status
    except (OSError, http.client.HTTPException) as e:
        return str(e)


def run_flow(inst, victim, kill):
    """A flow until MESSAGES messages got 250; kill(flow) is called once, from the sender that saw the
    KILL_AT-th 250."""
    fired = []

    def on_ack(f, n):
        with f.lock:
            first = n >= KILL_AT and not fired
            if first:
                fired.append(True)
        if first:
            kill(f)

    flow = Flow(inst, re.sub(r"[^a-z0-9]+", "-", victim), MESSAGES, threads=2, pace=0.03, on_ack=on_ack)
    flow.start()
    return flow, fired


def judge_delivery(inst, victim, flow, off):
    """Settles, then the delivery checks and the summary line; the tally."""
    name = "kill %s" % victim
    settled = inst.settle(flow.acked, timeout=40)
    t = tally(flow.ids, flow.acked, inst.deliveries())
    counts = inst.deliveries()
    check("%s: every acknowledged message delivered at least once (%d of %d)" % (name, t[0] - t[2], t[0]),
          t[2] == 0 and t[0] > 0, "lost %r; log:\n%s" % (t[4], inst.log_tail(off)))
    check("%s: queue empty afterwards" % name, settled, "queue count %r" % inst.queue_count())
    check("%s: no message delivered more than twice (%d duplicate%s)" % (name, t[3], "" if t[3] == 1 else "s"),
          all(counts[x] <= 2 for x in flow.ids), {x: counts[x] for x in flow.ids if counts[x] > 2})
    print(summary_line(victim, t), flush=True)
    return t


def kill_role(inst, program):
    name = "kill %s" % program
    t0 = time.time()
    off = inst.log_size()
    old = inst.pids(program)
    check("%s: one process runs before the kill" % name, len(old) == 1, old)
    killed = []
    flow, fired = run_flow(inst, program, lambda f: killed.append(inst.kill_role(program)))
    flow.join()
    check("%s: killed while mail flowed (after %d of %d acknowledged, %d sent in all)"
          % (name, KILL_AT, MESSAGES, flow.sent()), fired and killed and killed[0], "acked %d, killed %r"
          % (len(flow.acked), killed))
    ok = wait_for(lambda: inst.restarted(program, [p for p in killed if p]), 15, 0.1)
    rows = inst.role_rows(program)
    check("%s: restarted (mtactl status: running, new pid)" % name, ok,
          "killed %r, status %r, live %r" % (killed, rows, inst.pids(program)))
    check("%s: mtactl status counts the restart" % name, rows and int(rows[0].get("restarts", "0")) >= 1, rows)
    t = judge_delivery(inst, program, flow, off)
    log = inst.log_since(off)
    ended, restarts = abnormal_exits(log), restarts_scheduled(log)
    check("%s: only the victim ended, and it was restarted once (no restart loop)" % name,
          ended == [(role_of(program), "signal=9")] and restarts == [role_of(program)],
          "ended %r, restarts %r" % (ended, restarts))
    if program == "mta-metrics":
        check("%s: the restarted mta-metrics serves /metrics" % name,
              wait_for(lambda: metrics_answer(inst) == 200, 10), metrics_answer(inst))
    check("%s: mtad still runs" % name, inst.master_running(), inst.m.proc.returncode)
    bad = sanitizer_lines(log)
    check("%s: no sanitizer report in the log" % name, not bad, "\n".join(bad[:20]))
    print("%s: %.1fs" % (name, time.time() - t0), flush=True)
    return t


def kill_master(inst):
    name = "kill %s" % MASTER
    t0 = time.time()
    off = inst.log_size()
    result = []
    # A slower relayhost for this one, so that relayed mail is still queued when mtad dies.
    inst.sink_delay = 0.3
    flow, fired = run_flow(inst, MASTER, lambda f: (f.stop(), result.append(inst.kill_master(gone_within=5))))
    flow.join()
    check("%s: killed while mail flowed (after %d acknowledged)" % (name, len(flow.acked)), fired and result,
          "acked %d" % len(flow.acked))
    if not result:
        return None
    r = result[0]
    children = sorted(set(r["children"].values()))
    check("%s: every role had a process before the kill" % name, set(ROLES) <= set(children), children)
    check("%s: every process of the instance exited within 5 s (%d processes, %s)"
          % (name, len(r["children"]), "%.2fs" % r["took"] if r["took"] is not None else "not all"),
          not r["leftovers"], "still running: %r" % r["leftovers"])
    for label, p in sorted(r["ports"].items()):
        check("%s: nothing listens on the %s port any more (connect refused, ss -ltn empty)" % (name, label),
              not p["accepts"] and not p["ss"], p)
    # What the roles said on their way out: each saw its link to mtad close.
    log = inst.log_since(off)
    print("%s: %d processes exited after %s; master_closed lines: %d; queued at the kill: %d" % (
        name, len(r["children"]), "%.2fs" % r["took"] if r["took"] is not None else "-",
        log.count("event=master_closed"), sum(1 for x in flow.acked if not inst.deliveries()[x])), flush=True)
    restart_off = inst.log_size()
    inst.sink_delay = 0.03
    inst.restart_master()
    check("%s: a new mtad on the same configuration and spool starts" % name, inst.master_running())
    t = judge_delivery(inst, MASTER, flow, off)
    rec = re.findall(r"event=recovered messages=(\d+)", inst.log_since(restart_off))
    print("%s: the new mtad's queue recovered %s message(s)" % (name, rec[0] if rec else "?"), flush=True)
    # The new instance takes new mail and delivers it.
    after = Flow(inst, "after-master", 6, threads=2).start()
    after.join()
    later = inst.settle(after.acked, timeout=20)
    check("%s: the new mtad takes new mail and delivers it (%d of 6 acknowledged)" % (name, len(after.acked)),
          len(after.acked) == 6 and later, "acked %r failed %r" % (after.acked, after.failed))
    bad = sanitizer_lines(inst.log_since(off))
    check("%s: no sanitizer report in the log" % name, not bad, "\n".join(bad[:20]))
    print("%s: %.1fs" % (name, time.time() - t0), flush=True)
    return t


def main():
    t0 = time.time()
    only = [x for x in os.environ.get("MTA_KILL_ONLY", "").split(",") if x]
    victims = [v for v in VICTIMS if not only or v in only]
    if only:
        check("kill matrix: MTA_KILL_ONLY names known victims", victims and set(only) <= set(VICTIMS), only)
    inst = Instance(name="killmatrix")
    totals = []
    try:
        inst.start()
        check("kill matrix: every role runs, one process each", all(len(inst.pids(p)) == 1 for p in ROLES),
              dict((p, inst.pids(p)) for p in ROLES))
        for v in victims:
            try:
                t = kill_master(inst) if v == MASTER else kill_role(inst, v)
                if t:
                    totals.append(t)
            except Exception as e:  # noqa: BLE001 - one FAIL line, the next victim still runs
                check("kill %s: ran" % v, False, "%s: %s\n%s" % (type(e).__name__, e, inst.log_tail(0)))
                if not inst.master_running():
                    inst.restart_master()
        bad = sanitizer_lines(inst.m.log_text())
        check("kill matrix: no sanitizer report in the whole log", not bad, "\n".join(bad[:20]))
    finally:
        inst.close()
    print("kill matrix: %d victims, acknowledged %d, delivered %d, lost %d, duplicated %d, %.1fs"
          % ((len(totals),) + tuple(sum(x[k] for x in totals) for k in range(4)) + (time.time() - t0,)), flush=True)
    finish()


if __name__ == "__main__":
    main()
