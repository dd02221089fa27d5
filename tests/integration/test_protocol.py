"""End-to-end checks for issue-3 protocol bullets not covered by test_smtpd.py: loop detection by
Received: count, an enhanced status code on every reply (RFC 2034), SMTPUTF8 and 8BITMIME, TLS
certificate reload on SIGHUP / `mtactl reload`, memory per session when a client never reads replies,
and exact replies to hostile inputs. Real mtad, raw sockets, smtplib and openssl s_client."""
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import time

from mtatest import MTA, check, finish, wait_for
from test_smtpd import OUTSIDE, Client, attempt, delivered_flush, session

HOPS = 5  # hop_count_limit of the main instance (the default, 50, is too many to type)


def queued(m):
    return m.log_text().count("event=queued ")


def send_message(c, rcpt, body, sender="a@b.example", params=""):
    """MAIL/RCPT/DATA/body on a fresh transaction; returns the reply to the final dot."""
    c.send("MAIL FROM:<%s>%s\r\nRCPT TO:<%s>\r\nDATA\r\n" % (sender, params, rcpt))
    r = [c.last() for _ in range(3)]
    if not r[2].startswith("354"):
        return "no 354: %r" % r
    c.send(body + b".\r\n")
    return c.last()


# ---- 1. loop detection ----

def loops(m):
    def msg(n, extra=b""):
        return b"".join(b"Received: from h%d.example by x.example; Sun, 1 Nov 2026 00:00:00 +0000\r\n" % i
                        for i in range(n)) + b"Subject: hops\r\n\r\n" + extra + b"body\r\n"
    before = queued(m)
    c = session(m)
    r = send_message(c, "loop-over@localhost", msg(HOPS + 1))
    check("loop: %d Received: headers refused 554 5.4.6 after the dot" % (HOPS + 1), r.startswith("554 5.4.6"), r)
    check("loop: nothing queued for the looping message", queued(m) == before, m.log_text()[-500:])
    check("loop: no transaction left open", c.cmd("RCPT TO:<u@localhost>").startswith("503"), "")
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<loop-over@localhost>\r\nBDAT %d LAST\r\n" % len(msg(HOPS + 1)))
    c.send(msg(HOPS + 1))
    r = [c.last() for _ in range(3)]
    check("loop: over the limit in BDAT refused 554 5.4.6", r[2].startswith("554 5.4.6"), r)
    r = send_message(c, "loop-at@localhost", msg(HOPS))
    check("loop: exactly hop_count_limit Received: headers accepted", r.startswith("250 2.0.0"), r)
    # Folded Received: continuation lines and Received: lines in the body are not hops.
    folded = b"".join(b"Received: from h%d.example\r\n\tby x.example;\r\n Sun, 1 Nov 2026 00:00:00 +0000\r\n" % i
                      for i in range(HOPS))
    r = send_message(c, "loop-folded@localhost", folded + b"Subject: f\r\n\r\nx\r\n")
    check("loop: folded Received: headers count once each", r.startswith("250 2.0.0"), r)
    r = send_message(c, "loop-body@localhost", msg(2, b"Received: in the body\r\n" * (HOPS * 3)))
    check("loop: Received: lines after the header section do not count", r.startswith("250 2.0.0"), r)
    c.cmd("QUIT")
    check("loop: accepted messages delivered", wait_for(lambda: m.mailbox("loop-at") and m.mailbox("loop-body"), 15), "")
    check("loop: refused message never delivered", delivered_flush(m, "after-loop") and not m.mailbox("loop-over"),
          m.mailbox("loop-over"))


# ---- 2. enhanced status codes on every reply ----

ENH = re.compile(r"^([245])\d\d[ -]([245])\.\d{1,3}\.\d{1,3} ")


