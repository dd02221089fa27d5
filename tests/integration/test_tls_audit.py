"""TLS audit of mta-smtpd (STARTTLS on 25/587, implicit TLS on 465) and mta-smtp, beyond the TLS checks
of test_smtpd/test_protocol/test_hostile_tls/test_outbound/test_mtasts/test_client: protocol versions per
listener, renegotiation (single and flood), weak cipher suites, forward-secret preference, hand-built
ClientHellos (64 KiB of extensions, a 16 MiB length claim, odd SNI bytes), ALPN and client certificates,
STARTTLS before EHLO / then garbage / then close, a chain file served whole (RSA) next to an EC key,
a key that does not match its certificate (mtad -n, reload); outbound to scripted TLS next hops: TLS 1.0
only, expired, self-signed and wrong-name certificates at may and encrypt, servers asking for or
requiring a client certificate. mta-smtpd must never restart (hostile.Health)."""
import os
import re
import signal
import smtplib
import ssl
import struct
import subprocess
import threading
import time
import warnings

from hostile import Health, make_instance
from mtatest import BIN, MTA, check, finish, first_delivery_event, free_port, wait_for
from queuetest import queue_json
from smtpsink import Sink
from test_smtpd import OUTSIDE, Client

warnings.filterwarnings("ignore", category=DeprecationWarning)  # ssl.TLSVersion.TLSv1/TLSv1_1 on purpose


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True)


