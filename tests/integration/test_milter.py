"""Milters in mta-smtpd (issue 15) end to end, judged from the outside: the real mtad with smtpd_milters,
mail sent with smtplib, what the Maildir and `mtaqueue` show afterwards, and what the milters themselves
recorded. The milters are independent of our code: scripted milters on Sendmail's libmilter
(Debian's python3-milter, tests/integration/milters/scripted.py), hostile ones in plain sockets
(milters/hostile.py), OpenDKIM signing (verified with dkimpy against a key published in NSD) and rspamd
(GTUBE rejected, clean mail with rspamd's headers).

Covered: every reply at every stage it is allowed at (accept, continue, reject, tempfail, discard,
replycode with multi-line text, quarantine, skip, progress, shutdown); every modification (add, insert,
change, delete header, change sender, add recipient with and without ESMTP arguments, delete recipient,
replace body) in the order sent; the macros per stage ({client_addr}, j, {daemon_name}, {mail_addr},
{rcpt_addr}, i from DATA on, {auth_authen} after AUTH, {tls_version} after STARTTLS) and a milter's own
macro lists; HDR_LEADSPC; two milters in order (the second sees the first's changes); unix:, local: and
inet: sockets; milter_default_action accept/tempfail/reject with a milter that is down, silent, closes
mid-body, sends a 10 MB reply, an unknown reply code or a change it did not negotiate — each within its
timeout, the session still usable and mtad's processes alive. Everything stays on 127.0.0.0/8.

Run: MTA_BIN_DIR=build/bin /usr/bin/python3 tests/integration/test_milter.py (about 45 s);
the milters alone, without the MTA: /usr/bin/python3 tests/integration/milters/selftest.py."""
import contextlib
import json
import os
import re
import signal
import smtplib
import ssl
import subprocess
import sys
import time

import dkim

from dnszone import Nsd, nsd_txt
from mtatest import BIN, MTA, TMP_ROOT, Guard, as_user, check, finish, free_port, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "milters"))
import wire  # noqa: E402
from realmilters import OpenDkim, Rspamd  # noqa: E402

PY = "/usr/bin/python3"
HOST = "mx.test.example"
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
TIMEOUT = 2  # milter_connect_timeout, milter_command_timeout, milter_content_timeout
SLACK = 3    # seconds a loaded machine may add to an expected wait; a hang is smtpd_timeout (minutes)
TEMPFAIL = (451, "4.7.1 Service unavailable - try again later")
REJECT = (550, "5.7.1 Command rejected")
NEVER_DELIVERED = []  # (check name, mailbox): looked at once at the end, when anything queued would have arrived


# ---- the test milters ----

class TestMilter:
    """One scripted.py or hostile.py process of this suite, on a unix socket (default) or 127.0.0.1:port.
    self.spec: as smtpd_milters spells it. Its JSON lines record is read back with entries()."""

    def __init__(self, dir, name, script, args, inet=False):
        self.name, self.dir = name, dir
        if inet:
            port = free_port()
            self.listen_spec, self.spec = "inet:%d@127.0.0.1" % port, "inet:127.0.0.1:%d" % port
        else:
            path = os.path.join(dir, name + ".sock")
            self.listen_spec = self.spec = "unix:" + path
        self.record = os.path.join(dir, name + ".jsonl")
        self.cmd = [PY, os.path.join(HERE, "milters", script), "--socket", self.listen_spec, "--record", self.record,
                    "--name", name] + list(args)
        self.proc = None

    def start(self):
        self.out = open(os.path.join(self.dir, self.name + ".out"), "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        return self

    def ready(self):
        return self.proc.poll() is None and wire.reachable(self.listen_spec)

    def entries(self):
        """Every complete line so far (one the milter is still writing is left for the next look)."""
        try:
            with open(self.record) as f:
                lines = f.read().split("\n")[:-1]
        except OSError:
            return []
        out = []
        for x in lines:
            try:
                out.append(json.loads(x))
            except ValueError:
                out.append({"stage": "unreadable", "line": x[:200]})
        return out

    def mark(self):
        return len(self.entries())

    def since(self, mark, stage=None):
        return [e for e in self.entries()[mark:] if stage is None or e.get("stage") == stage]

    def conns(self):
        """Connections the MTA made so far (libmilter: negotiations; hostile.py: accepted sockets)."""
        return sum(1 for e in self.entries() if e.get("stage") == "negotiate" or e.get("event") == "connected")


def milter_definitions(dir):
    """name -> (script, args[, inet]) of every milter of the suite."""
    s, h = "scripted.py", "hostile.py"
    big = os.path.join(dir, "big-body.txt")
    with open(big, "wb") as f:
        f.write(b"".join(b"replacement line %06d with some text to fill it\r\n" % i for i in range(3000)))
    return {
        "rec": (s, []),
        "rec-inet": (s, ["--addheader", "X-Via", "inet"], True),
        "rec-local": (s, ["--addheader", "X-Via", "local"]),
        "rec-localhost": (s, ["--addheader", "X-Via", "localhost"], True),
        "symlist": (s, ["--symlist", "connect", "{client_port}", "--symlist", "mail", "{mail_addr}"]),
        "leadspace": (s, ["--leadspace", "--addheader", "X-Tight", "tight", "--addheader", "X-Spaced", " spaced"]),
        "nobody": (s, ["--no", "body", "--no", "helo"]),
        # replies
        "connect-reject": (s, ["--reply", "connect", "reject"]),
        "connect-tempfail": (s, ["--reply", "connect", "tempfail"]),
        "connect-accept": (s, ["--reply", "connect", "accept"]),
        "connect-discard": (s, ["--reply", "connect", "discard"]),
        "helo-reject": (s, ["--reply", "helo", "reject"]),
        "helo-replycode": (s, ["--reply", "helo", "replycode", "554", "5.7.1", "no HELO like yours"]),
        "mail-reject": (s, ["--reply", "mail", "reject"]),
        "mail-tempfail": (s, ["--reply", "mail", "tempfail"]),
        "mail-accept": (s, ["--reply", "mail", "accept", "--addheader", "X-Should-Not", "be here"]),
        "mail-discard": (s, ["--reply", "mail", "discard"]),
        "rcpt-replycode": (s, ["--reply", "rcpt", "replycode", "550", "5.7.1", "first line from the milter",
                               "second line from the milter", "--only-rcpt", "refused@localhost"]),
        "rcpt-discard": (s, ["--reply", "rcpt", "discard"]),
        "data-reject": (s, ["--reply", "data", "reject"]),
        "data-tempfail": (s, ["--reply", "data", "tempfail"]),
        "unknown-replycode": (s, ["--reply", "unknown", "replycode", "502", "5.5.2", "the milter knows no such thing"]),
        "header-reject": (s, ["--reply", "header", "reject"]),
        "header-accept": (s, ["--reply", "header", "accept", "--addheader", "X-Should-Not", "be here"]),
        "eoh-tempfail": (s, ["--reply", "eoh", "tempfail"]),
        "body-replycode": (s, ["--reply", "body", "replycode", "554", "5.7.0", "body refused by the milter"]),
        "body-skip": (s, ["--reply", "body", "skip", "--addheader", "X-After-Skip", "yes"]),
        "eom-replycode": (s, ["--reply", "eom", "replycode", "451", "4.7.1", "try later, line one", "line two",
                              "line three"]),
        "eom-discard": (s, ["--reply", "eom", "discard"]),
        "eom-accept": (s, ["--reply", "eom", "accept", "--addheader", "X-Before-Accept", "applied"]),
        "eom-quarantine": (s, ["--quarantine", "held by the test milter"]),
        "eom-quarantine-long": (s, ["--quarantine", "long reason " + "x" * 400]),
        "eom-progress": (s, ["--delay", "eom", str(TIMEOUT + 1), "progress", "--addheader", "X-Progress", "done"]),
        "eom-slow": (s, ["--delay", "eom", str(TIMEOUT + 1)]),
        "shutdown": (h, ["--mode", "shutdown", "--stage", "mail"]),
        "conn-fail": (h, ["--mode", "conn-fail", "--stage", "mail"]),
        # modifications
        "addheader": (s, ["--addheader", "X-Added", "added by the milter"]),
        "insheader0": (s, ["--insheader", "0", "X-Inserted-First", "first"]),
        "insheader2": (s, ["--insheader", "2", "X-Inserted-Third", "third"]),
        "chgheader": (s, ["--chgheader", "Subject", "1", "subject changed by the milter", "--chgheader", "X-Multi", "2",
                          "second changed", "--chgheader", "X-Zero", "0", "zero means one", "--chgheader", "X-Absent",
                          "3", "added at the end"]),
        "delheader": (s, ["--delheader", "X-Drop", "1", "--delheader", "x-drop-twice", "2"]),
        "order": (s, ["--addheader", "X-Order", "one", "--chgheader", "X-Order", "1", "two", "--chgheader", "X-Order2",
                      "1", "first", "--addheader", "X-Order2", "second"]),
        "chgfrom": (s, ["--chgfrom", "<changed-sender@example.org>"]),
        "chgfrom-args": (s, ["--chgfrom", "<changed-args@example.org>", "XUNKNOWN=1"]),
        "addrcpt": (s, ["--addrcpt", "<mod-added@localhost>"]),
        "addrcpt-par": (s, ["--addrcpt", "<mod-par@localhost>", "NOTIFY=NEVER ORCPT=rfc822;orig@example.org",
                            "--quarantine", "held to look at the added recipient"]),
        "delrcpt": (s, ["--delrcpt", "<mod-delme@localhost>"]),
        "replbody": (s, ["--replbody", "replaced by the milter\\nsecond line\\n"]),
        "replbody-big": (s, ["--replbody", "@" + big]),
        "first": (s, ["--addheader", "X-First-Milter", "was here", "--replbody", "body from the first milter\\n"]),
        "second": (s, ["--chgheader", "X-First-Milter", "1", "changed by the second"]),
        "ourdkim": (s, ["--addheader", "X-Milter-Added", "yes", "--replbody", "body replaced before signing\\n"]),
        # the hostile ones
        "silent": (h, ["--mode", "silent"]),
        "mute": (h, ["--mode", "mute", "--stage", "mail"]),
        "closer": (h, ["--mode", "close-mid-body"]),
        "huge": (h, ["--mode", "huge-reply", "--stage", "eom"]),
        "unknown": (h, ["--mode", "unknown-reply", "--stage", "mail"]),
        "unnegotiated": (h, ["--mode", "unnegotiated"]),
    }, big


class Milters:
    """The suite's milters, started section by section (some 50 Python processes at once would take
    600 MB): `with ms.running("a", "b"):` starts those in parallel, waits until they listen, and stops
    them afterwards; ms["a"] is the TestMilter (its record stays readable)."""

    def __init__(self, dir):
        self.dir = dir
        self.defs, self.big = milter_definitions(dir)
        self.all = {}

    def __getitem__(self, name):
        if name not in self.all:
            d = self.defs[name]
            self.all[name] = TestMilter(self.dir, name, d[0], d[1], inet=len(d) > 2 and d[2])
        return self.all[name]

    @contextlib.contextmanager
    def running(self, *names):
        started = []
        for n in names:
            mm = self[n]
            if mm.proc is None or mm.proc.poll() is not None:
                started.append(mm.start())
        if not wait_for(lambda: all(x.ready() for x in started), 15):
            raise RuntimeError("test milters not listening: %s" % [x.name for x in started if not x.ready()])
        try:
            yield
        finally:
            stop_all(started)

    def stop(self):
        stop_all(list(self.all.values()))


# ---- SMTP ----

def text(b):
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)


