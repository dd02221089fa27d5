"""Deliverability end to end: bounce classification, the suppression list, grouping by next hop, inbound
DNSBL. The relayhost is queuetest.ScriptedServer answering RCPT by recipient name with replies as large
receivers send them; the checks read what the queue logged, what `mtaqueue show/stats --json` report, the
DSNs the sender got (parsed with Python's email package), and what the receiver saw (a suppressed
recipient must never reach it; recipients of several domains behind the relayhost come in one
transaction). The DNSBL part serves its block lists from NSD and connects from several 127.x addresses."""
import email
import email.policy
import json
import re
import time

import os
import smtplib
import subprocess

from dnszone import Nsd
from mtatest import BIN, check, finish, free_port, Guard, MTA, TMP_ROOT, wait_for
from smtpsink import Sink
from queuetest import ScriptedServer, mtaqueue, queue_json, relay_config, send, status_fields

# local part prefix -> (RCPT reply, expected class, bounced?)
REPLIES = {
    "bad": ("550 5.1.1 <{r}>: Recipient address rejected: User unknown", "bad_mailbox", True),
    "gone": ("550 5.1.2 Bad destination system address", "bad_domain", True),
    "full": ("552 5.2.2 The email account that you tried to reach is over quota", "mailbox_full", True),
    "big": ("552 5.3.4 Your message exceeded our message size limits", "message_too_big", True),
    "spam": ("550 5.7.1 Service unavailable, client host blocked using zen.example", "policy_block", True),
    "tls": ("530 5.7.0 Must issue a STARTTLS command first", "tls_auth_required", True),
    "perm": ("554 5.6.0 Message content rejected", "other_permanent", True),
    "rate": ("450 4.7.28 Our system has detected an unusual rate of mail, slow down", "rate_limited", False),
    "grey": ("451 4.2.0 <{r}>: Recipient address rejected: Greylisted", "other_transient", False),
    "quota": ("452 4.2.2 Mailbox full, try again later", "mailbox_full", False),
}


def decide(rcpt, n):
    prefix = rcpt.split("-", 1)[0]
    if prefix in REPLIES:
        return REPLIES[prefix][0].format(r=rcpt)
    return "250 2.1.5 ok"


def bounced_line(m, rcpt):
    found = re.findall(r"event=bounced qid=\S+ rcpt=<%s> relay=(\S+) class=(\S+)" % re.escape(rcpt), m.log_text())
    return found[-1] if found else None


def deferred_class(m, rcpt):
    found = re.findall(r"event=deferred qid=\S+ to=<%s> relay=\S+ class=(\S+)" % re.escape(rcpt), m.log_text())
    return found[-1] if found else None


def dsns(m, user, subject):
    """The DSNs in user's mailbox about the message with this Subject (the returned original carries it)."""
    out = []
    for path in m.mailbox(user):
        with open(path, "rb") as f:
            raw = f.read()
        if ("\nSubject: %s\r\n" % subject).encode() in raw or ("\nSubject: %s\n" % subject).encode() in raw:
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            if msg.get_content_type() == "multipart/report":
                out.append(msg)
    return out


def jload(r):
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {"unparsable": r.stdout + r.stderr}


def classification(m, srv):
    rcpts = ["%s-1@remote.test" % p for p in REPLIES]
    send(m, "classes@localhost", rcpts, "classes one")
    for p, (reply, cls, bounced) in REPLIES.items():
        r = "%s-1@remote.test" % p
        if bounced:
            got = wait_for(lambda: bounced_line(m, r), 20)
            check("class: %s bounces as %s (log)" % (reply.split(" ", 2)[1], cls), got and got[1] == cls, got)
        else:
            got = wait_for(lambda: deferred_class(m, r), 20)
            check("class: %s defers as %s (log)" % (reply.split(" ", 2)[1], cls), got == cls, got)
    # The deferred ones stay in the queue with their class.
    j = queue_json(m)
    msg = [x for x in j.get("messages", []) if x["sender"] == "classes@localhost"]
    if check("class: the message with deferred recipients is queued", len(msg) == 1, j):
        show = jload(mtaqueue(m, "show", msg[0]["id"], "--json")).get("message", {})
        classes = {x["address"]: x["class"] for x in show.get("recipients", [])}
        want = {"%s-1@remote.test" % p: c for p, (_, c, b) in REPLIES.items() if not b}
        check("class: mtaqueue show --json gives each deferred recipient its class", classes == want, (classes, want))
        text = mtaqueue(m, "show", msg[0]["id"]).stdout
        check("class: mtaqueue show (text) names the class", "class rate_limited" in text and
              "class other_transient" in text, text)
    # One DSN for the bounced ones, its statuses parsed by Python's email package.
    got = wait_for(lambda: dsns(m, "classes", "classes one"), 20)
    if check("class: the sender got a DSN", got, m.mailbox("classes")):
        st = {f.get("final-recipient", "").split(";")[-1].strip(): f.get("status") for f in status_fields(got[0])}
        check("class: the DSN has every bounced recipient with the remote status",
              st.get("bad-1@remote.test") == "5.1.1" and st.get("big-1@remote.test") == "5.3.4" and
              len([p for p in REPLIES if REPLIES[p][2]]) == len(st), st)
    stats = jload(mtaqueue(m, "stats", "--json"))
    c = stats.get("classes", {})
    ok = all(c.get(cls, {}).get("bounced", 0) >= 1 for _, cls, b in REPLIES.values() if b) and \
        all(c.get(cls, {}).get("deferred", 0) >= 1 for _, cls, b in REPLIES.values() if not b)
    check("class: mtaqueue stats --json counts every class", ok and stats.get("suppressed") == 0, stats)
    text = mtaqueue(m, "stats", user="nobody")
    check("class: an ordinary user may read mtaqueue stats", text.returncode == 0 and "rate_limited" in text.stdout,
          text.stdout + text.stderr)
    # Suppression is off by default: the next message to a hard-bounced address is tried again.
    before = srv.attempts["bad-1@remote.test"]
    send(m, "classes@localhost", ["bad-1@remote.test"], "classes two")
    check("no suppression by default: a hard-bounced address is tried again",
          wait_for(lambda: srv.attempts["bad-1@remote.test"] > before, 20), srv.attempts)
    r = mtaqueue(m, "suppression", "list", "--json")
    check("no suppression by default: the list stays empty", jload(r).get("count") == 0, r.stdout + r.stderr)