def enhanced(m):
    c = Client(m.port, OUTSIDE)
    seen, bad = [], []

    def note(cmd, lines, exempt=False):
        seen.append((cmd, lines))
        for line in lines:
            mt = ENH.match(line)
            if not exempt and not (mt and mt.group(1) == mt.group(2)):
                bad.append((cmd, line))

    note("<greeting>", c.reply(), exempt=True)
    steps = [
        ("EHLO client.test.example", True), ("EHLO bad..name", False), ("EHLO client.test.example", True),
        ("MAIL FROM:<a@b.example> FOO=BAR", False), ("MAIL FROM:<a@b.example> SIZE=abc", False),
        ("MAIL FROM:<a@b.example> BODY=BINARYMIME", False), ("MAIL FROM:a@b.example", False),
        ("MAIL TO:<a@b.example>", False), ("RCPT TO:<x@localhost>", False), ("DATA", False),
        ("MAIL FROM:<a@b.example> SIZE=100", False), ("MAIL FROM:<a@b.example>", False),
        ("RCPT TO:<no spaces@localhost>", False), ("RCPT TO:<x@remote.example>", False),
        ("RCPT TO:<ok@localhost> NOTIFY=BOGUS", False), ("RCPT TO:<ok@localhost>", False),
        ("RCPT TO:<ok2@localhost>", False), ("RCPT TO:<ok3@localhost>", False), ("RCPT TO:<ok4@localhost>", False),
        ("DATA now", False),
        ("VRFY", False), ("VRFY ok", False), ("EXPN list", False), ("HELP", False), ("NOOP", False),
        ("BOGUS", False), ("X" * 5000, False), (b"NOOP\n", False), (b"NO\x00OP\r\n", False),
        ("STARTTLS", False), ("AUTH PLAIN AGFsaWNlAHg=", False), ("BDAT xyz", False), ("RSET now", False),
    ]
    for cmd, exempt in steps:
        c.send(cmd if isinstance(cmd, bytes) else cmd + "\r\n")
        note(cmd, c.reply(), exempt)
    c.send("DATA\r\n")
    lines = c.reply()
    note("DATA", lines, exempt=lines[-1].startswith("354"))  # RFC 2034 §6: 354 has no class 3 code
    c.send("Subject: enh\r\n\r\nx\r\n.\r\n")
    note("<dot>", c.reply())
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<ok@localhost>\r\nBDAT 12 LAST\r\nSubject:\r\n\r\n")
    for what in ("MAIL", "RCPT", "BDAT LAST"):
        note(what, c.reply())
    for cmd in (b"BDAT 4\r\nabcd", b"RSET\r\n", b"HELO client.test.example\r\n", b"MAIL FROM:<a@b.example>\r\n",
                b"QUIT\r\n"):
        c.send(cmd)
        note(cmd, c.reply(), exempt=cmd.startswith(b"HELO"))
    check("enhanced: every reply of a %d-command session has a matching d.d.d code" % len(seen), not bad, bad)
    codes = [lines[-1][:3] for _, lines in seen]
    check("enhanced: the session saw 2xx, 4xx and 5xx replies and ended with 221",
          codes[-1] == "221" and {"250", "452", "500", "501", "503", "554", "555"} <= set(codes), codes)
    c.close()
    # A session-ending reply carries one too (error limit: test_smtpd.py).
    c = session(m)  # EHLO is the first junk command, so 99 NOOPs pass and the 100th ends it
    c.send("NOOP\r\n" * 150)
    lines = []
    while len(lines) < 150 and not (lines and lines[-1].startswith("421")):
        lines.append(c.last())
    check("enhanced: the junk limit ends the session with 421 4.7.0",
          lines[-1].startswith("421 4.7.0") and lines[:-1] == ["250 2.0.0 Ok"] * 99 and c.closed(), lines[-3:])
    c.close()


# ---- 3. SMTPUTF8 and 8BITMIME ----

