"""The small gaps users hit first (issue 10): every program answers --version and --help; a [::]
listener serves IPv4 clients as IPv4; a missing Message-ID:/Date: is added to authenticated submission
and sendmail mail, never to relayed mail; MAIL gets 452 4.3.1 when the spool is short of space (a small
tmpfs mounted by the test), and a spool that really fills answers 4xx and recovers by itself. The per-client limit exemptions are in test_limits.py."""
import email
import email.policy
import email.utils
import os
import re
import smtplib
import socket
import subprocess

from mtatest import BIN, MTA, Guard, check, finish, wait_for
from test_smtpd import Client, attempt, client_ctx, tls_instance

ROLES = ("mta-smtpd", "mta-queue", "mta-smtp", "mta-local", "mta-resolver")


def programs():
    return sorted(n for n in os.listdir(BIN) if n != "unit-tests" and os.access(os.path.join(BIN, n), os.X_OK))


def run(name, *args):
    # close_fds (the default): a role daemon run by hand has no fd 3 and must answer before it looks.
    return subprocess.run([os.path.join(BIN, name)] + list(args), capture_output=True, text=True, timeout=20,
                          stdin=subprocess.DEVNULL)


def versions():
    names = programs()
    check("programs: all fourteen are there", len(names) >= 14 and all(r in names for r in ROLES), names)
    seen = set()
    for n in names:
        r = run(n, "--version")
        lines = r.stdout.splitlines()
        ok = r.returncode == 0 and len(lines) == 1 and re.fullmatch(re.escape(n) + r" [A-Za-z0-9._+~-]+", lines[0])
        check("%s --version: one line NAME VERSION, exit 0" % n, ok and not r.stderr, (r.returncode, r.stdout, r.stderr))
        if lines:
            seen.add(lines[0].split(" ", 1)[-1])
        r = run(n, "--help")
        check("%s --help: usage on stdout, exit 0" % n, r.returncode == 0 and r.stdout.startswith("usage: ") and
              n in r.stdout.splitlines()[0] and not r.stderr, (r.returncode, r.stdout, r.stderr))
        r = run(n, "--no-such-option")
        want = 64 if n == "sendmail" else 2  # sendmail keeps sysexits' EX_USAGE
        check("%s --no-such-option: usage on stderr, exit %d" % (n, want),
              r.returncode == want and "usage: " in r.stderr and not r.stdout, (r.returncode, r.stdout, r.stderr))
    check("programs: one version for all", len(seen) == 1, seen)
    # The long options must not reach sendmail's own parser, wherever they stand among its options.
    r = run("sendmail", "-t", "-i", "--version")
    check("sendmail -t -i --version", r.returncode == 0 and r.stdout.startswith("sendmail "), (r.stdout, r.stderr))


