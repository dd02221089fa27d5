"""sendmail(1) command-line compatibility through the real binary and daemons, as scripts, cron, PHP
mail(), git send-email and MUAs call it with Sendmail/Postfix options: -bp/mailq, -q, -bi/newaliases,
refused modes (-bs -bv -bd -qR -X), -t with command-line recipients and Resent- headers, comma lists,
-f ''/'<>'/-r, DSN options -N/-R/-V (seen on the wire by a relayhost that offers DSN, and in reports),
ignored options, odd input (no final newline, lone dot, CRLF, 8-bit, long header, empty, NUL, closed
stdin) and sysexits codes with a stderr line. Ordinary users may not flush or see others' mail."""
import os
import subprocess
import tempfile
import time

from mtatest import as_user, BIN, check, delivery_events, finish, MTA, wait_for
from queuetest import ScriptedServer, relay_config

SM = os.path.abspath(os.path.join(BIN, "sendmail"))
ROOT_OK = os.geteuid() == 0


def decide(rcpt, n):
    if rcpt.startswith("stay"):
        return "451 4.2.0 come back later"
    if rcpt.startswith("gone"):
        return "550 5.1.1 <%s>: No such user" % rcpt
    return "250 2.1.5 ok"


def sm(m, *args, input="Subject: t\n\nbody\n", user=None, argv0=None, conf=None, **kw):
    cmd = [argv0 or SM] + (["-C", conf or m.conf] if conf is not False else []) + list(args)
    cmd = as_user(user, cmd)
    data = input.encode("latin-1") if isinstance(input, str) else input
    r = subprocess.run(cmd, input=data, capture_output=True, timeout=30, **kw)
    r.stdout, r.stderr = r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
    return r


def body_of(m, user, needle, timeout=15):
    """The first delivered message for user that contains needle (bytes), or b""."""
    def find():
        for p in m.mailbox(user):
            d = open(p, "rb").read()
            if needle in d:
                return d
        return None
    return wait_for(find, timeout) or b""


def drop_files(m):
    d = os.path.join(m.spool, "queue", "maildrop")
    return sorted(n for n in os.listdir(d) if n != "bad")


def modes(m, srv, tmp):
    # A message that stays deferred: root's and (below) nobody's.
    r = sm(m, "-f", "root@localhost", "stayroot@remote.test")
    check("root's mail is tried and deferred", r.returncode == 0 and
          wait_for(lambda: delivery_events(m, "stayroot@remote.test"), 15), r.stderr + m.log_text()[-2000:])
    r = sm(m, "-bp")
    check("-bp: root sees the queue", r.returncode == 0 and "stayroot@remote.test" in r.stdout, r.stdout + r.stderr)
    link = os.path.join(tmp, "mailq")
    os.symlink(SM, link)
    r2 = sm(m, argv0=link)
    check("invoked as mailq: the same listing", r2.returncode == 0 and "stayroot@remote.test" in r2.stdout, r2.stderr)
    r = sm(m, "-q")
    check("-q: root flushes the queue", r.returncode == 0 and r.stdout.startswith("ok: flush"), r.stdout + r.stderr)
    for args, what in ((["-qRexample.com"], "-qR"), (["-qSfoo"], "-qS"), (["-bs"], "-bs"), (["-bv", "x@localhost"], "-bv"),
                       (["-bd", "-q1h"], "-bd"), (["-X", "/tmp/smlog", "x@localhost"], "-X"), (["-bt"], "-bt")):
        r = sm(m, *args)
        check("refused: %s is EX_USAGE with a reason" % what, r.returncode == 64 and what in r.stderr,
              "%d %s" % (r.returncode, r.stderr))
    if ROOT_OK:
        r = sm(m, "-f", "nobody@localhost", "staynobody@remote.test", user="nobody")
        wait_for(lambda: "to=<staynobody@remote.test>" in m.log_text(), 15)
        r = sm(m, "-bp", user="nobody")
        check("-bp as nobody: own mail only", r.returncode == 0 and "staynobody@remote.test" in r.stdout and
              "stayroot" not in r.stdout, r.stdout + r.stderr)
        r = sm(m, "-q", user="nobody")
        check("-q as nobody: EX_NOPERM, permission denied", r.returncode == 77 and "permission denied" in r.stderr,
              "%d %s" % (r.returncode, r.stderr))
    # newaliases: -bi, -I and the argv[0] name build the alias table from the source file.
    src = os.path.join(tmp, "aliases")
    with open(src, "w") as f:
        f.write("postmaster: root\n")
    conf2 = os.path.join(tmp, "alias.conf")
    with open(conf2, "w") as f:
        f.write(open(m.conf).read() + "alias_map = %s.lmdb\n" % src)
    r = sm(m, "-bi", conf=conf2, input="")
    check("-bi runs newaliases", r.returncode == 0 and "1 aliases" in r.stdout and os.path.exists(src + ".lmdb"),
          r.stdout + r.stderr)
    link = os.path.join(tmp, "newaliases")
    os.symlink(SM, link)
    r = sm(m, argv0=link, conf=conf2, input="")
    check("invoked as newaliases: builds the table", r.returncode == 0 and "1 aliases" in r.stdout, r.stdout + r.stderr)


