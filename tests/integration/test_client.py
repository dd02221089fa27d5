"""End-to-end checks of the outbound SMTP client (mta-smtp, issue 4) against scripted receiving servers
(scriptsmtp.py) on 127.0.0.7x/8x and [::1], one random `smtp_port`, with NSD serving the MX records:
an MX reachable only over IPv6; SERVFAIL defers (queue keeps the message) and the mail goes once DNS
works; 421 and 554 greetings move on to the next MX (554 from the only MX defers); 452 4.5.3 "too many
recipients" with and without PIPELINING; extensions as offered or not (SIZE, DSN parameters, SMTPUTF8,
8BITMIME, CHUNKING: the body as BDAT chunks, a 5xx/4xx chunk reply bounces/defers); EHLO refused -> HELO; hostile replies (2000-line reply, 100 KB line, bare codes,
NUL and bare CR, a greeting that never ends); plaintext injected after our STARTTLS. Finally: no
process died, no raw NUL/CR from a server reached the log."""
import os
import re
import shutil
import signal
import smtplib
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dnszone import Nsd  # noqa: E402
from mtatest import check, delivery_events, finish, first_delivery_event, free_port, Guard, MTA, wait_for  # noqa: E402
from queuetest import mtaqueue, queue_json  # noqa: E402
from scriptsmtp import BASE_EXT, Esmtp, trickle_greeting  # noqa: E402

HOSTS = range(71, 89)
ZONE = """$ORIGIN client.example.
$TTL 300
@       IN SOA ns hostmaster 1 3600 600 86400 300
@       IN NS ns
ns      IN A 127.0.0.1
v6      IN MX 10 mx6
mx6     IN AAAA ::1
busy    IN MX 10 mx71
busy    IN MX 20 mx72
nosvc   IN MX 10 mx73
nosvc   IN MX 20 mx72
nosvconly IN MX 10 mx73
""" + "".join("mx%d    IN A 127.0.0.%d\n" % (i, i) for i in HOSTS) + "".join(
    "%s IN MX 10 mx%d\n" % (n, i) for n, i in (("toomany", 74), ("toomanyseq", 75), ("rich", 76), ("plain", 77),
                                                ("helo502", 78), ("helo500", 79), ("huge", 81), ("long", 82),
                                                ("bare", 83), ("ctrl", 84), ("slow", 85), ("inject", 86),
                                                ("bdat5", 87), ("bdat4", 88)))
BROKEN = "$ORIGIN broken.example.\n@ IN SOA ns hostmaster ( this zone file does not parse\n"
FIXED = """$ORIGIN broken.example.
$TTL 300
@       IN SOA ns hostmaster 2 3600 600 86400 300
@       IN NS ns
ns      IN A 127.0.0.1
@       IN MX 10 mx
mx      IN A 127.0.0.72
"""
BODY7 = b"From: sender@localhost\r\nSubject: client %s\r\n\r\nline one\r\n.dot line\r\nlast\r\n"
BODY8 = b"From: sender@localhost\r\nSubject: client %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; " \
        b"charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nCaf\xc3\xa9 \xe2\x82\xac\r\n"

BIG = b"".join(b"%s%06d %s\r\n" % (b"." if i % 7 == 0 else b"", i, b"x" * 70) for i in range(3000))  # ~230 KB


def send(m, rcpts, tag, mail_params="", rcpt_params="", body=BODY7, sender="sender@localhost"):
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        s.ehlo("client.test")
        s.command_encoding = "utf-8"
        code, resp = s.docmd("MAIL FROM:<%s>%s" % (sender, mail_params))
        assert code == 250, (code, resp)
        for r in rcpts:
            code, resp = s.docmd("RCPT TO:<%s>%s" % (r, rcpt_params))
            assert code == 250, (r, code, resp)
        code, resp = s.data(body.replace(b"%s", tag.encode()))
        assert code == 250, (code, resp)


def logged(addr):
    """An address as the log writes it: bytes above 127 as \\xNN."""
    return "".join(c if ord(c) < 128 else "".join("\\x%02x" % b for b in c.encode()) for c in addr)