def utf8(m):
    c = Client(m.port, OUTSIDE)
    c.last()
    c.send("EHLO client.test.example\r\n")
    ext = [line[4:] for line in c.reply()]
    check("smtputf8: SMTPUTF8 and 8BITMIME advertised", "SMTPUTF8" in ext and "8BITMIME" in ext, ext)
    uaddr = "jürgen@localhost".encode()
    before = queued(m)
    c.send(b"MAIL FROM:<j\xc3\xbcrgen@b.example>\r\n")
    r = c.last()
    check("smtputf8: UTF-8 sender without SMTPUTF8 553 5.6.7", r.startswith("553 5.6.7"), r)
    c.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<" + uaddr + b">\r\n")
    r = [c.last() for _ in range(2)]
    check("smtputf8: UTF-8 recipient without SMTPUTF8 553 5.6.7", r[0].startswith("250") and r[1].startswith("553 5.6.7"), r)
    c.cmd("RSET")
    for name, local, code in (("truncated sequence", b"j\xc3(", "501 5.1.3"), ("overlong '/'", b"x\xc0\xafy", "501 5.1.3"),
                              ("surrogate", b"x\xed\xa0\x80y", "501 5.1.3"), ("lone continuation", b"\x80x", "501 5.1.3")):
        c.send(b"MAIL FROM:<a@b.example> SMTPUTF8\r\nRCPT TO:<" + local + b"@localhost>\r\nDATA\r\n")
        r = [c.last() for _ in range(3)]
        check("smtputf8: invalid UTF-8 (%s) refused %s, no DATA" % (name, code),
              r[0].startswith("250") and r[1].startswith(code) and r[2].startswith("554"), r)
        c.cmd("RSET")
    c.send(b"MAIL FROM:<b\xc3\xa4d\xff@b.example> SMTPUTF8\r\n")
    r = c.last()
    check("smtputf8: invalid UTF-8 sender refused 501 5.1.7", r.startswith("501 5.1.7"), r)
    check("smtputf8: nothing queued for refused addresses", queued(m) == before, "")
    body = "Subject: Grüße\r\nFrom: <jürgen@b.example>\r\n\r\nÜmlaut body ✓\r\n".encode()
    c.send(b"MAIL FROM:<j\xc3\xbcrgen@b.example> SMTPUTF8 BODY=8BITMIME\r\nRCPT TO:<" + uaddr + b">\r\nDATA\r\n")
    r = [c.last() for _ in range(3)]
    c.send(body + b".\r\n")
    r.append(c.last())
    check("smtputf8: UTF-8 envelope with SMTPUTF8 accepted", [x[:3] for x in r] == ["250", "250", "354", "250"], r)
    files = wait_for(lambda: m.mailbox("jürgen"), 15)
    data = open(files[0], "rb").read() if files else b""
    check("smtputf8: delivered to the UTF-8 Maildir, byte-exact", data.endswith(body.replace(b"\r\n", b"\n")), data[-200:])
    # 8BITMIME: every octet except NUL, CR and LF, in one body line; a leading "." is unstuffed.
    octets = bytes(b for b in range(1, 256) if b not in (10, 13))
    body = b"Subject: eight\r\n\r\n" + octets + b"\r\n..dot\r\n\xe9t\xe9\r\n"
    r = send_message(c, "eight@localhost", body, params=" BODY=8BITMIME")
    check("8bitmime: BODY=8BITMIME accepted", r.startswith("250 2.0.0"), r)
    files = wait_for(lambda: m.mailbox("eight"), 15)
    data = open(files[0], "rb").read() if files else b""
    want = b"Subject: eight\n\n" + octets + b"\n.dot\n\xe9t\xe9\n"
    check("8bitmime: 8-bit body delivered byte-exact", data.endswith(want), data[-300:])
    r = c.cmd("MAIL FROM:<a@b.example> BODY=BINARYMIME")
    check("8bitmime: BODY=BINARYMIME (not advertised) refused 501 5.5.4", r.startswith("501 5.5.4"), r)
    r = c.cmd("MAIL FROM:<a@b.example> BODY=7BIT")
    check("8bitmime: BODY=7BIT still accepted after the refusal", r.startswith("250 2.1.0"), r)
    c.cmd("QUIT")


