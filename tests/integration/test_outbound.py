"""Outbound delivery through the real process chain (smtpd -> queue -> mta-smtp -> next hop), with NSD
serving a test zone on a 127.x address and receiving servers on 127.0.0.2x (all on one random port,
`smtp_port`): MX order and fallback past a host refusing connections, no MX -> A, null MX, NXDOMAIN,
MX loop to ourselves, several recipients in one transaction with per-recipient 4xx/5xx, connection
reuse, dot-stuffing and CRLF on the wire, DANE (RFC 7672) with a DNSSEC-signed zone, and LMTP
(local_transport) with per-recipient replies."""
import hashlib
import json
import os
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dnszone import Nsd  # noqa: E402
from tlsrpttest import counts, mtaqueue_tlsrpt, parse_reports  # noqa: E402
from mtatest import BIN, check, finish, free_port, Guard, MTA, wait_for  # noqa: E402
from smtpsink import Sink  # noqa: E402

ZONE = """$ORIGIN out.example.
$TTL 300
@       IN SOA ns hostmaster 1 3600 600 86400 300
@       IN NS ns
ns      IN A 127.0.0.1
two     IN MX 10 dead
two     IN MX 20 live
dead    IN A 127.0.0.21
live    IN A 127.0.0.22
order   IN MX 20 second
order   IN MX 10 first
first   IN A 127.0.0.23
second  IN A 127.0.0.24
plain   IN A 127.0.0.25
nullmx  IN MX 0 .
loop    IN MX 10 mx.test.example.
loop    IN MX 20 live
multi   IN MX 10 live
reuse   IN MX 10 live
"""

DANE_ZONE = """$ORIGIN dane.example.
$TTL 300
@       IN SOA ns hostmaster 1 3600 600 86400 300
@       IN NS ns
ns      IN A 127.0.0.1
@       IN MX 10 mx
mx      IN A 127.0.0.26
_{port}._tcp.mx IN TLSA 3 1 1 {good_spki}
bad     IN MX 10 mxbad
mxbad   IN A 127.0.0.27
_{port}._tcp.mxbad IN TLSA 3 1 1 {other_spki}
ta      IN MX 10 mxta
mxta    IN A 127.0.0.28
_{port}._tcp.mxta IN TLSA 2 0 1 {ca_cert}
notls   IN MX 10 mxplain
mxplain IN A 127.0.0.29
_{port}._tcp.mxplain IN TLSA 3 1 1 {good_spki}
_smtp._tls IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@lmtp.example"
_smtp._tls.bad IN TXT "v=TLSRPTv1;rua=https://reports.example/tlsrpt,mailto:tlsrpt@lmtp.example"
_smtp._tls.notls IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@lmtp.example"
"""

BODY = ("From: sender@localhost\r\nTo: someone\r\nSubject: outbound %s\r\n\r\n"
        "first line\r\n.leading dot\r\n..two dots\r\n.\r\nlast line\r\n")


def send(m, rcpts, tag, sender="sender@localhost"):
    """Submit one message; returns the queue id."""
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        s.ehlo("client.test")
        code, _ = s.docmd("MAIL FROM:<%s>" % sender)
        assert code == 250, code
        for r in rcpts:
            code, resp = s.docmd("RCPT TO:<%s>" % r)
            assert code == 250, (r, code, resp)
        code, resp = s.data((BODY % tag).encode())
        assert code == 250, (code, resp)
        return re.search(r"queued as ([0-9A-F]{16})", resp.decode()).group(1)


def results(m, addr):
    """(event, reply) pairs mta-smtp logged for one recipient."""
    pat = re.compile(r"event=(delivered|deferred|bounced) qid=\S+ to=<%s> relay=(\S+) reply=\"([^\"]*)\"" % re.escape(addr))
    return [(e, relay, reply) for e, relay, reply in pat.findall(m.log_text())]


def wait_result(m, addr, timeout=20):
    r = wait_for(lambda: results(m, addr), timeout)
    return r[0] if r else (None, None, None)


