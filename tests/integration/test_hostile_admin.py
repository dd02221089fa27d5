"""A damaged queue and hostile maildrop files, end to end with the real daemons: body files deleted,
truncated, grown, replaced by a directory, a dangling symlink or a FIFO while mtad is stopped; a body
truncated while its message waits for a retry; an empty, garbage or appended-to data.mdb; garbage,
empty, NUL-carrying, symlinked, FIFO and uid-forging maildrop files. Each damaged message is reported
corrupt with its queue id (log line and `mtaqueue list --json`), never delivered as if complete, never
silently dropped; the rest keeps flowing and no process crashes. Config and admin-tool input: see
test_hostile_admin_cli.py."""
import json
import os
import shutil
import smtplib
import subprocess
import time

from mtatest import MTA, check, finish, wait_for
from queuetest import ScriptedServer, mtaqueue, queue_json, relay_config, send


def corrupt_logged(m, qid):
    return ("event=corrupt qid=%s " % qid) in m.log_text()


def json_state(m, qid):
    for msg in queue_json(m).get("messages", []):
        if msg["id"] == qid:
            return msg["state"]
    return None


def delivered_subjects(srv):
    out = []
    for _, _, data in srv.delivered:
        for line in data.split(b"\r\n"):
            if line.startswith(b"Subject: "):
                out.append(line[9:].decode())
    return out


def queue_ids(m, subject_prefix, n):
    """Queue ids by Subject, via `mtaqueue show --json` (the list has no headers)."""
    ids = {}
    for msg in queue_json(m).get("messages", []):
        r = mtaqueue(m, "show", msg["id"], "--json")
        try:
            headers = json.loads(r.stdout)["message"]["headers"]
        except (ValueError, KeyError):
            continue
        for s in range(n):
            if ("Subject: %s%d\r\n" % (subject_prefix, s)) in headers:
                ids[s] = msg["id"]
    return ids


DAMAGE = ["deleted", "truncated", "grown", "directory", "dangling symlink", "fifo", "intact"]


def damage(path, how):
    if how == "deleted":
        os.unlink(path)
    elif how == "truncated":
        with open(path, "r+b") as f:
            f.truncate(40)
    elif how == "grown":
        with open(path, "ab") as f:
            f.write(b"X-Injected: after the commit\r\n")
    elif how == "directory":
        os.unlink(path)
        os.mkdir(path)
    elif how == "dangling symlink":  # root ignores modes: this is our "unreadable" body
        os.unlink(path)
        os.symlink("/nonexistent/body", path)
    elif how == "fifo":
        os.unlink(path)
        os.mkfifo(path)


def damaged_bodies(m, srv):
    """Bodies damaged while mtad is stopped: each is corrupt at start; the intact one and new mail flow."""
    srv.decide = lambda rcpt, n: "451 4.3.0 later" if rcpt.startswith("dmg") else "250 2.1.5 ok"
    for i, _ in enumerate(DAMAGE):
        send(m, "dmg@localhost", ["dmg%d@remote.test" % i], "dmg%d" % i)
    wait_for(lambda: all(srv.attempts["dmg%d@remote.test" % i] for i in range(len(DAMAGE))), 20)
    ids = queue_ids(m, "dmg", len(DAMAGE))
    if not check("damaged: all messages queued and deferred", len(ids) == len(DAMAGE), ids):
        return
    m.stop()
    body = os.path.join(m.spool, "queue", "body")
    for i, how in enumerate(DAMAGE):
        damage(os.path.join(body, ids[i]), how)
    with open(os.path.join(body, "not-a-queue-id"), "w") as f:
        f.write("left here by someone")
    srv.decide = lambda rcpt, n: "250 2.1.5 ok"
    m.proc = None
    m.start()
    mtaqueue(m, "flush")
    send(m, "dmg@localhost", ["fresh@remote.test"], "fresh after damage")
    check("damaged: the intact message and new mail are delivered",
          wait_for(lambda: {"dmg6", "fresh after damage"} <= set(delivered_subjects(srv)), 20), delivered_subjects(srv))
    time.sleep(1)
    got = delivered_subjects(srv)
    for i, how in enumerate(DAMAGE[:-1]):
        qid = ids[i]
        check("damaged: %s body never delivered" % how, "dmg%d" % i not in got, got)
        check("damaged: %s body logged corrupt with its queue id" % how, corrupt_logged(m, qid), qid)
        check("damaged: %s body listed corrupt in mtaqueue --json" % how, json_state(m, qid) == "corrupt",
              json_state(m, qid))
    check("damaged: grown body's reason names the sizes",
          "qid=%s reason=\"body size" % ids[2] in m.log_text(), ids[2])
    check("damaged: unknown file in body/ logged and left alone",
          'event=unknown_spool_file name="not-a-queue-id"' in m.log_text() and
          os.path.exists(os.path.join(body, "not-a-queue-id")), "")
    st = m.ctl("status").stdout
    check("damaged: every role running, none restarted", "restarting" not in st and "restarts=1" not in st, st)
    return ids