def recipients(m):
    r = sm(m, "-t", "extra@localhost", input="To: tto@localhost\nSubject: t-merge\n\nx\n")
    check("-t adds header recipients to command-line ones", r.returncode == 0 and body_of(m, "tto", b"t-merge")
          and body_of(m, "extra", b"t-merge"), r.stderr)
    r = sm(m, "-t", input="To: rold@localhost\nResent-From: a@localhost\nResent-To: rnew@localhost\n"
                         "Resent-Bcc: rbcc@localhost\nSubject: resent\n\nx\n")
    got = body_of(m, "rnew", b"resent")
    check("-t with Resent- headers: Resent-To/Bcc recipients, Resent-Bcc removed",
          r.returncode == 0 and got and b"Resent-Bcc" not in got and body_of(m, "rbcc", b"resent"), got[:400])
    check("-t with Resent- headers: plain To not used", not m.mailbox("rold"), m.mailbox("rold"))
    r = sm(m, "ca@localhost, Cee Bee <cb@localhost>", input="Subject: commas\n\nx\n")
    check("comma list in one argument", r.returncode == 0 and body_of(m, "ca", b"commas") and body_of(m, "cb", b"commas"),
          r.stderr)
    r = sm(m, "dup@localhost", "DUP@localhost", "-t", input="To: dup@localhost\nSubject: dup\n\nx\n")
    got = body_of(m, "dup", b"dup")
    time.sleep(1)  # room for a second copy to show up
    check("duplicates delivered once", r.returncode == 0 and got and len(m.mailbox("dup")) == 1, m.mailbox("dup"))
    r = sm(m, "--", "dd@localhost", input="Subject: dashdash\n\nx\n")
    check("-- ends options", r.returncode == 0 and body_of(m, "dd", b"dashdash"), r.stderr)


def senders(m):
    for arg, user in (("", "nulla"), ("<>", "nullb")):
        r = sm(m, "-f", arg, user + "@localhost", input="Subject: null %s\n\nx\n" % user)
        got = body_of(m, user, b"Subject: null")
        check("-f %r: null sender" % arg, r.returncode == 0 and b"Return-Path: <>" in got, got[:300])
    r = sm(m, "-r", "rsender@localhost", "-F", "R Sender", "rr@localhost", input="Subject: -r\n\nx\n")
    got = body_of(m, "rr", b"Subject: -r")
    check("-r is -f; -F names the added From", b"Return-Path: <rsender@localhost>" in got and
          b'From: "R Sender" <rsender@localhost>' in got, got[:400])
    r = sm(m, "-f", "bad sender@x", "u@localhost")
    check("bad -f is EX_USAGE", r.returncode == 64 and "bad sender" in r.stderr, r.stderr)
    r = sm(m, "-v", "-oQ/tmp", "-om", "-oem", "-B8BITMIME", "-em", "-U", "-L", "lbl", "ign@localhost",
           input="Subject: ignored opts\n\nx\n")
    check("ignored options: delivered", r.returncode == 0 and body_of(m, "ign", b"ignored opts"), r.stderr)
    conf = os.path.join(os.path.dirname(m.conf), "other.conf")
    with open(conf, "w") as f:
        f.write(open(m.conf).read().replace("hostname = mx.test.example", "hostname = other.test.example"))
    r = sm(m, "altc@localhost", conf=conf, input="Subject: alt conf\n\nx\n")
    got = body_of(m, "altc", b"alt conf")
    check("-C alternate config (default sender uses its hostname)", b"@other.test.example>" in got, got[:300])