def basic_routing(m, live, first, second, plain):
    send(m, ["bob@two.out.example"], "fallback")
    ev, relay, reply = wait_result(m, "bob@two.out.example")
    check("mx_fallback_first_refusing", ev == "delivered" and "127.0.0.22" in relay and live.messages_to("bob@two.out.example"),
          "%s %s %s" % (ev, relay, reply))
    check("mx_fallback_logged_refusal", "connect_failed" in m.log_text() and "127.0.0.21" in m.log_text(), "")

    send(m, ["carol@order.out.example"], "order")
    ev, relay, reply = wait_result(m, "carol@order.out.example")
    check("mx_preference_order", ev == "delivered" and first.messages_to("carol@order.out.example")
          and not second.messages_to("carol@order.out.example"), "%s %s %s" % (ev, relay, reply))

    send(m, ["dave@plain.out.example"], "plain")
    ev, relay, reply = wait_result(m, "dave@plain.out.example")
    check("no_mx_falls_back_to_a", ev == "delivered" and plain.messages_to("dave@plain.out.example"), "%s %s" % (ev, reply))

    send(m, ["erin@nullmx.out.example"], "nullmx")
    ev, relay, reply = wait_result(m, "erin@nullmx.out.example")
    check("null_mx_bounces_5_1_10", ev == "bounced" and reply.startswith("5.1.10"), "%s %s" % (ev, reply))

    send(m, ["frank@nosuch.out.example"], "nxdomain")
    ev, relay, reply = wait_result(m, "frank@nosuch.out.example")
    check("nxdomain_bounces_5_1_2", ev == "bounced" and reply.startswith("5.1.2"), "%s %s" % (ev, reply))

    send(m, ["gina@loop.out.example"], "loop")
    ev, relay, reply = wait_result(m, "gina@loop.out.example")
    check("mx_loop_bounces_5_4_6", ev == "bounced" and reply.startswith("5.4.6") and
          not live.messages_to("gina@loop.out.example"), "%s %s" % (ev, reply))


def transactions(m, live):
    rcpts = ["a@multi.out.example", "b@multi.out.example", "reject1@multi.out.example", "defer1@multi.out.example"]
    send(m, rcpts, "multi")
    wait_for(lambda: all(results(m, r) for r in rcpts), 20)
    tx = live.messages_to("a@multi.out.example")
    check("multi_rcpt_one_transaction", len(tx) == 1 and len(tx[0]["rcpts"]) == 2 and
          live.messages_to("b@multi.out.example") == tx, tx)
    ev = {r: (results(m, r) or [(None, None, None)])[0] for r in rcpts}
    check("per_rcpt_2xx", ev["a@multi.out.example"][0] == "delivered" and ev["b@multi.out.example"][0] == "delivered", ev)
    check("per_rcpt_5xx_bounced", ev["reject1@multi.out.example"][0] == "bounced" and
          "550 5.1.1" in ev["reject1@multi.out.example"][2], ev["reject1@multi.out.example"])
    check("per_rcpt_4xx_deferred", ev["defer1@multi.out.example"][0] == "deferred" and
          "451 4.3.0" in ev["defer1@multi.out.example"][2], ev["defer1@multi.out.example"])
    if tx:
        data = tx[0]["data"]
        check("wire_dot_stuffing", b"\r\n..leading dot\r\n...two dots\r\n..\r\nlast line\r\n" in data, data)
        check("wire_crlf_only", b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b""), data)


def reuse(m, live):
    before = live.sessions
    send(m, ["r1@reuse.out.example"], "reuse1")
    wait_result(m, "r1@reuse.out.example")
    send(m, ["r2@reuse.out.example"], "reuse2")
    ev, _, reply = wait_result(m, "r2@reuse.out.example")
    t1, t2 = live.messages_to("r1@reuse.out.example"), live.messages_to("r2@reuse.out.example")
    check("connection_reused", ev == "delivered" and t1 and t2 and t1[0]["session"] == t2[0]["session"]
          and live.sessions - before == 1, "sessions %d -> %d %r" % (before, live.sessions, reply))


def openssl(*args, cwd):
    return subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True).stdout


def make_certs(d):
    """Self-signed "good" and "other" keys, and a CA with a leaf for mxta.dane.example. Returns the
    TLSA data (hex SHA-256) and the cert/key file pairs."""
    def selfsigned(name, cn):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                "-subj", "/CN=" + cn, "-keyout", name + ".key", "-out", name + ".crt", cwd=d)

    def spki_sha256(name):
        der = openssl("x509", "-in", name + ".crt", "-noout", "-pubkey", cwd=d)
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=der, capture_output=True,
                             check=True).stdout
        return hashlib.sha256(der).hexdigest()

    selfsigned("good", "some.other.name")  # DANE-EE ignores names
    selfsigned("other", "mxbad.dane.example")
    selfsigned("ca", "Test CA")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=mxta.dane.example",
            "-keyout", "leaf.key", "-out", "leaf.csr", cwd=d)
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=DNS:mxta.dane.example\n")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "ext", "-out", "leaf.crt", cwd=d)
    with open(os.path.join(d, "chain.crt"), "wb") as f:  # leaf + CA: DANE-TA needs the TA in the chain
        f.write(open(os.path.join(d, "leaf.crt"), "rb").read() + open(os.path.join(d, "ca.crt"), "rb").read())
    ca_der = openssl("x509", "-in", "ca.crt", "-outform", "DER", cwd=d)
    p = lambda n: os.path.join(d, n)  # noqa: E731
    return ({"good_spki": spki_sha256("good"), "other_spki": spki_sha256("other"),
             "ca_cert": hashlib.sha256(ca_der).hexdigest()},
            {"good": (p("good.crt"), p("good.key")), "chain": (p("chain.crt"), p("leaf.key"))})


