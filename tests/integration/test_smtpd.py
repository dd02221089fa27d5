"""mta-smtpd against the real mtad: SMTP smuggling, relay tricks, every limit, PIPELINING, BDAT, DSN
parameters, 1,000 idle connections, STARTTLS/smtps and AUTH on submission. Clients that must look like
outside hosts bind 127.0.0.9 (the MTA's mynetworks is 127.0.0.1/32 here)."""
import base64
import os
import resource
import select
import smtplib
import socket
import ssl
import subprocess
import time

from mtatest import BIN, MTA, check, finish, free_port, wait_for

OUTSIDE = "127.0.0.9"


class Client:
    """A raw SMTP client: exact bytes out, reply lines in."""

    def __init__(self, port, src="127.0.0.1", timeout=10):
        self.s = socket.socket()
        self.s.settimeout(timeout)
        self.s.bind((src, 0))
        self.s.connect(("127.0.0.1", port))
        self.buf = b""

    def send(self, b):
        self.s.sendall(b if isinstance(b, bytes) else b.encode())

    def reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                d = self.s.recv(65536)
                if not d:
                    raise EOFError("connection closed after %r" % lines)
                self.buf += d
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("latin1"))
            if len(line) < 4 or line[3:4] != b"-":
                return lines

    def last(self):
        return self.reply()[-1]

    def cmd(self, c):
        self.send(c + "\r\n")
        return self.last()

    def closed(self):
        """True once the server has closed (FIN, or RST when our unread bytes were still on its side)."""
        try:
            while True:
                if self.s.recv(4096) == b"":
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


