"""Hostile configuration files and admin-tool arguments, end to end: mtaconf and mtad -n on a config
with a NUL byte, CRLF line ends, a 10 MB line, a key given twice, an unknown key, a directory, a FIFO,
a dangling symlink; `mtactl reload` with a broken config keeps the old one (mail still flows) and says
why; mtaqueue/mailq/mtactl/mtamap/mtadns/newaliases/sendmail with bad arguments, also as an ordinary
user: a message on stderr, a non-zero exit (sendmail: EX_USAGE 64), no crash, no change to the queue."""
import os
import signal
import subprocess

from mtatest import as_user, BIN, check, finish, free_port, MTA, wait_for
from queuetest import queue_json, send


def run(args, user=None, stdin=""):
    cmd = [os.path.join(os.fsencode(BIN) if isinstance(args[0], bytes) else BIN, args[0])] + list(args[1:])
    if user:
        cmd = as_user(user, [os.fsencode(a) for a in cmd])
    return subprocess.run(cmd, capture_output=True, input=stdin.encode() if isinstance(stdin, str) else stdin,
                          timeout=30)


def crashed(r):
    return r.returncode < 0 or r.returncode >= 128 or b"Sanitizer" in r.stderr or b"runtime error" in r.stderr


def config_files(m):
    d = os.path.join(m.dir, "conf-tests")
    os.makedirs(d)
    base = open(m.conf, "rb").read()
    cases = {  # name -> (bytes or None, expected rc == 0, text expected on stderr)
        "nul": (base + b"hostname = a.ex\0ample\n", False, b"nul.conf:%d: hostname: NUL byte in value"),
        "crlf": (base.replace(b"\n", b"\r\n"), True, b""),
        "tenmb": (base + b"hostname = " + b"a" * (10 * 1024 * 1024) + b"\n", False, b"tenmb.conf: file too large"),
        "twice": (base + b"recipient_limit = 10\nrecipient_limit = 20\n", True,
                  b"twice.conf:%d: recipient_limit: overrides the earlier setting on line %d"),
        "unknown": (base + b"no_such_key = 1\n", False, b"unknown.conf:%d: no_such_key: unknown configuration key"),
        "trailing": (base + b"recipient_limit = 30   \t\n", True, b""),
        "badvalue": (base + b"message_size_limit = lots\n", False, b"badvalue.conf:%d: message_size_limit:"),
    }
    nlines = base.count(b"\n")
    for name, (data, ok, err) in cases.items():
        path = os.path.join(d, name + ".conf")
        with open(path, "wb") as f:
            f.write(data)
        if b"%d: recipient_limit: overrides" in err:
            err = err % (nlines + 2, nlines + 1)
        elif b"%d" in err:
            err = err % (nlines + 1)
        for tool in (["mtaconf", "-c", path, "-n"], ["mtad", "-c", path, "-n"]):
            r = run(tool)
            good = (r.returncode == 0) == ok and err in r.stderr and not crashed(r)
            check("config %s: %s exit %d, says %r" % (name, tool[0], r.returncode, err.decode()[:60]), good,
                  (r.returncode, r.stderr[-300:]))
    r = run(["mtaconf", "-c", os.path.join(d, "trailing.conf"), "recipient_limit"])
    check("config: trailing blanks are not part of the value", r.stdout == b"recipient_limit = 30\n", r.stdout)
    r = run(["mtaconf", "-c", os.path.join(d, "twice.conf"), "recipient_limit"])
    check("config: a key given twice: the last wins (as Postfix)", r.stdout == b"recipient_limit = 20\n", r.stdout)
    os.mkfifo(os.path.join(d, "fifo.conf"))
    os.mkdir(os.path.join(d, "dir.conf"))
    os.symlink("/nonexistent/mta.conf", os.path.join(d, "dangling.conf"))
    for name, msg in (("dir", b"not a plain file"), ("fifo", b"not a plain file"),
                      ("dangling", b"cannot read: No such file or directory")):
        path = os.path.join(d, name + ".conf")
        for tool in ("mtaconf", "mtad", "mtaqueue", "sendmail"):
            flag = "-C" if tool == "sendmail" else "-c"
            args = [tool, flag, path] + (["-n"] if tool in ("mtaconf", "mtad") else ["list"] if tool == "mtaqueue" else
                                          ["u@localhost"])
            r = run(args, stdin="Subject: x\n\nx\n")
            check("config %s as config path: %s refuses, naming the file" % (name, tool),
                  r.returncode != 0 and (path.encode() + b": " + msg) in r.stderr and not crashed(r),
                  (r.returncode, r.stderr[-300:]))