def events(m, addr):
    return delivery_events(m, logged(addr))


def final_event(m, addr, timeout=20):
    """The first delivered/bounced event, else the first deferred one after `timeout`."""
    def done():
        ev = events(m, addr)
        return [e for e in ev if e[0] != "deferred"]
    r = wait_for(done, timeout)
    if r:
        return r[0]
    ev = events(m, addr)
    return ev[0] if ev else (None, None, None)


def rcpt_state(m, addr):
    for msg in queue_json(m).get("messages", []):
        for r in msg["recipients"]:
            if r["address"] == addr:
                return r
    return None


def ipv6_and_greetings(m, s):
    ev, relay, reply = first_delivery_event(m, "six@v6.client.example")
    check("ipv6_only_mx_delivered", ev == "delivered" and "[::1]" in relay and s["v6"].messages_to("six@v6.client.example"),
          "%s %s %s" % (ev, relay, reply))
    ev, relay, reply = first_delivery_event(m, "b@busy.client.example")
    check("greeting_421_next_mx", ev == "delivered" and "127.0.0.72" in relay and s[72].messages_to("b@busy.client.example")
          and s[71].sessions >= 1 and not any(c.upper().startswith("MAIL") for _, c in s[71].commands),
          "%s %s %s sessions71=%d" % (ev, relay, reply, s[71].sessions))
    check("greeting_421_logged", re.search(r"event=connect_failed qid=\S+ relay=mx71\.client\.example\[127\.0\.0\.71\]"
                                           r"\S* reason=\"host \S+ refused to talk to me: 421 4\.3\.2", m.log_text()), "")
    ev, relay, reply = first_delivery_event(m, "n@nosvc.client.example")
    check("greeting_554_next_mx", ev == "delivered" and "127.0.0.72" in relay and s[72].messages_to("n@nosvc.client.example")
          and not any(c.upper().startswith("MAIL") for _, c in s[73].commands), "%s %s %s" % (ev, relay, reply))
    # Like Postfix's smtp_skip_5xx_greeting: a 5xx greeting is about that server, not the recipient.
    ev, relay, reply = first_delivery_event(m, "n@nosvconly.client.example")
    check("greeting_554_only_mx_deferred", ev == "deferred" and reply.startswith("4.") and "554 5.3.2" in reply
          and not events_of(m, "n@nosvconly.client.example", "bounced"), "%s %s" % (ev, reply))


def events_of(m, addr, kind):
    return [e for e in events(m, addr) if e[0] == kind]


def too_many(m, s):
    for dom, srv in (("toomany", 74), ("toomanyseq", 75)):
        rcpts = ["t%d@%s.client.example" % (i, dom) for i in range(1, 6)]
        ok = wait_for(lambda: all(events_of(m, r, "delivered") for r in rcpts), 30)
        got = [r for t in s[srv].tx for r in t["rcpts"]]
        once = all(sum(("<%s>" % r) in g for g in got) == 1 for r in rcpts)
        check("rcpt_452_%s_all_arrive_once" % dom, ok and once and len(got) == 5,
              "%r" % [(t["session"], t["rcpts"]) for t in s[srv].tx])
        check("rcpt_452_%s_new_transactions" % dom, len(s[srv].tx) >= 3 and all(len(t["rcpts"]) <= 2 for t in s[srv].tx),
              [len(t["rcpts"]) for t in s[srv].tx])
        d = events_of(m, rcpts[2], "deferred")
        check("rcpt_452_%s_deferred_with_reply" % dom, d and "452 4.5.3" in d[0][2], d)