def attempt(fn, name=None):
    """Runs one scenario; an exception is a FAIL line, not the end of the suite."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - any surprise is a test failure
        check(name or fn.__name__, False, "%s: %s" % (type(e).__name__, e))


def session(m, src=OUTSIDE, port=None):
    c = Client(port or m.port, src)
    c.last()
    c.cmd("EHLO client.test.example")
    return c


def start_data(c, rcpt="u@localhost", sender="a@b.example"):
    c.send("MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (sender, rcpt))
    return [c.last() for _ in range(3)]


def delivered_flush(m, tag):
    """Sends a harmless marker message and waits until it is delivered: anything queued before it has
    had its chance to arrive in a Maildir too."""
    c = session(m)
    start_data(c, "marker@localhost")
    c.send("Subject: %s\r\n\r\nmarker\r\n.\r\n" % tag)
    r = c.last()
    c.cmd("QUIT")
    ok = wait_for(lambda: any(tag.encode() in open(f, "rb").read() for f in m.mailbox("marker")), 15)
    return r.startswith("250") and ok


SMUGGLES = [b"\n.\n", b"\r.\r\n", b"\n.\r\n", b"\r\n.\n", b"\r\n\x00.\r\n", b"\r\n.\r", b".\n", b"\n.\r"]


def smuggling(m):
    for i, v in enumerate(SMUGGLES):
        c = session(m)
        start_data(c, "u@localhost")
        c.send(b"Subject: smuggle\r\n\r\nhello" + v + b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim%d@localhost>\r\n"
               b"DATA\r\nSubject: forged\r\n\r\nforged\r\n.\r\n" % i)
        r = c.last()
        check("smuggling %r: refused 5xx after the dot" % v, r.startswith("550 5.6."), r)
        check("smuggling %r: no second transaction open" % v, c.cmd("RCPT TO:<u@localhost>").startswith("503"), "")
        c.cmd("QUIT")
    # Bare LF and bare CR in BDAT, and in a DATA line of its own.
    c = session(m)
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<victimb@localhost>\r\nBDAT 5 LAST\r\na\nb\r\n")
    r = [c.last() for _ in range(3)]
    check("smuggling: bare LF in BDAT refused", r[2].startswith("550 5.6.11"), r)
    c.close()
    check("smuggling: marker delivered", delivered_flush(m, "after-smuggling"), "")
    victims = [d for d in os.listdir(m.maildir) if d.startswith("victim") or d == "u"] if os.path.isdir(m.maildir) else []
    check("smuggling: nothing delivered for any attempt", victims == [], victims)


RELAY_TRICKS = ["user%remote.example@localhost", '"user@remote.example"@localhost', "remote.example!user@localhost",
                "@localhost:user@remote.example", "user@remote.example@localhost", "user@[127.0.0.1]",
                "user@[IPv6:::1]", "user@remote.example", "user@localhost.", "postmaster@remote.example"]


def relay(m):
    for t in RELAY_TRICKS:  # one session each: the refusals count against smtpd_error_limit
        c = session(m, OUTSIDE)
        c.cmd("MAIL FROM:<a@b.example>")
        r = c.cmd("RCPT TO:<%s>" % t)
        check("relay trick <%s> from outside refused 5xx" % t, r[:1] == "5", r)
        c.close()
    c = session(m, OUTSIDE)
    c.cmd("MAIL FROM:<a@b.example>")
    r = c.cmd("RCPT TO:<ok@relay.test.example>")
    check("relay: relay_domains accepted from outside", r.startswith("250"), r)
    r = c.cmd("RCPT TO:<Postmaster>")
    check("relay: <Postmaster> accepted", r.startswith("250"), r)
    c.cmd("QUIT")
    c = session(m, "127.0.0.1")
    c.cmd("MAIL FROM:<a@b.example>")
    r = c.cmd("RCPT TO:<user@remote.example>")
    check("relay: mynetworks client may relay", r.startswith("250"), r)
    r = c.cmd("RCPT TO:<user%remote.example@localhost>")
    check("relay: percent hack refused even from mynetworks", r.startswith("550 5.7.1"), r)
    c.cmd("QUIT")


def limits(m):
    c = session(m)
    c.send("X" * 5000 + "\r\n")
    r = c.last()
    check("limit: over-long command line 500 5.5.2", r.startswith("500 5.5.2"), r)
    check("limit: session usable after a long line", c.cmd("NOOP").startswith("250"), "")
    r = c.cmd("MAIL FROM:<a@b.example> SIZE=%d" % (200 * 1024))
    check("limit: SIZE over message_size_limit 552 5.3.4 at MAIL", r.startswith("552 5.3.4"), r)
    c.cmd("MAIL FROM:<a@b.example>")
    codes = [c.cmd("RCPT TO:<r%d@localhost>" % i)[:9] for i in range(6)]
    check("limit: recipient_limit then 452 4.5.3", codes == ["250 2.1.5"] * 5 + ["452 4.5.3"], codes)
    c.cmd("RSET")
    start_data(c, "big@localhost")
    line = b"y" * 998 + b"\r\n"
    c.send(line * 110 + b".\r\n")
    r = c.last()
    check("limit: size after the dot without SIZE 552 5.3.4", r.startswith("552 5.3.4"), r)
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<big@localhost>\r\nBDAT %d LAST\r\n" % (300 * 1024))
    r = [c.last() for _ in range(3)]
    check("limit: BDAT over the size limit 552 5.3.4", r[2].startswith("552 5.3.4"), r)
    c.close()
    c = session(m)
    codes = [c.cmd("BOGUS")[:3] for _ in range(5)]
    r = c.last()
    check("limit: error limit closes with 421 4.7.0", codes == ["500"] * 5 and r.startswith("421 4.7.0") and c.closed(),
          (codes, r))
    # Per-IP connection count and rate limits: tests/integration/test_limits.py (across processes).
    check("smuggling: size-limit body not delivered", not m.mailbox("big"), m.mailbox("big"))


def timeout():
    m = MTA(name="smtpd-timeout", extra="smtpd_timeout = 2s\nsmtpd_processes = 1\n").start()
    try:
        c = Client(m.port, OUTSIDE)
        c.last()
        t0 = time.time()
        c.s.settimeout(10)
        r = c.last()
        check("limit: idle timeout 421 4.4.2 and close", r.startswith("421 4.4.2") and c.closed(), r)
        check("limit: timeout after about smtpd_timeout", 1.5 < time.time() - t0 < 6, time.time() - t0)
    finally:
        m.stop()


def trickle(c, data, per, interval, seconds):
    """Sends `data` `per` bytes every `interval` seconds for at most `seconds`; returns the first reply
    line the server sends meanwhile, or "" if none came."""
    end, off = time.time() + seconds, 0
    while time.time() < end:
        if off < len(data):
            try:
                c.send(data[off:off + per])
            except OSError:
                pass
            off += per
        r, _, _ = select.select([c.s], [], [], interval)
        if r:
            return c.last()
    return ""


def rates():
    extra = "mynetworks = 127.0.0.1/32\nsmtpd_min_data_rate = 1000\nsmtpd_min_data_rate_window = 2s\n"
    m = MTA(name="smtpd-rates", extra=extra, smtpd_processes=1).start()
    try:
        # Connection rate per client: tests/integration/test_limits.py. Minimum data rate (1000 bytes/s over 2 s): 10 bytes every 0.5 s is refused, nothing queued.
        c = session(m, "127.0.0.13")
        r = start_data(c, "slow@localhost")
        body = b"Subject: slow\r\n\r\n" + b"abcdefgh\r\n" * 100 + b".\r\n"
        t0 = time.time()
        r = trickle(c, body, 10, 0.5, 10)
        check("rate: slow DATA 421 4.4.2 and close", r.startswith("421 4.4.2") and c.closed(), r)
        check("rate: slow DATA cut after about the window", 1.5 < time.time() - t0 < 6, time.time() - t0)
        c = session(m, "127.0.0.13")
        c.cmd("MAIL FROM:<a@b.example>")
        c.cmd("RCPT TO:<slowbdat@localhost>")
        c.send("BDAT 1000 LAST\r\n")
        r = trickle(c, b"x" * 1000, 10, 0.5, 10)
        check("rate: slow BDAT 421 4.4.2", r.startswith("421 4.4.2"), r)
        c.close()
        # A client at ~6000 bytes/s over more than the window is fine.
        c = session(m, "127.0.0.14")
        start_data(c, "steady@localhost")
        body = b"Subject: steady\r\n\r\n" + (b"y" * 998 + b"\r\n") * 30 + b".\r\n"
        r = trickle(c, body, 3000, 0.5, 15)
        check("rate: steady DATA over several windows queued", r.startswith("250 2.0.0"), r)
        c.close()
        c = Client(m.port, "127.0.0.1")
        c.last()
        c.cmd("EHLO client.test.example")
        start_data(c, "marker@localhost")
        c.send("Subject: rates-flush\r\n\r\nmarker\r\n.\r\n")
        c.last()
        c.close()
        wait_for(lambda: m.mailbox("marker"), 15)
        check("rate: nothing queued for the slow clients", not m.mailbox("slow") and not m.mailbox("slowbdat") and
              m.mailbox("steady"), os.listdir(m.maildir) if os.path.isdir(m.maildir) else [])
    finally:
        m.stop()


def pipelining_and_dsn(m):
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % m.port, "--pipeline", "--to", "pipe@localhost",
                        "--from", "s@x.example", "--helo", "swaks.test.example"],
                       capture_output=True, text=True, timeout=60)
    check("pipelining: swaks --pipeline accepted", r.returncode == 0 and "queued as" in r.stdout, r.stdout[-800:])
    check("pipelining: delivered", wait_for(lambda: m.mailbox("pipe"), 15), "")
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        bad = s.sendmail("s@x.example", ["dsn@localhost"], b"Subject: dsn\r\n\r\nx\r\n",
                         mail_options=["RET=HDRS", "ENVID=env+2B1"],
                         rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;dsn+40localhost"])
    check("dsn: smtplib with NOTIFY/ORCPT/RET/ENVID accepted", bad == {}, bad)
    check("dsn: delivered", wait_for(lambda: m.mailbox("dsn"), 15), "")
    c = Client(m.port, OUTSIDE)
    c.last()
    c.send("EHLO p.example\r\nMAIL FROM:<s@p.example>\r\nRCPT TO:<p1@localhost>\r\nRCPT TO:<x@far.example>\r\n"
           "RCPT TO:<p2@localhost>\r\nDATA\r\n")
    codes = [c.last()[:3] for _ in range(6)]
    check("pipelining: raw batch answered in order", codes == ["250", "250", "250", "554", "250", "354"], codes)
    c.send("Subject: piped\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
    r = c.last()
    check("pipelining: queued, then QUIT answered", r.startswith("250 2.0.0") and c.last().startswith("221"), r)
    c = session(m)
    c.cmd("MAIL FROM:<a@b.example>")
    c.cmd("RCPT TO:<d@localhost>")
    for name, param in (("ORCPT CR", "ORCPT=rfc822;a+0Db@localhost"), ("ORCPT LF", "ORCPT=rfc822;a+0Ab@localhost"),
                        ("ORCPT NUL", "ORCPT=rfc822;a+00b@localhost")):
        r = c.cmd("RCPT TO:<d@localhost> %s" % param)
        check("dsn: %s refused" % name, r[:1] == "5", r)
    c.close()
    c = session(m)
    for name, param in (("ENVID CR", "ENVID=a+0Db"), ("ENVID LF", "ENVID=a+0A"), ("ENVID NUL", "ENVID=+00")):
        r = c.cmd("MAIL FROM:<a@b.example> %s" % param)
        check("dsn: %s refused" % name, r[:1] == "5", r)
        c.cmd("RSET")
    r = c.cmd("MAIL FROM:<a@b.example> ENVID=ok+2Bfine RET=FULL")
    check("dsn: sane ENVID accepted", r.startswith("250"), r)
    c.cmd("QUIT")


def bdat(m):
    c = session(m)
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<chunk@localhost>\r\nBDAT 14\r\nSubject: x\r\n\r\nBDAT 10 LAST\r\n.hello\r\n\r\n")
    r = [c.last() for _ in range(4)]
    check("bdat: two chunks queued", r[2].startswith("250 2.0.0 14 octets") and "queued as" in r[3], r)
    c.send("BDAT 6\r\nQUIT\r\n")
    r = c.last()
    check("bdat: chunk outside a transaction refused and skipped", r.startswith("503") and
          c.cmd("NOOP").startswith("250"), r)
    c.cmd("QUIT")
    files = wait_for(lambda: m.mailbox("chunk"), 15)
    data = open(files[0], "rb").read() if files else b""
    check("bdat: body byte-exact, no dot unstuffing", data.endswith(b"Subject: x\n\n.hello\n\n"), data[-100:])


def idle_thousand():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192
    if hard < want and os.geteuid() == 0:
        hard = want
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    m = MTA(name="smtpd-idle", extra="mynetworks = 127.0.0.1/32\nsmtpd_client_connection_limit = 1200\n").start()
    cs = []
    try:
        for _ in range(1000):
            s = socket.socket()
            s.bind((OUTSIDE, 0))
            s.connect(("127.0.0.1", m.port))
            cs.append(s)
        greeted = 0
        for s in cs:
            s.settimeout(10)
            if s.recv(512).startswith(b"220"):
                greeted += 1
        check("idle: 1,000 idle connections from one IP all greeted", greeted == 1000, greeted)
        t0 = time.time()
        c = Client(m.port, "127.0.0.10")
        r = c.last()
        c.cmd("EHLO other.example")
        check("idle: another IP gets 220 while they stay open", r.startswith("220"), r)
        check("idle: another IP can send", start_data(c, "other@localhost")[2].startswith("354"), "")
        c.close()
        check("idle: ... promptly", time.time() - t0 < 5, time.time() - t0)
    finally:
        for s in cs:
            s.close()
        m.stop()


# ---- STARTTLS, smtps, AUTH, local_recipients (one instance with all three listeners) ----

def tls_instance():
    m = MTA(name="smtpd-tls", smtpd_processes=1)
    m.sub_port, m.smtps_port = free_port(), free_port()
    m.cert, m.key = os.path.join(m.dir, "cert.pem"), os.path.join(m.dir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", m.key, "-out", m.cert, "-days", "2", "-subj", "/CN=mx.test.example",
                    "-addext", "subjectAltName=DNS:mx.test.example,IP:127.0.0.1"], check=True, capture_output=True)
    m.users_src = os.path.join(m.dir, "users.txt")
    with open(m.users_src, "w") as f:
        f.write("alice:wonderland\n# a comment\nbob@example.org:b0b-pass\n")
    rcpts = os.path.join(m.dir, "recipients.txt")
    with open(rcpts, "w") as f:
        f.write("alice\nknown@localhost\nmarker\n")
    for src, kind in ((m.users_src, "auth"), (rcpts, "recipients")):
        r = subprocess.run([os.path.join(BIN, "mtamap"), "-t", kind, src], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("mtamap failed: " + r.stderr)
    with open(m.conf, "a") as f:
        f.write("mynetworks = 127.0.0.1/32\nsubmission_listen = 127.0.0.1:%d\nsmtps_listen = 127.0.0.1:%d\n"
                "tls_cert = %s\ntls_key = %s\nauth_users = %s\nlocal_recipients = %s\n"
                "smtpd_auth_failure_delay = 0\nsmtpd_client_auth_failure_rate_limit = 20\n" % (m.sub_port, m.smtps_port, m.cert, m.key,
                                                    os.path.join(m.dir, "users.lmdb"), os.path.join(m.dir, "recipients.lmdb")))
    return m.start()


def client_ctx(m):
    ctx = ssl.create_default_context(cafile=m.cert)
    return ctx


class TlsClient(Client):
    def starttls(self, m):
        self.s = client_ctx(m).wrap_socket(self.s, server_hostname="mx.test.example")
        self.buf = b""


def ehlo(c, name="client.test.example"):
    c.send("EHLO %s\r\n" % name)
    return [line[4:] for line in c.reply()]


def starttls_tests(m):
    # s_client hangs up as soon as its stdin ends: feed it slowly.
    r = subprocess.run("(printf 'EHLO client.test.example\\n'; sleep 1; printf 'QUIT\\n'; sleep 1) | openssl s_client "
                       "-starttls smtp -connect 127.0.0.1:%d -CAfile %s -verify_return_error -crlf -quiet" % (m.port, m.cert),
                       shell=True, capture_output=True, text=True, timeout=30)
    check("starttls: openssl s_client -starttls smtp verifies and talks", r.returncode == 0 and "221" in r.stdout
          and "250-PIPELINING" in r.stdout, r.stdout[-500:] + r.stderr[-500:])
    check("starttls: not offered again inside TLS", "STARTTLS" not in r.stdout, r.stdout)
    r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect", "127.0.0.1:%d" % m.port, "-tls1_1",
                        "-cipher", "DEFAULT@SECLEVEL=0"], input="QUIT\n", capture_output=True, text=True, timeout=30)
    check("starttls: TLS 1.1 refused", r.returncode != 0, r.stdout[-300:])
    c = TlsClient(m.port, OUTSIDE)
    c.last()
    ext = ehlo(c)
    check("starttls: offered on smtp_listen, AUTH never on port 25", "STARTTLS" in ext and
          not any(e.startswith("AUTH") for e in ext), ext)
    c.send("STARTTLS\r\nRSET\r\nMAIL FROM:<injected@x.example>\r\n")  # CVE-2011-0411 injection
    r = c.last()
    check("starttls: 220 2.0.0", r.startswith("220 2.0.0"), r)
    c.starttls(m)
    c.send("NOOP\r\n")
    r = c.last()
    check("starttls: plaintext pipelined after STARTTLS discarded", r.startswith("250 2.0.0 Ok"), r)
    r = c.cmd("MAIL FROM:<a@b.example>")
    check("starttls: session reset, EHLO required again", r.startswith("503"), r)
    ext = ehlo(c)
    check("starttls: EHLO inside TLS has no STARTTLS, no AUTH on 25", "STARTTLS" not in ext and
          not any(e.startswith("AUTH") for e in ext), ext)
    r = c.cmd("STARTTLS")
    check("starttls: second STARTTLS refused 554", r.startswith("554 5.5.1"), r)
    r = c.cmd("AUTH PLAIN %s" % base64.b64encode(b"\0alice\0wonderland").decode())
    check("auth: refused on port 25 even with TLS", r.startswith("503"), r)
    c.close()
    check("starttls: pipelined plaintext logged", "starttls_pipelined" in m.log_text(), "")
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        s.starttls(context=client_ctx(m))
        bad = s.sendmail("a@b.example", ["alice@localhost"], b"Subject: over tls\r\n\r\nsecret\r\n")
    check("starttls: smtplib starttls + send", bad == {}, bad)
    files = wait_for(lambda: m.mailbox("alice"), 15)
    data = open(files[-1], "rb").read() if files else b""
    check("starttls: Received says ESMTPS with TLS version and cipher",
          b"with ESMTPS id" in data and b"(using TLSv1.3 with cipher" in data, data[:400])


def requiretls_tests(m):
    c = Client(m.port, OUTSIDE)
    c.last()
    ext = ehlo(c)
    check("requiretls: not advertised without TLS", "REQUIRETLS" not in ext, ext)
    r = c.cmd("MAIL FROM:<a@b.example> REQUIRETLS")
    check("requiretls: MAIL ... REQUIRETLS in plaintext 530 5.7.10", r.startswith("530 5.7.10"), r)
    c.close()
    # Over STARTTLS from mynetworks: accepted, and the flag reaches the queue, which shows as the
    # outbound client's 5.7.30 bounce (it has no verified TLS); without the flag the mail would just wait.
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        s.starttls(context=client_ctx(m))
        s.ehlo("client.test.example")
        check("requiretls: advertised inside TLS", s.has_extn("requiretls"), s.esmtp_features)
        bad = s.sendmail("alice@localhost", ["someone@remote.test.example"],
                         b"Subject: requiretls-probe\r\n\r\nsecret\r\n", mail_options=["REQUIRETLS"])
    check("requiretls: MAIL ... REQUIRETLS accepted over TLS", bad == {}, bad)

    def bounced():
        return [f for f in m.mailbox("alice") if b"requiretls-probe" in open(f, "rb").read()
                and b"5.7.30" in open(f, "rb").read()]
    check("requiretls: flag stored with the message (5.7.30 bounce back to the sender)", wait_for(bounced, 20), "")


def auth_rate_tests(m):
    """smtpd_client_auth_failure_rate_limit = 20 in this instance: failures add up across sessions."""
    def tls_session(src):
        c = TlsClient(m.sub_port, src)
        c.last()
        c.cmd("EHLO x.example")
        c.cmd("STARTTLS")
        c.starttls(m)
        c.cmd("EHLO x.example")
        return c
    wrong = "AUTH PLAIN %s" % base64.b64encode(b"\0alice\0wrong").decode()
    right = "AUTH PLAIN %s" % base64.b64encode(b"\0alice\0wonderland").decode()
    failures, last = 0, ""
    for _ in range(10):
        c = tls_session("127.0.0.11")
        for _ in range(3):  # smtpd_auth_failure_limit per session
            c.send(wrong + "\r\n")
            rs = c.reply()
            failures += sum(1 for x in rs if x.startswith("535"))
            last = rs[-1]
            if failures >= 20 or last.startswith("421"):
                break
        c.close()
        if failures >= 20:
            break
    check("auth rate: failures counted across sessions", failures == 20, (failures, last))
    c = tls_session("127.0.0.11")
    r = c.cmd(right)
    check("auth rate: over the limit even the right password gets 421 4.7.0", r.startswith("421 4.7.0") and c.closed(), r)
    c = tls_session("127.0.0.12")
    r = c.cmd(right)
    check("auth rate: another IP still authenticates", r.startswith("235"), r)
    c.close()


def submission_tests(m):
    c = TlsClient(m.sub_port, OUTSIDE)
    c.last()
    ext = ehlo(c)
    check("submission: STARTTLS offered, AUTH not before TLS", "STARTTLS" in ext and
          not any(e.startswith("AUTH") for e in ext), ext)
    r = c.cmd("MAIL FROM:<a@b.example>")
    check("submission: MAIL before STARTTLS 530 5.7.0", r.startswith("530 5.7.0"), r)
    r = c.cmd("AUTH PLAIN %s" % base64.b64encode(b"\0alice\0wonderland").decode())
    check("submission: AUTH before STARTTLS 530 5.7.0", r.startswith("530 5.7.0"), r)
    c.cmd("STARTTLS")
    c.starttls(m)
    ext = ehlo(c)
    check("submission: AUTH PLAIN LOGIN offered inside TLS", "AUTH PLAIN LOGIN" in ext, ext)
    r = c.cmd("MAIL FROM:<a@b.example>")
    check("submission: MAIL before AUTH 530 5.7.0", r.startswith("530 5.7.0"), r)
    r = c.cmd("AUTH PLAIN %s" % base64.b64encode(b"\0alice\0wrong").decode())
    check("auth: wrong password 535 5.7.8", r.startswith("535 5.7.8"), r)
    for name, raw in (("CR in password", b"\0alice\0wonder\rland"), ("LF in user", b"\0ali\nce\0wonderland"),
                      ("third NUL", b"\0alice\0wonder\0land"), ("authzid differs", b"bob\0alice\0wonderland")):
        c2 = TlsClient(m.sub_port, OUTSIDE)
        c2.last()
        c2.cmd("EHLO x.example")
        c2.cmd("STARTTLS")
        c2.starttls(m)
        c2.cmd("EHLO x.example")
        r = c2.cmd("AUTH PLAIN %s" % base64.b64encode(raw).decode())
        check("auth: PLAIN with %s refused 501" % name, r.startswith("501"), r)
        c2.close()
    r = c.cmd("AUTH PLAIN not!base64")
    check("auth: undecodable base64 refused 501", r.startswith("501"), r)
    r = c.cmd("AUTH LOGIN")
    check("auth: LOGIN asks Username:", r == "334 " + base64.b64encode(b"Username:").decode(), r)
    r = c.cmd(base64.b64encode(b"alice").decode())
    check("auth: LOGIN asks Password:", r == "334 " + base64.b64encode(b"Password:").decode(), r)
    r = c.cmd(base64.b64encode(b"wonderland").decode())
    check("auth: LOGIN succeeds 235 2.7.0", r.startswith("235 2.7.0"), r)
    r = c.cmd("AUTH LOGIN")
    check("auth: second AUTH refused 503", r.startswith("503"), r)
    r = c.cmd("MAIL FROM:<alice@b.example> AUTH=<>")
    check("auth: MAIL with AUTH=<> accepted", r.startswith("250"), r)
    r = c.cmd("RCPT TO:<someone@remote.example>")
    check("auth: authenticated client may relay", r.startswith("250"), r)
    c.cmd("RSET")
    r = c.cmd("MAIL FROM:<alice@b.example> AUTH=a+0Db")
    check("auth: AUTH= decoding to CR refused", r.startswith("501"), r)
    c.cmd("QUIT")
    # Failure limit: three failures, then 421.
    c = TlsClient(m.sub_port, OUTSIDE)
    c.last()
    c.cmd("EHLO x.example")
    c.cmd("STARTTLS")
    c.starttls(m)
    c.cmd("EHLO x.example")
    codes = [c.cmd("AUTH PLAIN %s" % base64.b64encode(b"\0alice\0guess%d" % i).decode())[:3] for i in range(3)]
    r = c.last()
    check("auth: failure limit then 421 4.7.0", codes == ["535"] * 3 and r.startswith("421 4.7.0") and c.closed(),
          (codes, r))
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % m.sub_port, "--tls", "--auth", "PLAIN", "--auth-user",
                        "bob@example.org", "--auth-password", "b0b-pass", "--to", "alice@localhost",
                        "--from", "bob@example.org", "--h-Subject", "swaks-submission"],
                       capture_output=True, text=True, timeout=60)
    check("submission: swaks --tls --auth PLAIN accepted", r.returncode == 0 and "queued as" in r.stdout, r.stdout[-600:])
    ok = wait_for(lambda: any(b"swaks-submission" in open(f, "rb").read() for f in m.mailbox("alice")), 15)
    data = b""
    for f in m.mailbox("alice"):
        if b"swaks-submission" in open(f, "rb").read():
            data = open(f, "rb").read()
    check("submission: delivered, Received says ESMTPSA", ok and b"with ESMTPSA id" in data, data[:400])


def smtps_tests(m):
    with smtplib.SMTP_SSL("127.0.0.1", m.smtps_port, timeout=30, context=client_ctx(m)) as s:
        code, _ = s.ehlo("client.test.example")
        has_auth = s.has_extn("auth") and not s.has_extn("starttls")
        s.login("alice", "wonderland")
        bad = s.sendmail("alice@b.example", ["alice@localhost"], b"Subject: via smtps\r\n\r\nimplicit\r\n")
    check("smtps: implicit TLS, AUTH offered, no STARTTLS", code == 250 and has_auth, "")
    check("smtps: smtplib SMTP_SSL login + send", bad == {}, bad)
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % m.smtps_port, "--tls-on-connect", "--auth", "LOGIN",
                        "--auth-user", "alice", "--auth-password", "wonderland", "--to", "alice@localhost",
                        "--from", "alice@b.example"], capture_output=True, text=True, timeout=60)
    check("smtps: swaks --tls-on-connect --auth LOGIN", r.returncode == 0 and "queued as" in r.stdout, r.stdout[-600:])
    with smtplib.SMTP_SSL("127.0.0.1", m.smtps_port, timeout=30, context=client_ctx(m)) as s:
        s.ehlo("client.test.example")
        code, _ = s.docmd("MAIL FROM:<a@b.example>")
    check("smtps: MAIL before AUTH 530", code == 530, code)
    r = subprocess.run("(sleep 1; printf 'QUIT\\n'; sleep 1) | openssl s_client -connect 127.0.0.1:%d -CAfile %s "
                       "-verify_return_error -crlf -quiet" % (m.smtps_port, m.cert),
                       shell=True, capture_output=True, text=True, timeout=30)
    check("smtps: openssl s_client greeting over TLS", r.returncode == 0 and "220 mx.test.example" in r.stdout,
          r.stdout[-300:] + r.stderr[-300:])


def recipients_tests(m):
    c = session(m, OUTSIDE)
    c.cmd("MAIL FROM:<a@b.example>")
    r = c.cmd("RCPT TO:<known@localhost>")
    check("local_recipients: listed address accepted", r.startswith("250"), r)
    r = c.cmd("RCPT TO:<Alice@localhost>")
    check("local_recipients: listed local part accepted (case-insensitive)", r.startswith("250"), r)
    r = c.cmd("RCPT TO:<nobody@localhost>")
    check("local_recipients: unknown refused 550 5.1.1", r.startswith("550 5.1.1"), r)
    r = c.cmd("RCPT TO:<postmaster@localhost>")
    check("local_recipients: postmaster always accepted", r.startswith("250"), r)
    c.cmd("QUIT")


def table_reload_tests(m):
    with open(m.users_src, "a") as f:
        f.write("carol:new-user\n")
    r = subprocess.run([os.path.join(BIN, "mtamap"), "-t", "auth", m.users_src], capture_output=True, text=True)
    check("mtamap: rebuilds the table", r.returncode == 0, r.stderr)
    r = subprocess.run([os.path.join(BIN, "mtamap"), "-q", "carol", os.path.join(m.dir, "users.lmdb")],
                       capture_output=True, text=True)
    check("mtamap: -q finds the new user as a $6$ hash", r.returncode == 0 and r.stdout.startswith("$6$"), r.stdout)

    def carol_ok():
        try:
            with smtplib.SMTP_SSL("127.0.0.1", m.smtps_port, timeout=10, context=client_ctx(m)) as s:
                s.login("carol", "new-user")
                return True
        except (smtplib.SMTPException, OSError):
            return False
    check("tables: a replaced auth table is picked up (smtpd restarts itself)", wait_for(carol_ok, 40, 1), "")


def main():
    extra = ("mynetworks = 127.0.0.1/32\nrecipient_limit = 5\nsmtpd_error_limit = 5\n"
             "message_size_limit = 100k\nrelay_domains = relay.test.example\n")
    m = MTA(name="smtpd", extra=extra, smtpd_processes=1).start()
    try:
        for fn in (smuggling, relay, limits, pipelining_and_dsn, bdat):
            attempt(lambda: fn(m), fn.__name__)
    finally:
        m.stop()
    m = None
    try:
        m = tls_instance()
        for fn in (starttls_tests, requiretls_tests, submission_tests, auth_rate_tests, smtps_tests, recipients_tests, table_reload_tests):
            attempt(lambda: fn(m), fn.__name__)
    except Exception as e:  # noqa: BLE001
        check("tls instance", False, "%s: %s" % (type(e).__name__, e))
    finally:
        if m:
            m.stop()
    attempt(timeout)
    attempt(rates)
    attempt(idle_thousand)
    finish()


if __name__ == "__main__":
    main()