def reload_broken(m):
    good = open(m.conf, "rb").read()
    with open(m.conf, "ab") as f:
        f.write(b"message_size_limit = lots\n")
    r = m.ctl("reload")
    check("reload: a broken config is refused with file:line:key",
          r.returncode != 0 and "%s:%d: message_size_limit:" % (m.conf, good.count(b"\n") + 1) in (r.stdout + r.stderr),
          (r.returncode, r.stdout, r.stderr))
    send(m, "rl@localhost", ["afterreload@localhost"], "after broken reload")
    check("reload: the old config keeps running, mail flows", wait_for(lambda: m.mailbox("afterreload"), 15),
          m.log_text()[-800:])
    # mtactl checks the file itself before asking mtad; SIGHUP makes mtad read it.
    m.proc.send_signal(signal.SIGHUP)
    check("reload: SIGHUP with a broken config is refused and logged with file:line:key",
          wait_for(lambda: "event=reload_failed error=\"%s:%d: message_size_limit:" % (m.conf, good.count(b"\n") + 1)
                   in m.log_text(), 10), m.log_text()[-800:])
    send(m, "rl@localhost", ["afterhup@localhost"], "after broken SIGHUP")
    check("reload: after the refused SIGHUP mail still flows", wait_for(lambda: m.mailbox("afterhup"), 15), "")
    with open(m.conf, "wb") as f:
        f.write(good)
    r = m.ctl("reload")
    check("reload: a fixed config reloads", r.returncode == 0, r.stdout + r.stderr)


def bad_arguments(m):
    # One message waits in the queue (the relayhost's port is closed), so "no change" means something.
    send(m, "keep@localhost", ["kept@remote.test"], "kept while tools misbehave")
    wait_for(lambda: "to=<kept@remote.test>" in m.log_text(), 20)
    before = queue_json(m)
    check("args: a deferred message waits in the queue", before.get("count") == 1, before)
    c = ["-c", m.conf]
    long_id = "a" * 10240
    cases = [
        (["mtaqueue"] + c + ["--bogus"], 2), (["mtaqueue"] + c + ["show", "not-hex"], None),
        (["mtaqueue"] + c + ["show", long_id], None), (["mtaqueue"] + c + ["hold", "zzzz"], None),
        (["mtaqueue"] + c + ["delete", "--from"], None), (["mtaqueue"] + c + ["delete", "--from", "a@b\r\nx"], None),
        (["mtaqueue"] + c + ["delete", "--to", "\udcff\udcfe@localhost"], None),
        (["mtaqueue"] + c + ["list", "--older-than", "yesterday"], None), (["mtaqueue"] + c + ["list", "--state", "bogus"], None),
        (["mtaqueue", "-c"], 2), (["mailq"] + c + ["-x"], 2), (["mtactl"] + c + ["bogus"], 2),
        (["mtactl"] + c + ["loglevel"], None), (["mtactl"] + c + ["loglevel", "shouty"], None), (["mtactl"] + c, 2),
        (["mtamap"], 2), (["mtamap", "-x"], 2), (["mtamap", "-t", "nonsense", "/nonexistent"], None),
        (["mtadns"] + c, 2), (["mtadns"] + c + ["-x"], 2), (["newaliases"] + c + ["-x"], 2),
        (["sendmail", "-C", m.conf, "-Z", "u@localhost"], 64), (["sendmail", "-C", m.conf, "-f"], 64),
        (["sendmail", "-C", m.conf], 64), (["sendmail", "-C", m.conf, "-f", "a@b\r\nRCPT TO:<x@y>", "u@localhost"], 64),
        (["sendmail", "-C", m.conf, "-bs"], 64),
    ]
    for args, want in cases:
        args = [a.encode("utf-8", "surrogateescape") if isinstance(a, str) else a for a in args]
        for user in (None, "nobody"):
            r = run(args, user=user, stdin="Subject: x\n\nx\n")
            ok = r.returncode != 0 and r.stderr.strip() != b"" and not crashed(r)
            if want is not None:
                ok = ok and r.returncode == want
            shown = b" ".join(a[:40] for a in args[1:] if a not in (b"-c", m.conf.encode()))
            shown = bytes(ch if 32 <= ch < 127 else ord("?") for ch in shown)
            check("args%s: %s %s -> exit %d with a message" % (" as nobody" if user else "", args[0].decode(),
                                                                shown.decode("ascii", "replace"), r.returncode),
                  ok, (r.returncode, r.stderr[-300:]))
    r = run(["mtactl"] + c + ["stop"], user="nobody")
    check("args as nobody: mtactl stop is refused", r.returncode != 0 and m.proc.poll() is None, r.stderr)
    r = run(["mtaqueue"] + c + ["delete", "--all"], user="nobody")
    check("args as nobody: mtaqueue delete --all changes nothing", queue_json(m).get("count") == before.get("count"),
          r.stdout + r.stderr)
    drop = os.path.join(m.spool, "queue", "maildrop")
    check("args: refused sendmail runs left no maildrop file",
          [n for n in os.listdir(drop) if n != "bad"] == [], os.listdir(drop))
    shape = lambda j: [(x["id"], x["sender"], x["state"], [(r["address"], r["state"]) for r in x["recipients"]])
                       for x in j.get("messages", [])]  # retries may bump attempt counts meanwhile
    after = queue_json(m)
    check("args: the queue is unchanged", shape(after) == shape(before), (before, after))
    st = m.ctl("status").stdout
    check("args: every role still running", "restarting" not in st and m.proc.poll() is None, st)


def main():
    m = MTA(extra="relayhost = [127.0.0.1]:%d\nmaximal_backoff_time = 1h\n" % free_port(), name="hostile-cli").start()
    try:
        config_files(m)
        reload_broken(m)
        bad_arguments(m)
    finally:
        m.stop()
    finish()


if __name__ == "__main__":
    main()