def dane(m):
    """smtp_tls_level = dane: secure TLSA -> verified TLS or no delivery; insecure zones stay opportunistic."""
    send(m, ["ee@dane.example"], "dane-ee")
    ev, relay, reply = wait_result(m, "ee@dane.example")
    check("dane_ee_match_delivered", ev == "delivered" and "127.0.0.26" in relay, "%s %s %s" % (ev, relay, reply))
    check("dane_ee_verified_logged", re.search(r"event=tls_established relay=mx.dane.example\[127.0.0.26\]\S* .*"
                                               r"verified=dane tlsa=3 1 1", m.log_text()), "")
    send(m, ["mismatch@bad.dane.example"], "dane-mismatch")
    ev, relay, reply = wait_result(m, "mismatch@bad.dane.example")
    check("dane_mismatch_deferred_not_sent", ev == "deferred" and reply.startswith("4.7.5 DANE verification failed")
          and not m.sinks[27].tx, "%s %s %s tx=%d" % (ev, relay, reply, len(m.sinks[27].tx)))
    send(m, ["ta@ta.dane.example"], "dane-ta")
    ev, relay, reply = wait_result(m, "ta@ta.dane.example")
    check("dane_ta_chain_delivered", ev == "delivered" and m.sinks[28].tx and m.sinks[28].tx[0]["tls"] and
          re.search(r"relay=mxta.dane.example\S* .*verified=dane tlsa=2 0 1 depth=1", m.log_text()),
          "%s %s %s" % (ev, relay, reply))
    send(m, ["plain@notls.dane.example"], "dane-notls")
    ev, relay, reply = wait_result(m, "plain@notls.dane.example")
    check("dane_without_starttls_deferred", ev == "deferred" and reply.startswith("4.7.4") and not m.sinks[29].tx,
          "%s %s" % (ev, reply))
    t = m.sinks[22].messages_to("bob@two.out.example")
    check("dane_level_insecure_zone_still_delivers", t and not t[0]["tls"], t)


def tls_reports(m):
    """tlsrpt_reports = yes: the DANE sessions above, reported (mtaqueue tlsrpt send) to the rua of each
    policy domain; the reports arrive at the LMTP sink (lmtp.example) and are read by Python."""
    r = mtaqueue_tlsrpt(m, "--json")
    try:
        listed, start = {d["domain"] for d in json.loads(r.stdout)["domains"]}, json.loads(r.stdout)["start"]
    except (ValueError, KeyError):
        listed, start = set(), 0
    check("tlsrpt_counts_listed", {"dane.example", "bad.dane.example", "notls.dane.example"} <= listed,
          r.stdout + r.stderr)
    r = mtaqueue_tlsrpt(m, "send")
    check("tlsrpt_send", r.returncode == 0 and "3 TLS reports queued" in r.stdout, r.stdout + r.stderr)
    lm = m.sinks[30]
    got = wait_for(lambda: len(lm.messages_to("tlsrpt@lmtp.example")) >= 3, 30)
    reports, problems = parse_reports([t["data"] for t in lm.messages_to("tlsrpt@lmtp.example")])
    check("tlsrpt_reports_parse", got and not problems and len(reports) == 3, problems or sorted(reports))
    ok, failed, types = counts(reports, "dane.example")
    check("tlsrpt_dane_success_counted", ok >= 1 and not failed and types == {"tlsa"}, (ok, failed, types))
    ok, failed, types = counts(reports, "bad.dane.example")
    check("tlsrpt_dane_mismatch_is_validation_failure", ok == 0 and failed.get("validation-failure", 0) >= 1 and
          types == {"tlsa"}, (ok, failed, types))
    ok, failed, types = counts(reports, "notls.dane.example")
    check("tlsrpt_dane_no_starttls", failed.get("starttls-not-supported", 0) >= 1, (ok, failed, types))
    details = [d for rep, p in reports.get("bad.dane.example", []) for d in p.get("failure-details", [])]
    check("tlsrpt_failure_details", details and details[0]["receiving-mx-hostname"] == "mxbad.dane.example" and
          details[0]["receiving-ip"] == "127.0.0.27" and details[0]["sending-mta-ip"].startswith("127."), details)
    r = mtaqueue_tlsrpt(m, "--json")
    try:
        j = json.loads(r.stdout)
        afresh = "dane.example" not in {d["domain"] for d in j["domains"]} and (j["start"] == 0 or j["start"] > start)
    except (ValueError, KeyError):
        afresh = False
    check("tlsrpt_period_starts_afresh", afresh, r.stdout)  # only the deferred mail's retries count again


