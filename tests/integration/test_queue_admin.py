"""The queue's admin side end to end: mtaqueue (list/show/hold/release/delete/flush, filters, --json
that must match the true state), mailq, sendmail (-t -i -f -F, as an ordinary user) with its maildrop
(a bad file is set aside; mail dropped while the daemon is down is picked up at start). Mail goes to a
scripted receiving server (the relayhost); the lifecycle tests are in test_queue.py."""
import json
import os
import subprocess
import threading
import time

from mtatest import as_user, BIN, check, finish, MTA, TMP_ROOT, wait_for
from queuetest import ScriptedServer, decide_by_name, mtaqueue, queue_json, relay_config, send


def admin_tools(m, srv):
    srv_block = {"on": True}
    old = srv.decide
    srv.decide = lambda rcpt, n: "452 4.2.2 full" if "held" in rcpt and srv_block["on"] else old(rcpt, n)
    send(m, "admin@localhost", ["held1@remote.test"], "admin one")
    wait_for(lambda: "to=<held1@remote.test>" in m.log_text(), 20)
    j = queue_json(m)
    ids = [msg["id"] for msg in j.get("messages", []) if msg["sender"] == "admin@localhost"]
    if not check("admin: message listed", len(ids) == 1, j):
        return
    qid = ids[0]
    r = mtaqueue(m, "hold", qid)
    check("admin: hold", r.returncode == 0 and r.stdout.startswith("ok: hold"), r.stdout + r.stderr)
    wait_for(lambda: queue_json(m)["messages"][0]["recipients"][0]["state"] == "held", 10)
    j = queue_json(m)
    check("admin: json shows held", j["messages"][0]["recipients"][0]["state"] == "held", j)
    r = mtaqueue(m, "list", "--state", "held")
    check("admin: list --state held (text)", qid in r.stdout and "held1@remote.test" in r.stdout, r.stdout)
    r = subprocess.run([os.path.join(BIN, "mailq"), "-c", m.conf], capture_output=True, text=True, timeout=30)
    check("admin: mailq lists it", qid in r.stdout and "452 4.2.2" in r.stdout, r.stdout + r.stderr)
    r = mtaqueue(m, "show", qid, "--json")
    try:
        s = json.loads(r.stdout)["message"]
        check("admin: show --json has envelope, attempts, headers",
              s["sender"] == "admin@localhost" and s["recipients"][0]["attempts"] >= 1 and "Subject: admin one" in s["headers"], s)
    except (ValueError, KeyError) as e:
        check("admin: show --json parses", False, "%s %r" % (e, r.stdout + r.stderr))
    r = mtaqueue(m, "show", qid)
    check("admin: show text", "Subject: admin one" in r.stdout and "Recipients:" in r.stdout, r.stdout)
    check("admin: filters select", qid in mtaqueue(m, "list", "--domain", "remote.test").stdout and
          qid not in mtaqueue(m, "list", "--from", "nobody@else").stdout, "")
    r = mtaqueue(m, "delete")
    check("admin: bulk delete needs ids, filters or --all", r.returncode != 0 and "needs" in r.stderr, r.stderr)
    r = mtaqueue(m, "frobnicate")
    check("admin: unknown command refused", r.returncode != 0 and "unknown command" in r.stderr, r.stderr)
    before = srv.attempts["held1@remote.test"]
    srv_block["on"] = False
    time.sleep(2.5)
    check("admin: held mail is not attempted", srv.attempts["held1@remote.test"] == before, srv.attempts)
    r = mtaqueue(m, "release", "--from", "admin@localhost")
    check("admin: release by filter", r.returncode == 0 and "1 recipient" in r.stdout, r.stdout + r.stderr)
    ok = wait_for(lambda: any("held1@remote.test" in d[1] for d in srv.delivered), 15)
    check("admin: released mail delivered", ok, srv.attempts)
    # delete: a message to a never-answering recipient
    srv.decide = lambda rcpt, n: "451 4.3.0 later" if "gone" in rcpt else old(rcpt, n)
    send(m, "admin@localhost", ["gone@remote.test"], "admin two")
    wait_for(lambda: "to=<gone@remote.test>" in m.log_text(), 20)
    r = mtaqueue(m, "delete", "--to", "gone@remote.test")
    check("admin: delete by recipient", r.returncode == 0 and "1 message" in r.stdout, r.stdout + r.stderr)
    check("admin: queue empty after delete", wait_for(lambda: queue_json(m).get("count") == 0, 10), queue_json(m))
    r = mtaqueue(m, "flush")
    check("admin: flush", r.returncode == 0 and r.stdout.startswith("ok: flush"), r.stdout + r.stderr)
    srv.decide = old