def code(r):
    """The code of a (code, text) reply, None for no reply."""
    return r[0] if r else None


def reply(r):
    """smtplib's (code, bytes) as (code, str)."""
    return (r[0], text(r[1]))


def connect(m, port=None, source="127.0.0.1", timeout=30):
    """An SMTP session; (smtplib object or None, greeting (code, text), seconds to the greeting)."""
    t0 = time.time()
    s = smtplib.SMTP(timeout=timeout)
    try:
        code, msg = s.connect("127.0.0.1", port or m.port, source_address=(source, 0))
    except smtplib.SMTPConnectError as e:
        return None, (e.smtp_code, text(e.smtp_error)), time.time() - t0
    except (OSError, smtplib.SMTPException) as e:
        return None, (None, str(e)), time.time() - t0
    return s, (code, text(msg)), time.time() - t0


def data(s, msg):
    """DATA and the message: the reply to DATA if it was not 354, else the reply to the final dot."""
    try:
        return reply(s.data(msg))
    except smtplib.SMTPDataError as e:
        return (e.smtp_code, text(e.smtp_error))
    except smtplib.SMTPServerDisconnected as e:
        return (None, "disconnected: %s" % e)


def step(fn, *a, **kw):
    try:
        return reply(fn(*a, **kw))
    except smtplib.SMTPServerDisconnected as e:
        return (None, "disconnected: %s" % e)


def close(s):
    if s is None:
        return None
    try:
        return reply(s.quit())
    except (smtplib.SMTPException, OSError) as e:
        s.close()
        return (None, str(e))


class Tx:
    def __init__(self):
        self.greeting = self.ehlo = self.mail = self.data = self.quit = None
        self.rcpts = []
        self.qid = None
        self.seconds = 0


def send(m, rcpts, msg, sender="alice@example.org", mail_options=(), s=None, keep=False, port=None):
    """One transaction in a new session (or in `s`); the replies, in a Tx. Refusals are answers."""
    t = Tx()
    t0 = time.time()
    if s is None:
        s, t.greeting, _ = connect(m, port)
        if s is None:
            return t
        t.ehlo = step(s.ehlo, "client.test.example")
    t.mail = step(s.mail, sender, list(mail_options))
    t.rcpts = [step(s.rcpt, r) for r in rcpts]
    if t.mail[0] == 250 and any(r[0] in (250, 251) for r in t.rcpts):
        t.data = data(s, msg)
        q = re.search(r"queued as ([0-9A-F]{16})", t.data[1] or "")
        t.qid = q.group(1) if q else None
    t.seconds = time.time() - t0
    if keep:
        t.session = s
    else:
        t.quit = close(s)
    return t


def message(subject, extra=b"", body=b"Hello from the milter test.\r\n", frm=b"alice@example.org", to=b"bob@localhost"):
    return (b"From: Alice <%s>\r\nTo: %s\r\nSubject: %s\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\n"
            b"Message-ID: <%d@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
            b"%s\r\n%s" % (frm, to, subject.encode() if isinstance(subject, str) else subject, time.time_ns(),
                           extra, body))


def delivered(m, user, timeout=10):
    """The first message in the mailbox, CRLF, with the Return-Path: and Delivered-To: mta-local adds
    (b"" when none came)."""
    if not wait_for(lambda: m.mailbox(user), timeout):
        return b""
    time.sleep(0.05)
    with open(m.mailbox(user)[0], "rb") as f:
        return f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def head_body(msg):
    h, _, b = msg.partition(b"\r\n\r\n")
    return h, b


def fields(msg):
    """[(name, raw value after the colon, folds kept)] of the header section, in order."""
    head = head_body(msg)[0].decode("utf-8", "replace")
    out = []
    for f in re.split(r"\r\n(?![ \t])", head):
        k, _, v = f.partition(":")
        out.append((k, v))
    return out


def values(msg, name):
    return [v.strip() for k, v in fields(msg) if k.lower() == name.lower()]


def names(msg):
    return [k for k, _ in fields(msg)]


def never_delivered(name, user):
    NEVER_DELIVERED.append((name, user))


def mtaqueue(m, *args):
    return subprocess.run([os.path.join(BIN, "mtaqueue"), "-c", m.conf] + list(args), capture_output=True, text=True,
                          timeout=30)


def show_json(m, qid):
    r = mtaqueue(m, "show", "--json", qid)
    try:
        return json.loads(r.stdout or "{}").get("message", {})
    except ValueError:
        return {}


# ---- configuration ----

def use(m, milters, action="tempfail", extra="", probe=True):
    """smtpd_milters = these (TestMilter or spec text), milter_default_action = action, and a reload. The
    milter keys apply to new sessions: when the first listed is one of ours, sessions are opened until it
    gets one (mtactl reload returns before mta-smtpd has taken the new configuration)."""
    specs = " ".join(x.spec if isinstance(x, TestMilter) else x for x in milters)
    m.reconfigure("smtpd_milters = %s\nmilter_default_action = %s\n%s" % (specs, action, extra))
    first = milters[0] if milters and isinstance(milters[0], TestMilter) else None
    if not probe or first is None:
        time.sleep(0.2)  # mta-smtpd takes the configuration from its control link within milliseconds
        return
    n = first.conns()
    end = time.time() + 10
    while time.time() < end:
        s, _, _ = connect(m, timeout=10)
        close(s)
        if wait_for(lambda: first.conns() > n, 1.0):
            return
    raise RuntimeError("mta-smtpd never connected to %s after the reload" % first.spec)


# ---- the sections ----