# ---- 6. hostile inputs: exact replies ----

def hostile(m):
    c = session(m)
    r = c.cmd("RCPT TO:<u@localhost>")
    check("hostile: RCPT before MAIL 503 5.5.1", r.startswith("503 5.5.1"), r)
    c.send("MAIL FROM:<a@b.example>\r\nDATA\r\n")
    r = [c.last() for _ in range(2)]
    check("hostile: DATA without any RCPT 554 5.5.1", r[1].startswith("554 5.5.1"), r)
    r = c.cmd("RCPT TO:<x@remote.example>")
    r2 = c.cmd("DATA")
    check("hostile: DATA after only a refused RCPT 554 5.5.1", r.startswith("554 5.7.1") and r2.startswith("554 5.5.1"),
          (r, r2))
    c.cmd("RSET")
    c.send(b"NOOP\x00MAIL FROM:<a@b.example>\r\n")
    r = c.last()
    check("hostile: NUL in a command 500 5.5.2", r.startswith("500 5.5.2"), r)
    check("hostile: session continues after the NUL", c.cmd("NOOP").startswith("250 2.0.0"), "")
    check("hostile: ... and the NUL line opened no transaction", c.cmd("RCPT TO:<u@localhost>").startswith("503 5.5.1"), "")
    c.send("MAIL FROM:<a@b.example>\nRCPT TO:<u@localhost>\r\n")
    r = [c.last() for _ in range(2)]
    check("hostile: bare LF command refused 500 5.5.2, nothing started", r[0].startswith("500 5.5.2") and
          r[1].startswith("503 5.5.1"), r)
    c.send("MAIL FROM:<a@b.example>\rRCPT TO:<u@localhost>\r\n")
    r = c.last()
    check("hostile: bare CR inside a command refused 500 5.5.2", r.startswith("500 5.5.2"), r)
    c.cmd("MAIL FROM:<a@b.example>")
    c.cmd("RCPT TO:<u@localhost>")
    for arg in ("99999999999999999999999", "18446744073709551615", "-5", "+5", "0x10", "5 LAST junk", "", "5 NOTLAST"):
        r = c.cmd("BDAT " + arg)
        check("hostile: BDAT %r 501 5.5.4" % arg, r.startswith("501 5.5.4"), r)
    check("hostile: transaction intact after bad BDATs", c.cmd("NOOP").startswith("250") and
          c.cmd("RCPT TO:<u2@localhost>").startswith("250 2.1.5"), "")
    c.cmd("RSET")
    for name, params in (("SIZE", "SIZE=10 SIZE=10"), ("RET", "RET=FULL RET=HDRS"), ("BODY", "BODY=7BIT BODY=8BITMIME"),
                         ("ENVID", "ENVID=a ENVID=b"), ("SMTPUTF8", "SMTPUTF8 SMTPUTF8")):
        r = c.cmd("MAIL FROM:<a@b.example> " + params)
        check("hostile: duplicate %s parameter 501" % name, r.startswith("501 5.5.4"), r)
    c.cmd("MAIL FROM:<a@b.example>")
    for name, param in (("NOTIFY=NEVER,SUCCESS", "NOTIFY=NEVER,SUCCESS"), ("NOTIFY=FAILURE,NEVER", "NOTIFY=FAILURE,NEVER"),
                        ("duplicate NOTIFY", "NOTIFY=SUCCESS NOTIFY=FAILURE"),
                        ("ORCPT decoding to CR", "ORCPT=rfc822;a+0Db@localhost"),
                        ("ORCPT decoding to LF", "ORCPT=rfc822;a+0Ab@localhost"),
                        ("ORCPT decoding to CRLF", "ORCPT=rfc822;a+0D+0ARCPT@localhost")):
        r = c.cmd("RCPT TO:<u@localhost> " + param)
        check("hostile: %s 501 5.5.4" % name, r.startswith("501 5.5.4"), r)
    c.cmd("RSET")
    for name, param in (("CR", "ENVID=a+0Db"), ("LF", "ENVID=a+0A"), ("CRLF", "ENVID=x+0D+0AQUIT")):
        r = c.cmd("MAIL FROM:<a@b.example> " + param)
        check("hostile: ENVID decoding to %s 501 5.5.4" % name, r.startswith("501 5.5.4"), r)
    r = c.cmd("MAIL FROM:<> SIZE=1000")
    check("hostile: MAIL FROM:<> with SIZE accepted", r.startswith("250 2.1.0"), r)
    c.cmd("QUIT")
    # Path escapes in quoted local parts, also from a trusted client (mynetworks may relay).
    before = set(os.listdir(m.dir)) | {"mail"}
    for src in (OUTSIDE, "127.0.0.1"):
        c = session(m, src)
        c.cmd("MAIL FROM:<a@b.example>")
        for local in ('"../escape-f"', '"a/../../escape-f"', '"/tmp/escape-f"', '".."', '"."', '"..\\/escape-f"',
                      '"x\\\\escape-f"', '".hidden"'):
            r = c.cmd("RCPT TO:<%s@localhost>" % local)
            check("hostile: RCPT <%s@localhost> from %s refused 550 5.1.1" % (local, src), r.startswith("550 5.1.1"), r)
        r = c.cmd("DATA")
        check("hostile: DATA after only path escapes 554 5.5.1 (%s)" % src, r.startswith("554 5.5.1"), r)
        c.cmd("QUIT")
    delivered_flush(m, "after-escapes")
    leaked = [p for p in ("/tmp/escape-f", os.path.join(m.dir, "escape-f"), os.path.join(os.path.dirname(m.dir), "escape-f"))
              if os.path.exists(p)]
    inside = [d for d in os.listdir(m.maildir) if d.startswith(".") or "escape" in d]
    check("hostile: no Maildir created outside or hidden inside mail_dir", not leaked and not inside and
          set(os.listdir(m.dir)) <= before, (leaked, inside, sorted(os.listdir(m.dir))))
    # Source routes: syntax-checked, then ignored; relay control looks at the final domain only.
    c = session(m)
    c.cmd("MAIL FROM:<a@b.example>")
    r = c.cmd("RCPT TO:<@localhost,@mx.test.example:user@remote.example>")
    check("hostile: source route to a remote final domain is relay-denied 554 5.7.1", r.startswith("554 5.7.1"), r)
    r = c.cmd("RCPT TO:<@remote.example,@other.example:routed@localhost>")
    check("hostile: source route to a local final domain accepted", r.startswith("250 2.1.5"), r)
    r = c.cmd("RCPT TO:<@remote.example:user%remote.example@localhost>")
    check("hostile: source route plus percent hack refused 550 5.7.1", r.startswith("550 5.7.1"), r)
    c.send("DATA\r\nSubject: routed\r\n\r\nx\r\n.\r\n")
    r = [c.last() for _ in range(2)]
    check("hostile: source-routed message queued", r[1].startswith("250 2.0.0"), r)
    c.cmd("QUIT")
    check("hostile: source-routed message delivered to the final mailbox", wait_for(lambda: m.mailbox("routed"), 15), "")
    # Verbs in any case.
    c = Client(m.port, OUTSIDE)
    c.last()
    c.send("ehlo client.test.example\r\n")
    c.reply()
    c.send("mail from:<a@b.example>\r\nrCpT To:<mixed@localhost>\r\ndata\r\nSubject: case\r\n\r\nx\r\n.\r\nnoop\r\nQuIt\r\n")
    r = [c.last() for _ in range(6)]
    check("hostile: lower/mixed-case verbs and FROM:/TO: work", [x[:3] for x in r] == ["250", "250", "354", "250", "250", "221"], r)
    check("hostile: mixed-case message delivered", wait_for(lambda: m.mailbox("mixed"), 15), "")