def inputs(m):
    cases = [("nonl", "Subject: no newline\n\nlast line", b"last line\n"),
             ("dotend", "Subject: dot ends\n\nbefore\n.\nafter\n", b"before\n"),
             ("crlf", "Subject: crlf\r\n\r\nline1\r\nline2\r\n", b"line1\nline2\n"),
             ("eight", "Subject: 8bit\n\nh\xe9llo \xc3\xa9\n", b"h\xe9llo \xc3\xa9\n"),
             ("longh", "Subject: long\nX-Long: " + "a" * 5000 + "\n\nx\n", b"X-Long: " + b"a" * 5000)]
    for user, text, want in cases:
        r = sm(m, user + "@localhost", input=text)
        got = body_of(m, user, want)
        check("input %s: exit 0, delivered intact" % user, r.returncode == 0 and got and b"\r" not in got, r.stderr)
    got = body_of(m, "dotend", b"before")
    check("a lone dot without -i ends input", b"after" not in got, got)
    r = sm(m, "empty@localhost", input="")
    got = body_of(m, "empty", b"Message-ID:")
    check("empty message: From/Date/Message-ID added", r.returncode == 0 and b"From: <root@mx.test.example>" in got
          and b"Date: " in got if ROOT_OK else r.returncode == 0, got[:300])
    picked = m.log_text().count("event=maildrop_picked")
    r = sm(m, "nul@localhost", input=b"Subject: nul\n\na\0b\n")
    check("NUL in the message: EX_DATAERR", r.returncode == 65 and "NUL" in r.stderr, "%d %s" % (r.returncode, r.stderr))
    r = sm(m, "big@localhost", input="Subject: big\n\n" + "x" * 200000 + "\n")
    check("over message_size_limit: EX_DATAERR", r.returncode == 65 and "message_size_limit" in r.stderr, r.stderr)
    r = sm(m, "bad address@localhost")
    check("bad recipient: EX_DATAERR", r.returncode == 65 and "bad recipient" in r.stderr, r.stderr)
    r = subprocess.run([SM, "-C", m.conf, "closed@localhost"], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=30, preexec_fn=lambda: os.close(0))
    check("closed stdin: EX_NOINPUT with a reason", r.returncode == 66 and b"standard input is closed" in r.stderr,
          "%d %r" % (r.returncode, r.stderr))
    r = sm(m, "-t", input="Subject: none\n\nx\n")
    check("-t with no recipients anywhere: EX_USAGE", r.returncode == 64 and "no recipients" in r.stderr, r.stderr)
    conf = os.path.join(os.path.dirname(m.conf), "nospool.conf")
    with open(conf, "w") as f:
        f.write(open(m.conf).read().replace("spool_dir = ", "spool_dir = /nonexistent"))
    r = sm(m, "u@localhost", conf=conf)
    check("no maildrop directory: EX_UNAVAILABLE", r.returncode == 69 and "cannot create" in r.stderr, r.stderr)
    time.sleep(1.5)  # the queue picks files up within a second
    check("refused runs queued nothing", m.log_text().count("event=maildrop_picked") == picked and not drop_files(m),
          drop_files(m))


def dsn(m, srv):
    r = sm(m, "-f", "dsnfrom@localhost", "-N", "success,failure", "-R", "hdrs", "-V", "env-42", "okdsn@remote.test",
           input="Subject: dsn wire\n\nsecret body text\n")
    sent = wait_for(lambda: [c for c in srv.commands if "okdsn@remote.test" in c], 15)
    mail = [c for c in srv.commands if c.upper().startswith("MAIL") and "dsnfrom@localhost" in c]
    check("-N on the wire as RCPT NOTIFY=SUCCESS,FAILURE", r.returncode == 0 and sent and
          "NOTIFY=SUCCESS,FAILURE" in sent[0].upper(), srv.commands[-4:])
    check("-R/-V on the wire as RET=HDRS ENVID=env-42", mail and "RET=HDRS" in mail[0].upper() and
          "ENVID=env-42" in mail[0], mail)
    r = sm(m, "-f", "dsnfail@localhost", "-R", "hdrs", "-V", "env-43", "gone1@remote.test",
           input="Subject: will bounce\n\nsecret body text\n")
    got = body_of(m, "dsnfail", b"Original-Envelope-Id", 20)
    check("bounce carries -V envid, -R hdrs leaves the body out", got and b"env-43" in got and
          b"secret body text" not in got, got[:600])
    r = sm(m, "-f", "dsnnever@localhost", "-N", "never", "gone2@remote.test", input="Subject: never\n\nx\n")
    bounced = wait_for(lambda: any(e[0] == "bounced" for e in delivery_events(m, "gone2@remote.test")), 20)
    sm(m, "-f", "dsnnever@localhost", "gone3@remote.test", input="Subject: default notify\n\nx\n")
    wait_for(lambda: m.mailbox("dsnnever"), 20)
    msgs = [open(p, "rb").read() for p in m.mailbox("dsnnever")]
    check("-N never: no bounce (the default one did come)", bounced and len(msgs) == 1 and b"gone3" in msgs[0],
          [x[:200] for x in msgs])
    r = sm(m, "-N", "never,success", "x@localhost")
    check("bad -N is EX_USAGE", r.returncode == 64 and "-N" in r.stderr, r.stderr)


def down(m):
    m.stop()
    r = sm(m, "-bp")
    check("-bp with the daemon down: EX_UNAVAILABLE", r.returncode == 69 and "down" in r.stderr, r.stderr)
    r = sm(m, "-q")
    check("-q with the daemon down: EX_UNAVAILABLE", r.returncode == 69 and "down" in r.stderr, r.stderr)


def main():
    srv = ScriptedServer(decide)
    srv.extensions = ["DSN"]
    m = MTA(extra=relay_config(srv) + "message_size_limit = 100000\n", name="sendmail").start()
    # start() waits for the SMTP greeting; the maildrop directory is made by mta-queue, which may
    # come up a moment later (slower under ASan). sendmail before then fails with EX_TEMPFAIL.
    wait_for(lambda: os.path.isdir(os.path.join(m.spool, "queue", "maildrop")), 20)
    tmp = tempfile.mkdtemp(prefix="smcompat-")
    os.chmod(tmp, 0o755)
    try:
        modes(m, srv, tmp)
        recipients(m)
        senders(m)
        inputs(m)
        dsn(m, srv)
        down(m)
    finally:
        m.stop()
        srv.stop()
    finish()


if __name__ == "__main__":
    main()
