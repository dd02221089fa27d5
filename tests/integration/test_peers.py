"""Outbound delivery to third-party receiving servers (issue 4 tests), with NSD serving the MX records
and every peer on 127.0.0.6x at one random `smtp_port`:
- Postfix smtp-sink as the MX: three recipients in one transaction, BODY=8BITMIME, dot-stuffed lines
  and 8-bit bytes intact, our Received header; smtp-sink -r RCPT / DATA / . answering 4xx: the mail is
  deferred (mtaqueue list --json), then arrives exactly once when the peer behaves again.
- aiosmtpd with STARTTLS required, reached under an smtp_tls_policy_map `encrypt` entry: delivered
  over TLS; the same level towards smtp-sink (no STARTTLS) defers 4.7.4 and sends nothing.
- aiosmtpd in LMTP mode, over TCP (transport_map lmtp:[IP]:port) and over a unix socket
  (local_transport = lmtp:unix:...) on a second instance: per-recipient 250 / 550 / 452 after the dot
  become delivered / bounced with a DSN / deferred.
- Two instances of our own MTA: A relays to dest.example whose MX is instance B (TLS, local_recipients);
  the message lands in B's Maildir with A's and B's Received headers (B's showing TLS), and the
  recipient B refuses makes A send a DSN to the local sender."""
import json
import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dnszone import Nsd  # noqa: E402
from mtatest import BIN, check, delivery_events, finish, first_delivery_event, free_port, MTA, wait_for  # noqa: E402
from peers import PostfixSink, Recorder, aio_lmtp_tcp, aio_lmtp_unix, aio_smtp  # noqa: E402
from smtpsink import refuses  # noqa: E402

PEERS = range(61, 68)  # .61 smtp-sink, .62-.64 smtp-sink 4xx, .65 aiosmtpd TLS, .66 aiosmtpd LMTP, .67 MTA B

ZONE = """$ORIGIN peers.example.
$TTL 300
@       IN SOA ns hostmaster 1 3600 600 86400 300
@       IN NS ns
ns      IN A 127.0.0.1
sink    IN MX 10 mx61
notls   IN MX 10 mx61
rcpt4xx IN MX 10 mx62
data4xx IN MX 10 mx63
dot4xx  IN MX 10 mx64
tls     IN MX 10 mx65
mx61    IN A 127.0.0.61
mx62    IN A 127.0.0.62
mx63    IN A 127.0.0.63
mx64    IN A 127.0.0.64
mx65    IN A 127.0.0.65
"""

DEST_ZONE = """$ORIGIN dest.example.
$TTL 300
@       IN SOA ns hostmaster 1 3600 600 86400 300
@       IN NS ns
ns      IN A 127.0.0.1
@       IN MX 10 mx
mx      IN A 127.0.0.67
"""