def suppression(m, srv):
    send(m, "sup@localhost", ["bad-2@remote.test", "gone-2@remote.test", "full-2@remote.test"], "sup one")
    wait_for(lambda: bounced_line(m, "full-2@remote.test") and bounced_line(m, "gone-2@remote.test"), 20)
    lst = jload(mtaqueue(m, "suppression", "list", "--json"))
    entries = {e["address"]: e for e in lst.get("suppressed", [])}
    check("suppression: hard bounces (bad_mailbox, bad_domain) are listed, a full mailbox is not",
          set(entries) == {"bad-2@remote.test", "gone-2@remote.test"}, lst)
    e = entries.get("bad-2@remote.test", {})
    check("suppression: the entry has class, queue id, reason and an expiry suppression_ttl ahead",
          e.get("class") == "bad_mailbox" and e.get("queue_id") and "5.1.1" in e.get("reason", "") and
          abs(e.get("until", 0) - e.get("since", 0) - 3600) <= 1, e)
    # Later mail to a suppressed address bounces without a connection; the others still go out.
    before = dict(srv.attempts)
    send(m, "sup@localhost", ["Bad-2@remote.test", "ok-2@remote.test"], "sup two")
    got = wait_for(lambda: bounced_line(m, "Bad-2@remote.test"), 20)
    check("suppression: a suppressed recipient bounces at once (relay=suppression-list, class bad_mailbox)",
          got == ("suppression-list", "bad_mailbox"), got)
    check("suppression: the others of the message are delivered",
          wait_for(lambda: srv.attempts["ok-2@remote.test"] >= 1, 20), srv.attempts)
    check("suppression: the receiver was never asked about it again",
          srv.attempts["bad-2@remote.test"] == before.get("bad-2@remote.test", 0) and
          srv.attempts["Bad-2@remote.test"] == 0, srv.attempts)
    dsn = wait_for(lambda: dsns(m, "sup", "sup two"), 20)
    if check("suppression: the sender gets a DSN", dsn, m.mailbox("sup")):
        f = status_fields(dsn[0])
        diag = f[0].get("diagnostic-code", "") if f else ""
        check("suppression: the DSN says 5.1.1 and why (suppression list, class, the original bounce)",
              len(f) == 1 and f[0].get("status") == "5.1.1" and "suppression list" in diag and
              "bad_mailbox" in diag and "User unknown" in diag, f)
    lst2 = jload(mtaqueue(m, "suppression", "list", "--json"))
    e2 = {x["address"]: x for x in lst2.get("suppressed", [])}.get("bad-2@remote.test", {})
    check("suppression: a bounce caused by the list does not renew the entry", e2.get("until") == e.get("until"),
          (e, e2))

    # Admin edits.
    r = mtaqueue(m, "suppression", "add", "eve-2@remote.test", "--ttl", "1h")
    check("suppression add: ok", r.returncode == 0 and r.stdout.startswith("ok: suppression add 1 address"),
          r.stdout + r.stderr)
    send(m, "sup@localhost", ["eve-2@remote.test"], "sup three")
    got = wait_for(lambda: bounced_line(m, "eve-2@remote.test"), 20)
    check("suppression add: an added address bounces without a connection",
          got and got[0] == "suppression-list" and srv.attempts["eve-2@remote.test"] == 0, (got, srv.attempts))
    r = mtaqueue(m, "suppression", "remove", "eve-2@remote.test", "never-2@remote.test")
    check("suppression remove: ok, and says which were not listed",
          r.returncode == 0 and "1 address" in r.stdout and "1 not on the list" in r.stdout, r.stdout + r.stderr)
    send(m, "sup@localhost", ["eve-2@remote.test"], "sup four")
    check("suppression remove: the address is delivered to again",
          wait_for(lambda: srv.attempts["eve-2@remote.test"] >= 1, 20), srv.attempts)
    r = mtaqueue(m, "suppression", "add", "short-2@remote.test", "--ttl", "1s")
    time.sleep(2.2)
    send(m, "sup@localhost", ["short-2@remote.test"], "sup five")
    check("suppression: an expired entry no longer suppresses",
          wait_for(lambda: srv.attempts["short-2@remote.test"] >= 1, 20), srv.attempts)
    lst3 = jload(mtaqueue(m, "suppression", "list", "--json"))
    check("suppression list: expired entries are purged", "short-2@remote.test" not in
          [x["address"] for x in lst3.get("suppressed", [])] and lst3.get("count") == 2, lst3)
    text = mtaqueue(m, "suppression", "list").stdout
    check("suppression list (text)", "bad-2@remote.test  [bad_mailbox" in text and "2 suppressed addresses" in text,
          text)

    # Who may, and what is refused.
    r = mtaqueue(m, "suppression", "list", user="nobody")
    check("suppression: an ordinary user may not read the list", r.returncode == 1 and "permission denied" in r.stderr,
          r.stdout + r.stderr)
    r = mtaqueue(m, "suppression", "add", "eve-3@remote.test", user="nobody")
    check("suppression: nor change it", r.returncode == 1 and "permission denied" in r.stderr, r.stdout + r.stderr)
    for args, why in ((["suppression", "add", "nobody"], "not an address"),
                      (["suppression", "add"], "needs at least one address"),
                      (["suppression", "drop", "a@b.test"], "list, add or remove"),
                      (["suppression", "add", "a@b.test", "--ttl", "soon"], "bad duration")):
        r = mtaqueue(m, *args)
        check("suppression: refused with a clear error: %s" % " ".join(args),
              r.returncode == 1 and why in r.stderr, r.stdout + r.stderr)


