"""MTA-STS (RFC 8461) and REQUIRETLS (RFC 8689) end to end with real pieces: NSD serves _mta-sts TXT,
mta-sts A and MX records on 127.x; a Python HTTPS server (certificate from a test CA made here with
openssl) serves the policies on 127.0.0.40:mta_sts_port; receiving SMTP servers (smtpsink.py with
STARTTLS) present CA-signed certificates for their MX names (one for a wrong name); smtp_tls_ca_file is
the test CA. Checks enforce/testing behaviour, MX filtering, the policy cache (id change refetches, a
failed fetch keeps the cached policy, the cache survives a restart), REQUIRETLS and mtadns."""
import http.server
import os
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dnszone import Nsd, random_address  # noqa: E402
from mtatest import BIN, check, finish, free_port, Guard, MTA, wait_for  # noqa: E402
from smtpsink import Sink  # noqa: E402
from tlsrpttest import counts, mtaqueue_tlsrpt, parse_reports  # noqa: E402

DOMAINS = ("good", "wrongname", "nomatch", "testing", "plain")
ZONE = """$ORIGIN sts.example.
$TTL 1
@       IN SOA ns hostmaster 1 3600 600 86400 1
@       IN NS ns
ns      IN A 127.0.0.1
good    IN MX 10 mx.good
mx.good IN A 127.0.0.41
_mta-sts.good IN TXT "v=STSv1; id={good_id};"
mta-sts.good  IN A 127.0.0.40
wrongname     IN MX 10 mx.wrongname
mx.wrongname  IN A 127.0.0.42
_mta-sts.wrongname IN TXT "v=STSv1; id={wrong_id};"
mta-sts.wrongname  IN A 127.0.0.40
nomatch       IN MX 10 rogue.nomatch
nomatch       IN MX 20 mx.nomatch
rogue.nomatch IN A 127.0.0.43
mx.nomatch    IN A 127.0.0.44
_mta-sts.nomatch IN TXT "v=STSv1; id=1"
_mta-sts.nomatch IN TXT "v=spf1 -all"
mta-sts.nomatch  IN A 127.0.0.40
testing       IN MX 10 mx.testing
mx.testing    IN A 127.0.0.45
_mta-sts.testing IN TXT "v=STSv1; id=1;"
mta-sts.testing  IN A 127.0.0.40
plain         IN MX 10 mx.plain
mx.plain      IN A 127.0.0.46
_smtp._tls.good      IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@good.sts.example"
_smtp._tls.wrongname IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@good.sts.example"
_smtp._tls.testing   IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@good.sts.example"
"""


def policy(mode, *mx, max_age=86400):
    return "version: STSv1\r\nmode: %s\r\n%smax_age: %d\r\n" % (mode, "".join("mx: %s\r\n" % m for m in mx), max_age)


POLICIES = {
    "mta-sts.good.sts.example": policy("enforce", "*.good.sts.example"),
    "mta-sts.wrongname.sts.example": policy("enforce", "mx.wrongname.sts.example"),
    "mta-sts.nomatch.sts.example": policy("enforce", "mx.nomatch.sts.example"),
    "mta-sts.testing.sts.example": policy("testing", "mx.testing.sts.example"),
}


def openssl(*args, cwd):
    return subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True).stdout


