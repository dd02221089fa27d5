"""End to end through the real process chain: smtpd -> queue -> local Maildir, config errors,
privilege separation, concurrency, a queue killed mid-stream, and a clean stop."""
import concurrent.futures
import os
import re
import signal
import smtplib
import socket
import subprocess
import threading
import time

from mtatest import BIN, MTA, check, finish, free_port, wait_for

MESSAGE = ("From: Alice <alice@example.org>\r\nTo: bob@localhost\r\nSubject: skeleton %s\r\n"
           "Message-ID: <%s@test>\r\n\r\nHello Bob.\r\n.leading dot line\r\n\r\nBye.\r\n")


def send(port, rcpts, tag, sender="alice@example.org"):
    body = MESSAGE % (tag, tag)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.test.example")
        code, resp = s.docmd("MAIL FROM:<%s>" % sender)
        assert code == 250, (code, resp)
        for r in rcpts:
            code, resp = s.docmd("RCPT TO:<%s>" % r)
            assert code == 250, (code, resp)
        code, resp = s.data(body.encode())
        return code, resp.decode()


def config_errors():
    d = MTA(name="conf")
    with open(d.conf, "a") as f:
        f.write("message_size_limit = lots\n")
    lines = open(d.conf).read().count("\n")
    r = subprocess.run([os.path.join(BIN, "mtad"), "-c", d.conf, "-n"], capture_output=True, text=True)
    check("config: malformed value refused by -n", r.returncode != 0, r.stdout + r.stderr)
    check("config: error names file, line and key",
          ("%s:%d: message_size_limit:" % (d.conf, lines)) in r.stderr, r.stderr)
    r = subprocess.run([os.path.join(BIN, "mtad"), "-c", d.conf, "-d"], capture_output=True, text=True, timeout=10)
    check("config: mtad refuses to start", r.returncode != 0 and "message_size_limit" in r.stderr, r.stderr)
    with open(d.conf, "a") as f:
        f.write("no_such_key = 1\n")
    r = subprocess.run([os.path.join(BIN, "mtad"), "-c", d.conf, "-n"], capture_output=True, text=True)
    check("config: unknown key refused", r.returncode != 0 and "no_such_key" in r.stderr, r.stderr)
    r = subprocess.run([os.path.join(BIN, "mtad"), "-c", "/nonexistent/mta.conf", "-n"], capture_output=True, text=True)
    check("config: missing explicit file refused", r.returncode != 0, r.stderr)


def listener_checks():
    """Listener settings that cannot work: smtps without a certificate refuses to start, submission
    without one (or without auth_users) only warns; an LMTP next hop must be an IP address."""
    d = MTA(name="listen")
    base = open(d.conf).read()
    mtad = os.path.join(BIN, "mtad")
    with open(d.conf, "a") as f:
        f.write("smtps_listen = 127.0.0.1:%d\n" % free_port())
    r = subprocess.run([mtad, "-c", d.conf, "-n"], capture_output=True, text=True)
    check("listen: smtps without tls_cert refused by -n",
          r.returncode != 0 and "smtps_listen" in r.stderr and "tls_cert" in r.stderr, r.stdout + r.stderr)
    r = subprocess.run([mtad, "-c", d.conf, "-d"], capture_output=True, text=True, timeout=10)
    check("listen: smtps without tls_cert refuses to start",
          r.returncode != 0 and "smtps_listen" in r.stderr, r.stderr)
    with open(d.conf, "w") as f:
        f.write(base + "submission_listen = 127.0.0.1:%d\n" % free_port())
    r = subprocess.run([mtad, "-c", d.conf, "-n"], capture_output=True, text=True)
    check("listen: submission without tls_cert/auth_users is valid with warnings",
          r.returncode == 0 and "warning" in r.stderr and "tls_cert" in r.stderr and "auth_users" in r.stderr,
          r.stdout + r.stderr)
    with open(d.conf, "w") as f:
        f.write(base + "local_transport = lmtp:[mail.example]:24\n")
    r = subprocess.run([mtad, "-c", d.conf, "-n"], capture_output=True, text=True)
    line = (base + "x\n").count("\n")
    check("listen: lmtp host name refused with file:line",
          r.returncode != 0 and ("%s:%d: local_transport:" % (d.conf, line)) in r.stderr, r.stderr)