def grouping(m, srv):
    rcpts = ["g1@one.test", "g2@two.test", "g3@three.test", "g4@one.test"]
    send(m, "group@localhost", rcpts, "grouped")
    got = wait_for(lambda: [x for x in srv.sessions if x[0] == "group@localhost"], 20)
    time.sleep(0.5)  # a second transaction, if there were one, would come right after
    tx = [x for x in srv.sessions if x[0] == "group@localhost"]
    check("grouping: recipients of three domains behind the relayhost go in one transaction",
          got and len(tx) == 1 and sorted(tx[0][1]) == sorted(rcpts), tx)
    ev = re.findall(r"event=delivered qid=\S+ to=<g2@two.test> relay=(\S+)", m.log_text())
    check("grouping: the queue's log names the relayhost as the relay", "smtp:[127.0.0.1]:%d" % srv.port in ev, ev)


def restart_keeps_list(m):
    m.stop()
    m.proc = None
    m.start()
    lst = jload(mtaqueue(m, "suppression", "list", "--json"))
    check("suppression: the list survives a restart (LMDB)",
          sorted(x["address"] for x in lst.get("suppressed", [])) == ["bad-2@remote.test", "gone-2@remote.test"], lst)
    stats = jload(mtaqueue(m, "stats", "--json"))
    check("stats: counters start again with the process, the list size does not", stats.get("suppressed") == 2 and
          sum(v["bounced"] for v in stats.get("classes", {}).values()) == 0, stats)


def dnsbl_zone(origin, lines):
    head = ["$ORIGIN %s." % origin, "$TTL 1", "@ IN SOA ns hostmaster 1 3600 600 86400 1", "@ IN NS ns",
            "ns IN A 127.0.0.1"]
    return "\n".join(head + lines) + "\n"


def served_mta(g, tmp, zones, probe, expect, what, name, extra):
    """NSD serving `zones` (checked by asking it for `probe`) and an MTA whose resolver forwards to it,
    both stopped by the guard g. None when NSD does not answer (the check says so)."""
    nsd = Nsd(tmp, zones)
    g.cleanups.append(nsd.stop)
    if not check(what, nsd.wait_answering(probe, expect), nsd.query(probe)):
        return None
    g.log = m = MTA(name=name, extra="dns_forwarder = %s\n" % nsd.forwarder() + extra).start()
    g.cleanups.insert(0, m.stop)
    return m


def from_client(m, ip, rcpt="alice@localhost"):
    """(code, text) of RCPT from source address ip, after MAIL; the message is sent when RCPT is accepted."""
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30, source_address=(ip, 0)) as s:
        s.ehlo("client.test")
        s.mail("someone@client.test")
        code, text = s.rcpt(rcpt)
        if code == 250:
            s.data(b"Subject: dnsbl\r\n\r\nhello\r\n")
        return code, text.decode("utf-8", "replace")


