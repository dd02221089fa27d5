"""Queue lifecycle end to end: retries against a scripted receiving server (the relayhost), per-recipient
results, DSNs (parsed with Python's email package), connection drops and refusals around DATA, delay
warnings, expiry, dead destinations, and a fault test that SIGKILLs mta-queue and mta-smtp while 2,000
messages flow: every message that got 250 must reach the sink. The admin tools and sendmail are in
test_queue_admin.py."""
import os
import random
import signal
import smtplib
import threading
import time

from mtatest import MTA, check, finish, free_port, wait_for
from queuetest import GREYLIST, ScriptedServer, decide_by_name, dsns, queue_json, relay_config, send, status_fields


def retry_then_deliver(m, srv):
    send(m, "retry@localhost", ["slowok@remote.test"], "retry test")
    ok = wait_for(lambda: any("slowok@remote.test" in d[1] for d in srv.delivered), 30)
    check("retry: 451 twice then 250 is delivered", ok, "attempts=%r" % srv.attempts)
    check("retry: delivered on exactly the third attempt", srv.attempts["slowok@remote.test"] == 3, srv.attempts)
    check("retry: delivered once", sum("slowok@remote.test" in d[1] for d in srv.delivered) == 1, srv.delivered)
    wait_for(lambda: queue_json(m).get("count") == 0, 10)
    j = queue_json(m)
    check("retry: queue empty afterwards (list --json)", j.get("count") == 0 and j.get("messages") == [], j)


def one_of_three_bounces(m, srv):
    send(m, "bouncer@localhost", ["a1@remote.test", "nouser@remote.test", "a2@remote.test"], "three rcpts")
    got = wait_for(lambda: dsns(m, "bouncer", "Undelivered"), 30)
    time.sleep(1.5)  # a second DSN would have arrived by now
    reports = dsns(m, "bouncer", "Undelivered")
    check("bounce: exactly one DSN to the sender", len(reports) == 1, "got %d" % len(reports))
    if not got:
        return
    r = reports[0]
    check("bounce: multipart/report; report-type=delivery-status",
          r.get_content_type() == "multipart/report" and r.get_param("report-type") == "delivery-status", r["Content-Type"])
    check("bounce: from the null sender", open(m.mailbox("bouncer")[0], "rb").read().startswith(b"Return-Path: <>"), "")
    fields = status_fields(r)
    check("bounce: one failed recipient reported", len(fields) == 1 and fields[0].get("final-recipient") ==
          "rfc822; nouser@remote.test" and fields[0].get("action") == "failed" and fields[0].get("status") == "5.1.1", fields)
    check("bounce: remote reply included", "No such user" in fields[0].get("diagnostic-code", "") if fields else False, fields)
    kinds = [p.get_content_type() for p in r.walk()]
    check("bounce: text part and the returned message (no RET: full, as Postfix)",
          "text/plain" in kinds and "message/rfc822" in kinds, kinds)
    delivered = [rc for d in srv.delivered for rc in d[1]]
    check("bounce: the other two were delivered", "a1@remote.test" in delivered and "a2@remote.test" in delivered, delivered)
    wait_for(lambda: queue_json(m).get("count") == 0, 10)
    check("bounce: nothing left in the queue", queue_json(m).get("count") == 0, queue_json(m))