def extensions(m, s):
    rich, plain = s[76], s[77]
    for name, srv, dom in (("rich", rich, "rich"), ("plain", plain, "plain")):
        ev = final_event(m, "dsn@%s.client.example" % dom)
        tx = srv.messages_to("dsn@%s.client.example" % dom)
        if not check("ext_%s_dsn_message_delivered" % name, ev[0] == "delivered" and len(tx) == 1, "%r %r" % (ev, tx)):
            continue
        mail, rcpt = tx[0]["mail"], tx[0]["rcpts"][0]
        if srv is rich:
            size = re.search(r" SIZE=(\d+)", mail)
            body = tx[0]["data"]
            check("ext_size_sent_when_offered", size and len(body) - 4 <= int(size.group(1)) <= len(body) + 64,
                  "%s (body %d bytes)" % (mail, len(body)))
            check("ext_dsn_mail_params", " RET=HDRS" in mail and " ENVID=env+2Bid" in mail, mail)
            check("ext_dsn_rcpt_params", " NOTIFY=SUCCESS,FAILURE" in rcpt and " ORCPT=rfc822;orig@example.org" in rcpt, rcpt)
            # CHUNKING offered: the body goes as BDAT chunks, unstuffed, the last one marked LAST.
            want = BODY7.replace(b"%s", b"dsn")
            check("ext_chunking_offered_body_via_bdat", tx[0]["via"] == "BDAT" and sum(tx[0]["chunks"]) == len(body)
                  and bdat_sequence_sent(rich, tx[0]) and body.endswith(want) and b"\r\n.dot line\r\n" in body
                  and not any(c.upper().startswith("DATA") for c in rich.session_commands(tx[0]["session"])),
                  "%s %r" % (tx[0]["via"], tx[0]["chunks"]))
        else:
            check("ext_no_chunking_body_via_data", tx[0]["via"] == "DATA", tx[0]["via"])
            check("ext_no_esmtp_params_when_not_offered", mail == "MAIL FROM:<sender@localhost>" and
                  rcpt == "RCPT TO:<dsn@plain.client.example>", "%s | %s" % (mail, rcpt))
    chunking(m, s)
    ev = final_event(m, "jörg@rich.client.example")
    tx = rich.messages_to("jörg@rich.client.example")
    check("smtputf8_offered_delivered", ev[0] == "delivered" and tx and tx[0]["mail"].endswith(" SMTPUTF8"), "%r %r" % (ev, tx))
    ev = final_event(m, "jörg@plain.client.example")
    check("smtputf8_not_offered_bounced_5_6_7", ev[0] == "bounced" and ev[2].startswith("5.6.7") and
          not plain.messages_to("jörg@plain.client.example"), ev)
    ev = final_event(m, "eight@rich.client.example")
    tx = rich.messages_to("eight@rich.client.example")
    check("8bitmime_offered_body_param", ev[0] == "delivered" and tx and " BODY=8BITMIME" in tx[0]["mail"] and
          b"Caf\xc3\xa9 \xe2\x82\xac\r\n" in tx[0]["data"], "%r %r" % (ev, tx and tx[0]["mail"]))
    # RFC 6152 §3: no 8-bit data to a server without 8BITMIME; we do not convert, so the mail bounces.
    ev = final_event(m, "eight@plain.client.example")
    check("8bitmime_not_offered_bounced_5_6_3", ev[0] == "bounced" and ev[2].startswith("5.6.3") and
          not plain.messages_to("eight@plain.client.example"), ev)


def bdat_sequence_sent(srv, t):
    """The transaction's exact BDAT commands, LAST only on the final one, appear in its session (which
    may carry other messages too)."""
    want = ["BDAT %d" % n for n in t["chunks"][:-1]] + ["BDAT %d LAST" % n for n in t["chunks"][-1:]]
    cmds = srv.session_commands(t["session"])
    return bool(want) and any(cmds[i:i + len(want)] == want for i in range(len(cmds)))