def dnsbl(tmp):
    zones = {
        # 127.0.0.77 listed (127.0.0.2); .79 answered outside the pattern; .81 listed but allow-listed.
        "bl.test": dnsbl_zone("bl.test", ["77.0.0.127 IN A 127.0.0.2", "79.0.0.127 IN A 127.0.0.10",
                                          "81.0.0.127 IN A 127.0.0.2"]),
        # Weight 1 of the threshold 2: listing .79 here alone is not enough.
        "w.test": dnsbl_zone("w.test", ["79.0.0.127 IN A 127.0.0.3", "77.0.0.127 IN A 127.0.0.4"]),
    }
    with Guard("dnsbl") as g:
        m = served_mta(g, tmp, zones, "77.0.0.127.bl.test", "127.0.0.2", "dnsbl: nsd serves the block lists", "dnsbl", (
            "dns_insecure_domains = bl.test w.test broken.test\nmynetworks = 127.0.0.1/32\n"
            # broken.test is not served: every lookup there fails (SERVFAIL), which must refuse nobody.
            "smtpd_dnsbl_zones = bl.test=127.0.0.[2..9]*2 w.test broken.test\nsmtpd_dnsbl_threshold = 2\n"
            "smtpd_dnsbl_allowlist = 127.0.0.81/32\n"))
        if m is None:
            return
        code, text = from_client(m, "127.0.0.77")
        check("dnsbl: a listed client gets 554 5.7.1 at RCPT naming the zones",
              code == 554 and text.startswith("5.7.1 ") and "[127.0.0.77]" in text and "bl.test" in text and
              "w.test" in text, (code, text))
        check("dnsbl: the refusal is logged with the recipient",
              re.search(r"event=reject client=127\.0\.0\.77 code=554 enhanced=5\.7\.1 rcpt=<alice@localhost> "
                        r"reason=\"dnsbl: bl\.test, w\.test\"", m.log_text()) is not None, m.log_text()[-1500:])
        code, text = from_client(m, "127.0.0.78")
        check("dnsbl: a client no zone lists is accepted", code == 250, (code, text))
        code, text = from_client(m, "127.0.0.79")
        check("dnsbl: an answer outside the zone's pattern and a weight under the threshold do not refuse",
              code == 250, (code, text))
        code, text = from_client(m, "127.0.0.81")
        check("dnsbl: smtpd_dnsbl_allowlist is never refused", code == 250, (code, text))
        code, text = from_client(m, "127.0.0.1")
        check("dnsbl: mynetworks is not looked up", code == 250 and "client=127.0.0.1 zone" not in m.log_text(),
              (code, text))
        check("dnsbl: a zone that does not answer (SERVFAIL) is logged and refuses nobody",
              re.search(r"event=dnsbl_unanswered client=127\.0\.0\.78 zone=broken\.test rcode=2", m.log_text())
              is not None, m.log_text()[-1500:])
        check("dnsbl: the accepted clients' mail is delivered", wait_for(lambda: len(m.mailbox("alice")) >= 4, 20),
              m.mailbox("alice"))


def delivered_to(srv, prefix):
    return sum(1 for _, rcpts, _ in srv.delivered for r in rcpts if r.startswith(prefix))


def shaping(tmp):
    """Two next hops: the relayhost (slow.test, ...) with max_per_minute=10, and fast.test through
    transport_map to a second server that starts to answer 450 4.7.28 in the middle of a burst."""
    slow = ScriptedServer()
    state = {"limit": False}
    fast = ScriptedServer(lambda rcpt, n: "450 4.7.28 Our system has detected an unusual rate of mail, slow down"
                          if rcpt.startswith("burst") and state["limit"] else "250 2.1.5 ok")
    with Guard("shaping") as g:
        g.cleanups += [slow.stop, fast.stop]
        for name, text in (("policy", "[127.0.0.1]:%d max_per_minute=10 max_per_connection=2\n" % slow.port),
                           ("transport", "fast.test smtp:[127.0.0.1]:%d\n" % fast.port)):
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)
            r = subprocess.run([os.path.join(BIN, "mtamap"), "-t", "destination_policy" if name == "policy" else name,
                                os.path.join(tmp, name)], capture_output=True, text=True, timeout=30)
            if not check("shaping: mtamap -t %s" % ("destination_policy" if name == "policy" else name),
                         r.returncode == 0, r.stdout + r.stderr):
                return
        r = subprocess.run([os.path.join(BIN, "mtamap"), "-t", "destination_policy", "/dev/stdin"],
                           input="gmail.com max_per_minute=0\n", capture_output=True, text=True, timeout=30)
        check("shaping: mtamap refuses a bad policy at its line",
              r.returncode != 0 and ":1:" in r.stderr and "max_per_minute" in r.stderr, r.stdout + r.stderr)
        g.log = m = MTA(name="shaping", extra=(
            relay_config(slow) + "destination_policy = %s.lmdb\ntransport_map = %s.lmdb\n"
            "destination_slowdown_time = 2s\n" % (os.path.join(tmp, "policy"), os.path.join(tmp, "transport")))).start()
        g.cleanups.insert(0, m.stop)
        for i in range(15):
            send(m, "shape@localhost", ["s%d@slow.test" % i], "shaped %d" % i)
        for i in range(5):
            send(m, "shape@localhost", ["f%d@fast.test" % i], "fast %d" % i)
        check("shaping: the other next hop gets its mail at once",
              wait_for(lambda: delivered_to(fast, "f") == 5, 20), fast.delivered)
        wait_for(lambda: delivered_to(slow, "s") >= 10, 20)
        time.sleep(3)
        check("shaping: max_per_minute=10 lets exactly 10 of 15 through in the first minute",
              delivered_to(slow, "s") == 10, len(slow.delivered))
        time.sleep(6)  # idle cached connections close after 5 s: then every connection has been counted
        check("shaping: max_per_connection=2: no connection carried more than 2 messages",
              sum(slow.conn_tx) >= 10 and max(slow.conn_tx) <= 2, slow.conn_tx)
        check("shaping: the rest is postponed, and the log says why",
              re.search(r"event=destination_shaped nexthop=\[127\.0\.0\.1\]:%d postponed=\d+ from=\+\d+s "
                        r"reason=\"max_per_minute=10 \(destination_policy \[127\.0\.0\.1\]:%d\)\"" %
                        (slow.port, slow.port), m.log_text()) is not None, m.log_text()[-2000:])
        j = queue_json(m)
        waiting = [r for x in j.get("messages", []) for r in x["recipients"] if r["address"].endswith("@slow.test")]
        first = min(r["next_attempt"] for r in waiting) if waiting else 0
        check("shaping: the 5 postponed wait a minute, without an attempt, saying they are shaped",
              len(waiting) == 5 and all(r["attempts"] == 0 and "is shaped: max_per_minute=10" in r["last_error"]
                                        for r in waiting) and first >= time.time() + 40, waiting)

        # Adaptive: the fast hop starts answering 4.7.28 mid-burst.
        for i in range(4):
            send(m, "shape@localhost", ["burst%d@fast.test" % i], "burst %d" % i)
        wait_for(lambda: delivered_to(fast, "burst") == 4, 20)
        state["limit"] = True
        for i in range(4, 10):
            send(m, "shape@localhost", ["burst%d@fast.test" % i], "burst %d" % i)
        got = wait_for(lambda: re.search(r"event=destination_throttled nexthop=smtp:\[127\.0\.0\.1\]:%d "
                                         r"rate=(\d+)/minute" % fast.port, m.log_text()), 20)
        check("shaping: a 4.7.28 reply cuts that next hop's rate (halved from what went out)",
              got is not None and 1 <= int(got.group(1)) <= 7, m.log_text()[-2000:])
        check("shaping: the throttled recipients are deferred as rate_limited",
              "class=rate_limited" in m.log_text(), m.log_text()[-1500:])
        state["limit"] = False
        time.sleep(2.5)
        send(m, "shape@localhost", ["later1@fast.test"], "later 1")
        step = wait_for(lambda: re.search(r"event=destination_recovering nexthop=smtp:\[127\.0\.0\.1\]:%d rate=(\d+)"
                                          % fast.port, m.log_text()), 10)
        check("shaping: after destination_slowdown_time the rate grows a step",
              step is not None and got is not None and int(step.group(1)) > int(got.group(1)), m.log_text()[-1500:])
        restored = None
        for i in range(6):
            time.sleep(2.2)
            send(m, "shape@localhost", ["later%d@fast.test" % (i + 2)], "later")
            restored = re.search(r"event=destination_restored nexthop=smtp:\[127\.0\.0\.1\]:%d" % fast.port,
                                 m.log_text())
            if restored:
                break
        check("shaping: step by step it gets back to where it was", restored is not None, m.log_text()[-1500:])
        check("shaping: the relayhost's budget was never touched by the other hop's throttling",
              "event=destination_throttled nexthop=[127.0.0.1]:%d" % slow.port not in m.log_text(), "")