def macro_tests(m, ms):
    rec = ms["rec"]
    use(m, [rec])
    k = rec.mark()
    t0 = time.time()
    s, greet, secs = connect(m)
    t_greet = t0 + secs
    cport = s.sock.getsockname()[1]
    s.ehlo("client.test.example")
    body = b"line one\r\n.leading dot\r\n" + b"x" * 70 + b"\r\n"
    msg = message("macros", extra=b"X-Folded: first part\r\n\tsecond part\r\n", body=body)
    t = send(m, ["bob@localhost"], msg, mail_options=["BODY=8BITMIME"], s=s, keep=True)
    # A second transaction to a remote domain, ended by RSET: rcpt macros of a non-local recipient, and an abort.
    s.mail("alice@example.org")
    s.rcpt("carol@remote.example")
    s.rset()
    s.docmd("XYZZY", "plugh")
    close(s)
    wait_for(lambda: rec.since(k, "close"), 5)
    e = {st: rec.since(k, st) for st in ("negotiate", "connect", "helo", "mail", "rcpt", "data", "header", "eoh",
                                          "body", "eom", "abort", "unknown", "close")}
    check("one milter connection per SMTP session, option negotiation first",
          len(e["negotiate"]) == 1 and len(e["connect"]) == 1, [x["stage"] for x in rec.since(k)])
    c = e["connect"][0] if e["connect"] else {"macros": {}}
    cm = c["macros"]
    check("connect: j = hostname, {daemon_name} = smtp, {daemon_addr}, {client_addr}, {client_port}",
          cm.get("j") == HOST and cm.get("{daemon_name}") == "smtp" and cm.get("{daemon_addr}") == "127.0.0.1" and
          cm.get("{client_addr}") == "127.0.0.1" and cm.get("{client_port}") == str(cport), (cm, cport))
    check("connect: {client_name} = unknown, _ = unknown [127.0.0.1], v = mta <version>",
          cm.get("{client_name}") == "unknown" and cm.get("_") == "unknown [127.0.0.1]" and
          cm.get("v", "").startswith("mta "), cm)
    check("connect: the client's address and port (AF_INET), host name unknown",
          c.get("family") == 2 and c.get("addr") == ["127.0.0.1", cport] and c.get("host") == "unknown",
          (c.get("host"), c.get("family"), c.get("addr")))
    check("connect: sent before the 220 greeting", greet[0] == 220 and c.get("time", 1e20) <= t_greet,
          (greet, c.get("time"), t_greet))
    h = e["helo"][0] if e["helo"] else {"macros": {}}
    check("helo: the EHLO name; no {tls_version}/{cipher} without TLS",
          h.get("name") == "client.test.example" and "{tls_version}" not in h["macros"] and
          "{cipher}" not in h["macros"], h)
    mails = e["mail"]
    mm = mails[0]["macros"] if mails else {}
    check("mail: sender and ESMTP args as sent; {mail_addr}, {mail_mailer} = smtp",
          mails and mails[0]["args"] == ["<alice@example.org>", "BODY=8BITMIME"] and
          mm.get("{mail_addr}") == "alice@example.org" and mm.get("{mail_mailer}") == "smtp", mails[:1])
    check("mail: {mail_host} empty or not sent; no i, no {auth_authen} (no queue id, no AUTH yet)",
          mm.get("{mail_host}", "") == "" and "i" not in mm and "{auth_authen}" not in mm and
          "{auth_type}" not in mm, mm)
    rc = e["rcpt"]
    check("rcpt: the recipient as written; {rcpt_addr}, {rcpt_host} = localhost, {rcpt_mailer} = local; no i",
          rc and rc[0]["args"] == ["<bob@localhost>"] and rc[0]["macros"].get("{rcpt_addr}") == "bob@localhost" and
          rc[0]["macros"].get("{rcpt_host}") == "localhost" and rc[0]["macros"].get("{rcpt_mailer}") == "local" and
          "i" not in rc[0]["macros"], rc[:1])
    check("rcpt: a remote recipient: {rcpt_host} = its domain, {rcpt_mailer} = smtp",
          len(rc) == 2 and rc[1]["macros"].get("{rcpt_addr}") == "carol@remote.example" and
          rc[1]["macros"].get("{rcpt_host}") == "remote.example" and rc[1]["macros"].get("{rcpt_mailer}") == "smtp",
          rc[1:])
    check("data: i = the queue id of the 250 reply", t.qid and e["data"] and e["data"][0]["macros"].get("i") == t.qid,
          (t.data, e["data"][:1]))
    eom = e["eom"][0] if e["eom"] else {}
    check("eom: i = the queue id", t.qid and eom.get("macros", {}).get("i") == t.qid, (t.qid, eom.get("macros")))
    got = [(h["name"], h["value"]) for h in e["header"]]
    check("headers as the client sent them, in order, values without the space after the colon, folds as LF",
          got[:3] == [("From", "Alice <alice@example.org>"), ("To", "bob@localhost"), ("Subject", "macros")] and
          ("X-Folded", "first part\n\tsecond part") in got, got)
    check("our Received: is not shown to the milter", not any(n.lower() == "received" for n, _ in got), got)
    check("eoh sent once after the headers", len(e["eoh"]) == 1)
    check("body as sent: CRLF, dot-stuffing undone", eom.get("body", "").encode("latin-1") == body, eom.get("body"))
    msg_d = delivered(m, "bob")
    check("the delivered message starts with our Received: and has the client's header unchanged",
          names(without_return_path(msg_d))[:1] == ["Received"] and b"X-Folded: first part\r\n\tsecond part\r\n" in msg_d,
          msg_d[:500])
    check("RSET mid-transaction is reported as an abort", len(e["abort"]) >= 1, [x["stage"] for x in rec.since(k)])
    un = e["unknown"]
    check("unknown: the whole command line", un and un[0].get("command") == "XYZZY plugh", un)
    check("session end: the milter connection is closed (SMFIC_QUIT)", e["close"], [x["stage"] for x in rec.since(k)])
    # Big body: chunks of at most 65535, nothing lost
    k = rec.mark()
    big = b"".join(b"%06d abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n" % i for i in range(3500))
    t = send(m, ["bigbody@localhost"], message("big body", body=big))
    chunks = [x["len"] for x in rec.since(k, "body")]
    eom = rec.since(k, "eom")
    check("a %d-byte body goes in chunks of at most 65535 bytes, all of it" % len(big),
          t.data and code(t.data) == 250 and chunks and max(chunks) <= 65535 and sum(chunks) == len(big) and
          len(chunks) >= 4 and eom and eom[0]["body"].encode("latin-1") == big, (t.data, chunks))
    # Two messages in one session: one connection, two transactions
    k = rec.mark()
    s, _, _ = connect(m)
    s.ehlo("client.test.example")
    send(m, ["two1@localhost"], message("first of two"), s=s, keep=True)
    send(m, ["two2@localhost"], message("second of two"), s=s, keep=True)
    close(s)
    check("two messages in one session: one milter connection, two MAIL, two end of message",
          len(rec.since(k, "negotiate")) == 1 and len(rec.since(k, "mail")) == 2 and len(rec.since(k, "eom")) == 2 and
          delivered(m, "two1") and delivered(m, "two2"), [x["stage"] for x in rec.since(k)])


def tls_auth_tests(m, ms):
    rec = ms["rec"]
    use(m, [rec])
    ctx = ssl.create_default_context(cafile=m.cert)
    k = rec.mark()
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        s.starttls(context=ctx)
        s.ehlo("tls.test.example")
        s.sendmail("alice@example.org", ["tlsuser@localhost"], message("over tls"))
    helos = rec.since(k, "helo")
    hm = helos[-1]["macros"] if helos else {}
    check("after STARTTLS: {tls_version} = TLSv1.3, {cipher}, {cipher_bits} at HELO",
          hm.get("{tls_version}") == "TLSv1.3" and hm.get("{cipher}") and hm.get("{cipher_bits}", "").isdigit(),
          [x.get("macros") for x in helos])
    check("before STARTTLS the first EHLO had no {tls_version}",
          len(helos) == 2 and "{tls_version}" not in helos[0]["macros"], [x.get("macros") for x in helos])
    k = rec.mark()
    with smtplib.SMTP("127.0.0.1", m.sub_port, timeout=30) as s:
        s.starttls(context=ctx)
        s.ehlo("sub.test.example")
        s.login("alice", "wonderland")
        # No Message-ID:, no Date:: mta-smtpd adds them for authenticated clients, before the milters
        s.sendmail("alice@example.org", ["authuser@localhost"],
                   b"From: alice@example.org\r\nTo: authuser@localhost\r\nSubject: authenticated\r\n\r\nHi.\r\n")
    conn = rec.since(k, "connect")
    check("submission: {daemon_name} = submission", conn and conn[0]["macros"].get("{daemon_name}") == "submission",
          conn[:1])
    mail = rec.since(k, "mail")
    mm = mail[0]["macros"] if mail else {}
    check("after AUTH: {auth_type} = PLAIN, {auth_authen} = alice at MAIL",
          mm.get("{auth_type}") == "PLAIN" and mm.get("{auth_authen}") == "alice", mm)
    eom = rec.since(k, "eom")
    hn = [h[0].lower() for h in eom[0]["headers"]] if eom else []
    check("authenticated submission: the milter sees the Message-ID: and Date: we add", "message-id" in hn and
          "date" in hn, hn)
    k = rec.mark()
    with smtplib.SMTP_SSL("127.0.0.1", m.smtps_port, context=ctx, timeout=30) as s:
        s.ehlo("smtps.test.example")
    conn = rec.since(k, "connect")
    helos = rec.since(k, "helo")
    check("smtps: {daemon_name} = smtps, TLS macros at HELO",
          conn and conn[0]["macros"].get("{daemon_name}") == "smtps" and helos and
          helos[0]["macros"].get("{tls_version}", "").startswith("TLSv1"), (conn[:1], helos[:1]))