BODY = (b"From: alice@localhost\r\nTo: peers\r\nSubject: peers %s\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"first line\r\n.leading dot\r\n..two dots\r\n.\r\nCaf\xc3\xa9 \xe2\x82\xac 8-bit\r\nlast line\r\n")
BODY_LF = b"first line\n.leading dot\n..two dots\n.\nCaf\xc3\xa9 \xe2\x82\xac 8-bit\nlast line"


def aio_body_ok(data):
    """aiosmtpd keeps the received CRLFs (dot-stuffing removed): CRLF only, body and 8-bit bytes intact."""
    return b"\r" not in data.replace(b"\r\n", b"") and b"\n" not in data.replace(b"\r\n", b"") and \
        data.endswith(BODY_LF.replace(b"\n", b"\r\n") + b"\r\n")


def send(m, rcpts, tag, sender="alice@localhost"):
    """Submit one 8-bit message with BODY=8BITMIME; returns the queue id."""
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        s.ehlo("client.test")
        code, resp = s.docmd("MAIL FROM:<%s> BODY=8BITMIME" % sender)
        assert code == 250, (code, resp)
        for r in rcpts:
            code, resp = s.docmd("RCPT TO:<%s>" % r)
            assert code == 250, (r, code, resp)
        code, resp = s.data(BODY % tag.encode())
        assert code == 250, (code, resp)
        return re.search(r"queued as ([0-9A-F]{16})", resp.decode()).group(1)


results = delivery_events
first = first_delivery_event


def queue(m):
    r = subprocess.run([os.path.join(BIN, "mtaqueue"), "-c", m.conf, "list", "--json"], capture_output=True,
                       text=True, timeout=30)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {"messages": [], "error": r.stdout + r.stderr}


def queued_rcpts(m, qid):
    """{address: (state, last_error)} of a message still in the queue."""
    for msg in queue(m).get("messages", []):
        if msg["id"] == qid:
            return {r["address"]: (r["state"], r.get("last_error") or "") for r in msg["recipients"]}
    return {}


def dsns(m, user, needle):
    out = []
    for p in m.mailbox(user):
        with open(p, "rb") as f:
            data = f.read()
        if needle in data:
            out.append(data)
    return out


def smtp_sink(m, sink):
    rcpts = ["r1@sink.peers.example", "r2@sink.peers.example", "r3@sink.peers.example"]
    qid = send(m, rcpts, "sink")
    wait_for(lambda: all(results(m, r) for r in rcpts), 20)
    ev = [first(m, r, 0)[0] for r in rcpts]
    check("sink_all_delivered", ev == ["delivered"] * 3, ev)
    tx = wait_for(lambda: sink.messages_to(rcpts[0]), 5)
    check("sink_one_transaction_three_rcpts", len(tx) == 1 and sorted(tx[0]["rcpts"]) == ["<%s>" % r for r in rcpts]
          and len(sink.messages()) == 1, [(t["mail"], t["rcpts"]) for t in sink.messages()])
    if not tx:
        return
    t = tx[0]
    check("sink_mail_from_body_8bitmime", t["mail"].startswith("<alice@localhost>") and "BODY=8BITMIME" in t["mail"].upper(),
          t["mail"])
    check("sink_body_intact", t["data"].endswith(b"\n\n" + BODY_LF) and b"Subject: peers sink\n" in t["data"],
          t["data"][-200:])
    hdr = t["data"].split(b"\n\n", 1)[0]
    check("sink_our_received_on_top", re.match(rb"Received: from client\.test \(\[127\.0\.0\.1\]\)\n(\t.*\n)*?"
                                               rb"\tby a\.test\.example with ESMTP id %s" % qid.encode(), hdr)
          and hdr.count(b"Received:") == 1, hdr[:400])
    check("sink_queue_empty", not queued_rcpts(m, qid), queued_rcpts(m, qid))


def sink_4xx(m):
    """smtp-sink -r RCPT / DATA / . : soft rejections defer every recipient, nothing is lost."""
    cases = {"rcpt4xx": ["a@rcpt4xx.peers.example", "b@rcpt4xx.peers.example"],
             "data4xx": ["a@data4xx.peers.example"], "dot4xx": ["a@dot4xx.peers.example", "b@dot4xx.peers.example"]}
    qids = {k: send(m, v, k) for k, v in cases.items()}
    for k, rcpts in cases.items():
        wait_for(lambda: all(results(m, r) for r in rcpts), 20)
        ev = [first(m, r, 0) for r in rcpts]
        check("sink_%s_deferred" % k, all(e[0] == "deferred" and "450 4.3.0" in e[2] for e in ev), ev)
        q = wait_for(lambda: (lambda s: s if s and all(v[0] == "deferred" for v in s.values()) else None)
                     (queued_rcpts(m, qids[k])), 10)
        check("sink_%s_queue_json_deferred" % k, q and sorted(q) == sorted(rcpts) and
              all("450" in v[1] for v in q.values()), q or queue(m))
    return cases, qids


def sink_4xx_recovers(m, tmp, port, cases, qids, sinks):
    """The refusing peers are replaced by well-behaved smtp-sinks: after a flush every deferred message
    arrives once with all its recipients and leaves the queue."""
    fresh = {}
    for k, i in (("rcpt4xx", 62), ("data4xx", 63), ("dot4xx", 64)):
        sinks[i].stop()
        wait_for(lambda: refuses("127.0.0.%d" % i, port), 5)
        fresh[k] = sinks[i] = PostfixSink(os.path.join(tmp, "sink%d-ok" % i), "127.0.0.%d" % i, port, name="mx%d" % i)
    wait_for(lambda: not any(refuses("127.0.0.%d" % i, port) for i in (62, 63, 64)), 5)
    r = subprocess.run([os.path.join(BIN, "mtaqueue"), "-c", m.conf, "flush"], capture_output=True, text=True,
                       timeout=30)
    check("sink_4xx_flush", r.returncode == 0, r.stdout + r.stderr)
    for k, rcpts in cases.items():
        got = wait_for(lambda: len(fresh[k].messages()) >= 1 and not queued_rcpts(m, qids[k]), 25)
        msgs = fresh[k].messages()
        check("sink_%s_delivered_once_after_recovery" % k, got and len(msgs) == 1 and
              sorted(msgs[0]["rcpts"]) == ["<%s>" % r for r in rcpts] and msgs[0]["data"].endswith(BODY_LF),
              "%r queue=%r" % ([(t["rcpts"]) for t in msgs], queued_rcpts(m, qids[k])))


def tls_encrypt(m, aio, sink):
    send(m, ["tina@tls.peers.example"], "tls")
    ev, relay, reply = first(m, "tina@tls.peers.example")
    check("aiosmtpd_encrypt_delivered", ev == "delivered" and "127.0.0.65" in relay, "%s %s %s" % (ev, relay, reply))
    tx = aio.messages_to("tina@tls.peers.example")
    check("aiosmtpd_saw_tls", len(tx) == 1 and tx[0]["tls"] and tx[0]["tls"][1] in ("TLSv1.2", "TLSv1.3"),
          tx and tx[0]["tls"])
    check("aiosmtpd_body_8bit_intact", tx and aio_body_ok(tx[0]["data"]) and
          "BODY=8BITMIME" in [o.upper() for o in tx[0]["mail_options"]], tx and tx[0]["mail_options"])
    check("aiosmtpd_tls_logged", re.search(r"event=tls_established relay=\S*127\.0\.0\.65", m.log_text()), "")
    send(m, ["nora@notls.peers.example"], "notls")
    ev, relay, reply = first(m, "nora@notls.peers.example")
    check("encrypt_without_starttls_deferred", ev == "deferred" and reply.startswith("4.7.4") and
          not sink.messages_to("nora@notls.peers.example"), "%s %s %s" % (ev, relay, reply))


def lmtp_reply(rcpt):
    local = rcpt.split("@")[0]
    if local.startswith("hard"):
        return "550 5.1.1 <%s> no such mailbox" % rcpt
    if local.startswith("soft"):
        return "452 4.2.2 <%s> mailbox full" % rcpt
    return "250 2.0.0 <%s> delivered" % rcpt


def lmtp_tcp(m, lm):
    rcpts = ["okay@lmtptcp.peers.example", "hardy@lmtptcp.peers.example", "softy@lmtptcp.peers.example"]
    qid = send(m, rcpts, "lmtp-tcp")
    wait_for(lambda: all(results(m, r) for r in rcpts), 20)
    ev = {r.split("@")[0]: first(m, r, 0) for r in rcpts}
    check("lmtp_tcp_one_transaction", len(lm.tx) == 1 and sorted(lm.tx[0]["rcpts"]) == sorted(rcpts) and
          lm.tx[0]["helo"] == "a.test.example", [(t["helo"], t["rcpts"]) for t in lm.tx])
    check("lmtp_tcp_per_rcpt_results", ev["okay"][0] == "delivered" and ev["hardy"][0] == "bounced" and
          "550 5.1.1" in ev["hardy"][2] and ev["softy"][0] == "deferred" and "452 4.2.2" in ev["softy"][2], ev)
    q = wait_for(lambda: queued_rcpts(m, qid), 10)
    check("lmtp_tcp_queue_keeps_only_452", q and [a for a, v in q.items() if v[0] == "deferred"] == [rcpts[2]] and
          "452" in q[rcpts[2]][1], q)
    d = wait_for(lambda: dsns(m, "alice", b"hardy@lmtptcp.peers.example"), 20)
    check("lmtp_tcp_dsn_for_550", d and b"Status: 5.1.1" in d[0] and
          b"Final-Recipient: rfc822; hardy@lmtptcp.peers.example" in d[0] and
          b"Final-Recipient: rfc822; softy@" not in d[0], d and d[0][:800])


def lmtp_unix(c, lm):
    qid = send(c, ["ann@lmtp.test", "hardbob@lmtp.test"], "lmtp-unix", sender="owner@lmtp.test")
    wait_for(lambda: results(c, "ann@lmtp.test") and results(c, "hardbob@lmtp.test"), 20)
    ann, bob = first(c, "ann@lmtp.test", 0), first(c, "hardbob@lmtp.test", 0)
    check("lmtp_unix_delivered_and_bounced", ann[0] == "delivered" and bob[0] == "bounced" and "550 5.1.1" in bob[2],
          (ann, bob))
    tx = [t for t in lm.tx if "ann@lmtp.test" in t["rcpts"]]
    check("lmtp_unix_one_transaction", len(tx) == 1 and sorted(tx[0]["rcpts"]) == ["ann@lmtp.test", "hardbob@lmtp.test"]
          and aio_body_ok(tx[0]["data"]), [t["rcpts"] for t in lm.tx])
    dsn = wait_for(lambda: [t for t in lm.tx if t["rcpts"] == ["owner@lmtp.test"] and t["mail"] in ("", "<>")], 20)
    body = dsn[0]["data"] if dsn else b""
    check("lmtp_unix_dsn_to_sender_via_lmtp", dsn and b"Status: 5.1.1" in body and b"hardbob@lmtp.test" in body and
          b"Final-Recipient: rfc822; ann@lmtp.test" not in body, body[:800])
    check("lmtp_unix_queue_empty", wait_for(lambda: not queued_rcpts(c, qid), 10), queued_rcpts(c, qid))


def mta_to_mta(a, b):
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % a.port, "--helo", "swaks.client.test",
                        "--from", "alice@localhost", "--to", "bob@dest.example,nobody@dest.example",
                        "--h-Subject", "mta to mta", "--body", "hello from A to B\n.dot line\n"],
                       capture_output=True, text=True, timeout=60)
    check("m2m_swaks_accepted", r.returncode == 0 and "queued as" in r.stdout, r.stdout[-600:] + r.stderr)
    got = wait_for(lambda: b.mailbox("bob"), 20)
    data = open(got[0], "rb").read() if got else b""
    hdr = data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n") if b"\r\n\r\n" in data else data.split(b"\n\n", 1)[0]
    rec = re.findall(rb"(?m)^Received: .*(?:\n[ \t].*)*", hdr)
    check("m2m_lands_in_b_maildir", got and b"Subject: mta to mta" in data and b"hello from A to B" in data and
          b"\n.dot line" in data.replace(b"\r\n", b"\n"), data[-300:])
    check("m2m_two_received_headers", len(rec) == 2 and b"by b.dest.example" in rec[0] and b"by a.test.example" in rec[1]
          and b"from swaks.client.test" in rec[1] and b"from a.test.example" in rec[0], rec)
    check("m2m_b_received_shows_tls", rec and re.search(rb"\(using TLSv1\.[23] with cipher \S+ \(\d+ bits\)\)", rec[0])
          and b"with ESMTPS id" in rec[0], rec[:1])
    ev, relay, reply = first(a, "nobody@dest.example")
    check("m2m_unknown_rcpt_bounced_at_a", ev == "bounced" and "550 5.1.1" in reply and "127.0.0.67" in relay,
          "%s %s %s" % (ev, relay, reply))
    check("m2m_not_delivered_at_b", not b.mailbox("nobody") and len(b.all_messages()) == 1, b.all_messages())
    d = wait_for(lambda: dsns(a, "alice", b"nobody@dest.example"), 20)
    check("m2m_dsn_to_local_sender", d and b"Status: 5.1.1" in d[0] and b"Final-Recipient: rfc822; nobody@dest.example" in d[0]
          and b"Final-Recipient: rfc822; bob@dest.example" not in d[0], d and d[0][:1000])


