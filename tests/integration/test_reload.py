"""Reload under load: 200 SMTP sessions stand between RCPT and DATA and deliveries to a slow relayhost
are in flight while mtad reloads (mtactl reload, then SIGHUP). No session gets an error, every message
is delivered, sessions opened after the reload see the new settings (message_size_limit in EHLO SIZE),
and a configuration with an error keeps the old one running and says why."""
import os
import re
import signal
import smtplib
import threading
import time

from mtatest import check, finish, Guard, MTA, wait_for
from queuetest import ScriptedServer, relay_config

SESSIONS = 200


def size_offered(m):
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        s.ehlo("probe.test")
        return int(s.esmtp_features.get("size", "0") or 0)


def open_sessions(m, n, tag):
    """n sessions, each with MAIL and one RCPT done, waiting for DATA."""
    out = []
    for i in range(n):
        s = smtplib.SMTP("127.0.0.1", m.port, timeout=60)
        s.ehlo("load%d.test" % i)
        code, _ = s.mail("load@localhost")
        code2, _ = s.rcpt("%s%d@remote.test" % (tag, i))
        out.append((s, code == 250 and code2 == 250))
    return out


def finish_sessions(sessions, tag):
    """DATA on all of them at once; the replies."""
    replies = [None] * len(sessions)

    def one(i, s):
        try:
            code, text = s.data(("Subject: %s %d\r\n\r\nbody\r\n" % (tag, i)).encode())
            replies[i] = (code, text.decode(errors="replace"))
            s.quit()
        except (smtplib.SMTPException, OSError) as e:
            replies[i] = (0, repr(e))
    threads = [threading.Thread(target=one, args=(i, s)) for i, (s, _) in enumerate(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return replies


def reload_round(m, srv, how, tag, new_size):
    sessions = open_sessions(m, SESSIONS, tag)
    check("%s: %d sessions wait between RCPT and DATA" % (how, SESSIONS), all(ok for _, ok in sessions),
          sum(1 for _, ok in sessions if not ok))
    with open(m.conf, "a") as f:
        f.write("message_size_limit = %d\n" % new_size)
    if how == "mtactl reload":
        r = m.ctl("reload")
        check("%s: answers" % how, r.returncode == 0, r.stdout + r.stderr)
    else:
        os.kill(m.proc.pid, signal.SIGHUP)
    check("%s: new sessions see the new settings" % how,
          wait_for(lambda: size_offered(m) == new_size, 20), size_offered(m))
    replies = finish_sessions(sessions, tag)
    bad = [r for r in replies if not r or r[0] != 250]
    check("%s: no session mid-transaction got an error" % how, not bad, bad[:5])
    delivered = lambda: sum(1 for _, rcpts, _ in srv.delivered for r in rcpts if r.startswith(tag))
    check("%s: every message is delivered" % how, wait_for(lambda: delivered() == SESSIONS, 120),
          "%d of %d" % (delivered(), SESSIONS))


def main():
    # A slow relayhost: each RCPT takes a little, so deliveries are in flight during the reloads.
    srv = ScriptedServer(lambda rcpt, n: (time.sleep(0.02), "250 2.1.5 ok")[1])
    with Guard("reload") as g:
        g.cleanups.append(srv.stop)
        g.log = m = MTA(name="reload", extra=relay_config(srv) + "smtpd_processes = 4\n"
                        "smtpd_client_connection_limit = 1000\n")
        m.start()
        g.cleanups.insert(0, m.stop)
        before = size_offered(m)
        reload_round(m, srv, "mtactl reload", "ctl", 5000000)
        reload_round(m, srv, "SIGHUP", "hup", 6000000)
        with open(m.conf, "a") as f:
            f.write("message_size_limit = lots\n")
        r = m.ctl("reload")
        check("bad config: mtactl reload fails and says why",
              r.returncode != 0 and "message_size_limit" in r.stdout + r.stderr, r.stdout + r.stderr)
        check("bad config: the old settings stay in force", size_offered(m) == 6000000, size_offered(m))
        os.kill(m.proc.pid, signal.SIGHUP)  # mtactl checked the file itself; mtad must refuse it as well
        check("bad config: on SIGHUP mtad logs why and keeps the old configuration",
              wait_for(lambda: re.search(r"event=reload_failed error=\"[^\"]*message_size_limit", m.log_text()), 10)
              is not None and size_offered(m) == 6000000, m.log_text()[-1500:])
        check("reload: the first settings were the defaults", before == 10240000, before)
        sessions = open_sessions(m, 5, "after")
        replies = finish_sessions(sessions, "after")
        check("bad config: mail still flows", all(r and r[0] == 250 for r in replies), replies)
    finish()


if __name__ == "__main__":
    main()
