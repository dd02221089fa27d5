"""Aliases and virtual alias tables end to end: mtamap/newaliases build them, mta-smtpd expands them at
RCPT (valid even when local_recipients lacks the name; virtual alias domains; forwarding; loops; the
fan-out cap; ORCPT of the original address in the DSN), a replaced table changes the next session,
and sendmail expands with the same code. Outside clients bind 127.0.0.9 (mynetworks is 127.0.0.1/32);
remote mail goes to a scripted relayhost."""
import os
import smtplib
import subprocess

from mtatest import as_user, BIN, check, finish, MTA, wait_for
from queuetest import ScriptedServer, dsns, queue_json, relay_config, status_fields

OUTSIDE = "127.0.0.9"

ALIASES = """# aliases(5) style
postmaster: root
root: alice
team:\talice,
  # a comment line inside the entry
\tBob
fwd: faraway@remote.test
bounceme: nouser-x@remote.test
loopa: loopb
loopb: loopa
big: %s
""" % ", ".join("u%d" % i for i in range(1001))

VIRTUAL = """example.org      virtual alias domain
info@example.org alice@localhost
"""


def decide(rcpt, n):
    if rcpt.startswith("nouser"):
        return "550 5.1.1 <%s>: No such user" % rcpt
    if rcpt.startswith("faraway"):
        return "451 4.2.0 try later"  # stays in the queue, so list --json can show it
    return "250 2.1.5 ok"


def tool(*args, user=None):
    cmd = as_user(user, [os.path.join(BIN, args[0])] + list(args[1:]))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def smtp(m, src=OUTSIDE):
    s = smtplib.SMTP(timeout=30, source_address=(src, 0))
    s.connect("127.0.0.1", m.port)
    s.ehlo("client.test.example")
    return s


def message(subject):
    return ("From: <sender@client.test>\r\nTo: undisclosed-recipients:;\r\nSubject: %s\r\n\r\nHello.\r\n"
            % subject).encode()


def with_subject(m, user, subject):
    return [p for p in m.mailbox(user) if ("\nSubject: %s\n" % subject).encode() in open(p, "rb").read()]


def setup():
    srv = ScriptedServer(decide)
    m = MTA(extra=relay_config(srv), name="aliases", smtpd_processes=1)
    m.aliases = os.path.join(m.dir, "aliases")
    m.virtual = os.path.join(m.dir, "virtual")
    with open(m.aliases, "w") as f:
        f.write(ALIASES)
    with open(m.virtual, "w") as f:
        f.write(VIRTUAL)
    with open(os.path.join(m.dir, "recipients"), "w") as f:
        f.write("alice\nsender\n")
    with open(m.conf, "a") as f:
        f.write("mynetworks = 127.0.0.1/32\nlocal_domains = localhost\nrecipient_limit = 3\n"
                "local_recipients = %s/recipients.lmdb\nalias_map = %s.lmdb\nvirtual_map = %s.lmdb\n"
                % (m.dir, m.aliases, m.virtual))
    r = tool("newaliases", "-c", m.conf)
    check("newaliases: builds alias_map from its source", r.returncode == 0 and
          os.path.exists(m.aliases + ".lmdb") and "8 aliases" in r.stdout, r.stdout + r.stderr)
    check("newaliases: the table is world-readable (sendmail reads it)",
          os.stat(m.aliases + ".lmdb").st_mode & 0o777 == 0o644, oct(os.stat(m.aliases + ".lmdb").st_mode))
    for kind, src in (("virtual", m.virtual), ("recipients", os.path.join(m.dir, "recipients"))):
        r = tool("mtamap", "-t", kind, src)
        if r.returncode != 0:
            raise RuntimeError("mtamap failed: " + r.stderr)
    return srv, m.start()


