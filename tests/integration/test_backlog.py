"""A big backlog (issue 16, item 3): the queue serves at once after a restart and recovers the earlier
runs' messages in the background; `mtaqueue list` streams.

The queue of a stopped mtad is filled with BACKLOG messages by build/tests/fill-queue (deferred a day
ahead, so none of them is delivered during the test), two of them damaged (one body gone, one body
truncated), and a body file whose commit never came. Then:
- mtad starts; a new message is accepted and delivered while or after the queue recovers (which of
  the two is printed, never asserted: it depends on the machine's speed);
- recovery ends with `event=recovered` counting every backlog message, the two damaged ones corrupt,
  the stray body removed; the body directory then holds exactly the live bodies;
- `mtaqueue list --json` lists every message, the damaged ones corrupt; the text listing has one
  header line per message and the summary line; `mtaqueue show` of one message answers;
- a tool that reads the first line of a listing and goes away leaves mtad and the queue serving, and
  the next listing is complete; eight listings at once all complete;
- hold --all and release --all go through the backlog a slice at a time while mail is taken, and
  answer with the sums;
- a `kill -9` of mta-queue: the restarted queue accepts and delivers new mail, and recovers again,
  removing the body files the killed one had pre-created."""
import json
import os
import re
import signal
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtatest import BIN, MTA, ROOT, Guard, check, finish, wait_for  # noqa: E402
from queuetest import ScriptedServer, mtaqueue, relay_config  # noqa: E402

BACKLOG = 10000
FILL = os.path.join(ROOT, "build", "tests", "fill-queue")


def send_probe(m, subject):
    """True when the message got 250 to its final dot."""
    try:
        with smtplib.SMTP("127.0.0.1", m.port, timeout=10) as s:
            s.sendmail("probe@localhost", ["probe@remote.test"],
                       ("Subject: %s\r\nMessage-ID: <%s@backlog.test>\r\n\r\nnew mail\r\n" % (subject, subject)).encode())
        return True
    except (OSError, smtplib.SMTPException):
        return False


def delivered(srv, subject):
    return any(("Subject: %s" % subject).encode() in data for _, _, data in srv.delivered)


def recovered_lines(m, since):
    return re.findall(r"event=recovered (.*)", m.log_text()[since:])


def fields(line):
    return {k: v for k, v in re.findall(r"(\w+)=(\S+)", line)}


def listing(m, *args):
    return subprocess.run([os.path.join(BIN, "mtaqueue"), "-c", m.conf, "list"] + list(args), capture_output=True,
                          text=True, timeout=120)