def has_ipv6_loopback():
    # A bind, not `ip addr`: iproute2 is not on every minimal system, and this is what the test needs.
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def dual_stack():
    if not has_ipv6_loopback():
        check("dual stack: skipped, lo has no ::1", True)
        return
    m = MTA(name="gaps-v6", extra="mynetworks = 127.0.0.1/32\n", smtpd_processes=1)
    with open(m.conf, "a") as f:  # the later smtp_listen wins (with a warning)
        f.write("smtp_listen = [::]:%d\n" % m.port)
    m.start()
    try:
        check("dual stack: [::] listener logged as dual-stack",
              re.search(r"event=listening kind=smtp addr=\[::\]:%d dual_stack=yes" % m.port, m.log_text()),
              m.log_text()[-1500:])
        c = Client(m.port, "127.0.0.1")
        r = c.last()
        check("dual stack: IPv4 client 127.0.0.1 gets 220", r.startswith("220"), r)
        c.cmd("EHLO v4.test.example")
        c.cmd("MAIL FROM:<a@v4.test.example>")
        r = c.cmd("RCPT TO:<someone@remote.example>")
        check("dual stack: 127.0.0.1 matches mynetworks 127.0.0.1/32 (may relay)", r.startswith("250"), r)
        c.cmd("RSET")
        c.cmd("MAIL FROM:<a@v4.test.example>")
        c.cmd("RCPT TO:<v4user@localhost>")
        c.cmd("DATA")
        c.send("Subject: over v4\r\n\r\nhello\r\n.\r\n")
        r = c.last()
        c.cmd("QUIT")
        check("dual stack: IPv4 client's mail queued", r.startswith("250"), r)
        check("dual stack: logged as client=127.0.0.1, never ::ffff:",
              "event=connect client=127.0.0.1 " in m.log_text() and "::ffff:" not in m.log_text(), m.log_text()[-2000:])
        got = wait_for(lambda: m.mailbox("v4user"), 15)
        data = open(got[0], "rb").read() if got else b""
        check("dual stack: Received: shows [127.0.0.1]", b"from v4.test.example ([127.0.0.1])" in data, data[:400])
        s = socket.create_connection(("::1", m.port), timeout=10)
        f = s.makefile("rb")
        greeting = f.readline()
        s.sendall(b"EHLO v6.test.example\r\n")
        while not f.readline()[3:4] == b" ":
            pass
        s.sendall(b"MAIL FROM:<a@v6.test.example>\r\nRCPT TO:<someone@remote.example>\r\nQUIT\r\n")
        replies = [f.readline() for _ in range(2)]
        s.close()
        check("dual stack: IPv6 client ::1 gets 220", greeting.startswith(b"220"), greeting)
        check("dual stack: ::1 is not in mynetworks 127.0.0.1/32 (relay refused)", replies[1].startswith(b"554"), replies)
        check("dual stack: ::1 logged as client=::1", "event=connect client=::1 " in m.log_text(), m.log_text()[-1500:])
    finally:
        m.stop()
    # [::] beside an IPv4 entry on the same port stays IPv6-only, so both bind and both serve.
    m = MTA(name="gaps-v6both", smtpd_processes=1)
    with open(m.conf, "a") as f:
        f.write("smtp_listen = [::]:%d 127.0.0.1:%d\n" % (m.port, m.port))
    m.start()
    try:
        log = m.log_text()
        check("dual stack: [::] and 127.0.0.1 on one port both listen, [::] IPv6-only",
              "addr=[::]:%d\n" % m.port in log and "addr=127.0.0.1:%d" % m.port in log and "dual_stack" not in log,
              log[-1500:])
        s = socket.create_connection(("::1", m.port), timeout=10)
        r = s.recv(512)
        s.close()
        check("dual stack: ... and ::1 still gets 220", r.startswith(b"220"), r)
    finally:
        m.stop()


def parse(path):
    return email.message_from_bytes(open(path, "rb").read(), policy=email.policy.compat32)


def delivered(m, user, subject, timeout=20):
    def find():
        for p in m.mailbox(user):
            msg = parse(p)
            if msg["Subject"] == subject:
                return msg
        return None
    return wait_for(find, timeout)


MSGID = re.compile(r"<(\d{14})\.([0-9A-F]{16})@mx\.test\.example>")


def added_ok(msg, qid):
    """Exactly one Message-ID (ours, naming the queue id) and one Date with a numeric zone."""
    ids, dates = msg.get_all("Message-ID") or [], msg.get_all("Date") or []
    if len(ids) != 1 or len(dates) != 1:
        return False
    mm = MSGID.fullmatch(ids[0].strip())
    d = email.utils.parsedate_to_datetime(dates[0])
    return bool(mm) and mm.group(2) == qid and d.tzinfo is not None and re.search(r" [+-]\d{4}$", dates[0])


def submit(m, body, port_kind="sub"):
    if port_kind == "sub":
        s = smtplib.SMTP("127.0.0.1", m.sub_port, timeout=30)
        s.starttls(context=client_ctx(m))
    else:
        s = smtplib.SMTP_SSL("127.0.0.1", m.smtps_port, timeout=30, context=client_ctx(m))
    s.ehlo("client.test.example")
    s.login("alice", "wonderland")
    s.mail("alice@b.example")
    s.rcpt("alice@localhost")
    code, text = s.data(body)
    s.quit()
    qid = re.search(rb"queued as ([0-9A-F]{16})", text)
    return code, qid.group(1).decode() if qid else ""