def chunking(m, s):
    rich = s[76]
    ev = final_event(m, "big@rich.client.example")
    tx = rich.messages_to("big@rich.client.example")
    body = tx[0]["data"] if tx else b""
    chunks = tx[0]["chunks"] if tx else []
    check("bdat_big_body_chunked_intact", ev[0] == "delivered" and len(tx) == 1 and body.endswith(BIG) and
          len(chunks) >= 3 and all(n == 65536 for n in chunks[:-1]) and sum(chunks) == len(body) and
          bdat_sequence_sent(rich, tx[0]), "%r %r" % (ev, chunks))
    # A 5xx reply to the (only, LAST) chunk bounces; a 4xx to a middle chunk defers, then RSET, no more BDAT.
    ev = final_event(m, "b@bdat5.client.example")
    check("bdat_5xx_bounced", ev[0] == "bounced" and "554 5.6.0 content rejected" in ev[2] and "BDAT" in ev[2] and
          [t["chunks"] for t in s[87].tx] == [[len(s[87].tx[0]["data"])]] and
          rcpt_state(m, "b@bdat5.client.example") is None, "%r %r" % (ev, [t["chunks"] for t in s[87].tx]))
    ev = first_delivery_event(m, "b@bdat4.client.example")
    cmds = [c for _, c in s[88].commands]  # retries may reuse the cached connection
    verbs = [c.split(" ")[0].upper() for c in cmds]
    check("bdat_4xx_deferred", ev[0] == "deferred" and "452 4.3.1 no room" in ev[2] and "BDAT" in ev[2] and
          not s[88].tx and not events_of(m, "b@bdat4.client.example", "bounced"), ev)
    after = [verbs[i + 1] if i + 1 < len(verbs) else None for i, v in enumerate(verbs) if v == "BDAT"]
    check("bdat_4xx_rset_no_more_chunks", after and all(v == "RSET" for v in after), cmds[:12])


def helo_fallback(m, s):
    for code, srv in ((502, 78), (500, 79)):
        addr = "h@helo%d.client.example" % code
        ev = final_event(m, addr)
        tx = s[srv].messages_to(addr)
        cmds = s[srv].session_commands(tx[0]["session"]) if tx else []
        verbs = [c.split(" ")[0].upper() for c in cmds]
        check("ehlo_%d_helo_fallback_delivered" % code, ev[0] == "delivered" and verbs[:3] == ["EHLO", "HELO", "MAIL"]
              and tx[0]["mail"] == "MAIL FROM:<sender@localhost>", "%r %r" % (ev, cmds))


def hostile(m, s, smtp_pids):
    ev = first_delivery_event(m, "h@huge.client.example")
    check("hostile_2000_line_reply_deferred", ev[0] == "deferred" and "too many reply lines" in ev[2] and
          not s[81].tx, ev)
    ev = first_delivery_event(m, "h@long.client.example")
    check("hostile_100k_line_deferred", ev[0] == "deferred" and "reply line too long" in ev[2] and not s[82].tx, ev)
    ev = final_event(m, "h@bare.client.example")
    check("hostile_bare_codes_delivered", ev[0] == "delivered" and len(s[83].tx) == 1, ev)
    ev = final_event(m, "ok@ctrl.client.example")
    check("hostile_nul_cr_delivered_sanitized", ev[0] == "delivered" and "queued as evil" in ev[2] and
          len(s[84].tx) == 1, ev)
    ev = final_event(m, "evil@ctrl.client.example")
    check("hostile_nul_cr_rejection_bounced_sanitized", ev[0] == "bounced" and "550 5.1.1 bad user X-Injected: yes" in ev[2], ev)
    ev = first_delivery_event(m, "i@inject.client.example")
    after = s[86].notes.get("after_starttls")
    check("starttls_injection_aborted", ev[0] == "deferred" and "injection" in ev[2] and not s[86].tx and
          not any(c.upper().startswith("MAIL") for _, c in s[86].commands), "%r %r" % (ev, s[86].commands))
    check("starttls_injection_no_handshake", after == b"", repr(after))
    # The greeting that never ends (a 220- line every 2 s): smtp_helo_timeout (6 s here), then deferred.
    ev = first_delivery_event(m, "h@slow.client.example", timeout=30)
    check("hostile_endless_greeting_deferred", ev[0] == "deferred" and "timed out while receiving the initial server "
          "greeting" in ev[2] and not s[85].tx, "%r notes=%r" % (ev, s[85].notes))
    log = open(m.log_path, "rb").read()
    check("log_no_raw_nul", b"\x00" not in log, "")
    check("log_no_raw_cr", b"\r" not in log, [l for l in log.split(b"\n") if b"\r" in l][:3])
    check("log_no_injected_line", not re.search(rb"(?m)^X-Injected", log), "")
    st = m.ctl("status").stdout
    restarts = re.findall(r"role=(\S+) .*restarts=(\d+)", st)
    check("no_role_restarted", restarts and all(n == "0" for _, n in restarts), st)
    check("smtp_pids_unchanged", sorted(m.pids("mta-smtp")) == smtp_pids, "%r -> %r" % (smtp_pids, m.pids("mta-smtp")))