def provider(tmp):
    """destination_policy "mx:" keys: a.prov.test and b.prov.test are both served by *.provider.prov.test
    (NSD), whose entry allows 4 messages an hour for all its domains together. Once the queue has seen
    each domain's MX (its first message), they share that budget; the sinks count what arrives."""
    zone = dnsbl_zone("prov.test", ["a IN MX 10 mx1.provider", "b IN MX 10 mx2.provider",
                                    "mx1.provider IN A 127.0.0.85", "mx2.provider IN A 127.0.0.86"])
    port = free_port("127.0.0.85", "127.0.0.86")
    sinks = [Sink("127.0.0.85", port), Sink("127.0.0.86", port)]
    with Guard("provider") as g:
        g.cleanups += [s.close for s in sinks]
        with open(os.path.join(tmp, "policy"), "w") as f:
            f.write("mx:.provider.prov.test max_per_hour=4\n")
        r = subprocess.run([os.path.join(BIN, "mtamap"), "-t", "destination_policy", os.path.join(tmp, "policy")],
                           capture_output=True, text=True, timeout=30)
        if not check("provider: mtamap takes an mx: key", r.returncode == 0, r.stdout + r.stderr):
            return
        m = served_mta(g, tmp, {"prov.test": zone}, "mx1.provider.prov.test", "127.0.0.85",
                       "provider: nsd serves the zone", "provider",
                       "dns_insecure_domains = prov.test\nsmtp_port = %d\ndestination_policy = %s.lmdb\n"
                       % (port, os.path.join(tmp, "policy")))
        if m is None:
            return
        arrived = lambda: sum(len(s.tx) for s in sinks)
        send(m, "p@localhost", ["first@a.prov.test"], "first a")
        send(m, "p@localhost", ["first@b.prov.test"], "first b")
        check("provider: the first message of each domain goes before its MX is known",
              wait_for(lambda: arrived() == 2, 20), arrived())
        for i in range(5):
            send(m, "p@localhost", ["n%d@a.prov.test" % i], "a %d" % i)
            send(m, "p@localhost", ["n%d@b.prov.test" % i], "b %d" % i)
        wait_for(lambda: arrived() >= 6, 20)
        time.sleep(2)
        check("provider: then both domains share one max_per_hour=4: exactly 4 of the 10 arrive",
              arrived() == 6 and len(sinks[0].tx) >= 2 and len(sinks[1].tx) >= 2,
              [len(s.tx) for s in sinks])
        check("provider: the rest waits, shaped as the provider's destination",
              re.search(r"event=destination_shaped nexthop=mx:\.provider\.prov\.test postponed=\d+ .*"
                        r"reason=\"max_per_hour=4 \(destination_policy mx:\.provider\.prov\.test\)\"",
                        m.log_text()) is not None, m.log_text()[-2000:])
        check("provider: each domain's mail still went to its own MX host",
              all("@a.prov.test>" in r for t in sinks[0].tx for r in t["rcpts"]) and
              all("@b.prov.test>" in r for t in sinks[1].tx for r in t["rcpts"]), [t["rcpts"] for s in sinks for t in s.tx])