def mtamap(kind, src):
    r = subprocess.run([os.path.join(BIN, "mtamap"), "-t", kind, src], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("mtamap %s: %s" % (kind, r.stderr))
    return re.sub(r"\.txt$", ".lmdb", src)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def main():
    # A runner's timeout sends SIGTERM: turn it into SystemExit so the finally below still stops every peer.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    tmp = tempfile.mkdtemp(prefix="mtatest-peers-")
    os.chmod(tmp, 0o755)
    port = free_port(*["127.0.0.%d" % i for i in PEERS])
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", os.path.join(tmp, "key.pem"), "-out", os.path.join(tmp, "cert.pem"), "-days", "2",
                    "-subj", "/CN=mx.dest.example"], check=True, capture_output=True)
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    nsd = Nsd(tmp, {"peers.example": ZONE, "dest.example": DEST_ZONE})
    sinks, ctrls, mtas = {}, [], []
    try:
        if not check("peers_nsd_up", nsd.wait_answering("mx65.peers.example", "127.0.0.65") and
                     nsd.wait_answering("mx.dest.example", "127.0.0.67"), "nsd did not answer"):
            return
        sinks[61] = PostfixSink(os.path.join(tmp, "sink61"), "127.0.0.61", port, name="mx61")
        for i, cmd in ((62, "RCPT"), (63, "DATA"), (64, ".")):
            sinks[i] = PostfixSink(os.path.join(tmp, "sink%d" % i), "127.0.0.%d" % i, port, reject4xx=cmd, name="mx%d" % i)
        aio, lm_tcp, lm_unix = Recorder(), Recorder(lmtp_reply), Recorder(lmtp_reply)
        ctrls.append(aio_smtp(aio, "127.0.0.65", port, cert, key))
        ctrls.append(aio_lmtp_tcp(lm_tcp, "127.0.0.66", port))
        check("peers_smtp_sink_up", wait_for(lambda: not any(refuses("127.0.0.%d" % i, port) for i in sinks), 10) and
              all(s.alive() for s in sinks.values()), "smtp-sink did not start")
        dns = "smtp_port = %d\ndns_forwarder = %s\ndns_insecure_domains = peers.example, dest.example, lmtp.test\n" % (
            port, nsd.forwarder())
        tls_map = mtamap("tls_policy", write(os.path.join(tmp, "tls.txt"), "tls.peers.example encrypt\n"
                                             "notls.peers.example encrypt\n"))
        tr_map = mtamap("transport", write(os.path.join(tmp, "transport.txt"),
                                           "lmtptcp.peers.example lmtp:[127.0.0.66]:%d\n" % port))
        rcpt_map = mtamap("recipients", write(os.path.join(tmp, "b-recipients.txt"), "bob@dest.example\npostmaster\n"))
        a = MTA(name="peers-a", extra=dns + "hostname = a.test.example\nsmtp_tls_policy_map = %s\ntransport_map = %s\n"
                % (tls_map, tr_map))
        mtas.append(a)
        b = MTA(name="peers-b", smtpd_processes=1)
        b_extra = dns + ("hostname = b.dest.example\nsmtp_listen = 127.0.0.1:%d, 127.0.0.67:%d\nlocal_domains = dest.example\n"
                         "local_recipients = %s\ntls_cert = %s\ntls_key = %s\nmynetworks = 127.0.0.200/32\n"
                         % (b.port, port, rcpt_map, cert, key))
        c = MTA(name="peers-c", smtpd_processes=1,
                extra=dns + "hostname = c.lmtp.test\nlocal_domains = lmtp.test\nlocal_transport = lmtp:unix:/lmtp.sock\n")
        mtas += [b, c]
        with open(b.conf, "a") as f:
            f.write(b_extra)
        for m in mtas:
            m.start()
        ctrls.append(aio_lmtp_unix(lm_unix, os.path.join(c.spool, "empty", "lmtp.sock")))
        smtp_sink(a, sinks[61])
        cases, qids = sink_4xx(a)
        tls_encrypt(a, aio, sinks[61])
        lmtp_tcp(a, lm_tcp)
        lmtp_unix(c, lm_unix)
        mta_to_mta(a, b)
        sink_4xx_recovers(a, tmp, port, cases, qids, sinks)
        for name, m in zip("abc", mtas):
            check("peers_mta_%s_alive" % name, m.proc.poll() is None and
                  "AddressSanitizer" not in m.log_text() and "runtime error" not in m.log_text(), m.log_text()[-1500:])
    except Exception as e:  # noqa: BLE001 - report, then clean up
        check("peers_exception", False, "%s: %s" % (type(e).__name__, e))
        for m in mtas:
            print(m.log_text()[-2500:])
    finally:
        for m in mtas:
            m.stop()
        for ctl in ctrls:
            try:
                ctl.stop()
            except Exception:  # noqa: BLE001 - a controller that never started
                pass
        for s in sinks.values():
            s.stop()
        nsd.stop()
    if not os.environ.get("MTA_TEST_KEEP") and not __import__("mtatest").FAILED:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
    finish()