def hold_in_flight(m, srv):
    """hold while the recipient is being delivered: the attempt runs on, and its deferral leaves it held."""
    gate = threading.Event()
    old = srv.decide

    def stall(rcpt, n):
        if "stall" not in rcpt:
            return old(rcpt, n)
        if n == 1:
            gate.wait(20)
        return "452 4.2.2 full" if n == 1 else "250 2.1.5 ok"
    srv.decide = stall
    send(m, "inflight@localhost", ["stall@remote.test"], "admin three")
    wait_for(lambda: srv.attempts["stall@remote.test"] >= 1, 20)
    r = mtaqueue(m, "hold", "--to", "stall@remote.test")
    check("admin: hold in flight is promised", r.returncode == 0 and "1 recipient" in r.stdout and
          "held if the current attempt defers" in r.stdout, r.stdout + r.stderr)
    gate.set()
    held = lambda: [x["state"] for msg in queue_json(m).get("messages", []) for x in msg["recipients"]] == ["held"]
    check("admin: its deferral leaves it held", wait_for(held, 10), queue_json(m))
    time.sleep(2.5)
    check("admin: held after the attempt, not retried", srv.attempts["stall@remote.test"] == 1, srv.attempts)
    r = mtaqueue(m, "release", "--to", "stall@remote.test")
    ok = wait_for(lambda: any("stall@remote.test" in d[1] for d in srv.delivered), 15)
    check("admin: released, then delivered", r.returncode == 0 and ok, r.stdout + str(srv.attempts))
    # delete while in flight: the attempt's deferral removes the recipient (and the message), no DSN.
    gate.clear()
    srv.decide = lambda rcpt, n: (gate.wait(20) and "452 4.2.2 full") if "stall2" in rcpt else old(rcpt, n)
    send(m, "inflight@localhost", ["stall2@remote.test"], "admin four")
    wait_for(lambda: srv.attempts["stall2@remote.test"] >= 1, 20)
    r = mtaqueue(m, "delete", "--to", "stall2@remote.test")
    check("admin: delete in flight is promised", r.returncode == 0 and "1 message" in r.stdout and
          "deleted if the current attempt defers" in r.stdout, r.stdout + r.stderr)
    gate.set()
    gone = lambda: not any(x["address"] == "stall2@remote.test" for msg in queue_json(m).get("messages", [])
                           for x in msg["recipients"])
    check("admin: its deferral removes it", wait_for(gone, 10) and "event=deleted" in m.log_text(), queue_json(m))
    srv.decide = old