def symlist_tests(m, ms):
    sm = ms["symlist"]
    use(m, [sm])
    k = sm.mark()
    t = send(m, ["symlist@localhost"], message("symlist"))
    conn = sm.since(k, "connect")
    mail = sm.since(k, "mail")
    check("a milter's own macro list (SETSYMLIST) replaces milter_connect_macros: only {client_port}",
          conn and sorted(conn[0]["macros"]) == ["{client_port}"], conn[:1])
    check("... and milter_mail_macros: {mail_addr}, not {mail_mailer}",
          mail and mail[0]["macros"].get("{mail_addr}") == "alice@example.org" and
          "{mail_mailer}" not in mail[0]["macros"], mail[:1])
    check("... stages it did not name keep the configured list (i at DATA)",
          t.qid and any(x["macros"].get("i") == t.qid for x in sm.since(k, "data")), sm.since(k, "data")[:1])
    nb = ms["nobody"]
    use(m, [nb])
    k = nb.mark()
    t = send(m, ["nobody@localhost"], message("no body please", body=b"body the milter did not want\r\n"))
    st = [x["stage"] for x in nb.since(k)]
    check("a milter that negotiated NOBODY and NOHELO gets neither, but the end of message",
          t.data and code(t.data) == 250 and "body" not in st and "helo" not in st and "eom" in st, st)
    # milter_*_macros from mta.conf
    rec = ms["rec"]
    use(m, [rec], extra="milter_connect_macros = j {client_addr}\nmilter_rcpt_macros = {rcpt_addr}\n")
    k = rec.mark()
    send(m, ["confmacros@localhost"], message("configured macros"))
    conn = rec.since(k, "connect")
    rcpt = rec.since(k, "rcpt")
    check("milter_connect_macros and milter_rcpt_macros from mta.conf are what is sent",
          conn and sorted(conn[0]["macros"]) == ["j", "{client_addr}"] and rcpt and
          "{rcpt_host}" not in rcpt[0]["macros"] and rcpt[0]["macros"].get("{rcpt_addr}") == "confmacros@localhost",
          (conn[:1], rcpt[:1]))
    m.reconfigure("milter_connect_macros = j {daemon_name} {daemon_addr} v _ {client_addr} {client_port} "
                  "{client_name}\nmilter_rcpt_macros = i {rcpt_addr} {rcpt_host} {rcpt_mailer}\n")


def leadspace_tests(m, ms):
    ls = ms["leadspace"]
    use(m, [ls])
    k = ls.mark()
    send(m, ["leadspace@localhost"], message("lead space", extra=b"X-No-Space:tight\r\nX-Two:  two spaces\r\n"))
    hs = {h["name"]: h["value"] for h in ls.since(k, "header")}
    check("HDR_LEADSPC: header values exactly as after the colon (' Alice ...', 'tight', '  two spaces')",
          hs.get("From") == " Alice <alice@example.org>" and hs.get("X-No-Space") == "tight" and
          hs.get("X-Two") == "  two spaces", hs)
    msg = delivered(m, "leadspace")
    check("HDR_LEADSPC: an added header is written Name:value as sent (X-Tight:tight, X-Spaced: spaced)",
          b"\r\nX-Tight:tight\r\n" in msg and b"\r\nX-Spaced: spaced\r\n" in msg, head_body(msg)[0][-300:])
    check("HDR_LEADSPC: the client's own odd spacing is delivered untouched",
          b"\r\nX-No-Space:tight\r\n" in msg and b"\r\nX-Two:  two spaces\r\n" in msg, head_body(msg)[0][-300:])


def reply_tests(m, ms):
    # connect
    for name, want in (("connect-reject", REJECT), ("connect-tempfail", TEMPFAIL)):
        use(m, [ms[name]])
        s, greet, _ = connect(m)
        r = [greet, step(s.ehlo, "client.test.example"), step(s.mail, "alice@example.org"),
             step(s.rcpt, "x@localhost"), step(s.noop), step(s.rset), close(s)]
        check("%s: 220 still sent, EHLO/MAIL/RCPT get %d %s, NOOP/RSET/QUIT work" % (name, want[0], want[1][:5]),
              r[0][0] == 220 and r[1:4] == [want] * 3 and [x[0] for x in r[4:]] == [250, 250, 221], r)
    for name in ("connect-accept", "connect-discard"):
        mm = ms[name]
        use(m, [mm])
        k = mm.mark()
        t = send(m, ["%s@localhost" % name], message(name))
        st = [x["stage"] for x in mm.since(k) if x["stage"] not in ("close", "abort")]
        check("%s: the milter is skipped for the session (nothing after connect), mail delivered" % name,
              t.data and code(t.data) == 250 and st == ["negotiate", "connect"] and delivered(m, name), (t.data, st))
    # helo
    use(m, [ms["helo-reject"]])
    s, greet, _ = connect(m)
    r = step(s.ehlo, "client.test.example")
    r2 = step(s.helo, "client.test.example")
    check("helo reject: EHLO and HELO get 550 5.7.1 Command rejected; QUIT works",
          r == REJECT and r2 == REJECT and close(s)[0] == 221, (r, r2))
    use(m, [ms["helo-replycode"]])
    s, greet, _ = connect(m)
    r = step(s.ehlo, "client.test.example")
    check("helo replycode: EHLO gets the milter's 554 5.7.1 and text", r == (554, "5.7.1 no HELO like yours"), r)
    close(s)
    # mail
    for name, want in (("mail-reject", REJECT), ("mail-tempfail", TEMPFAIL)):
        use(m, [ms[name]])
        s, _, _ = connect(m)
        s.ehlo("client.test.example")
        r = step(s.mail, "alice@example.org")
        r2 = step(s.rcpt, "x@localhost")
        check("%s: MAIL gets %d; no transaction (RCPT 503)" % (name, want[0]), r == want and r2[0] == 503, (r, r2))
        close(s)
    mm = ms["mail-accept"]
    use(m, [mm])
    k = mm.mark()
    s, _, _ = connect(m)
    s.ehlo("client.test.example")
    t1 = send(m, ["mailaccept1@localhost"], message("mail accept 1"), s=s, keep=True)
    t2 = send(m, ["mailaccept2@localhost"], message("mail accept 2"), s=s, keep=True)
    close(s)
    st = [x["stage"] for x in mm.since(k) if x["stage"] in ("mail", "rcpt", "data", "header", "eom")]
    msg = delivered(m, "mailaccept1")
    check("mail accept: skipped for that message (no RCPT/DATA/header/eom), asked again at the next MAIL",
          st == ["mail", "mail"] and code(t1.data) == 250 and code(t2.data) == 250, st)
    check("mail accept: delivered unmodified", msg and b"X-Should-Not" not in msg and delivered(m, "mailaccept2"),
          msg[:300])
    for name in ("mail-discard", "rcpt-discard"):
        use(m, [ms[name]])
        mark = len(m.log_text())
        t = send(m, ["%s@localhost" % name], message(name))
        check("%s: the transaction goes on, 250 at the end" % name,
              t.mail[0] == 250 and t.data and code(t.data) == 250, (t.mail, t.rcpts, t.data))
        check("%s: logged event=milter_discard" % name, wait_for(lambda: "event=milter_discard" in m.log_text()[mark:], 3))
        never_delivered("%s: nothing delivered" % name, name)
    # rcpt
    use(m, [ms["rcpt-replycode"]])
    t = send(m, ["rcptok@localhost", "refused@localhost"], message("one refused recipient"))
    check("rcpt replycode: that RCPT gets the milter's 550 5.7.1 with both lines, the other stays",
          t.rcpts[0][0] == 250 and t.rcpts[1] == (550, "5.7.1 first line from the milter\n5.7.1 second line from "
                                                      "the milter") and code(t.data) == 250, (t.rcpts, t.data))
    check("rcpt replycode: delivered to the other recipient only", delivered(m, "rcptok"))
    never_delivered("rcpt replycode: nothing for the refused recipient", "refused")
    # data
    for name, want in (("data-reject", REJECT), ("data-tempfail", TEMPFAIL)):
        use(m, [ms[name]])
        s, _, _ = connect(m)
        s.ehlo("client.test.example")
        t = send(m, [name + "@localhost"], message(name), s=s, keep=True)
        r2 = step(s.rcpt, "x@localhost")
        check("%s: DATA gets %d %s, the transaction ends (RCPT 503)" % (name, want[0], want[1][:5]),
              t.data == want and r2[0] == 503, (t.data, r2))
        close(s)
        never_delivered(name + ": nothing delivered", name)
    # data reject with BDAT: the chunk is read and dropped, the session stays in step
    use(m, [ms["data-reject"]])
    s, _, _ = connect(m)
    s.ehlo("client.test.example")
    chunking = s.has_extn("chunking")
    s.mail("alice@example.org")
    s.rcpt("bdat@localhost")
    chunk = message("bdat")
    s.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
    r = reply(s.getreply())
    n = step(s.noop)
    check("data reject with BDAT: the first BDAT gets 550 5.7.1, its chunk is swallowed (NOOP 250 next)",
          chunking and r == REJECT and n[0] == 250, (chunking, r, n))
    close(s)
    never_delivered("data reject with BDAT: nothing delivered", "bdat")
    # unknown
    use(m, [ms["unknown-replycode"]])
    s, _, _ = connect(m)
    s.ehlo("client.test.example")
    r = step(s.docmd, "XYZZY", "plugh")
    check("unknown command: our 500/502 replaced by the milter's 502 5.5.2 text",
          r == (502, "5.5.2 the milter knows no such thing"), r)
    close(s)