def build_checks(m):
    bad = os.path.join(m.dir, "bad-aliases")
    with open(bad, "w") as f:
        f.write("ok: alice\nprog: \"|/bin/sh -c x\"\nfile: /tmp/x\nincl: :include:/etc/list\n")
    r = tool("mtamap", "-t", "aliases", bad)
    check("mtamap: |command, /file and :include: refused with file:line",
          r.returncode == 1 and "%s:2:" % bad in r.stderr and "%s:3:" % bad in r.stderr and "%s:4:" % bad in r.stderr
          and not os.path.exists(bad + ".lmdb"), r.stderr)
    conf = os.path.join(m.dir, "noalias.conf")
    with open(conf, "w") as f:
        f.write("spool_dir = %s\n" % m.spool)
    r = tool("newaliases", "-c", conf)
    check("newaliases: clear error without alias_map", r.returncode != 0 and "alias_map is not set" in r.stderr, r.stderr)


def rcpt_tests(m, srv):
    s = smtp(m)
    s.mail("sender@client.test")
    check("alias: accepted from an outside client though local_recipients lacks it", s.rcpt("team@localhost")[0] == 250)
    s.data(message("alias team"))
    s.quit()
    got = wait_for(lambda: with_subject(m, "alice", "alias team") and with_subject(m, "bob", "alias team"), 15)
    check("alias: team -> alice, Bob (tab, continuation line): both Maildirs get it", got, m.log_text()[-1500:])
    data = open(got[0], "rb").read() if got else b""
    check("alias: Received: names the address the client gave", b"for <team@localhost>" in data, data[:300])

    s = smtp(m)
    s.mail("sender@client.test")
    code = s.rcpt("info@example.org")[0]
    check("virtual: info@example.org accepted from a non-mynetworks client", code == 250, code)
    code, text = s.rcpt("nobody@example.org")
    check("virtual: unknown user at a virtual alias domain 550 5.1.1", code == 550 and b"5.1.1" in text, (code, text))
    code, text = s.rcpt("nobody@localhost")
    check("local_recipients: still refuses unknown local users", code == 550 and b"5.1.1" in text, (code, text))
    s.data(message("virtual info"))
    s.quit()
    check("virtual: delivered to alice", wait_for(lambda: with_subject(m, "alice", "virtual info"), 15))

    s = smtp(m, src="127.0.0.1")
    s.mail("sender@localhost")
    code, text = s.rcpt("nobody@example.org")
    check("virtual: 550 5.1.1 even for a relay-permitted client", code == 550 and b"5.1.1" in text, (code, text))
    s.quit()

    s = smtp(m)
    s.mail("sender@client.test")
    code = s.rcpt("fwd@localhost")[0]
    check("alias: forwarding to a remote address accepted from outside", code == 250, code)
    s.data(message("forwarded"))
    s.quit()

    def listed():
        for msg in queue_json(m).get("messages", []):
            for r in msg["recipients"]:
                if r["address"] == "faraway@remote.test":
                    return r
        return None
    r = wait_for(listed, 15)
    check("alias: queued for the remote target (mtaqueue list --json)", r is not None, queue_json(m))
    check("alias: expanded recipient carries ORCPT of the original address",
          r is not None and r["orcpt"] == "rfc822;fwd@localhost", r)

    s = smtp(m)
    s.mail("sender@client.test")
    s.rcpt("loopa@localhost")
    s.data(message("loop"))
    s.quit()
    check("alias: loop a->b->a delivers to a once", wait_for(lambda: with_subject(m, "loopa", "loop"), 15),
          m.log_text()[-1500:])
    check("alias: nothing for b, no looping", not with_subject(m, "loopb", "loop") and
          len(with_subject(m, "loopa", "loop")) == 1)

    s = smtp(m)
    s.mail("sender@client.test")
    code, text = s.rcpt("big@localhost")
    check("alias: fan-out cap gives a clear 451 4.3.0", code == 451 and b"4.3.0" in text and b"too many" in text,
          (code, text))
    codes = [s.rcpt(a)[0] for a in ("team@localhost", "fwd@localhost", "info@example.org", "alice@localhost")]
    check("recipient_limit counts the client's RCPTs, not the expansion", codes == [250, 250, 250, 452], codes)
    s.quit()