def reload_listeners(m):
    """A reload that changes a listener says a restart is needed; one adding smtps without a
    certificate is refused and the running configuration stays."""
    base = open(m.conf).read()
    with open(m.conf, "a") as f:
        f.write("submission_listen = 127.0.0.1:%d\n" % free_port())
    r = m.ctl("reload")
    check("reload: listener change applied with restart warning",
          r.returncode == 0 and wait_for(lambda: "event=reload_partial" in m.log_text() and
                                         "event=config_warning" in m.log_text(), 5), r.stdout + r.stderr)
    with open(m.conf, "a") as f:
        f.write("smtps_listen = 127.0.0.1:%d\n" % free_port())
    r = m.ctl("reload")
    out = r.stdout + r.stderr
    check("reload: smtps without tls_cert refused", "refused" in out and "smtps_listen" in out, out)
    with open(m.conf, "w") as f:
        f.write(base)
    r = m.ctl("reload")
    code, resp = send(m.port, ["reloadcheck@localhost"], "after-reload")
    check("reload: still accepting mail", r.returncode == 0 and code == 250, "%s %s %s" % (out, code, resp))


def basic(m):
    code, resp = send(m.port, ["alice@localhost"], "basic")
    check("basic: 250 queued as ID", code == 250 and re.search(r"queued as [0-9A-F]{16}", resp), "%s %s" % (code, resp))
    files = wait_for(lambda: m.mailbox("alice"), 10)
    if not check("basic: delivered to Maildir new/", len(files) == 1, "files=%r" % files):
        return
    data = open(files[0], "rb").read()
    expected = (MESSAGE % ("basic", "basic")).replace("\r\n", "\n").encode()
    m1 = re.match(rb"Return-Path: <alice@example\.org>\nDelivered-To: alice@localhost\nReceived: [^\n]*\n(\t[^\n]*\n)*", data)
    check("basic: Return-Path, Delivered-To and Received prepended", m1 is not None, data[:300])
    if m1:
        check("basic: body byte-identical", data[m1.end():] == expected, data[m1.end():][:300])
    qid = re.search(r"queued as ([0-9A-F]{16})", resp).group(1)
    check("basic: Received carries the queue id", ("id " + qid).encode() in data, data[:300])
    tmp = os.listdir(os.path.join(m.maildir, "alice", "tmp"))
    check("basic: Maildir tmp/ empty", tmp == [], tmp)


def swaks(m):
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % m.port, "--to", "carol@localhost",
                        "--from", "dave@example.org", "--h-Subject", "via swaks"], capture_output=True, text=True, timeout=60)
    check("swaks: accepted", r.returncode == 0 and "queued as" in r.stdout, r.stdout[-500:])
    check("swaks: delivered", wait_for(lambda: m.mailbox("carol"), 10), "no file")


def smtputf8(m):
    """RFC 6531: a UTF-8 local part of a local domain gets its own Maildir."""
    msg = "From: =?utf-8?q?J=C3=B6rg?= <j\u00f6rg@example.org>\r\nSubject: utf8\r\n\r\nHall\u00f6\r\n"
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        s.ehlo("client.test.example")
        s.sendmail("j\u00f6rg@example.org", ["\u00fcser@localhost"], msg.encode("utf-8"), mail_options=["SMTPUTF8"])
    check("smtputf8: UTF-8 local part delivered", wait_for(lambda: m.mailbox("\u00fcser"), 10), os.listdir(m.maildir))


def privsep(m):
    if os.geteuid() != 0:
        check("privsep: skipped (not root)", True)
        return
    users = {"mta-smtpd": "_mtad", "mta-queue": "_mtaq", "mta-smtp": "_mtac", "mta-resolver": "_mtar", "mta-local": "_mtalocal"}
    import pwd
    for prog, user in users.items():
        pids = m.pids(prog)
        ok = bool(pids)
        for p in pids:
            uid = os.stat("/proc/%d" % p).st_uid
            ok = ok and pwd.getpwuid(uid).pw_name == user
            ok = ok and os.readlink("/proc/%d/root" % p) != "/"
        check("privsep: %s runs as %s in a chroot" % (prog, user), ok, "pids=%r" % pids)
    st = m.ctl("status")
    check("mtactl status lists every role", st.returncode == 0 and st.stdout.count("state=running") >= 6, st.stdout + st.stderr)