def content_reply_tests(m, ms):
    for name, want in (("header-reject", REJECT), ("eoh-tempfail", TEMPFAIL),
                       ("body-replycode", (554, "5.7.0 body refused by the milter")),
                       ("eom-replycode", (451, "4.7.1 try later, line one\n4.7.1 line two\n4.7.1 line three"))):
        use(m, [ms[name]])
        mark = len(m.log_text())
        t = send(m, [name + "@localhost"], message(name))
        check("%s: the final dot gets %d %s" % (name, want[0], want[1][:30].replace("\n", " / ")), t.data == want,
              t.data)
        never_delivered(name + ": nothing queued", name)
        if name == "header-reject":
            check("header reject: logged event=milter_reject with milter, stage and code 550",
                  wait_for(lambda: re.search(r"event=milter_reject milter=%s stage=\S+ code=550" %
                                             re.escape(ms[name].spec), m.log_text()[mark:]), 3),
                  m.log_text()[mark:][-600:])
    mm = ms["header-accept"]
    use(m, [mm])
    k = mm.mark()
    t = send(m, ["headeraccept@localhost"], message("header accept"))
    st = [x["stage"] for x in mm.since(k)]
    msg = delivered(m, "headeraccept")
    check("header accept: no more of this message to that milter, delivered unmodified",
          code(t.data) == 250 and st.count("header") == 1 and "eom" not in st and msg and b"X-Should-Not" not in msg, st)
    mm = ms["eom-discard"]
    use(m, [mm])
    mark = len(m.log_text())
    t = send(m, ["eomdiscard@localhost"], message("eom discard"))
    check("eom discard: 250 2.0.0 Ok: queued as QID", t.data and code(t.data) == 250 and t.qid and
          t.data[1].startswith("2.0.0 Ok: queued as"), t.data)
    check("eom discard: not queued (mtaqueue show finds nothing), event=milter_discard logged",
          t.qid and not show_json(m, t.qid) and wait_for(lambda: "event=milter_discard" in m.log_text()[mark:], 3),
          show_json(m, t.qid or "0"))
    never_delivered("eom discard: nothing delivered", "eomdiscard")
    use(m, [ms["eom-accept"]])
    t = send(m, ["eomaccept@localhost"], message("eom accept"))
    msg = delivered(m, "eomaccept")
    check("eom accept: a change sent before the accept is applied", code(t.data) == 250 and
          values(msg, "X-Before-Accept") == ["applied"], head_body(msg)[0][-300:])
    # skip
    mm = ms["body-skip"]
    use(m, [mm])
    k = mm.mark()
    body = b"".join(b"%06d skip me, then the end of message\r\n" % i for i in range(6000))
    t = send(m, ["bodyskip@localhost"], message("skip", body=body))
    st = [x["stage"] for x in mm.since(k)]
    msg = delivered(m, "bodyskip")
    check("body skip: one body chunk, then straight to end of message (its change applied)",
          st.count("body") == 1 and "eom" in st and values(msg, "X-After-Skip") == ["yes"], st)
    check("body skip: the message is delivered whole", head_body(msg)[1] == body, len(head_body(msg)[1]))
    # progress and the content timeout
    use(m, [ms["eom-progress"]])
    t = send(m, ["progress@localhost"], message("progress"))
    msg = delivered(m, "progress")
    check("progress: a milter %.1f s at end of message (timeout %d s) sending progress -> 250, its change applied"
          % (TIMEOUT + 1, TIMEOUT), code(t.data) == 250 and t.seconds >= TIMEOUT + 0.8 and
          values(msg, "X-Progress") == ["done"], (t.data, t.seconds))
    use(m, [ms["eom-slow"]])
    mark = len(m.log_text())
    t = send(m, ["slow@localhost"], message("too slow"))
    check("milter_content_timeout: %.1f s without progress -> 451 4.7.1 after about %d s"
          % (TIMEOUT + 1, TIMEOUT), t.data == TEMPFAIL and TIMEOUT - 0.5 <= t.seconds < TIMEOUT + SLACK,
          (t.data, t.seconds))
    check("milter_content_timeout: logged event=milter_error ... action=tempfail",
          re.search(r"event=milter_error milter=%s stage=\S+ reason=\"[^\"]*\" action=tempfail" %
                    re.escape(ms["eom-slow"].spec), m.log_text()[mark:]), m.log_text()[mark:][-500:])
    never_delivered("milter_content_timeout: nothing queued", "slow")


def quarantine_tests(m, ms):
    mm = ms["eom-quarantine"]
    use(m, [mm])
    mark = len(m.log_text())
    t = send(m, ["quarantine@localhost"], message("quarantine"))
    reason = "milter %s: held by the test milter" % mm.spec
    check("quarantine: 250 and a queue id", t.data and code(t.data) == 250 and t.qid, t.data)
    if not t.qid:
        return
    shown = mtaqueue(m, "show", t.qid).stdout
    js = show_json(m, t.qid)
    check("quarantine: mtaqueue show says held on arrival, with 'milter <spec>: <reason>'",
          ("Held:       on arrival: " + reason) in shown and
          re.search(r"quarantine@localhost +\[held", shown) is not None, shown)
    check("quarantine: show --json hold_reason and a held recipient",
          js.get("hold_reason") == reason and [r.get("state") for r in js.get("recipients", [])] == ["held"], js)
    check("quarantine: logged event=milter_quarantine", wait_for(lambda: "event=milter_quarantine" in
                                                                 m.log_text()[mark:], 3))
    time.sleep(0.5)
    check("quarantine: nothing delivered while held", not m.mailbox("quarantine"))
    r = mtaqueue(m, "release", t.qid)
    check("quarantine: mtaqueue release delivers it", r.returncode == 0 and delivered(m, "quarantine"),
          r.stdout + r.stderr)
    mm = ms["eom-quarantine-long"]
    use(m, [mm])
    t = send(m, ["quarlong@localhost"], message("long quarantine reason"))
    js = show_json(m, t.qid) if t.qid else {}
    full = "milter %s: long reason %s" % (mm.spec, "x" * 400)
    hr = js.get("hold_reason", "")
    check("quarantine: a 412-byte reason is cut to 200 bytes", full.startswith(hr) and
          200 <= len(hr) <= 200 + len("milter %s: " % mm.spec), (len(hr), hr[:80]))
    if t.qid:
        mtaqueue(m, "delete", t.qid)