def dsn_test(m):
    s = smtp(m)
    s.mail("sender@localhost")  # mynetworks client; the bounce goes to the sender's Maildir
    s.rcpt("bounceme@localhost")
    s.data(message("bounce me"))
    s.quit()
    got = wait_for(lambda: dsns(m, "sender", "Undelivered"), 20)
    fields = status_fields(got[0]) if got else []
    check("dsn: bounce of an expanded recipient names the original as Original-Recipient",
          len(fields) == 1 and fields[0].get("original-recipient") == "rfc822;bounceme@localhost"
          and "nouser-x@remote.test" in fields[0].get("final-recipient", ""),
          fields or [p for p in m.mailbox("sender")])


def replace_test(m):
    with open(m.aliases, "w") as f:
        f.write(ALIASES.replace("team:\talice,\n  # a comment line inside the entry\n\tBob", "team: carol"))
    r = tool("mtamap", "-t", "aliases", m.aliases)
    check("mtamap: rebuilds the alias table in place", r.returncode == 0, r.stderr)
    check("smtpd: notices the replaced table and restarts",
          wait_for(lambda: "event=table_changed" in m.log_text() and m.pids("mta-smtpd"), 30), m.log_text()[-1500:])

    def send_team():
        try:
            s = smtp(m)
            s.mail("sender@client.test")
            s.rcpt("team@localhost")
            s.data(message("after replace"))
            s.quit()
            return True
        except (smtplib.SMTPException, OSError):
            return False
    check("alias: next session after the replacement is accepted", wait_for(send_team, 15))
    check("alias: the new table decides: team -> carol",
          wait_for(lambda: with_subject(m, "carol", "after replace"), 15) and
          not with_subject(m, "alice", "after replace"), m.log_text()[-1500:])


def sendmail_test(m):
    r = subprocess.run(as_user("nobody", [os.path.join(BIN, "sendmail"), "-C", m.conf, "root"]),
                       input="Subject: sendmail root\n\nhi\n", capture_output=True, text=True, timeout=30)
    check("sendmail: exit 0, nothing printed", r.returncode == 0 and r.stderr == "", r.stderr)
    check("sendmail: root -> alice via the alias table", wait_for(lambda: with_subject(m, "alice", "sendmail root"), 15),
          m.log_text()[-1500:])
    check("sendmail: nothing delivered to a root Maildir", not with_subject(m, "root", "sendmail root"))
    os.chmod(m.aliases + ".lmdb", 0o600)  # unreadable for nobody: recipients stay as they are, quietly
    try:
        r = subprocess.run(as_user("nobody", [os.path.join(BIN, "sendmail"), "-C", m.conf, "root"]),
                           input="Subject: unreadable table\n\nhi\n", capture_output=True, text=True, timeout=30)
    finally:
        os.chmod(m.aliases + ".lmdb", 0o644)
    check("sendmail: unreadable alias table: exit 0, nothing printed", r.returncode == 0 and r.stderr == "", r.stderr)
    check("sendmail: unreadable alias table: delivered unexpanded",
          wait_for(lambda: with_subject(m, "root", "unreadable table"), 15), m.log_text()[-1500:])


def aliases_only_test(m):
    """DESIGN §6: an aliases table alone is the list of local users (no local_recipients)."""
    o = MTA(extra="mynetworks = 127.0.0.1/32\nlocal_domains = localhost\nalias_map = %s.lmdb\n" % m.aliases,
            name="aliases-only", smtpd_processes=1).start()
    try:
        s = smtp(o)
        s.mail("sender@client.test")
        check("aliases only: an alias is accepted", s.rcpt("team@localhost")[0] == 250)
        code, text = s.rcpt("stranger@localhost")
        check("aliases only: a local part in no table is refused 550 5.1.1", code == 550 and b"5.1.1" in text,
              (code, text))
        check("aliases only: postmaster is always accepted", s.rcpt("postmaster@localhost")[0] == 250)
        s.quit()
    finally:
        o.stop()


def main():
    srv, m = setup()
    try:
        build_checks(m)
        rcpt_tests(m, srv)
        dsn_test(m)
        sendmail_test(m)
        replace_test(m)
        aliases_only_test(m)
    finally:
        m.stop()
        srv.stop()
    finish()


if __name__ == "__main__":
    main()