# ---- 5. memory per session when the client never reads ----

def rss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                total += int(next(line for line in f if line.startswith("VmRSS:")).split()[1])
        except (OSError, StopIteration, ValueError):
            pass
    return total


def memory(m):
    pids = m.pids("mta-smtpd")
    base = rss_kib(pids)
    s = socket.socket()
    s.bind((OUTSIDE, 0))
    s.connect(("127.0.0.1", m.port))
    s.sendall(b"EHLO flood.test.example\r\n")
    s.setblocking(False)
    chunk = b"MAIL FROM:<a@b.example>\r\nRSET\r\n" * 2048
    sent, peak, blocked, closed, t0 = 0, base, False, None, time.time()
    while sent < 30 * 1024 * 1024 and time.time() - t0 < 25:
        try:
            sent += s.send(chunk)
            continue
        except BlockingIOError:
            pass
        except OSError as e:
            closed = e
            break
        peak = max(peak, rss_kib(pids))
        # Writable again within 3 s means the server is still reading; otherwise it has stopped.
        if not select.select([], [s], [], 3)[1]:
            blocked = True
            break
    peak = max(peak, rss_kib(pids))
    check("memory: a client that never reads is back-pressured (send blocks)", blocked and closed is None,
          "sent=%d MiB closed=%r after %.1fs" % (sent >> 20, closed, time.time() - t0))
    check("memory: smtpd RSS growth under 16 MiB (%d KiB -> peak %d KiB, %d MiB sent)" % (base, peak, sent >> 20),
          peak - base < 16 * 1024, (base, peak))
    c = session(m)
    r = send_message(c, "beside-flood@localhost", b"Subject: beside\r\n\r\nx\r\n")
    check("memory: another client is served meanwhile", r.startswith("250 2.0.0"), r)
    c.cmd("QUIT")
    check("memory: smtpd still the same process", m.pids("mta-smtpd") == pids, (pids, m.pids("mta-smtpd")))
    s.close()