def modification_tests(m, ms):
    base_extra = b"X-Multi: one\r\nx-multi: two\r\nX-Zero: zero\r\nX-Drop: drop me\r\nX-Drop-Twice: keep\r\n" \
                 b"X-DROP-TWICE: drop\r\n"

    def run(name, user, extra=base_extra, rcpts=None, body=b"Hello.\r\n", sender="alice@example.org"):
        use(m, [ms[name]])
        t = send(m, rcpts or [user + "@localhost"], message(name, extra=extra, body=body), sender=sender)
        return t, delivered(m, user)

    mark = len(m.log_text())
    t, msg = run("addheader", "modadd")
    fl = names(msg)
    check("addheader: 'X-Added: added by the milter' at the end of the header",
          code(t.data) == 250 and fl and fl[-1] == "X-Added" and b"\r\nX-Added: added by the milter\r\n\r\n" in msg,
          head_body(msg)[0][-200:])
    check("addheader: logged event=milter_modified", wait_for(lambda: re.search(
        r"event=milter_modified .*headers=1", m.log_text()[mark:]), 3), m.log_text()[mark:][-400:])
    t, msg = run("insheader0", "modins0")
    fl = names(without_return_path(msg))
    check("insheader 0: before the first header the milter saw (right after our Received:)",
          fl[:3] == ["Received", "X-Inserted-First", "From"], fl)
    t, msg = run("insheader2", "modins2")
    fl = names(without_return_path(msg))
    check("insheader 2: before the third header the milter saw (From, To, X-Inserted-Third, Subject)",
          fl[1:5] == ["From", "To", "X-Inserted-Third", "Subject"], fl)
    t, msg = run("chgheader", "modchg")
    check("chgheader Subject 1: replaced", values(msg, "Subject") == ["subject changed by the milter"],
          values(msg, "Subject"))
    check("chgheader X-Multi 2: the second of that name (any case) replaced, the first kept",
          [(k.lower(), v.strip()) for k, v in fields(msg) if k.lower() == "x-multi"] ==
          [("x-multi", "one"), ("x-multi", "second changed")], [(k, v) for k, v in fields(msg) if k.lower() == "x-multi"])
    check("chgheader index 0 counts as 1", values(msg, "X-Zero") == ["zero means one"], values(msg, "X-Zero"))
    check("chgheader past the last of that name: added at the end",
          values(msg, "X-Absent") == ["added at the end"] and names(msg)[-1] == "X-Absent", names(msg)[-4:])
    t, msg = run("delheader", "moddel")
    check("delheader X-Drop 1: gone; X-Drop-Twice 2: the second (other case) gone, the first kept",
          not values(msg, "X-Drop") and [(k, v.strip()) for k, v in fields(msg) if k.lower() == "x-drop-twice"] ==
          [("X-Drop-Twice", "keep")], head_body(msg)[0][-300:])
    t, msg = run("order", "modorder")
    check("changes apply in the order sent: add then change -> the added one changed; change (none yet, so "
          "added) then add -> both", values(msg, "X-Order") == ["two"] and values(msg, "X-Order2") == ["first", "second"],
          (values(msg, "X-Order"), values(msg, "X-Order2")))
    t, msg = run("chgfrom", "modfrom")
    check("chgfrom: the new envelope sender (Return-Path)", msg.startswith(b"Return-Path: <changed-sender@example.org>"),
          msg[:100])
    mark = len(m.log_text())
    t, msg = run("chgfrom-args", "modfromargs")
    check("chgfrom with an unknown ESMTP argument: applied (the argument ignored)",
          msg.startswith(b"Return-Path: <changed-args@example.org>"), msg[:100])
    t, msg = run("addrcpt", "modaddorig")
    check("addrcpt: the added recipient gets it too", code(t.data) == 250 and msg and delivered(m, "mod-added"), t.data)
    use(m, [ms["addrcpt-par"]])
    t = send(m, ["modparorig@localhost"], message("addrcpt par"))
    js = show_json(m, t.qid) if t.qid else {}
    added = [r for r in js.get("recipients", []) if r.get("address") == "mod-par@localhost"]
    check("addrcpt with ESMTP args: NOTIFY=NEVER and ORCPT taken (mtaqueue show --json)",
          added and added[0].get("notify") == "NEVER" and "orig@example.org" in added[0].get("orcpt", ""), js)
    if t.qid:
        mtaqueue(m, "release", t.qid)
        check("addrcpt with ESMTP args: delivered on release", delivered(m, "mod-par") and delivered(m, "modparorig"))
    t, msg = run("delrcpt", "modkeep", rcpts=["modkeep@localhost", "mod-delme@LOCALHOST"])
    check("delrcpt: that recipient removed (domain compared without case), the other delivered",
          code(t.data) == 250 and msg, t.data)
    never_delivered("delrcpt: nothing for the removed recipient", "mod-delme")
    use(m, [ms["delrcpt"]])
    t = send(m, ["mod-delme@localhost"], message("all recipients removed"))
    check("delrcpt of every recipient: 250, behaves as discard", t.data and code(t.data) == 250 and
          (not t.qid or not show_json(m, t.qid)), t.data)
    t, msg = run("replbody", "modbody", body=b"original body\r\n")
    check("replbody: the new body, CRLF", head_body(msg)[1] == b"replaced by the milter\r\nsecond line\r\n",
          head_body(msg)[1][:200])
    t, msg = run("replbody-big", "modbigbody")
    with open(ms.big, "rb") as f:
        want = f.read()
    check("replbody: a %d-byte body sent in several chunks, concatenated" % len(want), head_body(msg)[1] == want,
          len(head_body(msg)[1]))


def two_milter_tests(m, ms):
    first, second = ms["first"], ms["second"]
    use(m, [first, second])
    k1, k2 = first.mark(), second.mark()
    t = send(m, ["twomilters@localhost"], message("two milters", body=b"original body\r\n"))
    msg = delivered(m, "twomilters")
    hs = [h["name"] for h in second.since(k2, "header")]
    e2 = second.since(k2, "eom")
    check("two milters: the second sees the header the first added", "X-First-Milter" in hs, hs)
    check("two milters: the second sees the body the first replaced",
          e2 and e2[0]["body"] == "body from the first milter\r\n", e2[:1] and e2[0]["body"])
    check("two milters: the second's change to the first's header is what is delivered",
          t.data and code(t.data) == 250 and values(msg, "X-First-Milter") == ["changed by the second"] and
          head_body(msg)[1] == b"body from the first milter\r\n", head_body(msg)[0][-300:])
    c1, c2 = first.since(k1, "connect"), second.since(k2, "connect")
    m1, m2 = first.since(k1, "mail"), second.since(k2, "mail")
    check("two milters: asked in order (first before second at connect and MAIL)",
          c1 and c2 and m1 and m2 and c1[0]["time"] <= c2[0]["time"] and m1[0]["time"] <= m2[0]["time"])


def socket_tests(m, ms):
    cases = [("rec-inet", ms["rec-inet"].spec, "inet", "inet:127.0.0.1:PORT"),
             ("rec-local", ms["rec-local"].spec.replace("unix:", "local:", 1), "local", "local:/path"),
             ("rec-localhost", ms["rec-localhost"].spec.replace("127.0.0.1", "localhost"), "localhost",
              "inet:localhost:PORT")]
    for name, spec, via, label in cases:
        mm = ms[name]
        mm.spec = spec
        use(m, [mm])
        t = send(m, [name + "@localhost"], message(name))
        msg = delivered(m, name)
        check("smtpd_milters = %s: reached, its header added" % label,
              t.data and code(t.data) == 250 and values(msg, "X-Via") == [via], (t.data, values(msg, "X-Via")))
    conf = os.path.join(m.dir, "bad.conf")
    for bad, what in (("inet:milter.example.com:8891", "a host name"), ("unix:relative/milter.sock", "a relative path"),
                      ("tcp:127.0.0.1:1", "an unknown kind")):
        with open(m.conf) as f, open(conf, "w") as g:
            g.write(f.read() + "smtpd_milters = %s\n" % bad)
        r = subprocess.run([os.path.join(BIN, "mtad"), "-n", "-c", conf], capture_output=True, text=True, timeout=30)
        check("mtad -n refuses smtpd_milters with %s" % what, r.returncode != 0 and "smtpd_milters" in r.stderr,
              r.stdout + r.stderr)


def sendmail_tests(m, ms):
    """sendmail(1) mail never meets mta-smtpd: smtpd_milters leave it alone; non_smtpd_milters (mta-queue's
    pickup, as Postfix's cleanup) show it to their milters."""
    rec, add = ms["rec"], ms["addheader"]

    def sendmail(user, subject):
        return subprocess.run(as_user("nobody", [os.path.join(BIN, "sendmail"), "-C", m.conf, user + "@localhost"]),
                              input=message(subject), capture_output=True, timeout=60)
    use(m, [rec])
    k = rec.mark()
    r = sendmail("viasendmail", "via sendmail")
    msg = delivered(m, "viasendmail")
    check("sendmail(1) mail does not pass smtpd_milters", r.returncode == 0 and msg and not rec.since(k, "eom"),
          (r.returncode, r.stderr, [x["stage"] for x in rec.since(k)]))
    use(m, [], extra="non_smtpd_milters = %s %s\n" % (rec.spec, add.spec))
    k = rec.mark()
    r = sendmail("nonsmtpd", "via sendmail and non_smtpd_milters")
    msg = delivered(m, "nonsmtpd", timeout=30)
    conn, eom = rec.since(k, "connect"), rec.since(k, "eom")
    check("non_smtpd_milters: sendmail mail shown to the milter ({daemon_name} = pickup, client 127.0.0.1)",
          r.returncode == 0 and conn and conn[0]["macros"].get("{daemon_name}") == "pickup" and
          conn[0]["macros"].get("{client_addr}") == "127.0.0.1" and eom, (r.stderr, conn[:1], len(eom)))
    check("non_smtpd_milters: the second milter's header is in the delivered message",
          values(msg, "X-Added") == ["added by the milter"], head_body(msg)[0][-300:])
    check("non_smtpd_milters: i at end of message is a queue id",
          eom and re.fullmatch(r"[0-9A-F]{16}", eom[0]["macros"].get("i", "")), eom[:1] and eom[0]["macros"])
    # Postfix's cleanup ends its milter session with each message; a connection left open here is later
    # logged as a milter_error of a message that is long delivered when the milter goes away.
    check("non_smtpd_milters: the milter connection ends (SMFIC_QUIT) once the message is queued",
          wait_for(lambda: rec.since(k, "close"), 3), [x["stage"] for x in rec.since(k)])
    m.reconfigure("non_smtpd_milters =\n")


def shutdown_tests(m, ms):
    """SMFIR_SHUTDOWN and SMFIR_CONN_FAIL (libmilter has no call for them: hostile.py sends them)."""
    for name, label in (("shutdown", "SMFIR_SHUTDOWN"), ("conn-fail", "SMFIR_CONN_FAIL")):
        use(m, [ms[name]])
        s, _, _ = connect(m)
        s.ehlo("client.test.example")
        r = step(s.mail, "alice@example.org")
        r2 = step(s.noop)
        check("%s at MAIL: 421 4.7.0 %s Service unavailable - closing connection, then closed" % (label, HOST),
              r == (421, "4.7.0 %s Service unavailable - closing connection" % HOST) and r2[0] is None, (r, r2))
        s.close()