def source_address(srv):
    with Guard("source address") as g:
        g.log = m = MTA(name="bind", extra=relay_config(srv) + "smtp_bind_address = 127.0.0.45\n"
                                                               "smtp_helo_name = Out45.Test\n").start()
        g.cleanups.append(m.stop)
        n = len(srv.peers)
        send(m, "bind@localhost", ["bound@remote.test"], "bound")
        check("source: mail goes out from smtp_bind_address",
              wait_for(lambda: srv.attempts["bound@remote.test"] >= 1, 20) and "127.0.0.45" in srv.peers[n:],
              srv.peers[n:])
        check("source: EHLO gives smtp_helo_name", "EHLO out45.test" in srv.helos, srv.helos[-3:])
        m.reconfigure("smtp_bind_address = 192.0.2.45\n")  # not an address of this host
        time.sleep(1)
        send(m, "bind@localhost", ["unbound@remote.test"], "unbound")
        got = wait_for(lambda: re.search(r"event=deferred qid=\S+ to=<unbound@remote.test> .*bind to 192\.0\.2\.45 "
                                         r"\(smtp_bind_address\)", m.log_text()), 20)
        check("source: an address this host does not have defers the mail and says so", got is not None,
              m.log_text()[-1500:])
    for bad, key in (("::1", "smtp_bind_address"), ("127.0.0.1", "smtp_bind_address6"), ("bad name!", "smtp_helo_name")):
        path = os.path.join(TMP_ROOT, "bad-bind.conf")
        with open(path, "w") as f:
            f.write("%s = %s\n" % (key, bad))
        r = subprocess.run([os.path.join(BIN, "mtad"), "-n", "-c", path], capture_output=True, text=True, timeout=30)
        check("source: mtad -n refuses %s = %s" % (key, bad), r.returncode != 0 and key in r.stderr, r.stderr)


def send_many(m, sender, prefix, n):
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        for i in range(n):
            s.sendmail(sender, ["%s%d@remote.test" % (prefix, i)],
                       ("From: <%s>\r\nSubject: %s %d\r\nMessage-ID: <%s%d@test>\r\n\r\nHello.\r\n"
                        % (sender, prefix, i, prefix, i)).encode())