def servfail(m, nsd, s):
    addr = "s@broken.example"
    ev, relay, reply = first_delivery_event(m, addr)
    check("servfail_deferred_4_4_3", ev == "deferred" and reply.startswith("4.4.3"), "%s %s" % (ev, reply))
    r = rcpt_state(m, addr)
    check("servfail_queue_keeps_message", r and r["state"] in ("deferred", "in-flight", "queued") and
          not events_of(m, addr, "bounced"), r)
    with open(os.path.join(nsd.dir, "broken.example.zone"), "w") as f:
        f.write(FIXED)
    os.kill(nsd.proc.pid, signal.SIGHUP)
    wait_for(lambda: "mx.broken.example" in nsd.query("broken.example", "MX"), 10)
    ok = wait_for(lambda: (mtaqueue(m, "flush"), events_of(m, addr, "delivered"))[1], 30, interval=1)
    check("servfail_delivered_once_dns_works", ok and len(s[72].messages_to(addr)) == 1 and rcpt_state(m, addr) is None,
          "%r %r" % (events(m, addr), rcpt_state(m, addr)))


def servers(port):
    s = {"v6": Esmtp("::1", port)}
    s[71] = Esmtp("127.0.0.71", port, greeting=b"421 4.3.2 busy, try later\r\n")
    s[72] = Esmtp("127.0.0.72", port)
    s[73] = Esmtp("127.0.0.73", port, greeting=b"554 5.3.2 no service here\r\n")
    s[74] = Esmtp("127.0.0.74", port, max_rcpts=2)
    s[75] = Esmtp("127.0.0.75", port, ext=("8BITMIME",), max_rcpts=2)
    s[76] = Esmtp("127.0.0.76", port, ext=BASE_EXT + ("DSN", "SMTPUTF8", "CHUNKING"))
    s[77] = Esmtp("127.0.0.77", port, ext=())
    s[78] = Esmtp("127.0.0.78", port, ehlo_reply=b"502 5.5.2 EHLO not implemented\r\n")
    s[79] = Esmtp("127.0.0.79", port, ehlo_reply=b"500 5.5.1 command unrecognized\r\n")
    s[81] = Esmtp("127.0.0.81", port, ehlo_reply=b"".join(b"250-line %d\r\n" % i for i in range(1999)) + b"250 end\r\n")
    s[82] = Esmtp("127.0.0.82", port, replies={"MAIL": b"250 " + b"x" * 100000 + b"\r\n"})
    s[83] = Esmtp("127.0.0.83", port, greeting=b"220\r\n", ehlo_reply=b"250\r\n",
                  replies={"MAIL": b"250\r\n", "RCPT": b"250\r\n", "DATA": b"354\r\n", "DOT": b"250\r\n"})
    s[84] = Esmtp("127.0.0.84", port, replies={
        "RCPT": lambda srv, c, cmd: b"550 5.1.1 bad\x00user\rX-Injected: yes\r\n" if "<evil@" in cmd
        else b"250 2.1.5 fine\x00\revent=delivered qid=0\r\n",
        "DOT": b"250 2.0.0 queued\x00 as\r evil\r\n"})
    first = {}

    def slow(srv, conn):
        if first.setdefault("done", False):
            return b"421 4.3.2 not again\r\n"  # retries fail fast; the first session shows the timeout
        first["done"] = True
        return trickle_greeting(2.0, 45)(srv, conn)
    s[85] = Esmtp("127.0.0.85", port, greeting=slow)

    def inject(srv, conn, cmd):
        conn.sendall(b"220 2.0.0 ready\r\n250 2.0.0 injected\r\n")
        conn.settimeout(10)
        try:
            got = conn.recv(4096)
        except OSError as e:
            got = repr(e).encode()
        with srv.lock:
            srv.notes["after_starttls"] = got
        return None
    s[86] = Esmtp("127.0.0.86", port, ext=BASE_EXT + ("STARTTLS",), replies={"STARTTLS": inject})
    s[87] = Esmtp("127.0.0.87", port, ext=BASE_EXT + ("CHUNKING",), replies={"DOT": b"554 5.6.0 content rejected\r\n"})
    s[88] = Esmtp("127.0.0.88", port, ext=BASE_EXT + ("CHUNKING",), replies={"BDAT": b"452 4.3.1 no room\r\n"})
    return s