def mixed_five(m, srv):
    rcpts = ["m-ok1@remote.test", "m-tmp1@remote.test", "m-bad@remote.test", "m-tmp2@remote.test", "m-ok2@remote.test"]
    GREYLIST["hold"] = True
    send(m, "mixed@localhost", rcpts, "mixed five")
    wait_for(lambda: "to=<m-tmp2@remote.test>" in m.log_text() and "to=<m-tmp1@remote.test>" in m.log_text(), 20)
    j = queue_json(m)
    GREYLIST["hold"] = False
    listed = {r["address"]: r for msg in j.get("messages", []) if msg["sender"] == "mixed@localhost" for r in msg["recipients"]}
    check("mixed: list --json shows only the two deferred recipients", set(listed) == {"m-tmp1@remote.test", "m-tmp2@remote.test"}, j)
    check("mixed: their state and attempts are true",
          all(r["state"] in ("deferred", "in-flight") and r["attempts"] >= 1 and "451 4.2.0" in r["last_error"] for r in listed.values()), listed)
    ok = wait_for(lambda: srv.attempts["m-tmp1@remote.test"] >= 2 and srv.attempts["m-tmp2@remote.test"] >= 2
                  and queue_json(m).get("count") == 0, 30)
    check("mixed: deferred recipients delivered later", ok, srv.attempts)
    retried = [s for s in srv.sessions if s[0] == "mixed@localhost"][1:]
    offered_later = {r for s in retried for r in s[1]}
    check("mixed: retries offered only the deferred recipients",
          offered_later == {"m-tmp1@remote.test", "m-tmp2@remote.test"}, offered_later)
    check("mixed: the others were tried once", all(srv.attempts[r] == 1 for r in rcpts if "tmp" not in r), srv.attempts)
    check("mixed: one DSN for the 550", len(wait_for(lambda: dsns(m, "mixed", "Undelivered"), 10) or []) == 1, "")


def listed_rcpts(m, sender):
    """(list --json document, {address: recipient} of sender's queued messages)."""
    j = queue_json(m)
    return j, {r["address"]: r for msg in j.get("messages", []) if msg.get("sender") == sender
               for r in msg.get("recipients", [])}


def queue_is_empty(m, label):
    ok = wait_for(lambda: queue_json(m).get("count") == 0, 10)
    j = queue_json(m)
    check("%s: list --json parses and shows an empty queue" % label,
          ok and j.get("count") == 0 and j.get("messages") == [], j)


def drop_then_deliver(m, srv, tag, action, text="Hello.\r\n"):
    """The server fails the transaction (action) on the first two DATA attempts, then accepts: the queue
    must show the recipients deferred with the connection loss, retry them, and deliver each exactly once
    (counting duplicates: only a drop after the final dot may cause one)."""
    sender, subject = "%s@localhost" % tag, "%s test" % tag
    rcpts = ["%s-a@remote.test" % tag, "%s-b@remote.test" % tag]
    mid = "<%s-test@test>" % tag
    srv.data_fault = lambda acc, n: action if acc[0].startswith(tag + "-") and n <= 2 else None
    t0 = time.time()
    send(m, sender, rcpts, subject, text=text)
    seen = {}

    def deferred_seen():
        j, rs = listed_rcpts(m, sender)
        if set(rs) == set(rcpts) and all(r["state"] == "deferred" for r in rs.values()):
            seen.update(rs)
            return True
        return False
    ok = wait_for(deferred_seen, 15, 0.02)
    check("%s: list --json shows both recipients deferred after the drop" % tag, ok, listed_rcpts(m, sender)[0])
    if ok:
        check("%s: deferred with the connection loss as last error, a retry scheduled" % tag,
              all(r["attempts"] >= 1 and "lost connection" in r["last_error"] and r["next_attempt"] > 0
                  for r in seen.values()), seen)
    ok = wait_for(lambda: all(sum(rc in d[1] for d in srv.delivered) for rc in rcpts), 30)
    check("%s: retried and delivered later" % tag, ok, "faults=%r data=%r" % (srv.faults, srv.data_attempts))
    check("%s: the server saw the drop twice, then a third DATA" % tag,
          srv.faults[action] == 2 and srv.data_attempts[rcpts[0]] == 3, "faults=%r data=%r" % (srv.faults, srv.data_attempts))
    time.sleep(1.2)  # an extra (wrong) retry would have come by now
    acked = [rc for d in srv.delivered for rc in d[1] if rc in rcpts]
    check("%s: each recipient accepted exactly once" % tag, sorted(acked) == sorted(rcpts), acked)
    dups = srv.message_ids[mid] - 1
    print("%s: received %d time(s), duplicates=%d, %.1fs" % (tag, srv.message_ids[mid], dups, time.time() - t0), flush=True)
    if action == "drop-dot":
        check("%s: received at least once, duplicates only from the unanswered dots" % tag,
              1 <= srv.message_ids[mid] <= 3, srv.message_ids[mid])
    else:
        check("%s: no duplicate (the server never saw the final dot before accepting)" % tag,
              srv.message_ids[mid] == 1, srv.message_ids[mid])
    check("%s: no DSN to the sender" % tag, dsns(m, tag) == [], [str(d["Subject"]) for d in dsns(m, tag)])
    srv.data_fault = None
    queue_is_empty(m, tag)