def warmup(tmp):
    """Source pools and warm-up: 127.0.0.61 (pool "new", 50 then 100 per day) and 127.0.0.62 (pool
    "warm"). Mail from wait.test may use only "new" and waits when today's 50 are spent; spill.test
    lists "new,warm" and spills. The clock is not moved: `mtaqueue warmup set` says the address was
    first used yesterday, which makes today its day 2."""
    srv = ScriptedServer()
    with Guard("warm-up") as g:
        g.cleanups.append(srv.stop)
        tables = {"sources": ("source_addresses", "127.0.0.61 pool=new helo=New61.Test warmup=50,100\n"
                                                  "127.0.0.62 pool=warm helo=warm62.test\n"),
                  "pools": ("sender_pools", "wait.test new\nspill.test new,warm\n")}
        for name, (kind, text) in tables.items():
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)
            r = subprocess.run([os.path.join(BIN, "mtamap"), "-t", kind, os.path.join(tmp, name)],
                               capture_output=True, text=True, timeout=30)
            if not check("warm-up: mtamap -t %s" % kind, r.returncode == 0, r.stdout + r.stderr):
                return
        for kind, line, word in (("source_addresses", "127.0.0.1 warmup=50,,100\n", "warmup"),
                                 ("source_addresses", "127.000.0.1 pool=a\n", "address"),
                                 ("sender_pools", "example.com bad/pool\n", "pool")):
            r = subprocess.run([os.path.join(BIN, "mtamap"), "-t", kind, "/dev/stdin"], input=line,
                               capture_output=True, text=True, timeout=30)
            check("warm-up: mtamap -t %s refuses %r at its line" % (kind, line.strip()),
                  r.returncode != 0 and ":1:" in r.stderr and word in r.stderr, r.stdout + r.stderr)
        g.log = m = MTA(name="warmup", extra=relay_config(srv) + "source_addresses = %s.lmdb\n"
                        "sender_source_pools = %s.lmdb\n" % (os.path.join(tmp, "sources"), os.path.join(tmp, "pools")))
        m.start()
        g.cleanups.insert(0, m.stop)
        send_many(m, "a@wait.test", "w", 55)
        from_61 = lambda: sum(1 for peer, _ in srv.delivered_via if peer == "127.0.0.61")
        wait_for(lambda: from_61() >= 50, 30)
        time.sleep(1.5)
        check("warm-up: on day 1 of a 50-per-day schedule the sink sees exactly 50 from the address",
              from_61() == 50 and len(srv.delivered) == 50, (from_61(), len(srv.delivered)))
        check("warm-up: with the address's EHLO name",
              all(helo == "new61.test" for peer, helo in srv.delivered_via if peer == "127.0.0.61"),
              set(srv.delivered_via))
        tomorrow = (int(time.time()) // 86400 + 1) * 86400
        waiting = [r for x in queue_json(m).get("messages", []) for r in x["recipients"]]
        check("warm-up: the other 5 wait for the next UTC day without an attempt, saying why",
              len(waiting) == 5 and all(r["attempts"] == 0 and r["next_attempt"] == tomorrow and
                                        "warm-up allowance for today used up in source pool new" in r["last_error"]
                                        and "127.0.0.61 day 1: 50" in r["last_error"] for r in waiting), waiting)
        send_many(m, "b@spill.test", "s", 10)
        check("warm-up: a sender whose pools are new,warm spills to the warm address",
              wait_for(lambda: len(srv.delivered) == 60, 30) and
              sum(1 for peer, helo in srv.delivered_via if (peer, helo) == ("127.0.0.62", "warm62.test")) == 10,
              srv.delivered_via[50:])
        r = mtaqueue(m, "warmup", "--json", user="nobody")
        j = jload(r)
        a61 = [a for a in j.get("addresses", []) if a["address"] == "127.0.0.61"]
        check("warm-up: mtaqueue warmup --json (any user) shows day 1, today's limit and count",
              r.returncode == 0 and a61 and a61[0]["day"] == 1 and a61[0]["limit_today"] == 50 and
              a61[0]["sent_today"] == {"*": 50} and a61[0]["pools"] == ["new"], r.stdout + r.stderr)
        r = mtaqueue(m, "warmup", "set", "127.0.0.61", "--first-used", "2026-01-01", user="nobody")
        check("warm-up: warmup set is for the admin only", r.returncode != 0 and "permission" in r.stdout + r.stderr,
              r.stdout + r.stderr)
        yesterday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
        r = mtaqueue(m, "warmup", "set", "127.0.0.61", "--first-used", yesterday)
        check("warm-up: warmup set makes today day 2", r.returncode == 0 and "day 2 today" in r.stdout,
              r.stdout + r.stderr)
        mtaqueue(m, "flush")
        check("warm-up: on day 2 (100 a day) the 5 that waited go from the address",
              wait_for(lambda: from_61() == 55, 30), (from_61(), len(srv.delivered)))
        m.stop()
        m.start()
        j = jload(mtaqueue(m, "warmup", "--json"))
        a61 = [a for a in j.get("addresses", []) if a["address"] == "127.0.0.61"]
        check("warm-up: the counts and the first-use date survive a restart",
              a61 and a61[0]["sent_today"] == {"*": 55} and a61[0]["first_used"] == yesterday and
              a61[0]["limit_today"] == 100, j)


def check_sender(tmp):
    """mtadns --check-sender against NSD zones with one deliberate fault per line."""
    keys = {}
    for d in ("sender.test", "faulty.test", "other.test"):
        path = os.path.join(tmp, "%s.key" % d)
        r = subprocess.run([os.path.join(BIN, "mtadkim"), "keygen", "-d", d, "-s", "s1", "-a", "ed25519", "-o", path],
                           capture_output=True, text=True, timeout=30)
        keys[d] = (path, "".join(re.findall(r'"([^"]*)"', r.stdout)))
    with open(os.path.join(tmp, "dkim_keys"), "w") as f:
        for d in ("sender.test", "faulty.test"):
            f.write("%s s1 ed25519 %s\n" % (d, keys[d][0]))
    subprocess.run([os.path.join(BIN, "mtamap"), "-t", "dkim", os.path.join(tmp, "dkim_keys")], check=True,
                   capture_output=True, timeout=30)
    zones = {
        "sender.test": dnsbl_zone("sender.test", [
            "@ IN MX 10 mx", "mx IN A 127.0.0.1", '@ IN TXT "v=spf1 ip4:127.0.0.60/30 -all"',
            '_dmarc IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@sender.test"',
            's1._domainkey IN TXT "%s"' % keys["sender.test"][1],
            '_smtp._tls IN TXT "v=TLSRPTv1; rua=mailto:tls@sender.test"',
            "out60 IN A 127.0.0.60", "out61 IN A 127.0.0.99"]),
        # One fault per line: SPF without our address, a DMARC record with a bad p=, another DKIM key.
        "faulty.test": dnsbl_zone("faulty.test", [
            "@ IN MX 10 mx", "mx IN A 127.0.0.1", '@ IN TXT "v=spf1 ip4:192.0.2.1 -all"',
            '_dmarc IN TXT "v=DMARC1; p=bogus"', 's1._domainkey IN TXT "%s"' % keys["other.test"][1]]),
        "0.0.127.in-addr.arpa": "\n".join([
            "$ORIGIN 0.0.127.in-addr.arpa.", "$TTL 1", "@ IN SOA ns.sender.test. hostmaster.sender.test. 1 3600 600 86400 1",
            "@ IN NS ns.sender.test.", "60 IN PTR out60.sender.test.", "61 IN PTR out61.sender.test."]) + "\n",
        "bl2.test": dnsbl_zone("bl2.test", ["63.0.0.127 IN A 127.0.0.2"]),
        # An MTA-STS record whose policy file nobody serves, and nothing else.
        "stsonly.test": dnsbl_zone("stsonly.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.1",
                                                    '_mta-sts IN TXT "v=STSv1; id=1"']),
    }
    with Guard("check-sender") as g:
        m = served_mta(g, tmp, zones, "out60.sender.test", "127.0.0.60", "check-sender: nsd serves the zones", "sender", (
            "dns_insecure_domains = sender.test faulty.test bl2.test stsonly.test 0.0.127.in-addr.arpa\n"
            "smtp_helo_name = out60.sender.test\ndkim_keys = %s.lmdb\nsmtpd_dnsbl_zones = bl2.test\n"
            % os.path.join(tmp, "dkim_keys")))
        if m is None:
            return

        def run(domain, ip, json_out=False):
            cmd = [os.path.join(BIN, "mtadns"), "-c", m.conf, "--check-sender", domain, "--ip", ip]
            r = subprocess.run(cmd + (["--json"] if json_out else []), capture_output=True, text=True, timeout=60)
            return r, sorted(set(re.findall(r"^FAIL +(\S+)", r.stdout, re.M)))

        r, fails = run("sender.test", "127.0.0.60")
        check("check-sender: a ready domain and address: no FAIL, exit 0", r.returncode == 0 and fails == [] and
              "OK   dkim s1._domainkey.sender.test" in r.stdout and "OK   spf 127.0.0.60" in r.stdout and
              "OK   fcrdns" in r.stdout and "OK   dnsbl" in r.stdout, r.stdout + r.stderr)
        r, fails = run("sender.test", "127.0.0.61")
        check("check-sender: a PTR name that does not resolve back: exactly fcrdns fails",
              r.returncode == 1 and fails == ["fcrdns"] and "WARN helo 127.0.0.61" in r.stdout, r.stdout + r.stderr)
        r, fails = run("sender.test", "127.0.0.62")
        check("check-sender: no PTR: exactly rdns fails, with the fix", fails == ["rdns"] and
              "fix: ask the owner of 127.0.0.62" in r.stdout, r.stdout + r.stderr)
        r, fails = run("sender.test", "127.0.0.63")
        check("check-sender: an address on a block list of smtpd_dnsbl_zones: rdns and dnsbl fail",
              fails == ["dnsbl", "rdns"] and "listed on bl2.test" in r.stdout, r.stdout + r.stderr)
        r, fails = run("faulty.test", "127.0.0.60")
        check("check-sender: the faulty zone: exactly spf, dkim and dmarc fail", fails == ["dkim", "dmarc", "spf"] and
              "publish s1._domainkey.faulty.test. IN TXT" in r.stdout and "WARN mta-sts" in r.stdout and
              "WARN tls-rpt" in r.stdout, r.stdout + r.stderr)
        r, fails = run("stsonly.test", "127.0.0.60")
        check("check-sender: an MTA-STS record without a policy file fails (and so do the missing SPF, DKIM, DMARC)",
              fails == ["dkim", "dmarc", "mta-sts", "spf"] and "no policy could be had" in r.stdout, r.stdout + r.stderr)
        r, _ = run("faulty.test", "127.0.0.60", json_out=True)
        try:
            j = json.loads(r.stdout)
            ok = j["ready"] is False and sorted(c["check"] for c in j["checks"] if c["status"] == "FAIL") == \
                ["dkim", "dmarc", "spf"] and all(c["fix"] for c in j["checks"] if c["status"] != "OK")
        except (ValueError, KeyError) as e:
            ok, j = False, "%s: %s" % (e, r.stdout)
        check("check-sender: --json gives the same findings, each non-OK with a fix", ok, j)
        r = subprocess.run([os.path.join(BIN, "mtadns"), "-c", m.conf, "--check-sender", "sender.test", "--ip", "x"],
                           capture_output=True, text=True, timeout=30)
        check("check-sender: a bad --ip is a usage error", r.returncode == 2 and "not an IP address" in r.stderr,
              r.stderr)