def default_action_tests(m, ms):
    down_unix = "unix:" + os.path.join(ms.dir, "nobody-listens.sock")
    down_inet = "inet:127.0.0.1:%d" % free_port()
    # name, spec, the stage that fails (connect = before the greeting), seconds it may take
    hostile = [("down (unix)", down_unix, "connect", 1.5), ("down (inet)", down_inet, "connect", 1.5),
               ("silent", ms["silent"], "connect", TIMEOUT + 1.5), ("mute at MAIL", ms["mute"], "mail", TIMEOUT + 1.5),
               ("closes mid-body", ms["closer"], "eom", 1.5), ("10 MB reply", ms["huge"], "eom", 1.5),
               ("unknown reply code", ms["unknown"], "mail", 1.5),
               ("a change it did not negotiate", ms["unnegotiated"], "eom", 1.5)]
    pids = sorted(m.pids("mta-smtpd"))
    for action in ("tempfail", "reject", "accept"):
        want = {"tempfail": TEMPFAIL, "reject": REJECT}.get(action)
        for label, mm, stage, limit in hostile:
            spec = mm.spec if isinstance(mm, TestMilter) else mm
            use(m, [mm], action=action, probe=False)
            mark = len(m.log_text())
            user = "def-%s-%s" % (action, re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-"))
            s, greet, t_greet = connect(m)
            if s is None:
                check("%s, %s: the session opens" % (action, label), False, greet)
                continue
            steps = {"greeting": (greet, t_greet)}

            def timed(key, fn, *a):
                t0 = time.time()
                steps[key] = (fn(*a), time.time() - t0)

            timed("ehlo", step, s.ehlo, "client.test.example")
            timed("mail", step, s.mail, "alice@example.org")
            timed("rcpt", step, s.rcpt, user + "@localhost")
            timed("data", data, s, message("default action %s %s" % (action, label)))
            timed("noop", step, s.noop)
            timed("rset", step, s.rset)
            if action == "accept":
                t0 = time.time()
                t2 = send(m, [user + "-2@localhost"], message("second message"), s=s, keep=True)
                steps["mail2"] = (t2.mail, time.time() - t0)
                steps["data2"] = (t2.data or (None, "no DATA"), time.time() - t0)
            else:
                timed("mail2", step, s.mail, "alice@example.org")
            timed("quit", close, s)
            print("# %s, %s: %.2f s" % (action, label, sum(v[1] for v in steps.values())), flush=True)
            codes = {k: v[0][0] for k, v in steps.items()}
            failing = {"connect": "ehlo", "mail": "mail", "eom": "data"}[stage]
            fail_time = steps["greeting"][1] if stage == "connect" else steps[failing][1]
            if action == "accept":
                ok = all(codes[k] == 250 for k in ("ehlo", "mail", "rcpt", "data", "noop", "rset", "mail2", "data2"))
                check("accept, %s: everything 250, as if the milter were absent" % label,
                      ok and codes["greeting"] == 220 and codes["quit"] == 221, steps)
                msg = delivered(m, user)
                check("accept, %s: delivered, without the milter's changes" % label,
                      msg and b"X-Huge" not in msg and b"X-Not-Negotiated" not in msg, msg[:200])
                errors = len(re.findall(r"event=milter_error milter=%s " % re.escape(spec), m.log_text()[mark:]))
                check("accept, %s: the milter is dropped for the session (one milter_error, second message delivered)"
                      % label, errors == 1 and delivered(m, user + "-2"), (errors, steps["data2"]))
            else:
                order = ["ehlo", "mail", "rcpt", "data", "mail2"]
                before = order[:order.index(failing)]
                after = order[order.index(failing):]
                ok = (codes["greeting"] == 220 and all(codes[k] in (250, 354) for k in before) and
                      all(steps[k][0] == want for k in after) and
                      [codes["noop"], codes["rset"], codes["quit"]] == [250, 250, 221])
                check("%s, %s: %s gets %d %s and so does every later command but NOOP/RSET/QUIT"
                      % (action, label, failing.upper() if failing != "data" else "the final dot", want[0], want[1][:5]),
                      ok, {k: v[0] for k, v in steps.items()})
                never_delivered("%s, %s: nothing delivered" % (action, label), user)
            # Slack for a loaded machine (ASan, suites side by side): a hang would take smtpd_timeout.
            check("%s, %s: the default action within %.1f s (took %.2f s)" % (action, label, limit + SLACK, fail_time),
                  fail_time < limit + SLACK, steps)
            check("%s, %s: logged event=milter_error milter=<spec> ... action=%s" % (action, label, action),
                  wait_for(lambda: re.search(r"event=milter_error milter=%s stage=\S+ reason=\"[^\"]*\" action=%s"
                                             % (re.escape(spec), action), m.log_text()[mark:]), 3),
                  m.log_text()[mark:][-600:])
    check("after all of it mtad and its mta-smtpd are the same processes (no crash, no restart)",
          m.proc.poll() is None and sorted(m.pids("mta-smtpd")) == pids and pids, (pids, m.pids("mta-smtpd")))
    st = m.ctl("status")
    check("mtactl status: mta-smtpd running", st.returncode == 0 and
          re.search(r"role=smtpd instance=0 pid=\d+ state=running", st.stdout), st.stdout[-800:])


# ---- OpenDKIM, rspamd, our own DKIM over milter changes ----

def dkim_ok(msg, lookup, idx=0):
    try:
        return bool(dkim.DKIM(msg).verify(idx=idx, dnsfunc=lookup))
    except dkim.DKIMException:
        return False


def smtpd_msgauth_links(m):
    return len(re.findall(r"mta-smtpd\[\d+\]: level=\w+ event=msgauth_link_up", m.log_text()))


def without_return_path(msg):
    """The message as mta-local got it: without the Return-Path: and Delivered-To: it puts on top."""
    while msg.startswith(b"Return-Path:") or msg.startswith(b"Delivered-To:"):
        msg = msg[msg.index(b"\r\n") + 2:]
    return msg


def opendkim_tests(m, odk, nsd):
    lookup = nsd_txt(nsd)
    use(m, [odk.spec])
    extra = b"X-Note:no space after the colon\r\nX-Wide:   three spaces\r\n"
    msg_in = message(b"signed by OpenDKIM,\r\n\tfolded over two lines", frm=b"alice@dkim.example", extra=extra,
                     body=b"Body  with  double  spaces.  \r\n\r\nAnd trailing blank lines.\r\n\r\n\r\n")
    t = send(m, ["opendkim@localhost"], msg_in, sender="alice@dkim.example")
    msg = without_return_path(delivered(m, "opendkim"))
    sigs = values(msg, "DKIM-Signature")
    check("OpenDKIM: the message is signed (d=dkim.example s=sel1, c=simple/simple)",
          code(t.data) == 250 and len(sigs) == 1 and "d=dkim.example" in sigs[0] and "s=sel1" in sigs[0] and
          "c=simple/simple" in sigs[0], (t.data, sigs))
    check("OpenDKIM: dkimpy verifies the signature against the key in DNS (simple/simple: every header byte as "
          "signed, leading spaces and folds included)", dkim_ok(msg, lookup), msg[:1200])
    fl = names(msg)
    check("OpenDKIM: its INSHEADER at index 0 puts DKIM-Signature above the client's first header (under our "
          "Received:)",
          "DKIM-Signature" in fl and "From" in fl and fl.index("DKIM-Signature") < fl.index("From") and
          fl[0] == "Received", fl)
    check("OpenDKIM (HDR_LEADSPC): 'DKIM-Signature: v=1' written with exactly one space, as OpenDKIM sent it",
          b"\r\nDKIM-Signature: v=1;" in msg, msg[:300])
    bad = msg.replace(b"Body  with", b"Body with")
    check("OpenDKIM: one changed body byte fails dkimpy (the check is real)", not dkim_ok(bad, lookup))


def rspamd_tests(m, rsp, odk, nsd):
    use(m, [rsp.spec])
    t = send(m, ["gtube@localhost"], message("gtube", body=b"This is spam:\r\n" + GTUBE + b"\r\n"))
    check("rspamd: GTUBE rejected at the final dot with rspamd's 554 5.7.1 Gtube pattern",
          t.data == (554, "5.7.1 Gtube pattern"), t.data)
    never_delivered("rspamd: GTUBE not delivered", "gtube")
    t = send(m, ["clean@localhost"], message("clean", extra=b"X-Spam: Yes\r\n",
                                             body=b"A perfectly ordinary message.\r\n"))
    msg = delivered(m, "clean")
    check("rspamd: a clean message is accepted (rspamd answers only end of message: NR_* honoured, %.2f s)"
          % t.seconds, code(t.data) == 250, (t.data, t.seconds))
    check("rspamd: delivered with X-Spamd-Result, X-Rspamd-Server, X-Spam-Status: No",
          values(msg, "X-Spamd-Result") and values(msg, "X-Rspamd-Server") and
          values(msg, "X-Spam-Status") and values(msg, "X-Spam-Status")[0].startswith("No"), head_body(msg)[0][-600:])
    check("rspamd: X-Rspamd-Queue-Id is our queue id (the i macro)", values(msg, "X-Rspamd-Queue-Id") == [t.qid],
          (values(msg, "X-Rspamd-Queue-Id"), t.qid))
    check("rspamd: the client's forged X-Spam: Yes is removed (its CHGHEADER with an empty value)",
          not values(msg, "X-Spam"), head_body(msg)[0][-600:])
    # Both real milters in a row: OpenDKIM signs, rspamd adds its headers after; the signature still holds.
    use(m, [odk.spec, rsp.spec])
    t = send(m, ["bothreal@localhost"], message("opendkim then rspamd", frm=b"alice@dkim.example"),
             sender="alice@dkim.example")
    msg = without_return_path(delivered(m, "bothreal"))
    check("OpenDKIM then rspamd: signed, rspamd's headers added, dkimpy verifies",
          code(t.data) == 250 and values(msg, "DKIM-Signature") and values(msg, "X-Spamd-Result") and
          dkim_ok(msg, nsd_txt(nsd)), head_body(msg)[0][-800:])


def own_dkim_tests(m, ms, nsd):
    """Last: dkim_keys makes mta-msgauth restart at every reload."""
    links = smtpd_msgauth_links(m)
    use(m, [ms["ourdkim"]], extra="dkim_keys = %s\n" % m.dkim_table)
    wait_for(lambda: smtpd_msgauth_links(m) > links, 10)
    t = send(m, ["ourdkim@localhost"], message("signed by mta-msgauth after the milter", frm=b"alice@ours.example"),
             sender="alice@ours.example")
    msg = without_return_path(delivered(m, "ourdkim"))
    sigs = values(msg, "DKIM-Signature")
    check("mta-msgauth signs after the milters: our signature covers the milter's new body and verifies (dkimpy)",
          code(t.data) == 250 and sigs and all("d=ours.example" in s for s in sigs) and
          head_body(msg)[1] == b"body replaced before signing\r\n" and
          all(dkim_ok(msg, nsd_txt(nsd), i) for i in range(len(sigs))), (t.data, sigs, msg[:600]))


def tls_setup(m):
    m.sub_port, m.smtps_port = free_port(), free_port()
    m.cert, m.key = os.path.join(m.dir, "cert.pem"), os.path.join(m.dir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", m.key, "-out", m.cert, "-days", "2", "-subj", "/CN=" + HOST,
                    "-addext", "subjectAltName=DNS:%s,IP:127.0.0.1" % HOST], check=True, capture_output=True)
    users = os.path.join(m.dir, "users.txt")
    with open(users, "w") as f:
        f.write("alice:wonderland\n")
    r = subprocess.run([os.path.join(BIN, "mtamap"), "-t", "auth", users], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("mtamap -t auth: " + r.stderr)
    return ("submission_listen = 127.0.0.1:%d\nsmtps_listen = 127.0.0.1:%d\ntls_cert = %s\ntls_key = %s\n"
            "auth_users = %s\nsmtpd_auth_failure_delay = 0\n" % (m.sub_port, m.smtps_port, m.cert, m.key,
                                                                 users.replace(".txt", ".lmdb")))


def zone(origin, lines):
    return "\n".join(["$ORIGIN %s." % origin, "$TTL 1", "@ IN SOA ns hostmaster 1 3600 600 86400 1", "@ IN NS ns",
                      "ns IN A 127.0.0.1"] + lines) + "\n"


def main():
    T0 = time.time()
    dir = os.path.join(TMP_ROOT, "m")
    os.makedirs(dir)
    os.chmod(dir, 0o755)
    with Guard("milter") as g:
        # rspamd first: it takes a second or two to come up, meanwhile everything else starts.
        rsp = Rspamd(os.path.join(TMP_ROOT, "rspamd"), "127.0.0.1", free_port()).start()
        g.cleanups.append(rsp.stop)
        ms = Milters(dir)
        g.cleanups.append(ms.stop)
        odk = OpenDkim(os.path.join(TMP_ROOT, "opendkim"), "dkim.example", "sel1",
                       "unix:" + os.path.join(TMP_ROOT, "opendkim", "odk.sock")).start()
        g.cleanups.append(odk.stop)
        # our own DKIM key (mta-msgauth signs mail From: ours.example after the milters)
        keydir = os.path.join(TMP_ROOT, "ourkey")
        os.makedirs(keydir)
        os.chmod(keydir, 0o755)
        r = subprocess.run([os.path.join(BIN, "mtadkim"), "keygen", "-d", "ours.example", "-s", "m1", "-a", "rsa",
                            "-o", os.path.join(keydir, "m1.key")], capture_output=True, text=True, timeout=60)
        if not check("mtadkim keygen for our own signing key", r.returncode == 0, r.stderr):
            return
        table = os.path.join(keydir, "dkim_keys.txt")
        with open(table, "w") as f:
            f.write("ours.example m1 rsa %s\n" % os.path.join(keydir, "m1.key"))
        r2 = subprocess.run([os.path.join(BIN, "mtamap"), "-t", "dkim", table], capture_output=True, text=True)
        if not check("mtamap -t dkim builds our key table", r2.returncode == 0, r2.stderr):
            return
        nsd = Nsd(TMP_ROOT, {"dkim.example": zone("dkim.example", [odk.zone_line()]),
                             "ours.example": zone("ours.example", [r.stdout.strip()])})
        g.cleanups.append(nsd.stop)
        m = MTA(name="milter", smtpd_processes=1)
        extra = tls_setup(m)
        with open(m.conf, "a") as f:
            # No dkim_keys yet: with keys, every reload restarts mta-msgauth (it reads them as root at start),
            # and this suite reloads some 80 times. own_dkim_tests, last, sets them.
            f.write(extra + "milter_connect_timeout = %ds\nmilter_command_timeout = %ds\n"
                    "milter_content_timeout = %ds\n" % (TIMEOUT, TIMEOUT, TIMEOUT))
        m.dkim_table = table.replace(".txt", ".lmdb")
        g.log = m
        m.start()
        g.cleanups.insert(0, m.stop)
        print("# setup: %.1f s" % (time.time() - T0), flush=True)
        check("nsd serves the key records", wait_for(lambda: "DKIM1" in nsd.query("sel1._domainkey.dkim.example", "TXT"),
                                                     15), nsd.query("sel1._domainkey.dkim.example", "TXT"))
        sections = [
            (macro_tests, ["rec"]),
            (tls_auth_tests, ["rec"]),
            (symlist_tests, ["symlist", "nobody", "rec"]),
            (leadspace_tests, ["leadspace"]),
            (reply_tests, ["connect-reject", "connect-tempfail", "connect-accept", "connect-discard", "helo-reject",
                           "helo-replycode", "mail-reject", "mail-tempfail", "mail-accept", "mail-discard",
                           "rcpt-replycode", "rcpt-discard", "data-reject", "data-tempfail", "unknown-replycode"]),
            (content_reply_tests, ["header-reject", "header-accept", "eoh-tempfail", "body-replycode", "body-skip",
                                   "eom-replycode", "eom-discard", "eom-accept", "eom-progress", "eom-slow"]),
            (quarantine_tests, ["eom-quarantine", "eom-quarantine-long"]),
            (modification_tests, ["addheader", "insheader0", "insheader2", "chgheader", "delheader", "order", "chgfrom",
                                  "chgfrom-args", "addrcpt", "addrcpt-par", "delrcpt", "replbody", "replbody-big"]),
            (two_milter_tests, ["first", "second"]),
            (socket_tests, ["rec-inet", "rec-local", "rec-localhost"]),
            (sendmail_tests, ["rec", "addheader"]),
            (shutdown_tests, ["shutdown", "conn-fail"]),
            (default_action_tests, ["silent", "mute", "closer", "huge", "unknown", "unnegotiated"]),
        ]
        for fn, names_ in sections:
            t0 = time.time()
            with ms.running(*names_):
                t1 = time.time()
                fn(m, ms)
            print("# %s: %.1f s (%.1f s to start its milters)" % (fn.__name__, time.time() - t0, t1 - t0), flush=True)
        t0 = time.time()
        opendkim_tests(m, odk, nsd)
        print("# opendkim_tests: %.1f s" % (time.time() - t0), flush=True)
        t0 = time.time()
        secs = rsp.wait(30)
        check("rspamd (minimal config, proxy worker in milter mode) listening %.1f s after its start" % secs,
              secs < 15)
        rspamd_tests(m, rsp, odk, nsd)
        with ms.running("ourdkim"):
            own_dkim_tests(m, ms, nsd)
        print("# rspamd and own dkim: %.1f s" % (time.time() - t0), flush=True)
        time.sleep(1)
        for name, user in NEVER_DELIVERED:
            check(name, not m.mailbox(user), m.mailbox(user))
        check("mtad still running at the end", m.proc.poll() is None)
        print("# all tests: %.1f s" % (time.time() - T0), flush=True)


def stop_all(procs, grace=0.3):
    """SIGTERM to each test milter's process group at once, SIGKILL to what is left after `grace` s (a
    libmilter process with a connection still open waits on it; the records are flushed line by line)."""
    for p in procs:
        if p.proc and p.proc.poll() is None:
            os.killpg(p.proc.pid, signal.SIGTERM)
    end = time.time() + grace
    for p in procs:
        if not p.proc:
            continue
        try:
            p.proc.wait(max(0.01, end - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(p.proc.pid, signal.SIGKILL)
            p.proc.wait()
        p.out.close()


if __name__ == "__main__":
    main()
    finish()
