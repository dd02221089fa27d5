"""The small gaps users hit first (issue 10): every program answers --version and --help; a [::]
listener serves IPv4 clients as IPv4. The per-client limit exemptions are in test_limits.py."""
import os
import re
import socket
import subprocess

from mtatest import BIN, MTA, check, finish, wait_for
from test_smtpd import Client, attempt

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
    r = subprocess.run(["ip", "-6", "addr", "show", "lo"], capture_output=True, text=True)
    return "::1/128" in r.stdout


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


def main():
    attempt(versions)
    attempt(dual_stack)
    finish()


if __name__ == "__main__":
    main()