def headers():
    m = tls_instance()
    try:
        code, qid = submit(m, b"Subject: sub-none\r\nFrom: alice@b.example\r\n\r\nno headers of ours\r\n")
        msg = delivered(m, "alice", "sub-none")
        check("headers: submission without Message-ID/Date gets both (ours, numeric zone)",
              code == 250 and msg is not None and added_ok(msg, qid), msg and msg.items())
        check("headers: ... added to the header section, the body untouched",
              msg is not None and msg.get_payload() == "no headers of ours\n", msg and msg.get_payload())
        code, qid = submit(m, b"Subject: smtps-none\r\n\r\nx\r\n", "smtps")
        msg = delivered(m, "alice", "smtps-none")
        check("headers: smtps (implicit TLS + AUTH) gets both", msg is not None and added_ok(msg, qid), msg and msg.items())
        mine = b"Subject: sub-both\r\nmessage-id: <mine@client.example>\r\nDATE: Fri, 27 Nov 2026 10:00:00 +0100\r\n\r\nx\r\n"
        submit(m, mine)
        msg = delivered(m, "alice", "sub-both")
        check("headers: submission with both keeps exactly its own",
              msg is not None and msg.get_all("Message-ID") == ["<mine@client.example>"] and
              msg.get_all("Date") == ["Fri, 27 Nov 2026 10:00:00 +0100"], msg and msg.items())
        body = b"Subject: sub-body\r\n\r\nMessage-ID: <in@body>\r\nDate: in the body\r\n"
        code, qid = submit(m, body)
        msg = delivered(m, "alice", "sub-body")
        check("headers: a Message-ID/Date in the body does not count",
              msg is not None and added_ok(msg, qid) and "Message-ID: <in@body>" in msg.get_payload(), msg and msg.items())
        for src, name in (("127.0.0.1", "mynetworks"), ("127.0.0.9", "outside")):
            c = Client(m.port, src)
            c.last()
            c.cmd("EHLO relay.test.example")
            c.cmd("MAIL FROM:<a@relay.test.example>")
            c.cmd("RCPT TO:<alice@localhost>")
            c.cmd("DATA")
            c.send("Subject: relay-%s\r\n\r\nx\r\n.\r\n" % name)
            r = c.last()
            c.cmd("QUIT")
            msg = delivered(m, "alice", "relay-" + name)
            check("headers: port 25 mail from %s gets neither" % name,
                  r.startswith("250") and msg is not None and msg["Message-ID"] is None and msg["Date"] is None,
                  (r, msg and msg.items()))
        wait_for(lambda: os.path.isdir(os.path.join(m.spool, "queue", "maildrop")), 20)
        r = subprocess.run([os.path.join(BIN, "sendmail"), "-C", m.conf, "alice@localhost"],
                           input=b"Subject: sendmail-none\n\nfrom a script\n", capture_output=True, timeout=30)
        msg = delivered(m, "alice", "sendmail-none")
        picked = re.findall(r"event=maildrop_picked qid=([0-9A-F]{16})", m.log_text())
        check("headers: sendmail mail without them gets both (the queue id of its pickup)",
              r.returncode == 0 and msg is not None and picked and added_ok(msg, picked[-1]),
              (r.stderr, msg and msg.items(), picked))
        r = subprocess.run([os.path.join(BIN, "sendmail"), "-C", m.conf, "alice@localhost"],
                           input=b"Subject: sendmail-both\nMessage-Id: <s@x>\nDate: Fri, 27 Nov 2026 10:00:00 +0000\n\nx\n",
                           capture_output=True, timeout=30)
        msg = delivered(m, "alice", "sendmail-both")
        check("headers: sendmail mail with both keeps exactly its own",
              msg is not None and msg.get_all("Message-ID") == ["<s@x>"] and len(msg.get_all("Date")) == 1,
              msg and msg.items())
    finally:
        m.stop()


def mail_reply(m, params=""):
    c = Client(m.port, "127.0.0.1")
    c.last()
    c.cmd("EHLO space.test.example")
    r = c.cmd("MAIL FROM:<a@b.example>%s" % params)
    c.cmd("QUIT")
    c.close()
    return r