def truncated_while_deferred(m, srv):
    """The body shrinks while the message waits for its retry: the next attempt must not send it."""
    srv.decide = lambda rcpt, n: "451 4.3.0 later" if rcpt.startswith("trunc") else "250 2.1.5 ok"
    send(m, "t@localhost", ["trunc@remote.test"], "trunc0", text="line\r\n" * 2000)
    wait_for(lambda: srv.attempts["trunc@remote.test"] >= 1, 20)
    ids = queue_ids(m, "trunc", 1)
    if not check("deferred truncation: message queued", 0 in ids, ids):
        return
    qid = ids[0]
    with open(os.path.join(m.spool, "queue", "body", qid), "r+b") as f:
        f.truncate(300)
    srv.decide = lambda rcpt, n: "250 2.1.5 ok"
    mtaqueue(m, "flush")
    ok = wait_for(lambda: corrupt_logged(m, qid), 15)
    check("deferred truncation: next attempt finds the size changed, message corrupt with its id", ok,
          m.log_text()[-1500:])
    check("deferred truncation: nothing delivered", "trunc0" not in delivered_subjects(srv), delivered_subjects(srv))
    check("deferred truncation: mtaqueue --json says corrupt", json_state(m, qid) == "corrupt", json_state(m, qid))
    check("deferred truncation: queue process alive", bool(m.pids("mta-queue")), "")


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        st = f.read()
    fields = st[st.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def smtp_refused_while_queue_down(m):
    """Returns the reply code the client got instead of 250 for the final dot (or 250 if it got that)."""
    try:
        with smtplib.SMTP("127.0.0.1", m.port, timeout=20) as s:
            s.sendmail("x@localhost", ["someone@localhost"], b"Subject: queue down\r\n\r\nhi\r\n")
            return 250
    except smtplib.SMTPResponseException as e:
        return e.smtp_code
    except (smtplib.SMTPException, OSError) as e:
        return str(e)


def damaged_lmdb(srv):
    srv.decide = lambda rcpt, n: "451 4.3.0 later" if rcpt.startswith("db") else "250 2.1.5 ok"
    m = MTA(extra=relay_config(srv), name="hostile-db").start()
    try:
        send(m, "db@localhost", ["db0@remote.test"], "db0")
        wait_for(lambda: srv.attempts["db0@remote.test"] >= 1, 20)
        m.stop()
        data = os.path.join(m.spool, "queue", "db", "data.mdb")
        saved = data + ".saved"
        shutil.copyfile(data, saved)
        with open(data, "ab") as f:
            f.write(os.urandom(64 * 1024))
        m.proc = None
        m.start()
        j = queue_json(m)
        check("lmdb: garbage appended to data.mdb is harmless, the message is still queued",
              j.get("count") == 1 and j["messages"][0]["sender"] == "db@localhost", j)
        m.stop()
        for how in ("empty", "garbage"):
            with open(data, "wb") as f:
                f.write(b"" if how == "empty" else os.urandom(32 * 1024))
            mark = len(m.log_text())
            m.proc = None
            m.start(wait=False)
            fail = wait_for(lambda: "event=startup_failed" in m.log_text()[mark:], 15)
            line = [l for l in m.log_text()[mark:].splitlines() if "event=startup_failed" in l]
            check("lmdb: %s data.mdb refused with a log line naming the file" % how,
                  fail and "mta-queue" in line[0] and "data.mdb" in line[0], line[:1])
            if how == "empty":
                check("lmdb: the empty data.mdb was not turned into a new empty queue",
                      os.path.getsize(data) == 0, os.path.getsize(data))
                wait_for(lambda: m.ready() or "role=smtpd" in m.log_text()[mark:], 10)
                code = smtp_refused_while_queue_down(m)
                check("lmdb: with the queue down, SMTP gets a 4xx, never 250", isinstance(code, int) and 400 <= code < 500,
                      code)
                t0, c0 = time.time(), cpu_ticks(m.proc.pid)
                time.sleep(4)
                used = (cpu_ticks(m.proc.pid) - c0) / os.sysconf("SC_CLK_TCK")
                fails = m.log_text()[mark:].count("event=startup_failed")
                check("lmdb: mtad backs off instead of spinning (few restarts, little CPU)",
                      fails <= 5 and used < 0.5, "restarts=%d cpu=%.2fs in %.1fs" % (fails, used, time.time() - t0))
                st = m.ctl("status")
                check("lmdb: mtactl status shows the queue not running",
                      st.returncode == 0 and "role=queue" in st.stdout and "state=running" not in
                      [l for l in st.stdout.splitlines() if l.startswith("role=queue")][0], st.stdout + st.stderr)
                r = mtaqueue(m, "list")
                check("lmdb: mtaqueue says the queue is not running, non-zero", r.returncode != 0 and r.stderr, r.stderr)
            check("lmdb: mtad itself survives a %s data.mdb" % how, m.proc.poll() is None, m.proc.returncode)
            m.stop()
        shutil.copyfile(saved, data)
        m.proc = None
        srv.decide = lambda rcpt, n: "250 2.1.5 ok"
        m.start()
        mtaqueue(m, "flush")
        check("lmdb: restored data.mdb: the message was never lost and is delivered",
              wait_for(lambda: "db0" in delivered_subjects(srv), 20), delivered_subjects(srv))
    finally:
        m.stop()


def maildrop_file(uid, body, sender="drop@localhost", rcpt="dropuser@localhost"):
    return ("MTA-MAILDROP 1\nU %d\nS %s\nR %s\n\n" % (uid, sender, rcpt)).encode() + body


def hostile_maildrop(m):
    drop = os.path.join(m.spool, "queue", "maildrop")
    bad = os.path.join(drop, "bad")
    nobody = int(subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True).stdout)
    files = {
        "mGARBAGE": os.urandom(3000),
        "mEMPTY": b"",
        "mNUL": maildrop_file(0, b"Subject: nul\r\n\r\nbefore\0after\r\n"),
        "mHUGEHDR": maildrop_file(0, b"Subject: " + b"h" * (2 * 1024 * 1024) + b"\r\n\r\nbody\r\n"),
        "mFORGED": maildrop_file(0, b"Subject: forged\r\n\r\nclaims root\r\n"),
    }
    for name, data in files.items():
        with open(os.path.join(drop, name), "wb") as f:
            f.write(data)
    os.chown(os.path.join(drop, "mFORGED"), nobody, nobody)
    os.symlink("/etc/passwd", os.path.join(drop, "mLINK"))
    os.mkfifo(os.path.join(drop, "mFIFO"))
    with open(os.path.join(drop, "mGOOD"), "wb") as f:
        f.write(maildrop_file(0, b"Subject: good drop\r\n\r\nafter the hostile files\r\n"))
    got = wait_for(lambda: m.mailbox("dropuser"), 15)
    check("maildrop: a good file behind a FIFO, symlink and garbage is still picked up", got, os.listdir(drop))
    delivered = b"".join(open(p, "rb").read() for p in m.mailbox("dropuser"))
    check("maildrop: only the good file was delivered",
          b"good drop" in delivered and b"forged" not in delivered and b"root:x:0" not in delivered,
          delivered[:300])
    # A 2 MB header line is within message_size_limit: delivered whole (as Postfix's sendmail would take
    # it) or set aside with a log line; never lost.
    huge = wait_for(lambda: any(os.path.getsize(p) > 2 * 1024 * 1024 for p in m.mailbox("dropuser")) or
                    os.path.exists(os.path.join(bad, "mHUGEHDR")), 10)
    check("maildrop: a 2 MB header line is delivered whole or set aside, never lost", huge, os.listdir(drop))
    names = ["mGARBAGE", "mEMPTY", "mNUL", "mFORGED", "mLINK", "mFIFO"]
    moved = wait_for(lambda: all(os.path.lexists(os.path.join(bad, n)) for n in names), 10)
    check("maildrop: every bad file moved to bad/", moved, os.listdir(bad))
    log = m.log_text()
    for n in names:
        check("maildrop: %s rejected with a log line naming it" % n,
              "event=maildrop_rejected file=%s " % n in log, "")
    check("maildrop: forged uid named as such",
          "file=mFORGED reason=\"uid does not match file owner\"" in log, "")
    check("maildrop: the symlink target is untouched", os.path.isfile("/etc/passwd") and
          os.path.islink(os.path.join(bad, "mLINK")), "")
    check("maildrop: queue alive after hostile files", bool(m.pids("mta-queue")) and
          "restarting" not in m.ctl("status").stdout, m.ctl("status").stdout)


def main():
    srv = ScriptedServer()
    m = MTA(extra=relay_config(srv), name="hostile-admin").start()
    try:
        damaged_bodies(m, srv)
        truncated_while_deferred(m, srv)
        hostile_maildrop(m)
    finally:
        m.stop()
    try:
        damaged_lmdb(srv)
    finally:
        srv.stop()
    finish()


if __name__ == "__main__":
    main()