def lmtp(m):
    """local_transport = lmtp:[127.0.0.30]:PORT: local-domain mail goes to the LMTP server with one
    reply per recipient after the final dot (needs the queue to route through common/routing)."""
    sink = m.sinks[30]
    send(m, ["ann@lmtp.example", "lmtpfail@lmtp.example", "ben@lmtp.example"], "lmtp")
    wait_for(lambda: all(results(m, r + "@lmtp.example") for r in ("ann", "lmtpfail", "ben")), 20)
    if not check("lmtp_routed_by_queue", sink.tx, "no LMTP transaction; Maildir files: %r (the queue must route "
                 "local domains through common/routing route())" % m.all_messages()):
        return
    tx = sink.tx[0]
    check("lmtp_one_transaction_lhlo", len(sink.tx) == 1 and len(tx["rcpts"]) == 3 and
          any(c.startswith("LHLO ") for c in sink.commands), tx)
    ev = {r: (results(m, r + "@lmtp.example") or [(None, None, None)])[0] for r in ("ann", "lmtpfail", "ben")}
    check("lmtp_per_recipient_replies", ev["ann"][0] == "delivered" and ev["ben"][0] == "delivered" and
          ev["lmtpfail"][0] == "deferred" and "452 4.2.2" in ev["lmtpfail"][2], ev)
    check("lmtp_not_in_maildir", not m.all_messages(), m.all_messages())


def mtadns(m):
    def run(domain):
        r = subprocess.run([os.path.join(BIN, "mtadns"), "-c", m.conf, domain], capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout + r.stderr
    rc, out = run("dane.example")
    check("mtadns_dane_domain", rc == 0 and "MX: NOERROR, secure" in out and "MX 10 mx.dane.example" in out and
          "127.0.0.26" in out and "3 1 1 " in out and "TLS level: dane (TLS required" in out, out)
    rc, out = run("two.out.example")
    check("mtadns_mx_order_insecure", rc == 0 and out.index("MX 10 dead.out.example") < out.index("MX 20 live.out.example")
          and "TLS level: may (DANE not applicable" in out, out)
    rc, out = run("nullmx.out.example")
    check("mtadns_null_mx", rc == 0 and "5.1.10" in out, out)
    rc, out = run("plain.out.example")
    check("mtadns_implicit_mx", rc == 0 and "implicit MX plain.out.example" in out and "127.0.0.25" in out, out)
    rc, out = run("nosuch.out.example")
    check("mtadns_nxdomain", rc == 0 and "NXDOMAIN" in out and "5.1.2" in out, out)


def main():
    tmp = tempfile.mkdtemp(prefix="mtatest-outbound-")
    os.chmod(tmp, 0o755)
    port = free_port(*["127.0.0.%d" % i for i in range(21, 31)])
    tlsa, certs = make_certs(tmp)
    nsd = Nsd(tmp, {"out.example": ZONE, "dane.example": DANE_ZONE.format(port=port, **tlsa)}, signed=("dane.example",))
    sinks, m = [], None
    with Guard("outbound") as g:
        g.cleanups += [lambda: [s.close() for s in sinks], nsd.stop]
        if not check("outbound_nsd_up", nsd.wait_answering("live.out.example", "127.0.0.22"), "nsd did not answer"):
            return
        live, first, second, plain = (Sink("127.0.0.%d" % i, port) for i in (22, 23, 24, 25))
        sinks += [live, first, second, plain]
        sinks += [Sink("127.0.0.26", port, tls=certs["good"]), Sink("127.0.0.27", port, tls=certs["good"]),
                  Sink("127.0.0.28", port, tls=certs["chain"]), Sink("127.0.0.29", port),
                  Sink("127.0.0.30", port, lmtp=True)]
        g.log = m = MTA(name="outbound", extra="smtp_port = %d\ndns_forwarder = %s\ndns_insecure_domains = out.example\n"
                "dns_trust_anchors = %s\nsmtp_tls_level = dane\nlocal_domains = lmtp.example\n"
                "local_transport = lmtp:[127.0.0.30]:%d\ntlsrpt_reports = yes\n" % (port, nsd.forwarder(), nsd.anchors, port)).start()
        g.cleanups.insert(0, m.stop)
        m.sinks = {int(s.host.rsplit(".", 1)[1]): s for s in sinks}
        basic_routing(m, live, first, second, plain)
        transactions(m, live)
        reuse(m, live)
        dane(m)
        mtadns(m)
        lmtp(m)
        tls_reports(m)  # after lmtp(), which counts the LMTP server's transactions
    if os.environ.get("MTA_KEEP_TMP") is None:
        shutil.rmtree(tmp, ignore_errors=True)
        if m:
            shutil.rmtree(m.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
    finish()