def reject_after_dot(m, srv):
    """554 after the final dot for a two-recipient message: one DSN naming both, no retry."""
    tag = "rejdot"
    rcpts = ["rejdot-a@remote.test", "rejdot-b@remote.test"]
    srv.data_fault = lambda acc, n: "554 5.7.1 content rejected by policy" if acc[0].startswith("rejdot-") else None
    send(m, "rejdot@localhost", rcpts, "rejdot test")
    got = wait_for(lambda: dsns(m, tag, "Undelivered"), 20)
    time.sleep(1.5)  # a second DSN, or a retry, would have come by now
    reports = dsns(m, tag, "Undelivered")
    check("rejdot: exactly one DSN to the sender", len(reports) == 1, "got %d" % len(reports))
    check("rejdot: not retried", srv.data_attempts["rejdot-a@remote.test"] == 1 and
          srv.attempts["rejdot-a@remote.test"] == 1, srv.data_attempts)
    check("rejdot: nothing counted as delivered", srv.message_ids["<rejdot-test@test>"] == 0 and
          not [d for d in srv.delivered if d[0] == "rejdot@localhost"], srv.message_ids)
    if got:
        fields = status_fields(reports[0])
        check("rejdot: both recipients failed with the 5.7.1 from the end of data",
              sorted(f.get("final-recipient", "") for f in fields) == ["rfc822; " + r for r in rcpts] and
              all(f.get("action") == "failed" and f.get("status") == "5.7.1" and "content rejected" in
                  f.get("diagnostic-code", "") for f in fields), fields)
    srv.data_fault = None
    queue_is_empty(m, "rejdot")


def defer_after_dot(m, srv):
    """451 after the final dot once, then 250: delivered on the second attempt, once."""
    srv.data_fault = lambda acc, n: "451 4.3.0 try later" if acc[0].startswith("tmpdot-") and n == 1 else None
    send(m, "tmpdot@localhost", ["tmpdot-a@remote.test"], "tmpdot test")
    ok = wait_for(lambda: any("tmpdot-a@remote.test" in d[1] for d in srv.delivered), 20)
    check("tmpdot: 451 after the dot is retried and delivered", ok and srv.data_attempts["tmpdot-a@remote.test"] == 2,
          srv.data_attempts)
    check("tmpdot: received (accepted) once", srv.message_ids["<tmpdot-test@test>"] == 1, srv.message_ids)
    check("tmpdot: no DSN", dsns(m, "tmpdot") == [], "")
    srv.data_fault = None
    queue_is_empty(m, "tmpdot")


def data_faults(m, srv):
    drop_then_deliver(m, srv, "drop354", "drop-354")
    # 1 MB; the server hangs up after 64 kB, often while the client still streams (socket buffers may hold it all)
    drop_then_deliver(m, srv, "dropbody", "drop-body", text=("x" * 998 + "\r\n") * 1000)
    drop_then_deliver(m, srv, "dropdot", "drop-dot")
    reject_after_dot(m, srv)
    defer_after_dot(m, srv)