def free_space():
    with Guard("free space") as g:
        m = MTA(name="gaps-space", extra="message_size_limit = 1m\n", smtpd_processes=1)
        os.makedirs(m.spool)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", m.spool],
                           capture_output=True, text=True)
        if not check("space: a 4 MiB tmpfs for the spool", r.returncode == 0, r.stderr):
            return
        g.cleanups.append(lambda: subprocess.run(["umount", m.spool], check=True))
        g.cleanups.insert(0, m.stop)
        g.log = m
        m.start()
        st = os.statvfs(m.spool)
        free = st.f_bavail * st.f_frsize
        m.reconfigure("queue_minfree = %d\n" % (free + 1024 * 1024))
        r = wait_for(lambda: (lambda x: x if x.startswith("452") else None)(mail_reply(m)), 15)
        check("space: less free than queue_minfree -> MAIL 452 4.3.1 Insufficient system storage",
              r and r.startswith("452 4.3.1") and "Insufficient system storage" in r, r)
        check("space: the refusal is logged", "reason=\"insufficient spool space\"" in m.log_text(), m.log_text()[-1500:])
        m.reconfigure("queue_minfree = %d\n" % (free - 512 * 1024))
        r = wait_for(lambda: (lambda x: x if x.startswith("250") else None)(mail_reply(m)), 15)
        check("space: queue_minfree lowered -> MAIL 250", r and r.startswith("250"), r)
        r = mail_reply(m, " SIZE=1000000")
        check("space: declared SIZE more than free minus queue_minfree -> 452 4.3.1", r.startswith("452 4.3.1"), r)
        r = mail_reply(m, " SIZE=1000")
        check("space: a small SIZE still fits -> 250", r.startswith("250"), r)
        c = Client(m.port, "127.0.0.1")
        c.last()
        c.cmd("EHLO space.test.example")
        c.send("MAIL FROM:<a@b.example> SIZE=100\r\nRCPT TO:<space@localhost>\r\nDATA\r\n")
        replies = [c.last() for _ in range(3)]
        c.send("Subject: on tmpfs\r\n\r\nx\r\n.\r\n")
        r = c.last()
        c.cmd("QUIT")
        check("space: mail is still queued and delivered from the small spool",
              replies[2].startswith("354") and r.startswith("250") and wait_for(lambda: m.mailbox("space"), 15),
              (replies, r))
        disk_full(m)


def send_text(m, rcpt, subject, size, after_354=None):
    """The reply to the final dot of one message of about `size` bytes (or the replies that ended it);
    after_354() runs between the 354 and the body."""
    c = Client(m.port, "127.0.0.1")
    c.last()
    c.cmd("EHLO full.test.example")
    c.send("MAIL FROM:<full@b.example>\r\nRCPT TO:<%s>\r\nDATA\r\n" % rcpt)
    replies = [c.last() for _ in range(3)]
    if not replies[2].startswith("354"):
        return " ".join(replies)
    if after_354:
        after_354()
    c.send("Subject: %s\r\n\r\n%s\r\n.\r\n" % (subject, ("x" * 76 + "\r\n") * (size // 78)))
    r = c.last()
    c.cmd("QUIT")
    c.close()
    return r


def fill(path):
    """Writes zeros to `path` until its file system is full."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def disk_full(m):
    """The spool's file system fills up while a message is on its way (MAIL found room, something else
    took it before the body came): the message gets 4xx at its final dot, never 250; once space returns,
    mail flows again by itself, with the same processes."""
    pids = (m.pids("mta-queue"), m.pids("mta-smtpd"))
    filler = os.path.join(m.spool, "filler")
    since = len(m.log_text())
    r = send_text(m, "full@localhost", "on a full disk", 300 * 1024, lambda: fill(filler))
    check("full: a message whose body meets a full spool gets 451/452 at its final dot, not 250",
          r[:3] in ("451", "452"), r)
    check("full: the refusal is logged", "No space left on device" in m.log_text()[since:], m.log_text()[since:][-1500:])
    os.unlink(filler)
    r = wait_for(lambda: (lambda x: x if x.startswith("250") else None)(send_text(m, "full@localhost", "after space returned",
                                                                                    300 * 1024)), 20)
    check("full: once space returns the next message gets 250, with no restart", bool(r), r)
    check("full: ... and is delivered", wait_for(lambda: any(b"after space returned" in open(p, "rb").read()
                                                             for p in m.mailbox("full")), 15), m.mailbox("full"))
    check("full: the refused message was not delivered", not any(b"on a full disk" in open(p, "rb").read()
                                                                 for p in m.mailbox("full")), "")
    check("full: mta-queue and mta-smtpd are the same processes", (m.pids("mta-queue"), m.pids("mta-smtpd")) == pids,
          (pids, m.pids("mta-queue"), m.pids("mta-smtpd")))


def main():
    attempt(versions)
    attempt(dual_stack)
    attempt(headers)
    free_space()
    finish()


if __name__ == "__main__":
    main()