# ---- 4. TLS certificate reload ----

def make_cert(d, name):
    cert, key = os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=%s.mx.test.example" % name],
                   check=True, capture_output=True)
    fp = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-fingerprint", "-sha256"],
                        check=True, capture_output=True, text=True).stdout.strip()
    return cert, key, fp


def served_fingerprint(port):
    """The certificate a new STARTTLS session gets, as openssl s_client sees it."""
    try:
        r = subprocess.run("openssl s_client -starttls smtp -connect 127.0.0.1:%d </dev/null 2>/dev/null | "
                           "openssl x509 -noout -fingerprint -sha256" % port,
                           shell=True, capture_output=True, text=True, timeout=15)
        return r.stdout.strip()
    except subprocess.TimeoutExpired:
        return "timeout"


def install(src_cert, src_key, cert, key):
    """Replaces the configured files the way an ACME client does: write aside, rename over."""
    for src, dst in ((src_cert, cert), (src_key, key)):
        with open(src, "rb") as f, open(dst + ".new", "wb") as g:
            g.write(f.read())
        os.rename(dst + ".new", dst)


def tls_open(m, mid_transaction):
    c = Client(m.port, OUTSIDE)
    c.last()
    c.cmd("EHLO early.test.example")
    c.cmd("STARTTLS")
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    c.s = ctx.wrap_socket(c.s, server_hostname="mx.test.example")
    c.buf = b""
    c.cmd("EHLO early.test.example")
    if mid_transaction:
        c.cmd("MAIL FROM:<a@b.example>")
        c.cmd("RCPT TO:<early-txn@localhost>")
    return c


def unsolicited(c):
    """What the server sent on its own (e.g. 421 then close), without sending anything."""
    try:
        if c.s.pending() or select.select([c.s], [], [], 0.3)[0]:
            return c.last()
    except (OSError, EOFError) as e:
        return "%s: %s" % (type(e).__name__, e)
    return None