def main():
    srv = ScriptedServer(decide)
    try:
        with Guard("bounce classes") as g:
            # Its 4.7.28 replies would rightly cut the relayhost's rate and hold the later checks' mail
            # for a minute: this relayhost is not shaped (adaptive=no; the shaping checks are below).
            tmp = os.path.join(TMP_ROOT, "classes")
            os.makedirs(tmp, exist_ok=True)
            with open(os.path.join(tmp, "policy"), "w") as f:
                f.write("[127.0.0.1]:%d adaptive=no\n" % srv.port)
            subprocess.run([os.path.join(BIN, "mtamap"), "-t", "destination_policy", os.path.join(tmp, "policy")],
                           check=True, capture_output=True, timeout=30)
            g.log = m = MTA(extra=relay_config(srv) + "destination_policy = %s.lmdb\n" % os.path.join(tmp, "policy"),
                            name="bounces").start()
            g.cleanups.append(m.stop)
            classification(m, srv)
            grouping(m, srv)
        source_address(srv)
        with Guard("suppression") as g:
            g.log = m = MTA(extra=relay_config(srv) + "suppress_hard_bounces = yes\nsuppression_ttl = 1h\n",
                            name="suppress").start()
            g.cleanups.append(m.stop)
            suppression(m, srv)
            restart_keeps_list(m)
        for name, part in (("dnsbl", dnsbl), ("shaping", shaping), ("provider", provider), ("warmup", warmup),
                           ("check-sender", check_sender)):
            tmp = os.path.join(TMP_ROOT, name)  # each part's own tables and zones
            os.makedirs(tmp, exist_ok=True)
            part(tmp)
    finally:
        srv.stop()
    finish()


if __name__ == "__main__":
    main()