def concurrency(m, clients=20, per_client=50):
    def worker(c):
        got = []
        for i in range(per_client):
            tag = "c%d-%d" % (c, i)
            code, _ = send(m.port, ["user%d@localhost" % (c % 5)], tag)
            if code == 250:
                got.append(tag)
        return got
    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        acked = [t for r in ex.map(worker, range(clients)) for t in r]
    check("concurrency: all %d accepted" % (clients * per_client), len(acked) == clients * per_client, len(acked))
    users = ["user%d" % i for i in range(5)]
    wait_for(lambda: sum(len(m.mailbox(u)) for u in users) >= len(acked), 60, 0.2)
    seen = {}
    for u in users:
        for f in m.mailbox(u):
            mid = re.search(rb"Message-ID: <([^@]+)@test>", open(f, "rb").read())
            if mid:
                seen[mid.group(1).decode()] = seen.get(mid.group(1).decode(), 0) + 1
    missing = [t for t in acked if t not in seen]
    dups = [t for t, n in seen.items() if n > 1]
    check("concurrency: every acknowledged message delivered exactly once", not missing and not dups,
          "missing=%d dups=%d" % (len(missing), len(dups)))


def queue_crash(m, limit=3000):
    """Clients keep sending while mta-queue is SIGKILLed three times; nothing acknowledged may be lost."""
    acked, refused, lock, stop = [], [0], threading.Lock(), threading.Event()

    def worker(c):
        i = 0
        while not stop.is_set() and i < limit // 10:
            tag = "k%d-%d" % (c, i)
            i += 1
            try:
                code, _ = send(m.port, ["kill%d@localhost" % (c % 3)], tag)
            except (AssertionError, OSError, smtplib.SMTPException):
                with lock:
                    refused[0] += 1
                continue
            with lock:
                if code == 250:
                    acked.append(tag)
                else:
                    refused[0] += 1

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(10)]
    for t in threads:
        t.start()
    kills = 0
    for _ in range(3):
        wait_for(lambda: m.pids("mta-queue"), 30)
        time.sleep(0.7)
        for p in m.pids("mta-queue"):
            os.kill(p, signal.SIGKILL)
            kills += 1
            wait_for(lambda: p not in m.pids("mta-queue"), 10)
    wait_for(lambda: m.pids("mta-queue"), 30)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(120)
    check("queue crash: mta-queue was killed and restarted", kills == 3 and m.pids("mta-queue"), kills)
    users = ["kill%d" % i for i in range(3)]

    def delivered():
        s = set()
        for u in users:
            for f in m.mailbox(u):
                mid = re.search(rb"Message-ID: <([^@]+)@test>", open(f, "rb").read())
                if mid:
                    s.add(mid.group(1).decode())
        return s
    wait_for(lambda: set(acked) <= delivered(), 60, 0.3)
    lost = set(acked) - delivered()
    check("queue crash: every acknowledged message delivered (%d acked, %d refused while the queue was down)"
          % (len(acked), refused[0]), acked and not lost, "lost %d of %d" % (len(lost), len(acked)))


def clean_stop(m):
    children = sum((m.pids(p) for p in ("mta-smtpd", "mta-queue", "mta-smtp", "mta-local", "mta-resolver")), [])
    rc = m.stop(signal.SIGINT)
    check("stop: mtad exits 0 on SIGINT", rc == 0, rc)
    alive = [p for p in children if os.path.exists("/proc/%d" % p)]
    check("stop: no orphan processes", not alive, alive)
    leftovers = [f for u in os.listdir(m.maildir) for f in os.listdir(os.path.join(m.maildir, u, "tmp"))]
    check("stop: no half-written Maildir files", not leftovers, leftovers)


def port_zero():
    """smtp_listen with port 0: the kernel picks the port and mtad's event=listening line names it."""
    m = MTA(name="port0")
    with open(m.conf) as f:
        conf = f.read()
    with open(m.conf, "w") as f:
        f.write(conf.replace("smtp_listen = 127.0.0.1:%d" % m.port, "smtp_listen = 127.0.0.1:0"))
    m.start(wait=False)
    try:
        found = wait_for(lambda: "event=all_ready" in m.log_text() and
                         re.search(r"event=listening kind=smtp addr=127\.0\.0\.1:(\d+)", m.log_text()), 20)
        port = int(found.group(1)) if found else 0
        check("listen: port 0 is logged as the port the kernel chose", port > 0, m.log_text()[-1500:])
        banner = b""
        if port:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                banner = s.recv(512)
        check("listen: the logged port serves SMTP", banner.startswith(b"220"), banner)
    finally:
        m.stop()


def main():
    config_errors()
    listener_checks()
    port_zero()
    m = MTA(name="skel").start()
    try:
        basic(m)
        reload_listeners(m)
        swaks(m)
        smtputf8(m)
        privsep(m)
        concurrency(m)
        queue_crash(m)
        clean_stop(m)
    finally:
        m.stop()
        if os.environ.get("MTA_TEST_DEBUG"):
            print(m.log_text()[-6000:])
    finish()


if __name__ == "__main__":
    main()