def submit_all(m):
    send(m, ["h@slow.client.example"], "slow")  # first: its greeting timeout runs while the rest is checked
    send(m, ["s@broken.example"], "servfail")
    send(m, ["six@v6.client.example"], "ipv6")
    for a in ("b@busy", "n@nosvc", "n@nosvconly", "h@helo502", "h@helo500", "h@huge", "h@long", "h@bare",
              "i@inject"):
        send(m, [a + ".client.example"], a)
    send(m, ["ok@ctrl.client.example", "evil@ctrl.client.example"], "ctrl")
    for dom in ("toomany", "toomanyseq"):
        send(m, ["t%d@%s.client.example" % (i, dom) for i in range(1, 6)], dom)
    send(m, ["big@rich.client.example"], "big", body=b"Subject: big\r\n\r\n" + BIG)
    send(m, ["b@bdat5.client.example"], "bdat5")
    send(m, ["b@bdat4.client.example"], "bdat4", body=b"Subject: bdat4\r\n\r\n" + BIG)
    for dom in ("rich", "plain"):
        send(m, ["dsn@%s.client.example" % dom], "dsn", " RET=HDRS ENVID=env+2Bid",
             " NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig@example.org")
        send(m, ["jörg@%s.client.example" % dom], "utf8", " SMTPUTF8")
        send(m, ["eight@%s.client.example" % dom], "eight", " BODY=8BITMIME", body=BODY8)


def main():
    tmp = tempfile.mkdtemp(prefix="mtatest-client-")
    os.chmod(tmp, 0o755)
    port = free_port(*["127.0.0.%d" % i for i in HOSTS], "::1")
    nsd = Nsd(tmp, {"client.example": ZONE, "broken.example": BROKEN})
    s = {}
    with Guard("client") as g:
        g.cleanups += [lambda: [srv.close() for srv in s.values()], nsd.stop]
        if not check("client_nsd_up", nsd.wait_answering("mx72.client.example", "127.0.0.72"), "nsd did not answer"):
            return
        s = servers(port)
        g.log = m = MTA(name="client", extra="smtp_port = %d\ndns_forwarder = %s\ndns_insecure_domains = client.example "
                "broken.example\nmaximal_backoff_time = 2s\ndelay_warning_time = 0\nsmtp_helo_timeout = 6s\n" % (port, nsd.forwarder())).start()
        g.cleanups.insert(0, m.stop)
        smtp_pids = sorted(m.pids("mta-smtp"))
        submit_all(m)
        ipv6_and_greetings(m, s)
        servfail(m, nsd, s)
        too_many(m, s)
        extensions(m, s)
        helo_fallback(m, s)
        hostile(m, s, smtp_pids)
    if os.environ.get("MTA_KEEP_TMP") is None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    t0 = time.time()
    main()
    print("client suite took %.0f s" % (time.time() - t0))
    finish()