def main(g):
    if not os.access(FILL, os.X_OK):
        check("fill-queue is built (make test-tools)", False, FILL)
        return
    srv = ScriptedServer()
    m = MTA(name="backlog", extra=relay_config(srv))
    g.log = m
    g.cleanups += [m.stop, srv.stop]
    m.start()
    m.stop()
    queue = os.path.join(m.spool, "queue")
    body = os.path.join(queue, "body")
    pre_created = set(os.listdir(body)) - {"space-probe"}
    r = subprocess.run([FILL, "-n", str(BACKLOG), queue], capture_output=True, text=True, timeout=600)
    if not check("fill-queue put %d messages into the stopped queue" % BACKLOG, r.returncode == 0, r.stderr):
        return
    bodies = sorted(set(os.listdir(body)) - pre_created - {"space-probe"})
    check("fill-queue wrote one body per message", len(bodies) == BACKLOG, len(bodies))
    gone, cut = bodies[10], bodies[-10]
    os.unlink(os.path.join(body, gone))
    with open(os.path.join(body, cut), "r+b") as f:
        f.truncate(100)
    # A body of an earlier run whose commit never came (the id before fill-queue's first one).
    stray = "%016X" % (int(bodies[0], 16) - 1)
    with open(os.path.join(body, stray), "wb") as f:
        f.write(b"Subject: never committed\r\n\r\n")
    pre_created.add(stray)

    since = len(m.log_text())
    m.proc = None
    m.start(wait=False)
    accepted = wait_for(lambda: send_probe(m, "first-probe"), 60, 0.1)
    during = not recovered_lines(m, since)
    check("after the restart a new message is accepted", accepted)
    check("... and delivered", wait_for(lambda: delivered(srv, "first-probe"), 30))
    print("the first message was accepted %s recovery had finished" % ("before" if during else "after"), flush=True)

    ok = wait_for(lambda: recovered_lines(m, since), 300, 0.2)
    if not check("recovery finished (event=recovered)", ok, m.log_text()[-2000:]):
        return
    rep = fields(recovered_lines(m, since)[0])
    print("recovered: %s" % recovered_lines(m, since)[0], flush=True)
    check("recovery counted every backlog message", int(rep.get("messages", -1)) == BACKLOG, rep)
    check("recovery found both damaged bodies", int(rep.get("corrupt", -1)) == 2, rep)
    check("recovery removed the stray body (and any the first run pre-created)", int(rep.get("orphan_bodies", -1)) == len(pre_created),
          (rep, len(pre_created)))
    check("recovery changed nothing else", all(int(rep.get(k, -1)) == 0 for k in
                                                ("quarantined", "orphan_recipients", "finished", "schedule_added",
                                                 "schedule_dropped")), rep)
    for qid in (gone, cut):
        check("the damaged message %s is logged corrupt with its queue id" % qid,
              re.search(r"event=corrupt qid=%s " % qid, m.log_text()[since:]) is not None)
    left = set(os.listdir(body)) - {"space-probe"}
    check("no body of the first run is left", not (left & pre_created), sorted(left & pre_created)[:3])
    check("every live backlog body is still there", set(bodies) - {gone} <= left, len(left))

    r = listing(m, "--json")
    try:
        doc = json.loads(r.stdout)
    except ValueError as e:
        doc = {"error": str(e), "tail": r.stdout[-300:]}
    msgs = {x["id"]: x for x in doc.get("messages", [])}
    check("list --json lists every backlog message", doc.get("count") == BACKLOG and len(msgs) == BACKLOG,
          (doc.get("count"), len(msgs), r.stderr[-300:]))
    check("list --json says the damaged ones are corrupt",
          all(msgs.get(q, {}).get("state") == "corrupt" for q in (gone, cut)), [msgs.get(q, {}).get("state") for q in (gone, cut)])
    check("list --json: the rest are deferred",
          sum(1 for x in msgs.values() if x.get("state") == "deferred") == BACKLOG - 2, "")
    r = listing(m)
    heads = [line for line in r.stdout.splitlines() if re.match(r"^[0-9A-F]{16} ", line)]
    check("the text listing has a line per message and the summary", r.returncode == 0 and len(heads) == BACKLOG and
          ("in %d Requests, %d Recipients." % (BACKLOG, BACKLOG)) in r.stdout, (len(heads), r.stdout[-200:]))
    r = mtaqueue(m, "show", bodies[5000])
    check("show of one backlog message answers", r.returncode == 0 and "user" in r.stdout and "deferred" in r.stdout,
          r.stdout[:300] + r.stderr)

    # A tool that reads one line and goes away: the rest of its listing is dropped, nothing else.
    p = subprocess.Popen([os.path.join(BIN, "mtaqueue"), "-c", m.conf, "list"], stdout=subprocess.PIPE)
    first = p.stdout.readline()
    p.kill()
    p.wait()
    p.stdout.close()
    check("a listing's first line arrives", first.startswith(b"-Queue ID"), first)
    queue_pid = m.pids("mta-queue")
    check("after the tool went away a new message is accepted", send_probe(m, "after-abandoned-list"))
    check("... and delivered", wait_for(lambda: delivered(srv, "after-abandoned-list"), 30))
    r = listing(m, "--json")
    check("the next listing is complete", r.returncode == 0 and '"count":%d' % BACKLOG in r.stdout, r.stderr[-300:])

    procs = [subprocess.Popen([os.path.join(BIN, "mtaqueue"), "-c", m.conf, "list", "--json"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(8)]
    outs = [p.communicate(timeout=300) for p in procs]
    counts = []
    for out, _ in outs:
        try:
            counts.append(json.loads(out).get("count"))
        except ValueError:
            counts.append(None)
    check("eight listings at once are all complete", counts == [BACKLOG] * 8, (counts, outs[0][1][-200:]))

    check("the queue process is the same one throughout", m.pids("mta-queue") == queue_pid, m.pids("mta-queue"))

    # kill -9 of the queue: mtad restarts it, it serves at once and recovers again.
    since = len(m.log_text())
    for pid in queue_pid:
        os.kill(pid, signal.SIGKILL)
    accepted = wait_for(lambda: send_probe(m, "after-kill"), 60, 0.1)
    check("after kill -9 of mta-queue a new message is accepted", accepted)
    check("... and delivered", wait_for(lambda: delivered(srv, "after-kill"), 30))
    ok = wait_for(lambda: recovered_lines(m, since), 300, 0.2)
    rep = fields(recovered_lines(m, since)[0]) if ok else {}
    check("the restarted queue recovers every message again", int(rep.get("messages", -1)) == BACKLOG, rep)
    check("... removing the killed queue's unused pre-created bodies", int(rep.get("orphan_bodies", -1)) > 0, rep)
    check("... finding nothing else to repair", all(int(rep.get(k, -1)) == 0 for k in
                                                    ("corrupt", "quarantined", "orphan_recipients", "finished",
                                                     "schedule_added", "schedule_dropped")), rep)
    # A change to the whole queue goes a slice at a time: mail is taken meanwhile, the answer sums up.
    p = subprocess.Popen([os.path.join(BIN, "mtaqueue"), "-c", m.conf, "hold", "--all"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    accepted = send_probe(m, "during-hold")
    out, err = p.communicate(timeout=300)
    n = re.match(r"ok: hold (\d+) messages", out)
    check("hold --all over the backlog answers with the sum of its slices (every live message)",
          p.returncode == 0 and n and int(n.group(1)) >= BACKLOG - 2, out + err)
    check("a message sent while it ran is accepted", accepted)
    r = mtaqueue(m, "release", "--all")
    n = re.match(r"ok: release (\d+) messages", r.stdout)
    check("release --all gives every held message back", r.returncode == 0 and n and int(n.group(1)) >= BACKLOG - 2,
          r.stdout + r.stderr)
    r = listing(m, "--json")
    try:
        states = [x["state"] for x in json.loads(r.stdout)["messages"]]
    except (ValueError, KeyError):
        states = ["unreadable"]
    check("... and nothing is held any more (released mail is due: it is being delivered)",
          states and "held" not in states and "unreadable" not in states, {s: states.count(s) for s in set(states)})
    st = m.ctl("status").stdout
    check("every role is running", "restarting" not in st and "state=starting" not in st, st)
    check("no sanitizer report", "ERROR: AddressSanitizer" not in m.log_text() and "runtime error:" not in m.log_text(), "")


if __name__ == "__main__":
    with Guard("backlog") as guard:
        main(guard)
    finish()