def make_certs(d):
    """A test CA and leaves signed by it. Returns {name: (crt, key)}."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=MTA-STS Test CA", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)

    def leaf(name, sans):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=" + sans[0],
                "-keyout", name + ".key", "-out", name + ".csr", cwd=d)
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=" + ",".join("DNS:" + s for s in sans) + "\n")
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", name + ".ext", "-out", name + ".crt", cwd=d)
        return os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
    return {
        "https": leaf("https", ["mta-sts.%s.sts.example" % x for x in DOMAINS]),
        "good": leaf("good", ["mx.good.sts.example"]),
        "wrong": leaf("wrong", ["other.sts.example"]),
        "rogue": leaf("rogue", ["rogue.nomatch.sts.example"]),
        "nomatch": leaf("nomatch", ["mx.nomatch.sts.example"]),
        "testing": leaf("testing", ["elsewhere.sts.example"]),
        "plain": leaf("plain", ["mx.plain.sts.example"]),
        "ca": (os.path.join(d, "ca.crt"), os.path.join(d, "ca.key")),
    }


class PolicyServer:
    """HTTPS on addr:port serving POLICIES by Host header; records every request's Host."""

    def __init__(self, addr, port, cert):
        self.hits = []
        srv_self = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                host = (self.headers.get("Host") or "").split(":")[0].lower()
                srv_self.hits.append((host, self.path))
                body = POLICIES.get(host)
                if self.path != "/.well-known/mta-sts.txt" or body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer((addr, port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def send(m, rcpt, tag, requiretls=False, sender="alice@localhost"):
    body = ("From: %s\r\nTo: %s\r\nSubject: mta-sts %s\r\n\r\nbody %s\r\n" % (sender, rcpt, tag, tag)).encode()
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        opts = []
        if requiretls:
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            s.starttls(context=ctx)
            opts = ["REQUIRETLS"]
        s.sendmail(sender, [rcpt], body, mail_options=opts)


def results(m, addr):
    pat = re.compile(r"event=(delivered|deferred|bounced) qid=\S+ to=<%s> relay=(\S+) reply=\"([^\"]*)\"" % re.escape(addr))
    return pat.findall(m.log_text())


def wait_result(m, addr, timeout=30):
    r = wait_for(lambda: results(m, addr), timeout)
    return r[0] if r else (None, None, None)


def mtadns(m, domain):
    r = subprocess.run([os.path.join(BIN, "mtadns"), "-c", m.conf, domain], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def deliveries(m, sinks):
    send(m, "ann@good.sts.example", "enforce-good")
    ev, relay, reply = wait_result(m, "ann@good.sts.example")
    tx = sinks[41].messages_to("ann@good.sts.example")
    check("enforce_good_cert_delivered", ev == "delivered" and tx and tx[0]["tls"], "%s %s %s" % (ev, relay, reply))
    check("enforce_verified_logged", re.search(r"event=tls_established relay=mx.good.sts.example\S* .*verified=mta-sts",
                                               m.log_text()), "")
    check("policy_fetched_logged", re.search(r"event=mta_sts_policy qid=\S+ domain=good.sts.example mode=enforce "
                                             r"id=1 source=fetched", m.log_text()), "")

    send(m, "bob@wrongname.sts.example", "enforce-wrongname")
    ev, relay, reply = wait_result(m, "bob@wrongname.sts.example")
    check("enforce_wrong_cert_name_deferred", ev == "deferred" and reply.startswith("4.7.5 MTA-STS") and
          not sinks[42].tx, "%s %s %s tx=%d" % (ev, relay, reply, len(sinks[42].tx)))

    send(m, "cat@nomatch.sts.example", "enforce-nomatch")
    ev, relay, reply = wait_result(m, "cat@nomatch.sts.example")
    check("enforce_mx_not_in_policy_not_used", ev == "delivered" and "127.0.0.44" in relay and
          sinks[43].sessions == 0 and sinks[44].messages_to("cat@nomatch.sts.example"),
          "%s %s %s rogue_sessions=%d" % (ev, relay, reply, sinks[43].sessions))

    send(m, "dan@testing.sts.example", "testing")
    ev, relay, reply = wait_result(m, "dan@testing.sts.example")
    check("testing_bad_cert_delivered", ev == "delivered" and sinks[45].messages_to("dan@testing.sts.example"),
          "%s %s %s" % (ev, relay, reply))
    check("testing_failure_logged", re.search(r"event=mta_sts_failure relay=mx.testing.sts.example\S* mode=testing "
                                              r"reason=\"certificate", m.log_text()), "")

    send(m, "eve@plain.sts.example", "no-policy")
    ev, relay, reply = wait_result(m, "eve@plain.sts.example")
    check("no_policy_delivers_like_may", ev == "delivered" and sinks[46].messages_to("eve@plain.sts.example"),
          "%s %s" % (ev, reply))


def tls_reports(m, sinks):
    """tlsrpt_reports = yes: the sessions of deliveries() under MTA-STS policies, reported to the rua of each
    policy domain (a mailbox behind good.sts.example's MX), and read by Python's email/gzip/json."""
    r = mtaqueue_tlsrpt(m, "send")
    check("tlsrpt_send", r.returncode == 0 and "3 TLS reports queued" in r.stdout, r.stdout + r.stderr)
    got = wait_for(lambda: len(sinks[41].messages_to("tlsrpt@good.sts.example")) >= 3, 30)
    reports, problems = parse_reports([t["data"] for t in sinks[41].messages_to("tlsrpt@good.sts.example")])
    check("tlsrpt_reports_parse", got and not problems and len(reports) == 3, problems or sorted(reports))
    ok, failed, types = counts(reports, "good.sts.example")
    check("tlsrpt_sts_success_counted", ok >= 1 and not failed and types == {"sts"}, (ok, failed, types))
    ok, failed, types = counts(reports, "wrongname.sts.example")
    check("tlsrpt_sts_wrong_name_is_host_mismatch", ok == 0 and failed.get("certificate-host-mismatch", 0) >= 1,
          (ok, failed, types))
    ok, failed, types = counts(reports, "testing.sts.example")
    check("tlsrpt_sts_testing_failure_counted", ok == 0 and sum(failed.values()) >= 1, (ok, failed, types))
    pol = [p["policy"] for rep, p in reports.get("good.sts.example", [])]
    check("tlsrpt_sts_policy_fields", pol and "mode: enforce" in pol[0]["policy-string"] and
          pol[0].get("mx-host") == ["*.good.sts.example"], pol)


def requiretls(m, sinks):
    send(m, "rt@good.sts.example", "requiretls-good", requiretls=True)
    ev, relay, reply = wait_result(m, "rt@good.sts.example")
    tx = sinks[41].messages_to("rt@good.sts.example")
    check("requiretls_enforce_delivered", ev == "delivered" and tx and tx[0]["tls"], "%s %s %s" % (ev, relay, reply))
    check("requiretls_on_mail_from", tx and tx[0]["mail"].upper().endswith("REQUIRETLS"), tx and tx[0]["mail"])
    other = sinks[46].messages_to("ann@plain.sts.example")
    send(m, "ann@plain.sts.example", "requiretls-may", requiretls=True)
    ev, relay, reply = wait_result(m, "ann@plain.sts.example")
    check("requiretls_may_destination_bounced", ev == "bounced" and reply.startswith("5.7.30") and
          sinks[46].messages_to("ann@plain.sts.example") == other, "%s %s" % (ev, reply))

    def dsn():
        return [f for f in m.mailbox("alice") if b"requiretls-may" in open(f, "rb").read()
                and b"5.7.30" in open(f, "rb").read()]
    check("requiretls_bounce_dsn", wait_for(dsn, 30), "")
    # A next hop that does not advertise REQUIRETLS does not get the message, even with verified TLS.
    send(m, "rt@nomatch.sts.example", "requiretls-noext", requiretls=True)
    ev, relay, reply = wait_result(m, "rt@nomatch.sts.example")
    check("requiretls_next_hop_without_extension_bounced", ev == "bounced" and reply.startswith("5.7.30") and
          "REQUIRETLS" in reply and not sinks[44].messages_to("rt@nomatch.sts.example"), "%s %s" % (ev, reply))


def cache(m, tmp, nsd_args, https, nsd1):
    rc, out = mtadns(m, "good.sts.example")
    check("mtadns_policy", rc == 0 and "MTA-STS: mode enforce, max_age 86400, id 1, cached" in out and
          "mx: *.good.sts.example" in out and "TLS level: mta-sts (TLS required, certificate verified by WebPKI "
          "for mx.good.sts.example)" in out, out)
    rc, out = mtadns(m, "nomatch.sts.example")
    check("mtadns_mx_not_in_policy", rc == 0 and "TLS level: skip (MTA-STS enforce: host not in the policy" in out, out)
    rc, out = mtadns(m, "plain.sts.example")
    check("mtadns_no_policy", rc == 0 and "MTA-STS: none (no MTA-STS policy: no _mta-sts TXT record)" in out, out)
    hits = len(https.hits)
    POLICIES["mta-sts.good.sts.example"] = policy("testing", "*.good.sts.example", max_age=600)
    # wrongname's policy disappears (404) just as its id changes: the refresh will fail.
    del POLICIES["mta-sts.wrongname.sts.example"]
    rc, out = mtadns(m, "good.sts.example")
    check("same_id_uses_cache", "mode enforce" in out and "cached" in out and len(https.hits) == hits, out)
    nsd1.stop()
    nsd = Nsd(os.path.join(tmp, "v2"), {"sts.example": ZONE.format(good_id="2", wrong_id="9")}, **nsd_args)
    nsd_ok = wait_for(lambda: "id=2" in nsd.query("_mta-sts.good.sts.example", "TXT"), 15)
    time.sleep(1.5)  # TTL 1: the resolver's cached TXT answers expire
    rc, out = mtadns(m, "good.sts.example")
    check("txt_id_change_refetches", nsd_ok and "MTA-STS: mode testing, max_age 600, id 2, fetched" in out, out)
    # wrongname's id changed but its policy is gone (404): the cached enforce policy still applies
    # (RFC 8461 §5.1); then the policy server stops altogether, and the wrong certificate still gets nothing.
    rc, out = mtadns(m, "wrongname.sts.example")
    check("fetch_failure_keeps_cached_policy", "mode enforce" in out and "id 1, cached" in out and
          "policy fetch failed: HTTP status 404" in out, out)
    https.close()
    send(m, "fay@wrongname.sts.example", "after-https-down")
    ev, relay, reply = wait_result(m, "fay@wrongname.sts.example")
    check("cached_enforce_still_applies", ev == "deferred" and reply.startswith("4.7.5") and not m.sinks[42].tx,
          "%s %s" % (ev, reply))
    check("cache_file_on_disk", os.path.exists(os.path.join(m.spool, "resolver", "mta-sts", "good.sts.example")), "")
    return nsd


def main():
    tmp = tempfile.mkdtemp(prefix="mtatest-mtasts-")
    os.chmod(tmp, 0o755)
    port = free_port(*["127.0.0.%d" % i for i in range(40, 47)])
    sts_port = free_port(*["127.0.0.%d" % i for i in range(40, 47)])
    certs = make_certs(tmp)
    nsd_args = {"addr": random_address(), "port": free_port()}
    nsd = Nsd(os.path.join(tmp, "v1"), {"sts.example": ZONE.format(good_id="1", wrong_id="1")}, **nsd_args)
    sinks, extra = {}, {}  # extra: the policy server and the second NSD, once started

    def close_https():
        try:
            extra["https"].close()
        except (KeyError, OSError):
            pass
    with Guard("mtasts", tail=4000) as g:
        g.cleanups += [lambda: [s.close() for s in sinks.values()], close_https, nsd.stop,
                       lambda: extra.get("nsd2") and extra["nsd2"].stop()]
        if not check("mtasts_nsd_up", nsd.wait_answering("mx.good.sts.example", "127.0.0.41"), "nsd did not answer"):
            return
        https = extra["https"] = PolicyServer("127.0.0.40", sts_port, certs["https"])
        withext = ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "REQUIRETLS")
        for i, name in ((41, "good"), (42, "wrong"), (43, "rogue"), (44, "nomatch"), (45, "testing"), (46, "plain")):
            sinks[i] = Sink("127.0.0.%d" % i, port, tls=certs[name], ext=withext if i in (41, 46) else
                            ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"))
        mcert = certs["plain"]
        g.log = m = MTA(name="mtasts", extra="smtp_port = %d\ndns_forwarder = %s\ndns_insecure_domains = sts.example\n"
                "smtp_tls_level = mta-sts\nsmtp_tls_ca_file = %s\nmta_sts_port = %d\ntls_cert = %s\ntls_key = %s\n"
                "mynetworks = 127.0.0.0/8\ntlsrpt_reports = yes\n" % (port, nsd.forwarder(), certs["ca"][0], sts_port, mcert[0], mcert[1])).start()
        g.cleanups.insert(0, m.stop)
        m.sinks = sinks
        deliveries(m, sinks)
        tls_reports(m, sinks)
        requiretls(m, sinks)
        extra["nsd2"] = cache(m, tmp, nsd_args, https, nsd)
        # The cache survives a restart (the policy server is still down).
        m.stop()
        m.start()
        wait_for(lambda: "MTA-STS:" in mtadns(m, "good.sts.example")[1], 20)
        rc, out = mtadns(m, "good.sts.example")
        check("cache_survives_restart", "mode testing" in out and "id 2, cached" in out, out)
    if os.environ.get("MTA_TEST_KEEP") is None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
    finish()