def why_rules(tmp):
    """mtaqueue why names the rule that holds each recipient: a delivery running (in-flight), another one
    waiting for the destination's only slot (concurrency-limit), held by an admin (uid and time), back-off
    after a 4xx, a dead destination, traffic shaping, a TLS policy that cannot be met."""
    gate = threading.Event()
    srv = ScriptedServer(lambda rcpt, n: (gate.wait(30) and "250 2.1.5 ok") if rcpt.startswith("stall")
                         else "451 4.3.0 try again later" if rcpt.startswith("later") else "250 2.1.5 ok")
    tables = {"transport": "dead.test smtp:[127.0.0.1]:1\nshaped.test smtp:[127.0.0.1]:%d\n"
                           "tls.test smtp:[127.0.0.1]:%d\n" % (srv.port, srv.port),
              "destination_policy": "shaped.test max_per_minute=1\n", "tls_policy": "tls.test encrypt\n"}
    for kind, text in tables.items():
        with open(os.path.join(tmp, kind), "w") as f:
            f.write(text)
        subprocess.run([os.path.join(BIN, "mtamap"), "-t", kind, os.path.join(tmp, kind)], check=True,
                       capture_output=True, timeout=30)
    m = MTA(name="why", extra=relay_config(srv).replace("maximal_backoff_time = 2s", "maximal_backoff_time = 1h") +
            "minimal_backoff_time = 10m\ndelivery_concurrency = 1\ntransport_map = %s.lmdb\n"
            "destination_policy = %s.lmdb\nsmtp_tls_policy_map = %s.lmdb\n"
            % tuple(os.path.join(tmp, k) for k in ("transport", "destination_policy", "tls_policy"))).start()

    def why(addr):
        ids = [x["id"] for x in queue_json(m).get("messages", []) for r in x["recipients"] if r["address"] == addr]
        if not ids:
            return {}
        r = mtaqueue(m, "why", ids[0], "--json")
        try:
            return [x for x in json.loads(r.stdout)["recipients"] if x["address"] == addr][0]
        except (ValueError, KeyError, IndexError):
            return {"unparsable": r.stdout + r.stderr}
    try:
        send(m, "why@localhost", ["stall1@remote.test"], "why one")
        wait_for(lambda: srv.attempts["stall1@remote.test"] >= 1, 20)
        send(m, "why@localhost", ["stall2@remote.test"], "why two")
        time.sleep(1)
        w = why("stall1@remote.test")
        check("why: a recipient being delivered is in-flight", w.get("rule") == "in-flight", w)
        w = why("stall2@remote.test")
        check("why: the next one waits for the destination's one slot (concurrency-limit)",
              w.get("rule") == "concurrency-limit" and w["destination"]["in_flight"] == 1 and
              w["destination"]["window"] == 1, w)
        r = mtaqueue(m, "why", "--json")
        check("why: needs one queue id", r.returncode != 0 and "exactly one queue id" in r.stdout + r.stderr,
              r.stdout + r.stderr)
        gate.set()
        wait_for(lambda: not queue_json(m).get("messages"), 20)
        send(m, "why@localhost", ["held@remote.test"], "why held")
        wait_for(lambda: srv.attempts["held@remote.test"] >= 1, 20)  # delivered: hold something waiting instead
        send(m, "why@localhost", ["later@remote.test"], "why later")
        w = wait_for(lambda: why("later@remote.test").get("rule") == "backoff" and why("later@remote.test"), 20) or \
            why("later@remote.test")
        check("why: a 4xx reply means back-off step 1, with the reply and the next attempt",
              w.get("rule") == "backoff" and "back-off step 1" in w["detail"] and "451 4.3.0 try again later" in
              w["detail"] and w["until"] and w["until"] > time.time() + 300, w)
        mtaqueue(m, "hold", "--to", "later@remote.test")
        w = why("later@remote.test")
        check("why: held by an admin, with who and when", w.get("rule") == "held" and w.get("held_by") == 0 and
              abs(w.get("held_at", 0) - time.time()) < 30 and "uid 0" in w["detail"], w)
        for i in range(4):
            send(m, "why@localhost", ["d%d@dead.test" % i], "why dead %d" % i)
        wait_for(lambda: "event=destination_skipped" in m.log_text() or
                 why("d3@dead.test").get("rule") == "destination-dead", 30)
        w = why("d3@dead.test")
        check("why: a destination that failed to connect 3 times in a row is dead until T",
              w.get("rule") == "destination-dead" and w["destination"]["dead_until"] and
              "marked dead until" in w["detail"], w)
        send(m, "why@localhost", ["s1@shaped.test"], "why shaped 1")
        send(m, "why@localhost", ["s2@shaped.test"], "why shaped 2")
        wait_for(lambda: why("s2@shaped.test").get("rule") == "shaped", 20)
        w = why("s2@shaped.test")
        check("why: destination_policy's max_per_minute postpones the second (shaped)",
              w.get("rule") == "shaped" and "max_per_minute=1" in w["detail"], w)
        send(m, "why@localhost", ["t@tls.test"], "why tls")
        wait_for(lambda: why("t@tls.test").get("rule") == "tls-policy", 20)
        w = why("t@tls.test")
        check("why: TLS required by smtp_tls_policy_map but not offered (tls-policy)",
              w.get("rule") == "tls-policy" and "4.7.4" in w["detail"], w)
        r = mtaqueue(m, "why", [x["id"] for x in queue_json(m)["messages"]
                                if any(r["address"] == "t@tls.test" for r in x["recipients"])][0])
        check("why: the text form says the same", r.returncode == 0 and "[tls-policy]" in r.stdout, r.stdout)
    finally:
        gate.set()
        m.stop()
        srv.stop()


