"""Black-box open-relay and recipient-validation audit: address spellings, local-part tricks, ESMTP
parameters, AUTH state, the null sender and mynetworks syntax, each tried by a client outside mynetworks
(127.0.0.9; mynetworks is 127.0.0.1/32). Every hostile transaction also carries one valid local
recipient and a body, so anything wrongly accepted would really be queued: at the end the relayhost (a
recording server) must have seen no connection and every Maildir must belong to a listed user.
Complements test_smtpd.py's relay() and test_hostile.py's addresses(), whose cases are not repeated."""
import base64
import os
import socket
import subprocess

from mtatest import BIN, MTA, check, finish, free_port, wait_for
from queuetest import ScriptedServer, queue_json, relay_config
from test_smtpd import OUTSIDE, Client, TlsClient, attempt, session

DENIED = "554 5.7.1"          # relay access denied
SYNTAX = "501 5.1.3"          # bad address syntax
UNKNOWN = "550 5.1.1"         # no such local user
ROUTING = "550 5.7.1"         # routing characters in a local part of ours
OK = "250 2.1.5"
LONG_REMOTE = ".".join(["d" * 58] * 4) + ".example"   # 243 octets: a path of 250, valid, remote


def instance():
    srv = ScriptedServer()
    m = MTA(extra=relay_config(srv), name="relayaudit", smtpd_processes=1)
    m.sub_port = free_port()
    m.cert, m.key = os.path.join(m.dir, "cert.pem"), os.path.join(m.dir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", m.key, "-out", m.cert, "-days", "2", "-subj", "/CN=mx.test.example",
                    "-addext", "subjectAltName=DNS:mx.test.example"], check=True, capture_output=True)
    for name, kind, text in (("users", "auth", "alice:wonderland\n"),
                             ("recipients", "recipients", "alice\nKnown@localhost\nidn@xn--bcher-kva.example\n")):
        with open(os.path.join(m.dir, name), "w") as f:
            f.write(text)
        r = subprocess.run([os.path.join(BIN, "mtamap"), "-t", kind, os.path.join(m.dir, name)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("mtamap failed: " + r.stderr)
    with open(m.conf, "a") as f:
        f.write("mynetworks = 127.0.0.1/32\nlocal_domains = localhost xn--bcher-kva.example\n"
                "relay_domains = relay.test.example\nsubmission_listen = 127.0.0.1:%d\ntls_cert = %s\ntls_key = %s\n"
                "auth_users = %s/users.lmdb\nlocal_recipients = %s/recipients.lmdb\nsmtpd_error_limit = 1000\n"
                "smtpd_auth_failure_delay = 0\n" % (m.sub_port, m.cert, m.key, m.dir, m.dir))
    return srv, m.start()


def raw(c, line):
    c.send((line if isinstance(line, bytes) else line.encode()) + b"\r\n")
    return c.last()


def txn(m, title, probes, mail="MAIL FROM:<a@b.example>", src=OUTSIDE):
    """One transaction: each probe RCPT must get its reply; then alice@localhost and a body, queued."""
    c = session(m, src)
    r = c.cmd(mail)
    check("%s: %s accepted" % (title, mail), r.startswith("250"), r)
    for name, rcpt, want in probes:
        r = raw(c, rcpt if isinstance(rcpt, bytes) else "RCPT TO:" + rcpt)
        check("%s: %s -> %s" % (title, name, want), r.startswith(want), r)
    r = c.cmd("RCPT TO:<alice@localhost>")
    c.send("DATA\r\n")
    r2 = c.last()
    c.send("Subject: audit %s\r\n\r\nprobe\r\n.\r\n" % title)
    r3 = c.last()
    check("%s: the carrier message is queued" % title, r.startswith(OK) and r2.startswith("354") and
          r3.startswith("250 2.0.0"), (r, r2, r3))
    c.cmd("QUIT")


def domains(m):
    txn(m, "domain", [
        ("upper-case local domain", "<alice@LOCALHOST>", OK),
        ("double trailing dot", "<user@localhost..>", SYNTAX),
        ("leading dot", "<user@.localhost>", SYNTAX),
        ("remote domain with a port", "<user@remote.example:25>", SYNTAX),
        ("percent in the domain", "<user@remote.example%localhost>", SYNTAX),
        ("remote domain ending in a local name", "<user@remote.localhost>", DENIED),
        ("local name as a remote label", "<user@localhost.remote.example>", DENIED),
        ("A-label of a local domain", "<idn@XN--BCHER-KVA.example>", OK),
        ("remote A-label", "<user@xn--mnchen-3ya.example>", DENIED),
        ("long remote domain (243 octets)", "<user@%s>" % LONG_REMOTE, DENIED),
        ("domain of 256 octets", "<user@%s>" % ("d" * 63 + "." + "e" * 63 + "." + "f" * 63 + "." + "g" * 62 +
                                                  ".localhost"), SYNTAX),
        ("8-bit domain without SMTPUTF8", "<user@remote\u3002example>", "553 5.6.7"),
        ("NUL in the domain", b"RCPT TO:<user@remote.example\0.localhost>", "500 5.5.2"),
        ("bare CR in the domain", b"RCPT TO:<user@remote.example\r.localhost>", "5"),
        ("DEL in the domain", b"RCPT TO:<user@remote.example\x7f.localhost>", "500 5.5.2"),
    ])


def utf8_domains(m):
    # Domains are compared as written (no IDNA mapping): a U-label, a full-width dot (U+3002) or
    # full-width letters never name a local domain, so they are remote and refused from outside.
    txn(m, "utf8", [
        ("U-label of a local domain (not mapped)", "<idn@b\u00fccher.example>", DENIED),
        ("upper-case U-label", "<idn@B\u00dcCHER.example>", DENIED),
        ("ideographic full stop", "<user@remote\u3002example>", DENIED),
        ("ideographic full stop before a local name", "<alice@remote\u3002localhost>", DENIED),
        ("full-width letters", "<alice@\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54>", DENIED),
        ("UTF-8 local part to a remote domain", "<j\u00f6rg@remote.example>", DENIED),
        ("overlong UTF-8 dot", b"RCPT TO:<user@remote\xc0\xaeexample>", "501"),
    ], mail="MAIL FROM:<a@b.example> SMTPUTF8")


def local_parts(m):
    txn(m, "localpart", [
        ("quoted percent hack", '<"user%remote.example"@localhost>', ROUTING),
        ("escaped @ outside quotes", "<user\\@remote.example@localhost>", SYNTAX),
        ("quoted escaped quote and @", '<"user\\"@remote.example"@localhost>', ROUTING),
        ("quoted bang path", '<"remote.example!user"@localhost>', ROUTING),
        ("comment in the local part", "<user(comment)@localhost>", SYNTAX),
        ("comment after the domain", "<alice@localhost(remote.example)>", "501"),
        ("two paths", "<alice@localhost> <other@remote.example>", "501 5.5.4"),
        ("nested brackets", "<<user@remote.example>>", SYNTAX),
        ("path with a display name", "Alice <user@remote.example>", "501"),
        ("remote RCPT with a local ORCPT", "<user@remote.example> NOTIFY=SUCCESS ORCPT=rfc822;alice@localhost",
         DENIED),
        ("local RCPT with a remote ORCPT", "<alice@localhost> ORCPT=rfc822;user@remote.example", OK),
        ("three-hop route to a remote mailbox", "<@localhost,@[127.0.0.1],@relay.test.example:user@remote.example>",
         DENIED),
        ("route through a remote host to us", "<@remote.example,@other.example:alice@localhost>", OK),
        ("percent hack via a relay domain", "<user%remote.example@relay.test.example>", DENIED),
        ("bang path via a relay domain", "<remote.example!user@relay.test.example>", DENIED),
        ("quoted @ via a relay domain", '<"user@remote.example"@relay.test.example>', DENIED),
    ])


def null_sender_and_postmaster(m):
    txn(m, "null sender", [
        ("remote recipient", "<user@remote.example>", DENIED),
        ("<postmaster> (no domain)", "<postmaster>", OK),
        ("<POSTMASTER@LOCALHOST>", "<POSTMASTER@LOCALHOST>", OK),
        ("postmaster at a literal", "<postmaster@[127.0.0.1]>", DENIED),
    ], mail="MAIL FROM:<>")


def recipients(m):
    txn(m, "recipients", [
        ("unknown local user", "<bob@localhost>", UNKNOWN),
        ("listed full address, case changed", "<KNOWN@LocalHost>", OK),
        ("quoted form of a listed user", '<"alice"@localhost>', OK),
        ("+extension (no recipient_delimiter)", "<alice+tag@localhost>", UNKNOWN),
        ("listed user at another local domain", "<alice@xn--bcher-kva.example>", OK),
        ("listed full address at the wrong local domain", "<idn@localhost>", UNKNOWN),
        ("remote domain with a listed local part", "<alice@remote.example>", DENIED),
    ])


def auth_port25(m):
    c = session(m)
    r = c.cmd("AUTH PLAIN %s" % base64.b64encode(b"\0alice\0wonderland").decode())
    check("auth: AUTH on port 25 in plaintext refused 503", r.startswith("503"), r)
    for param in ("AUTH=alice@localhost", "AUTH=<>"):
        r = c.cmd("MAIL FROM:<alice@localhost> %s" % param)
        r2 = c.cmd("RCPT TO:<user@remote.example>")
        check("auth: MAIL %s grants no relay" % param, r.startswith("250") and r2.startswith(DENIED), (r, r2))
        c.cmd("RSET")
    c.cmd("QUIT")


def auth_submission(m):
    c = TlsClient(m.sub_port, OUTSIDE)
    c.last()
    c.cmd("EHLO client.test.example")
    c.cmd("STARTTLS")
    c.starttls(m)
    c.cmd("EHLO client.test.example")
    r = c.cmd("AUTH PLAIN %s" % base64.b64encode(b"\0alice\0wrong").decode())
    r2 = c.cmd("MAIL FROM:<alice@localhost> AUTH=alice@localhost")
    check("auth: a failed AUTH leaves MAIL refused 530 (no relay)", r.startswith("535") and r2.startswith("530"),
          (r, r2))
    r = c.cmd("AUTH PLAIN %s" % base64.b64encode(b"\0alice\0wonderland").decode())
    check("auth: AUTH succeeds 235", r.startswith("235"), r)
    for step in ("after AUTH", "after RSET", "after a new EHLO"):
        if step == "after RSET":
            c.cmd("RSET")
        elif step != "after AUTH":
            c.cmd("EHLO again.test.example")
        c.cmd("MAIL FROM:<alice@localhost>")
        r = c.cmd("RCPT TO:<user@remote.example>")
        check("auth: relaying allowed %s (RFC 4954 state kept)" % step, r.startswith(OK), r)
        c.cmd("RSET")
    r = c.cmd("STARTTLS")
    check("auth: STARTTLS again inside TLS refused, no renegotiated identity", r.startswith("554 5.5.1"), r)
    c.cmd("QUIT")
    c = TlsClient(m.sub_port, OUTSIDE)   # a new session does not inherit the authentication
    c.last()
    c.cmd("EHLO client.test.example")
    c.cmd("STARTTLS")
    c.starttls(m)
    c.cmd("EHLO client.test.example")
    r = c.cmd("MAIL FROM:<alice@localhost>")
    check("auth: a new session starts unauthenticated (530)", r.startswith("530"), r)
    c.cmd("QUIT")


def nothing_relayed(m, srv):
    titles = ("domain", "utf8", "localpart", "null sender", "recipients")

    def flushed():
        got = b"".join(open(p, "rb").read() for p in m.mailbox("alice"))
        return all(("Subject: audit %s\n" % t).encode() in got for t in titles)
    check("end: every carrier message delivered to alice", wait_for(flushed, 20), m.mailbox("alice"))
    check("end: the relayhost saw no MAIL or RCPT at all", srv.commands == [], srv.commands)
    remote = [r["address"] for msg in queue_json(m).get("messages", []) for r in msg.get("recipients", [])
              if not r["address"].lower().endswith(("@localhost", "@xn--bcher-kva.example"))]
    check("end: nothing queued for a remote domain", remote == [], remote)
    users = sorted(u.lower() for u in os.listdir(m.maildir)) if os.path.isdir(m.maildir) else []
    check("end: Maildirs only for listed users", set(users) <= {"alice", "known", "idn", "postmaster"}, users)


# ---- mynetworks syntax and matching (own instance: IPv4 and IPv6 listeners) ----

def conf_check(value):
    m = MTA(extra="mynetworks = %s" % value, name="relayaudit-conf")
    return subprocess.run([os.path.join(BIN, "mtad"), "-c", m.conf, "-n"], capture_output=True, text=True, timeout=20)


def mynetworks_syntax():
    for bad in ("127.0.0.1/33", "::1/129", "127.0.0.1/", "127.0.0.1/-1", "127.0.0.1/8x", "localhost",
                "127.0.0.0/8;10.0.0.0/8", "127.1/8", "127.0.0.9/30", "10.1.2.3/8"):
        r = conf_check(bad)
        check("mynetworks: %r is a configuration error" % bad, r.returncode != 0 and "mynetworks" in r.stderr,
              (r.returncode, r.stderr[-300:]))
    r = conf_check("127.0.0.8/30,, ::ffff:0:0/96   ::/0")
    check("mynetworks: commas and spaces mixed is a valid list", r.returncode == 0, r.stderr[-300:])


def relay_from(port, src, family=socket.AF_INET):
    s = socket.socket(family)
    s.settimeout(10)
    s.bind((src, 0))
    s.connect(("::1" if family == socket.AF_INET6 else "127.0.0.1", port))
    c = Client.__new__(Client)
    c.s, c.buf = s, b""
    c.last()
    c.cmd("EHLO client.test.example")
    c.cmd("MAIL FROM:<a@b.example>")
    r = c.cmd("RCPT TO:<user@remote.example>")
    c.cmd("QUIT")
    return r


def mynetworks_matching():
    s6 = socket.socket(socket.AF_INET6)
    s6.bind(("::1", 0))
    p6 = s6.getsockname()[1]
    s6.close()
    m = MTA(extra="mynetworks = 127.0.0.8/30,, ::ffff:0:0/96   ::/0", name="relayaudit-net")
    with open(m.conf) as f:
        text = f.read()
    with open(m.conf, "w") as f:  # a second listener on [::1]
        f.write(text.replace("smtp_listen = 127.0.0.1:%d" % m.port, "smtp_listen = 127.0.0.1:%d [::1]:%d" % (m.port, p6)))
    m.start()
    try:
        r = relay_from(m.port, "127.0.0.10")
        check("mynetworks: 127.0.0.8/30 covers 127.0.0.10", r.startswith(OK), r)
        r = relay_from(m.port, "127.0.0.12")
        check("mynetworks: 127.0.0.12 outside 127.0.0.8/30 refused", r.startswith(DENIED), r)
        r = relay_from(m.port, "127.0.0.1")
        check("mynetworks: ::/0 and ::ffff:0:0/96 do not cover IPv4 clients", r.startswith(DENIED), r)
        r = relay_from(p6, "::1", socket.AF_INET6)
        check("mynetworks: ::/0 covers the IPv6 client ::1", r.startswith(OK), r)
    finally:
        m.stop()
    m = MTA(extra="mynetworks =", name="relayaudit-empty")
    m.start()
    try:
        r = relay_from(m.port, "127.0.0.1")
        check("mynetworks: empty lets not even 127.0.0.1 relay", r.startswith(DENIED), r)
    finally:
        m.stop()


def main():
    srv, m = instance()
    try:
        for fn in (domains, utf8_domains, local_parts, null_sender_and_postmaster, recipients, auth_port25,
                   auth_submission):
            attempt(lambda: fn(m), fn.__name__)
        attempt(lambda: nothing_relayed(m, srv), "nothing_relayed")
        log = m.log_text()
        check("end: no crash in the log", "signal=" not in log and "AddressSanitizer" not in log
              and "runtime error:" not in log, log[-500:])
    finally:
        m.stop()
        srv.stop()
    attempt(mynetworks_syntax)
    attempt(mynetworks_matching)
    finish()


if __name__ == "__main__":
    main()