def tls_reload():
    m = MTA(name="protocol-tls", smtpd_processes=1)
    a_cert, a_key, fp_a = make_cert(m.dir, "a")
    b_cert, b_key, fp_b = make_cert(m.dir, "b")
    cert, key = os.path.join(m.dir, "cert.pem"), os.path.join(m.dir, "key.pem")
    install(a_cert, a_key, cert, key)
    with open(m.conf, "a") as f:
        f.write("tls_cert = %s\ntls_key = %s\n" % (cert, key))
    m.start()
    try:
        check("tls reload: cert A served at start", served_fingerprint(m.port) == fp_a, (served_fingerprint(m.port), fp_a))
        idle, txn = tls_open(m, False), tls_open(m, True)
        install(b_cert, b_key, cert, key)
        m.proc.send_signal(signal.SIGHUP)
        ok = wait_for(lambda: served_fingerprint(m.port) == fp_b, 20, 0.5)
        check("tls reload: SIGHUP -> a new connection gets cert B", ok, (served_fingerprint(m.port), fp_b))
        early = {name: unsolicited(c) for name, c in (("idle", idle), ("mid-transaction", txn))}
        check("tls reload: no unsolicited reply or close on the sessions from before the reload",
              early == {"idle": None, "mid-transaction": None}, early)
        try:
            c = txn
            c.send("DATA\r\n")
            r = [c.last()]
            c.send("Subject: across reload\r\n\r\nx\r\n.\r\n")
            r += [c.last(), c.cmd("QUIT")]
        except (OSError, EOFError) as e:
            r = ["%s: %s" % (type(e).__name__, e)]
        check("tls reload: a session mid-transaction before the reload finishes its message and QUITs",
              [x[:3] for x in r] == ["354", "250", "221"], r)
        try:
            r = [idle.cmd("NOOP"), idle.cmd("QUIT")]
        except (OSError, EOFError) as e:
            r = ["%s: %s" % (type(e).__name__, e)]
        check("tls reload: an idle TLS session from before the reload keeps working to QUIT",
              [x[:3] for x in r] == ["250", "221"], r)
        install(a_cert, a_key, cert, key)
        r = m.ctl("reload")
        ok = wait_for(lambda: served_fingerprint(m.port) == fp_a, 20, 0.5)
        check("tls reload: mtactl reload -> cert A again", r.returncode == 0 and ok, (r.stdout, r.stderr))
        with open(key, "w") as f:
            f.write("not a key\n")
        r = m.ctl("reload")
        # Wait for mta-smtpd's verdict on the broken key (kept the old one, or restarted without TLS).
        wait_for(lambda: re.search(r"event=tls_(reload_failed|disabled)", m.log_text()), 15, 0.2)
        fp = wait_for(lambda: served_fingerprint(m.port), 5, 0.5)
        check("tls reload: a broken key keeps the old certificate in service", fp == fp_a, (r.stdout, r.stderr, fp))
    finally:
        m.stop()


def main():
    extra = "mynetworks = 127.0.0.1/32\nhop_count_limit = %d\nsmtpd_error_limit = 100\nrecipient_limit = 3\n" % HOPS
    m = MTA(name="protocol", extra=extra, smtpd_processes=1).start()
    try:
        for fn in (loops, enhanced, utf8, hostile):
            attempt(lambda: fn(m), fn.__name__)
    finally:
        m.stop()
    # ASan's quarantine keeps freed memory (up to 256 MiB) out of reuse, so RSS would track the
    # commands handled rather than the memory held: switch it off for the memory instance only.
    saved = os.environ.get("ASAN_OPTIONS")
    os.environ["ASAN_OPTIONS"] = (saved + ":" if saved else "") + "quarantine_size_mb=0"
    try:
        m = MTA(name="protocol-memory", extra="mynetworks = 127.0.0.1/32\n", smtpd_processes=1).start()
    finally:
        if saved is None:
            del os.environ["ASAN_OPTIONS"]
        else:
            os.environ["ASAN_OPTIONS"] = saved
    try:
        attempt(lambda: memory(m), "memory")
    finally:
        m.stop()
    attempt(tls_reload)
    finish()


if __name__ == "__main__":
    main()
