"""Logging as an admin sees it without -d: a real rsyslogd (Debian rsyslog, started here on a socket of
its own) receives our lines in the mail facility, one line per event with the queue id on the lines
about a message; with log_format = json every line's message is one valid JSON object; maillog_file
gets the lines when there is no syslog. mtad runs in a mount namespace of this test whose /dev is
its own, with /dev/log pointing at rsyslogd's socket (nothing of the host's /dev changes)."""
import json
import os
import re
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time

from mtatest import BIN, check, finish, Guard, MTA, wait_for

RSYSLOG_CONF = """global(workDirectory="{d}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{d}/log" CreatePath="on")
template(name="plain" type="string" string="%syslogfacility-text% %programname%[%procid%]: %msg%\\n")
mail.* action(type="omfile" file="{d}/mail.log" template="plain")
*.*;mail.none action(type="omfile" file="{d}/other.log" template="plain")
"""


def start_rsyslog(d):
    with open(os.path.join(d, "rsyslog.conf"), "w") as f:
        f.write(RSYSLOG_CONF.format(d=d))
    p = subprocess.Popen(["rsyslogd", "-n", "-f", os.path.join(d, "rsyslog.conf"), "-i", os.path.join(d, "pid")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for(lambda: os.path.exists(os.path.join(d, "log")), 10)
    return p


def namespaced(d, cmd):
    """cmd in a new mount namespace whose /dev is a tmpfs of its own with the usual devices and
    log -> rsyslogd's socket. Only /dev is touched, after it was made private in the namespace, so
    nothing propagates to the host's mounts; "/" may not be a mount point (a chroot), so its
    propagation is left as it is."""
    script = ["set -e", "mount --make-rprivate /dev", "mount -t tmpfs -o mode=755 tmpfs /dev"]
    for name, minor in (("null", 3), ("zero", 5), ("full", 7), ("random", 8), ("urandom", 9)):
        script.append("mknod -m 666 /dev/%s c 1 %d" % (name, minor))
    script += ["ln -s %s /dev/log" % os.path.join(d, "log"), 'exec "$@"']
    return ["unshare", "-m", "--propagation", "unchanged", "sh", "-c", "\n".join(script), "sh"] + cmd


def lines(path):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()
    except OSError:
        return []


def send(m, rcpt, subject):
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        s.sendmail("logger@localhost", [rcpt], ("Subject: %s\r\n\r\nhello\r\n" % subject).encode())


def syslog_part(d, m):
    """mtad without -d, under rsyslogd: kv lines, then json lines after a reload."""
    m.start_cmd = namespaced(d, [os.path.join(BIN, "mtad"), "-c", m.conf])
    r = subprocess.run(m.start_cmd, capture_output=True, text=True, timeout=60)
    check("syslog: mtad starts as a daemon", r.returncode == 0, r.stdout + r.stderr)
    mail = os.path.join(d, "mail.log")
    check("syslog: every role says it runs", wait_for(lambda: any("event=all_ready" in x for x in lines(mail)), 30),
          lines(mail)[-20:])
    try:
        send(m, "alice@localhost", "kv")
        got = wait_for(lambda: [x for x in lines(mail) if "event=delivered" in x], 30)
        check("syslog: lines arrive in the mail facility, tagged with the program and pid",
              got and all(re.match(r"mail mta-\S+\[\d+\]:\s+level=info event=delivered qid=[0-9A-F]{16} to=<alice@localhost> ", x) for x in got),
              got)
        check("syslog: nothing of ours in other facilities", not [x for x in lines(os.path.join(d, "other.log"))
                                                                   if "mta" in x], lines(os.path.join(d, "other.log")))
        about = [x for x in lines(mail) if re.search(r"event=(queued|delivered|removed|commit)\b", x)]
        check("syslog: every line about the message has its queue id", about and all("qid=" in x for x in about), about)
        with open(m.conf, "a") as f:
            f.write("log_format = json\n")
        r = m.ctl("reload")
        check("syslog: reload to log_format = json", r.returncode == 0, r.stdout + r.stderr)
        before = len(lines(mail))
        send(m, "bob@localhost", "json")
        wait_for(lambda: any('"event":"delivered"' in x for x in lines(mail)[before:]), 30)
        new = [x.split(": ", 1)[1].strip() for x in lines(mail)[before:] if ": " in x]
        parsed = []
        for x in new:
            try:
                parsed.append(json.loads(x))
            except ValueError:
                parsed.append({"unparsable": x})
        delivered = [o for o in parsed if o.get("event") == "delivered"]
        check("syslog: with log_format = json every line is one JSON object", new and
              all("unparsable" not in o for o in parsed), new[:10])
        check("syslog: the JSON has the same pairs (event, qid, to, level)",
              delivered and delivered[0].get("level") == "info" and re.fullmatch(r"[0-9A-F]{16}", delivered[0]["qid"])
              and all(o.get("to") == "<bob@localhost>" for o in delivered), delivered)
    finally:
        m.ctl("stop")
        wait_for(lambda: not m.pids("mta-queue"), 30)


def maillog_part(d):
    """No syslog at all: maillog_file gets every process's lines."""
    path = os.path.join(d, "maillog")
    m = MTA(name="maillog", extra="maillog_file = %s\n" % path)
    r = subprocess.run([os.path.join(BIN, "mtad"), "-c", m.conf], capture_output=True, text=True, timeout=60)
    check("maillog: mtad starts as a daemon", r.returncode == 0, r.stdout + r.stderr)
    try:
        check("maillog: every role logs there", wait_for(lambda: any("event=all_ready" in x for x in lines(path)), 30),
              lines(path)[-10:])
        send(m, "carol@localhost", "maillog")
        # mta-local logs its delivery before mta-queue hears of it: wait for both lines.
        delivered = lambda: [x for x in lines(path) if "event=delivered" in x]
        wait_for(lambda: {"mta-local", "mta-queue"} <= {p for x in delivered() for p in re.findall(r" (mta-\S+)\[", x)}, 30)
        got = delivered()
        check("maillog: one whole line per event, from each process",
              got and all(re.match(r"\d{4}-\d\d-\d\dT\S+Z mta-\S+\[\d+\]: level=info event=delivered qid=", x) for x in got)
              and {"mta-local", "mta-queue"} <= {re.match(r"\S+ (\S+)\[", x).group(1) for x in got}, got)
        check("maillog: appended, owner-only readable", os.stat(path).st_mode & 0o077 == 0o040 or
              os.stat(path).st_mode & 0o077 == 0, oct(os.stat(path).st_mode))
    finally:
        subprocess.run([os.path.join(BIN, "mtactl"), "-c", m.conf, "stop"], capture_output=True, timeout=30)
        time.sleep(1)
    bad = MTA(name="maillogbad", extra="maillog_file = %s/no/such/dir/log\n" % d)
    r = subprocess.run([os.path.join(BIN, "mtad"), "-c", bad.conf], capture_output=True, text=True, timeout=60)
    check("maillog: a file that cannot be opened stops the start, saying why",
          r.returncode != 0 and "maillog_file" in r.stderr, r.stdout + r.stderr)


def main():
    d = tempfile.mkdtemp(prefix="mtatest-logging-")
    os.chmod(d, 0o755)
    rs = None
    with Guard("logging") as g:
        if shutil.which("rsyslogd") is None:
            check("logging: rsyslogd is installed (Debian rsyslog)", False, "")
            return
        rs = start_rsyslog(d)
        g.cleanups.append(lambda: os.killpg(rs.pid, signal.SIGTERM))
        check("logging: rsyslogd listens", os.path.exists(os.path.join(d, "log")), "")
        m = MTA(name="syslog")
        g.log = m
        syslog_part(d, m)
        maillog_part(d)
    if os.environ.get("MTA_TEST_KEEP") is None:
        shutil.rmtree(d, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