def delay_expiry_dead():
    dead_port = free_port()
    m = MTA(extra="relayhost = [127.0.0.1]:%d\nmaximal_backoff_time = 1s\ndelay_warning_time = 1s\n"
                  "maximal_queue_lifetime = 5s\nbounce_queue_lifetime = 3s\n" % dead_port, name="delay").start()
    try:
        send(m, "warn@localhost", ["far@remote.test"], "delay test")
        got = wait_for(lambda: dsns(m, "warn", "Delayed"), 20)
        if check("delay: one delay warning DSN", got and len(got) == 1, m.log_text()[-2000:]):
            f = status_fields(got[0])
            check("delay: Action delayed, 4.x.x status, Will-Retry-Until",
                  f and f[0]["action"] == "delayed" and f[0]["status"].startswith("4.") and "will-retry-until" in f[0], f)
        got = wait_for(lambda: dsns(m, "warn", "Undelivered"), 20)
        check("expiry: the expired message bounces", got and len(got) == 1, m.log_text()[-2000:])
        if got:
            f = status_fields(got[0])
            check("expiry: failed with a 5.x.x status", f and f[0]["action"] == "failed" and f[0]["status"].startswith("5."), f)
        check("delay: still exactly one delay warning", len(dsns(m, "warn", "Delayed")) == 1, "")
        check("dead destination: marked dead after repeated connection failures",
              "event=destination_dead" in m.log_text(), m.log_text()[-2000:])
        send(m, "", ["nullbounce@remote.test"], "null sender")
        wait_for(lambda: "event=dsn_suppressed" in m.log_text(), 20)
        check("bounce: never bounce a null-sender message", "event=dsn_suppressed" in m.log_text(), m.log_text()[-1500:])
        check("delay: queue empty at the end", wait_for(lambda: queue_json(m).get("count") == 0, 10), queue_json(m))
    finally:
        m.stop()


def fault_test():
    srv = ScriptedServer()
    m = MTA(extra="relayhost = [127.0.0.1]:%d\nmaximal_backoff_time = 2s\n" % srv.port, name="fault").start()
    accepted, lock, total = [], threading.Lock(), 2000
    counter = iter(range(total))
    stop_killing = threading.Event()

    def sender():
        s = None
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            mid = "<fault-%d@test>" % i
            body = "From: <f@localhost>\r\nSubject: fault %d\r\nMessage-ID: %s\r\n\r\nbody %d\r\n" % (i, mid, i)
            for attempt in range(40):  # a killed queue makes smtpd answer 451 until it is back
                if attempt:
                    time.sleep(0.25)
                try:
                    if s is None:
                        s = smtplib.SMTP("127.0.0.1", m.port, timeout=30)
                    s.sendmail("f@localhost", ["sink%d@remote.test" % (i % 7)], body.encode())
                    with lock:
                        accepted.append(mid)
                    break
                except (smtplib.SMTPException, OSError):
                    try:
                        s and s.close()
                    except Exception:
                        pass
                    s = None
        if s:
            try:
                s.quit()
            except Exception:
                pass

    def killer():
        kills = 0
        # A dozen kills is plenty; more only grows mtad's restart back-off (1 s doubling) and the run time.
        while kills < 12 and not stop_killing.wait(random.uniform(0.3, 0.8)):
            prog = random.choice(["mta-queue", "mta-smtp"])
            pids = m.pids(prog)
            if pids:
                os.kill(random.choice(pids), signal.SIGKILL)
                kills += 1
        killer.kills = kills

    try:
        k = threading.Thread(target=killer)
        k.start()
        threads = [threading.Thread(target=sender) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop_killing.set()
        k.join()
        want = set(accepted)
        ok = wait_for(lambda: want <= set(srv.message_ids), 180, 0.5)
        missing = want - set(srv.message_ids)
        dups = sum(n - 1 for n in srv.message_ids.values() if n > 1)
        print("fault: accepted=%d delivered_unique=%d duplicates=%d kills=%d" %
              (len(want), len(srv.message_ids), dups, getattr(killer, "kills", 0)), flush=True)
        check("fault: processes were killed while mail flowed", getattr(killer, "kills", 0) >= 2, getattr(killer, "kills", 0))
        check("fault: most submissions accepted despite kills", len(want) >= total * 0.8, len(want))
        check("fault: every message that got 250 reached the sink", ok and not missing, "missing %d e.g. %r" % (len(missing), sorted(missing)[:5]))
        check("fault: queue empty at the end", wait_for(lambda: queue_json(m).get("count") == 0, 60), queue_json(m).get("count"))
    finally:
        m.stop()
        srv.stop()


def main():
    srv = ScriptedServer(decide_by_name)
    m = MTA(extra=relay_config(srv), name="queue").start()
    try:
        retry_then_deliver(m, srv)
        one_of_three_bounces(m, srv)
        mixed_five(m, srv)
        data_faults(m, srv)
    finally:
        m.stop()
        srv.stop()
    delay_expiry_dead()
    fault_test()
    finish()


if __name__ == "__main__":
    main()