def ctx_for(version=None, ciphers="DEFAULT@SECLEVEL=0", alpn=None, cert=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_ciphers(ciphers)
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


def ports(m):
    return (("25", m.port), ("587", m.sub_port), ("465", m.smtps_port))


def plain_until_starttls(port, ehlo=True):
    c = Client(port, OUTSIDE)
    c.last()
    if ehlo:
        c.cmd("EHLO client.test.example")
    r = c.cmd("STARTTLS")
    assert r.startswith("220 "), r
    return c


def tls_open(m, port, ctx):
    """A TLS session on any listener; returns the client with the TLS socket, EHLO already answered."""
    c = Client(port, OUTSIDE) if port == m.smtps_port else plain_until_starttls(port)
    c.s = ctx.wrap_socket(c.s, server_hostname="mx.test.example")
    c.buf = b""
    if port == m.smtps_port:
        c.last()
    c.ehlo = c.cmd("EHLO client.test.example")
    return c


def versions(m):
    for name, port in ports(m):
        for v, want in ((ssl.TLSVersion.TLSv1, False), (ssl.TLSVersion.TLSv1_1, False),
                        (ssl.TLSVersion.TLSv1_2, True), (ssl.TLSVersion.TLSv1_3, True)):
            try:
                c = tls_open(m, port, ctx_for(v))
                got = (c.s.version(), c.ehlo[:3], c.cmd("QUIT")[:3])
                c.close()
            except (ssl.SSLError, OSError, EOFError) as e:
                got = str(e)
            ok = got == (v.name.replace("_", "."), "250", "221") if want else "PROTOCOL_VERSION" in str(got)
            check("version: %s on port %s %s" % (v.name, name, "accepted" if want else "refused (alert)"), ok, got)


def s_client(port, extra, script, starttls=True):
    # s_client reads a line starting with Q or R as its own command: scripts say "quit", not "QUIT".
    cmd = "(%s) | openssl s_client %s -connect 127.0.0.1:%d -crlf %s 2>&1" % (
        script, "-starttls smtp" if starttls else "", port, extra)
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout


def s_client_steps(port, extra, steps, starttls=True):
    """openssl s_client driven in steps of (text to wait for in the output since the last send, line to
    send). s_client takes a line as its own command ("R": renegotiate) only when it starts a read of
    stdin, so each line goes only after the answer to the previous one is there: under load a fixed sleep
    let "EHLO x\\nR\\n" arrive in one read, and R went to the server as an SMTP command."""
    cmd = ["openssl", "s_client"] + (["-starttls", "smtp"] if starttls else []) + \
          ["-connect", "127.0.0.1:%d" % port, "-crlf"] + extra.split()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, mark = bytearray(), 0

    def reader():
        while True:
            b = p.stdout.read1(4096)
            if not b:
                return
            out.extend(b)
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    for want, line in steps:
        wait_for(lambda: want.encode() in out[mark:] or p.poll() is not None, 10, 0.05)
        mark = len(out)
        try:
            p.stdin.write(line.encode() + b"\n")
            p.stdin.flush()
        except OSError:
            break
    time.sleep(0.5)  # the answer to the last line
    try:
        p.stdin.close()
    except OSError:
        pass
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
    t.join(5)
    return out.decode("utf-8", "replace")


def renegotiation(m):
    out = s_client_steps(m.port, "-tls1_2", [("Verify return code", "EHLO x"), ("250 ", "R"),
                                             ("RENEGOTIATING", "NOOP")])
    check("renegotiation: R over TLS 1.2 on 25 refused (no_renegotiation alert)",
          "RENEGOTIATING" in out and "no renegotiation" in out and "250 2.0.0 Ok" not in out.split("RENEGOTIATING")[1],
          out[-400:])
    out = s_client_steps(m.smtps_port, "-tls1_2", [("220 ", "R"), ("RENEGOTIATING", "NOOP")], False)
    check("renegotiation: R over TLS 1.2 on 465 refused", "RENEGOTIATING" in out and
          "250 2.0.0 Ok" not in out.split("RENEGOTIATING")[1], out[-400:])
    flood = "sleep 0.3; for i in 1 2 3 4 5 6 7 8; do printf 'R\\n'; done; sleep 1"
    procs = [subprocess.Popen("(%s) | openssl s_client -tls1_2 -connect 127.0.0.1:%d >/dev/null 2>&1" % (flood, m.smtps_port),
                              shell=True) for _ in range(20)]
    for p in procs:
        p.wait(30)
    c = tls_open(m, m.smtps_port, ctx_for(ssl.TLSVersion.TLSv1_2))
    r = [c.ehlo, c.cmd("NOOP"), c.cmd("QUIT")]
    check("renegotiation: after a flood of 20x8 attempts a new TLS 1.2 session works", [x[:3] for x in r] ==
          ["250", "250", "221"], r)


def ciphers(m, rsa):
    for spec in ("aNULL", "eNULL", "NULL", "ADH", "AECDH", "EXP", "RC4", "3DES", "DES", "MD5"):
        try:
            ctx = ctx_for(ssl.TLSVersion.TLSv1_2, spec + ":@SECLEVEL=0")
        except ssl.SSLError:
            continue  # not even built into the client library: cannot be negotiated with anyone
        for mm, label in ((m, "EC"), (rsa, "RSA")):
            try:
                c = tls_open(mm, mm.smtps_port, ctx)
                got = c.s.cipher()
                c.close()
            except (ssl.SSLError, OSError, EOFError) as e:
                got = str(e)
            check("cipher: %s refused by the %s server" % (spec, label), "HANDSHAKE_FAILURE" in str(got), got)
    # The client lists a static-RSA suite first: the server's own order (forward secrecy first) wins.
    c = tls_open(rsa, rsa.smtps_port, ctx_for(ssl.TLSVersion.TLSv1_2, "AES128-GCM-SHA256:AES256-SHA:"
                                              "ECDHE-RSA-AES128-GCM-SHA256"))
    got = c.s.cipher()
    c.close()
    check("cipher: server prefers ECDHE over a client's static-RSA first choice", got[0] == "ECDHE-RSA-AES128-GCM-SHA256", got)
    for mm, label, want in ((m, "EC", "ECDHE-ECDSA-"), (rsa, "RSA", "ECDHE-RSA-")):
        c = tls_open(mm, mm.port, ctx_for(ssl.TLSVersion.TLSv1_2, "DEFAULT"))
        got = (c.s.cipher(), c.cmd("QUIT"))
        check("cipher: %s key, STARTTLS TLS 1.2 default: forward-secret %s AEAD" % (label, want),
              got[0][0].startswith(want) and "GCM" in got[0][0] or "CHACHA" in got[0][0], got)


def ext(kind, data):
    return struct.pack("!HH", kind, len(data)) + data


def client_hello(sni=None, n_unknown=0, size=0, claim=None):
    """A TLS 1.2 ClientHello built by hand, in as many 16 KiB records as it needs."""
    suites = (0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca8, 0xcca9)
    body = b"\x03\x03" + os.urandom(32) + b"\x00" + struct.pack("!H", 2 * len(suites)) + \
        b"".join(struct.pack("!H", s) for s in suites) + b"\x01\x00"
    exts = ext(10, b"\x00\x04\x00\x17\x00\x1d") + ext(11, b"\x01\x00") + ext(13, b"\x00\x06\x04\x03\x08\x04\x04\x01")
    if sni is not None:
        exts += ext(0, struct.pack("!HBH", len(sni) + 3, 0, len(sni)) + sni)
    exts += b"".join(ext(0x1000 + i, os.urandom(size)) for i in range(n_unknown))
    body += struct.pack("!H", len(exts)) + exts
    msg = b"\x01" + struct.pack("!I", claim or len(body))[1:] + body
    return b"".join(b"\x16\x03\x01" + struct.pack("!H", len(msg[i:i + 16384])) + msg[i:i + 16384]
                    for i in range(0, len(msg), 16384))


def first_record(m, payload, starttls=False):
    """Sends raw TLS bytes; returns the content type of the server's first record (22 handshake, 21 alert)."""
    c = plain_until_starttls(m.port) if starttls else Client(m.smtps_port, OUTSIDE)
    c.s.settimeout(5)
    try:
        c.send(payload)
        d = c.s.recv(5)
        return d[0] if d else "closed"
    except OSError as e:
        return str(e)
    finally:
        c.close()


def handshakes(m):
    hello = client_hello(n_unknown=2000, size=28)
    check("clienthello: %d KiB with 2000 unknown extensions gets a ServerHello (smtps)" % (len(hello) // 1024),
          first_record(m, hello) == 22, first_record(m, hello))
    check("clienthello: the same after STARTTLS", first_record(m, hello, True) == 22, "")
    t0 = time.time()
    r = first_record(m, client_hello(claim=0xFFFFFF))
    check("clienthello: a 16 MiB length claim is refused at once (alert or close, not buffered)",
          r in (21, "closed") and time.time() - t0 < 3, (r, time.time() - t0))
    r = first_record(m, b"\x16\x03\x01\x00\x05" + b"\x01\x00\x00\x01\x00")
    check("clienthello: a truncated body is refused", r in (21, "closed"), r)
    for sni in (b"", b"a\x00b.example", b"x" * 255, b"y" * 300, b"\xff\xfe\xc3\xa9.example", b"..", b"%n%s%s"):
        r = first_record(m, client_hello(sni=sni))
        check("clienthello: SNI %r answered with a record" % sni[:12], r in (21, 22), r)
    c = tls_open(m, m.sub_port, ctx_for(alpn=["h2", "http/1.1", "smtp"]))
    check("alpn: offered h2/http1.1/smtp, none selected, session works",
          c.s.selected_alpn_protocol() is None and c.ehlo.startswith("250 ") and c.cmd("QUIT").startswith("221"), c.ehlo)
    c = tls_open(m, m.smtps_port, ctx_for(cert=(m.cert, m.key)))
    check("client certificate: none requested, session works", c.s.getpeercert() == {} and
          c.ehlo.startswith("250 ") and c.cmd("QUIT").startswith("221"), c.ehlo)
    out = s_client(m.port, "-cert %s -key %s" % (m.cert, m.key), "printf 'EHLO x\\nquit\\n'; sleep 1")
    check("client certificate: s_client -cert over STARTTLS talks", "221 2.0.0" in out and
          "No client certificate CA names sent" in out, out[-300:])


def pipelined_with_finished(m):
    # TLS 1.3: the client's first commands leave with its Finished; every reply must still come back.
    for name, port in (("465", m.smtps_port), ("25", m.port)):
        bad = []
        for _ in range(10):
            c = Client(port, OUTSIDE) if port == m.smtps_port else plain_until_starttls(port)
            c.s = ctx_for(ssl.TLSVersion.TLSv1_3).wrap_socket(c.s)
            c.send(b"EHLO client.test.example\r\nNOOP\r\nQUIT\r\n")
            out = b""
            try:
                while d := c.s.recv(65536):
                    out += d
            except OSError as e:
                out += repr(e).encode()
            c.close()
            if not out.endswith(b"250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n") or b"250-PIPELINING" not in out:
                bad.append(out[-80:])
        check("pipelining: EHLO+NOOP+QUIT sent with the TLS 1.3 Finished on %s: all replies, then close" % name,
              not bad, bad[:2])


def starttls_edges(m):
    for name, port in (("25", m.port), ("587", m.sub_port)):
        c = plain_until_starttls(port, ehlo=False)
        c.s = ctx_for().wrap_socket(c.s)
        c.buf = b""
        r = [c.cmd("MAIL FROM:<a@b.example>"), c.cmd("EHLO c.example"), c.cmd("QUIT")]
        check("starttls: before EHLO on %s: 220, TLS, then EHLO still required" % name,
              [x[:3] for x in r] == ["503", "250", "221"], r)
    c = plain_until_starttls(m.port)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 4)
    got = b""
    try:
        while d := c.s.recv(4096):
            got += d
    except OSError:
        pass
    check("starttls: then garbage instead of a ClientHello: closed, no SMTP reply",
          b"250" not in got and b"500" not in got and (got == b"" or got[:1] == b"\x15"), got[:40])
    c = plain_until_starttls(m.sub_port)
    c.close()
    c = plain_until_starttls(m.port)
    c.send(client_hello()[:40])
    c.close()
    c = tls_open(m, m.sub_port, ctx_for())
    check("starttls: after a client that closed before/mid handshake, the next one works",
          c.ehlo.startswith("250 ") and c.cmd("QUIT").startswith("221"), c.ehlo)


def make_chain(d):
    """root CA -> intermediate CA -> RSA leaf for mx.test.example; the cert file holds leaf + intermediate."""
    p = lambda n: os.path.join(d, n)  # noqa: E731
    with open(p("ca.ext"), "w") as f:
        f.write("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
    with open(p("leaf.ext"), "w") as f:
        f.write("subjectAltName=DNS:mx.test.example\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p("root.key"), "-out", p("root.pem"),
            "-days", "2", "-subj", "/CN=Audit Root", "-addext", "basicConstraints=critical,CA:TRUE")
    for name, issuer, extfile, key in (("inter", "root", "ca.ext", "rsa:2048"), ("leaf", "inter", "leaf.ext", "rsa:2048")):
        openssl("req", "-new", "-newkey", key, "-nodes", "-keyout", p(name + ".key"), "-out", p(name + ".csr"),
                "-subj", "/CN=%s" % ("Audit Intermediate" if name == "inter" else "mx.test.example"))
        openssl("x509", "-req", "-in", p(name + ".csr"), "-CA", p(issuer + ".pem"), "-CAkey", p(issuer + ".key"),
                "-CAcreateserial", "-days", "2", "-extfile", p(extfile), "-out", p(name + ".pem"))
    with open(p("chain.pem"), "w") as f:
        f.write(open(p("leaf.pem")).read() + open(p("inter.pem")).read())
    return p("chain.pem"), p("leaf.key"), p("root.pem")


def certificates(m, rsa):
    out = s_client(rsa.smtps_port, "-showcerts -CAfile %s -verify_return_error -verify_hostname mx.test.example"
                   % rsa.root, "printf 'quit\\n'; sleep 1", False)
    check("chain: leaf + intermediate served whole, verifies to the root with the name",
          out.count("BEGIN CERTIFICATE") == 2 and "Verify return code: 0 (ok)" in out and "221 2.0.0" in out,
          "\n".join(x for x in out.splitlines() if not x.startswith(" "))[-1500:])
    r = subprocess.run([os.path.join(BIN, "mtad"), "-n", "-c", rsa.bad_conf], capture_output=True, text=True, timeout=30)
    check("key mismatch: mtad -n fails naming tls_key", r.returncode != 0 and "tls_key" in r.stderr and
          "does not match" in r.stderr, (r.returncode, r.stdout, r.stderr))
    r = subprocess.run([os.path.join(BIN, "mtad"), "-n", "-c", rsa.missing_conf], capture_output=True, text=True, timeout=30)
    check("missing key file: mtad -n fails naming the file", r.returncode != 0 and "/nonexistent/key.pem" in r.stderr,
          (r.returncode, r.stdout, r.stderr))
    fp = lambda: s_client(rsa.smtps_port, "", "printf 'quit\\n'; sleep 0.5", False).count("CN = mx.test.example")  # noqa
    with open(rsa.key_path, "w") as f:
        f.write(open(rsa.other_key).read())
    rsa.proc.send_signal(signal.SIGHUP)
    logged = wait_for(lambda: re.search(r"event=(tls_reload_failed|config_reload_failed|reload_failed)[^\n]*"
                                        r"(does not match|tls_key)", rsa.log_text()), 15, 0.2)
    check("key mismatch on SIGHUP: logged, old certificate still served on 465",
          logged and fp() >= 1, rsa.log_text()[-800:])


NEXT_HOPS = {  # octet: (domain, policy level or None, server context recipe)
    161: ("tls10", None, dict(version=ssl.TLSVersion.TLSv1)),
    162: ("expired", None, dict(cert="expired")),
    163: ("expenc", "encrypt", dict(cert="expired")),
    164: ("wrongenc", "encrypt", dict(cert="wrong")),
    165: ("askcert", None, dict(verify=ssl.CERT_OPTIONAL)),
    166: ("needcert", None, dict(verify=ssl.CERT_REQUIRED)),
    167: ("tls10enc", "encrypt", dict(version=ssl.TLSVersion.TLSv1)),
}


def server_ctx(d, certs, version=None, cert="expired", verify=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("DEFAULT@SECLEVEL=0")
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    ctx.load_cert_chain(*certs[cert])
    if verify:
        ctx.verify_mode = verify
        ctx.load_verify_locations(certs["expired"][0])
    return ctx


def outbound_setup(m, d):
    certs = {}
    for name, days, cn in (("expired", "-1", "next.hop.example"), ("wrong", "2", "wrong.name.example")):
        key, crt = os.path.join(d, name + "-hop.key"), os.path.join(d, name + "-hop.pem")
        openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt + ".csr", "-subj", "/CN=" + cn)
        openssl("x509", "-req", "-in", crt + ".csr", "-signkey", key, "-days", days, "-out", crt)
        certs[name] = (crt, key)
    port = free_port(*["127.0.0.%d" % o for o in NEXT_HOPS])
    sinks = {o: Sink("127.0.0.%d" % o, port, tls=server_ctx(d, certs, **kw)) for o, (_, _, kw) in NEXT_HOPS.items()}
    with open(os.path.join(d, "transport.txt"), "w") as f:
        f.write("".join("%s.ta.example smtp:[127.0.0.%d]:%d\n" % (n, o, port) for o, (n, _, _) in NEXT_HOPS.items()))
    with open(os.path.join(d, "tls.txt"), "w") as f:
        f.write("".join("%s.ta.example %s\n" % (n, lv) for n, lv, _ in NEXT_HOPS.values() if lv))
    for kind, src in (("transport", "transport.txt"), ("tls_policy", "tls.txt")):
        r = subprocess.run([os.path.join(BIN, "mtamap"), "-t", kind, os.path.join(d, src)], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("mtamap: " + r.stderr)
    return sinks, "transport_map = %s\nsmtp_tls_policy_map = %s\n" % (os.path.join(d, "transport.lmdb"),
                                                                        os.path.join(d, "tls.lmdb"))


def outbound(m, sinks):
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        for o, (n, _, _) in NEXT_HOPS.items():
            bad = s.sendmail("sender@localhost", ["u@%s.ta.example" % n], b"Subject: audit %s\r\n\r\nx\r\n" % n.encode())
            assert bad == {}, bad
    ev = {n: first_delivery_event(m, "u@%s.ta.example" % n, 30) for n, _, _ in NEXT_HOPS.values()}
    tx = {n: sinks[o].messages_to("u@%s.ta.example" % n) for o, (n, _, _) in NEXT_HOPS.items()}
    for n, what in (("expired", "expired self-signed at may"), ("expenc", "expired self-signed at encrypt"),
                    ("wrongenc", "wrong-name certificate at encrypt (names unchecked, as Postfix)"),
                    ("askcert", "server asking for a client certificate (none sent)")):
        check("outbound: %s delivered over TLS" % what, ev[n][0] == "delivered" and tx[n] and tx[n][0]["tls"],
              (ev[n], tx[n]))
    log = m.log_text()
    check("outbound: TLS 1.0-only next hop at may: handshake refused, then delivered in plaintext (as Postfix)",
          ev["tls10"][0] == "delivered" and tx["tls10"] and not tx["tls10"][0]["tls"] and "event=tls_fallback" in m.log_text(),
          (ev["tls10"], tx["tls10"]))
    for n, what, why in (("tls10enc", "TLS 1.0-only next hop at encrypt", "alert protocol version"),
                         ("needcert", "server requiring a client certificate", "certificate required")):
        check("outbound: %s deferred (%s), not sent in plaintext" % (what, why),
              ev[n][0] == "deferred" and ev[n][2].startswith("4.") and why in ev[n][2] and not tx[n], ev[n])
    q = queue_json(m)
    held = sorted(r for msg in q.get("messages", []) for r in [x.get("address", x) if isinstance(x, dict) else x
                                                                 for x in msg.get("recipients", [])])
    check("outbound: the deferred messages stay queued", sum("ta.example" in str(x) for x in held) == 2, q)
    check("outbound: no bounce", "event=bounced" not in log, "")


def main():
    m = make_instance()
    rsa = None
    sinks = {}
    try:
        h = Health(m)
        rsa = MTA(name="tls-audit-rsa", smtpd_processes=1)
        rsa.smtps_port = free_port()
        rsa.cert, rsa.key_path, rsa.root = make_chain(rsa.dir)
        rsa.key = rsa.key_path
        rsa.other_key = os.path.join(rsa.dir, "inter.key")
        sinks, tables = outbound_setup(rsa, rsa.dir)
        base = "smtps_listen = 127.0.0.1:%d\ntls_cert = %s\n" % (rsa.smtps_port, rsa.cert)
        with open(rsa.conf, "a") as f:
            f.write(base + "tls_key = %s\n" % rsa.key_path + tables)
        conf = open(rsa.conf).read()
        rsa.bad_conf, rsa.missing_conf = rsa.conf + ".mismatch", rsa.conf + ".missing"
        with open(rsa.bad_conf, "w") as f:
            f.write(conf.replace("tls_key = %s" % rsa.key_path, "tls_key = %s" % rsa.other_key))
        with open(rsa.missing_conf, "w") as f:
            f.write(conf.replace("tls_key = %s" % rsa.key_path, "tls_key = /nonexistent/key.pem"))
        rsa.start()
        hr = Health(rsa)
        for fn in (lambda: versions(m), lambda: renegotiation(m), lambda: ciphers(m, rsa), lambda: handshakes(m),
                   lambda: starttls_edges(m), lambda: pipelined_with_finished(m),
                   lambda: outbound(rsa, sinks), lambda: certificates(m, rsa)):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - any surprise is a test failure
                check("scenario", False, "%s: %s" % (type(e).__name__, e))
        h.check("the inbound TLS audit")
        hr.check("the certificate and outbound audit")
    finally:
        m.stop()
        if rsa:
            rsa.stop()
        for s in sinks.values():
            s.close()


if __name__ == "__main__":
    t0 = time.time()
    main()
    print("tls audit took %.0f s" % (time.time() - t0))
    finish()