def sendmail_tests(m):
    sm = os.path.join(BIN, "sendmail")
    msg = "To: smuser@localhost\nBcc: smhidden@localhost\nSubject: via sendmail\n\nline one\n.\nafter dot\n"
    r = subprocess.run([sm, "-C", m.conf, "-t", "-i", "-f", "smsender@localhost", "-F", "Send Mail"],
                       input=msg, capture_output=True, text=True, timeout=30)
    check("sendmail: -t -i exit 0", r.returncode == 0, r.stderr)
    got = wait_for(lambda: m.mailbox("smuser") and m.mailbox("smhidden"), 15)
    check("sendmail: To and Bcc recipients delivered", got, m.log_text()[-1500:])
    if got:
        data = open(m.mailbox("smuser")[0], "rb").read()
        check("sendmail: Bcc removed, From added, -i keeps the dot line",
              b"Bcc:" not in data and b'From: "Send Mail" <smsender@localhost>' in data and b"\n.\nafter dot" in data, data)
        check("sendmail: Received by the queue", b"(mta sendmail, from userid" in data, data[:300])
    r = subprocess.run([sm, "-C", m.conf], input="Subject: x\n\nno rcpt\n", capture_output=True, text=True, timeout=30)
    check("sendmail: no recipients is EX_USAGE", r.returncode == 64, "%d %s" % (r.returncode, r.stderr))
    if os.geteuid() == 0:
        r = subprocess.run(as_user("nobody", [sm, "-C", m.conf, "nbuser@localhost"]),
                           input="Subject: from nobody\n\nhi\n.\nnot this\n", capture_output=True, text=True, timeout=30)
        check("sendmail: works as an ordinary user", r.returncode == 0, r.stderr)
        got = wait_for(lambda: m.mailbox("nbuser"), 15)
        data = open(got[0], "rb").read() if got else b""
        check("sendmail: ordinary user's mail delivered, sender login@hostname, dot ends input",
              b"Return-Path: <nobody@mx.test.example>" in data and b"not this" not in data, data[:400])
    drop = os.path.join(m.spool, "queue", "maildrop")
    with open(os.path.join(drop, "mBADFILE"), "w") as f:
        f.write("MTA-MAILDROP 1\nU 0\nS a@b\nR bad address\n\nx\r\n")
    moved = wait_for(lambda: os.path.exists(os.path.join(drop, "bad", "mBADFILE")), 10)
    check("maildrop: a bad file is moved to bad/ and the queue lives on", moved and m.pids("mta-queue"), os.listdir(drop))


def sendmail_while_down(m):
    m.stop()
    r = subprocess.run([os.path.join(BIN, "sendmail"), "-C", m.conf, "-f", "x@localhost", "downuser@localhost"],
                       input="Subject: while down\n\nqueued while the daemon was down\n", capture_output=True, text=True, timeout=30)
    check("sendmail: accepted while the daemon is down", r.returncode == 0, r.stderr)
    m.proc = None
    m.start()
    check("sendmail: picked up at start", wait_for(lambda: m.mailbox("downuser"), 15), m.log_text()[-1500:])


def main():
    srv = ScriptedServer(decide_by_name)
    m = MTA(extra=relay_config(srv), name="queueadm").start()
    try:
        admin_tools(m, srv)
        hold_in_flight(m, srv)
        sendmail_tests(m)
        sendmail_while_down(m)
    finally:
        m.stop()
        srv.stop()
    tmp = os.path.join(TMP_ROOT, "why")
    os.makedirs(tmp, exist_ok=True)
    why_rules(tmp)
    finish()


if __name__ == "__main__":
    main()
