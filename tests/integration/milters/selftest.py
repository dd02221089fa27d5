#!/usr/bin/python3
"""Checks the test milters themselves, without the MTA: scripted.py (libmilter), hostile.py (plain
sockets), OpenDKIM and rspamd as realmilters.py sets them up, each driven by mtaclient.py (a minimal MTA
side of the protocol). Prints PASS/FAIL lines like the integration suites and exits non-zero on a
failure. Run: /usr/bin/python3 tests/integration/milters/selftest.py  (about 15 s; temp files in
$TMPDIR/milter-test-self-*, removed when everything passed)."""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mtaclient  # noqa: E402
import realmilters  # noqa: E402
import wire  # noqa: E402

FAILED = 0
TMP = tempfile.mkdtemp(prefix="milter-test-self-", dir=os.environ.get("TMPDIR", "/tmp"))
PY = "/usr/bin/python3"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
PROCS = []


def check(name, ok, detail=""):
    global FAILED
    if ok:
        print("PASS %s" % name, flush=True)
    else:
        FAILED += 1
        print("FAIL %s: %s" % (name, detail), flush=True)
    return ok


def start(script, name, *args, spec=None):
    spec = spec or "unix:%s/%s.sock" % (TMP, name)
    rec = os.path.join(TMP, name + ".jsonl")
    out = open(os.path.join(TMP, name + ".out"), "ab")
    p = subprocess.Popen([PY, os.path.join(HERE, script), "--socket", spec, "--record", rec, "--name", name] +
                         list(args), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    PROCS.append(p)
    end = time.time() + 10
    while time.time() < end and not wire.reachable(spec) and p.poll() is None:
        time.sleep(0.05)
    return spec, rec


def stop_all(procs, grace=1.0):
    """SIGTERM to every process group at once, SIGKILL to what is left after `grace` seconds."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    end = time.time() + grace
    for p in procs:
        try:
            p.wait(max(0.01, end - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def records(rec, stage=None):
    try:
        with open(rec) as f:
            out = [json.loads(x) for x in f if x.strip()]
    except OSError:
        return []
    return [e for e in out if stage is None or e.get("stage") == stage]


MACROS = {
    "connect": {"j": "mx.test.example", "{daemon_name}": "smtp", "{client_addr}": "127.0.0.1", "{client_port}": "4242",
                "_": "unknown [127.0.0.1]"},
    "mail": {"{mail_addr}": "alice@example.org"},
    "rcpt": {"{rcpt_addr}": "bob@localhost"},
    "data": {"i": "0123456789ABCDEF"},
    "eom": {"i": "0123456789ABCDEF"},
}
HEADERS = [("From", " Alice <alice@example.org>"), ("To", " bob@localhost"), ("Subject", " a folded\r\n\tsubject"),
           ("X-Drop", " me"), ("Date", " Thu, 03 Dec 2026 10:00:00 +0000"), ("Message-ID", " <m1@example.org>")]
BODY = b"Hello.\r\n\r\nSecond  line.\r\n"


def session(spec, rcpts=("bob@localhost",), headers=HEADERS, body=BODY, upto=None, actions=wire.F_ALL,
            protocol=wire.P_ALL, timeout=10):
    """One SMTP-like session against a milter; {stage: answer} for every stage it got to."""
    c = mtaclient.Client(spec, timeout).negotiate(actions, protocol)
    out = {"negotiate": c}
    try:
        steps = [("connect", lambda: c.connect(macros=MACROS["connect"])),
                 ("helo", lambda: c.helo("client.test.example")),
                 ("mail", lambda: c.mail("alice@example.org", "BODY=8BITMIME", macros=MACROS["mail"]))]
        for stage, fn in steps:
            out[stage] = a = fn()
            if stage == upto or a.code != wire.R_CONTINUE:
                return out
        out["rcpt"] = [c.rcpt(r, macros={"{rcpt_addr}": r}) for r in rcpts]
        if upto == "rcpt":
            return out
        out["unknown"] = c.unknown("XYZZY plugh")
        out["data"] = c.data(macros=MACROS["data"])
        if out["data"].code != wire.R_CONTINUE or upto == "data":
            return out
        out.update(c.message(headers, body, macros=MACROS["eom"]))
        return out
    finally:
        c.close()


def scripted_checks():
    # recording, macros, the negotiated protocol
    spec, rec = start("scripted.py", "plain")
    s = session(spec)
    n = s["negotiate"]
    check("scripted: negotiates v6, every action, SKIP only (answers every stage)",
          n.version == 6 and n.actions == wire.F_ALL and n.protocol == wire.P_SKIP, (n.version, n.actions, n.protocol))
    check("scripted: continue at every stage", all(s[k].code == wire.R_CONTINUE for k in ("connect", "helo", "mail",
                                                                                          "data", "eoh", "eom")))
    time.sleep(0.2)
    conn = records(rec, "connect")
    check("scripted: records connect with its macros", conn and conn[-1]["macros"].get("{client_addr}") == "127.0.0.1"
          and conn[-1]["macros"].get("j") == "mx.test.example", conn)
    mail = records(rec, "mail")
    check("scripted: records MAIL args; i not visible at MAIL", mail and mail[-1]["args"] == ["<alice@example.org>",
                                                                                            "BODY=8BITMIME"]
          and "i" not in mail[-1]["macros"], mail)
    eom = records(rec, "eom")
    check("scripted: records headers (no leading space, folds as LF), body, envelope at eom",
          eom and eom[-1]["headers"][2] == ["Subject", "a folded\n\tsubject"] and
          eom[-1]["body"] == BODY.decode() and eom[-1]["rcpts"] == ["<bob@localhost>"] and
          eom[-1]["macros"].get("i") == "0123456789ABCDEF", eom and eom[-1])
    check("scripted: records close", records(rec, "close"))

    # each reply kind
    cases = [
        ("r-connect", ["--reply", "connect", "reject"], "connect", wire.R_REJECT),
        ("r-helo", ["--reply", "helo", "tempfail"], "helo", wire.R_TEMPFAIL),
        ("r-mail", ["--reply", "mail", "discard"], "mail", wire.R_DISCARD),
        ("r-data", ["--reply", "data", "accept"], "data", wire.R_ACCEPT),
        ("r-unknown", ["--reply", "unknown", "replycode", "502", "5.5.2", "milter says no"], "unknown",
         wire.R_REPLYCODE),
        ("r-header", ["--reply", "header", "reject"], "header", wire.R_REJECT),
        ("r-eoh", ["--reply", "eoh", "tempfail"], "eoh", wire.R_TEMPFAIL),
        ("r-eom", ["--reply", "eom", "replycode", "451", "4.7.1", "line one", "line two"], "eom", wire.R_REPLYCODE),
    ]
    for name, args, stage, want in cases:
        spec, rec = start("scripted.py", name, *args)
        s = session(spec)
        a = s.get(stage)
        a = a[0] if isinstance(a, list) else a
        check("scripted: --reply %s -> %r" % (" ".join(args[1:]), want), a is not None and a.code == want,
              a and a.final)
        if name == "r-unknown":
            check("scripted: unknown replycode text", a.final.text() == "502 5.5.2 milter says no", a.final.text())
        if name == "r-eom":
            check("scripted: multi-line replycode as libmilter sends it",
                  a.final.text() == "451-4.7.1 line one\r\n451 4.7.1 line two", a.final.text())
    spec, rec = start("scripted.py", "r-rcpt", "--reply", "rcpt", "replycode", "550", "5.7.1", "not him",
                      "--only-rcpt", "bad@localhost")
    s = session(spec, rcpts=("good@localhost", "bad@localhost"))
    check("scripted: --only-rcpt: good continue, bad 550 5.7.1",
          [a.code for a in s["rcpt"]] == [wire.R_CONTINUE, wire.R_REPLYCODE] and
          s["rcpt"][1].final.text() == "550 5.7.1 not him", [a.final for a in s["rcpt"]])

    # SKIP in the body: one chunk seen, then eom
    spec, rec = start("scripted.py", "skip", "--reply", "body", "skip")
    s = session(spec, body=b"x" * 200000)
    time.sleep(0.2)
    check("scripted: body skip -> SMFIR_SKIP at the first chunk, eom still answered",
          s["body"][0].code == wire.R_SKIP and s["eom"].code == wire.R_CONTINUE and len(records(rec, "body")) == 1,
          (s["body"][0].final, records(rec, "body")))
    s = session(spec, body=b"x" * 200000, protocol=wire.P_ALL & ~wire.P_SKIP)
    check("scripted: body skip without negotiated SKIP -> continue", all(a.code == wire.R_CONTINUE for a in s["body"]))

    # delays and progress at eom
    spec, rec = start("scripted.py", "progress", "--delay", "eom", "2", "progress")
    t0 = time.time()
    s = session(spec)
    check("scripted: --delay eom 2 progress -> >= 3 SMFIR_PROGRESS, then continue after ~2 s",
          s["eom"].progress >= 3 and s["eom"].code == wire.R_CONTINUE and time.time() - t0 >= 1.9,
          (s["eom"].progress, time.time() - t0))
    spec, rec = start("scripted.py", "sleep", "--delay", "mail", "1.5")
    t0 = time.time()
    s = session(spec, upto="mail")
    check("scripted: --delay mail 1.5 -> continue after 1.5 s, no progress",
          s["mail"].code == wire.R_CONTINUE and s["mail"].progress == 0 and time.time() - t0 >= 1.4)

    # every modification, in command-line order
    spec, rec = start("scripted.py", "mods", "--addheader", "X-Added", "added value", "--insheader", "0", "X-Top",
                      "top", "--chgheader", "Subject", "1", "changed subject", "--delheader", "X-Drop", "1",
                      "--chgfrom", "<new@example.org>", "RET=HDRS", "--addrcpt", "<added@localhost>",
                      "--addrcpt", "<par@localhost>", "NOTIFY=NEVER", "--delrcpt", "<bob@localhost>",
                      "--replbody", "new body\\nline two\\n", "--quarantine", "held by the test")
    s = session(spec)
    got = [(m.code, m.data) for m in s["eom"].mods]
    want = [(wire.R_ADDHEADER, wire.cstr("X-Added", "added value")),
            (wire.R_INSHEADER, struct.pack(">I", 0) + wire.cstr("X-Top", "top")),
            (wire.R_CHGHEADER, struct.pack(">I", 1) + wire.cstr("Subject", "changed subject")),
            (wire.R_CHGHEADER, struct.pack(">I", 1) + wire.cstr("X-Drop", "")),
            (wire.R_CHGFROM, wire.cstr("<new@example.org>", "RET=HDRS")),
            (wire.R_ADDRCPT, wire.cstr("<added@localhost>")),
            (wire.R_ADDRCPT_PAR, wire.cstr("<par@localhost>", "NOTIFY=NEVER")),
            (wire.R_DELRCPT, wire.cstr("<bob@localhost>")),
            (wire.R_REPLBODY, b"new body\r\nline two\r\n"),
            (wire.R_QUARANTINE, wire.cstr("held by the test"))]
    check("scripted: every modification on the wire, in order, then continue",
          got == want and s["eom"].code == wire.R_CONTINUE, got)
    big = os.path.join(TMP, "big.body")
    with open(big, "wb") as f:
        f.write(b"0123456789abcdef\r\n" * 8000)
    spec, rec = start("scripted.py", "bigbody", "--replbody", "@" + big)
    s = session(spec)
    parts = s["eom"].mods_of(wire.R_REPLBODY)
    check("scripted: a 144 KB replacement body in chunks of at most 65535",
          b"".join(p.data for p in parts) == open(big, "rb").read() and all(len(p.data) <= 65535 for p in parts)
          and len(parts) == 3, [len(p.data) for p in parts])

    # negotiation options
    spec, rec = start("scripted.py", "symlist", "--symlist", "connect", "{client_port} j", "--symlist", "mail",
                      "{mail_addr}", "--leadspace", "--no", "helo")
    s = session(spec)
    n = s["negotiate"]
    check("scripted: --symlist -> macro lists in the negotiation reply",
          n.symlists == {0: "{client_port} j", 2: "{mail_addr}"}, n.symlists)
    check("scripted: --leadspace and --no helo -> HDR_LEADSPC and NOHELO negotiated",
          n.protocol & wire.P_HDR_LEADSPC and n.protocol & wire.P_NOHELO and s["helo"].how == "notsent", n.protocol)
    time.sleep(0.2)
    hdr = [e for e in records(rec, "header") if e["name"] == "From"]
    check("scripted: with HDR_LEADSPC the header value keeps its leading space",
          hdr and hdr[-1]["value"] == " Alice <alice@example.org>", hdr)


def hostile_checks():
    spec, rec = start("hostile.py", "silent", "--mode", "silent")
    try:
        mtaclient.Client(spec, timeout=1).negotiate()
        ok = False
    except (socket.timeout, TimeoutError):
        ok = True
    check("hostile silent: never answers the negotiation", ok)
    spec, rec = start("hostile.py", "mute", "--mode", "mute", "--stage", "mail")
    try:
        session(spec, timeout=1)
        ok = False
    except (socket.timeout, TimeoutError):
        ok = True
    check("hostile mute --stage mail: connect/helo answered, MAIL never", ok and
          [e["cmd"] for e in records(rec) if e.get("event") == "command"][-1:] == ["M"], records(rec)[-3:])
    for partial in (False, True):
        name = "close" + ("-partial" if partial else "")
        spec, rec = start("hostile.py", name, "--mode", "close-mid-body", *(["--partial"] if partial else []))
        try:
            session(spec)
            ok = False
        except (EOFError, ConnectionResetError) as e:
            ok = "after 3 of 4" in str(e) if partial else True
        check("hostile close-mid-body%s: EOF at the first body chunk" % (" --partial" if partial else ""), ok)
    spec, rec = start("hostile.py", "huge", "--mode", "huge-reply", "--stage", "eom")
    s = session(spec)
    m = s["eom"].mods
    check("hostile huge-reply --stage eom: an ADDHEADER of over 10 MB", m and m[0].code == wire.R_ADDHEADER and
          len(m[0].data) > 10 * 1024 * 1024, m and len(m[0].data))
    spec, rec = start("hostile.py", "huge-mail", "--mode", "huge-reply", "--stage", "mail")
    s = session(spec)
    check("hostile huge-reply --stage mail: a REPLYCODE of over 10 MB", s["mail"].code == wire.R_REPLYCODE and
          len(s["mail"].final.data) > 10 * 1024 * 1024)
    spec, rec = start("hostile.py", "unknown", "--mode", "unknown-reply", "--stage", "mail")
    s = session(spec)
    check("hostile unknown-reply: reply code 'Z' at MAIL", s["mail"].code == b"Z", s["mail"].final)
    for mode, code in (("shutdown", wire.R_SHUTDOWN), ("conn-fail", wire.R_CONN_FAIL)):
        spec, rec = start("hostile.py", mode, "--mode", mode, "--stage", "mail")
        s = session(spec)
        check("hostile %s --stage mail: reply code %r at MAIL" % (mode, code), s["mail"].code == code,
              s["mail"].final)
    spec, rec = start("hostile.py", "unneg", "--mode", "unnegotiated")
    s = session(spec)
    check("hostile unnegotiated: negotiates no action, sends ADDHEADER at eom anyway",
          s["negotiate"].actions == 0 and s["eom"].mods_of(wire.R_ADDHEADER), s["eom"].mods)


def opendkim_checks():
    import dkim
    d = realmilters.OpenDkim(os.path.join(TMP, "opendkim"), "dkim.example", "sel1",
                             "unix:%s/opendkim/opendkim.sock" % TMP)
    try:
        d.start()
        headers = [("From", " Alice <alice@dkim.example>")] + HEADERS[1:3] + HEADERS[4:]
        s = session(d.spec, headers=headers)
        n = s["negotiate"]
        check("opendkim: negotiates HDR_LEADSPC (and NOHELO, NODATA, NOUNKNOWN)",
              n.protocol & wire.P_HDR_LEADSPC and n.protocol & wire.P_NOHELO, hex(n.protocol))
        ins = s["eom"].mods_of(wire.R_INSHEADER)
        sig = [m for m in ins if m.data[4:].startswith(b"DKIM-Signature\0")]
        check("opendkim: mail From: another domain is accepted at end of headers, unsigned",
              session(d.spec)["eoh"].code == wire.R_ACCEPT)
        check("opendkim: signs with an INSHEADER DKIM-Signature at index 0", s["eom"].code == wire.R_ACCEPT and sig
              and struct.unpack(">I", sig[0].data[:4])[0] == 0, s["eom"].mods)
        if sig:
            name, value = wire.split_cstrs(sig[0].data[4:])
            msg = b"".join(b"%s:%s\r\n" % (k.encode(), v.encode()) for k, v in headers)
            full = name + b":" + value.replace(b"\n", b"\r\n") + b"\r\n" + msg + b"\r\n" + BODY

            def dns(qname, timeout=5):
                return d.txt.encode() if qname.decode().rstrip(".") == "sel1._domainkey.dkim.example" else b""
            check("opendkim: dkimpy verifies the signature on the message as the MTA would write it",
                  dkim.DKIM(full).verify(dnsfunc=dns), full[:400])
    finally:
        d.stop()


def rspamd_checks():
    r = realmilters.Rspamd(os.path.join(TMP, "rspamd"), "127.0.0.1", 11990 + os.getpid() % 500).start()
    try:
        secs = r.wait(30)
        check("rspamd: listening within %.1f s" % secs, secs < 10)
        s = session(r.spec)
        n = s["negotiate"]
        check("rspamd: negotiates NR_* for every stage but end of message", n.protocol & wire.P_NR_CONN and
              n.protocol & wire.P_NR_BODY and n.protocol & wire.P_NR_HDR, hex(n.protocol))
        names = sorted(wire.split_cstrs(m.data)[0].decode() for m in s["eom"].mods_of(wire.R_ADDHEADER))
        check("rspamd: a clean message is accepted with X-Spamd-Result, X-Rspamd-Server, X-Rspamd-Queue-Id, "
              "X-Spam-Status", s["eom"].code == wire.R_ACCEPT and
              names == ["X-Rspamd-Queue-Id", "X-Rspamd-Server", "X-Spam-Status", "X-Spamd-Result"], names)
        qid = [wire.split_cstrs(m.data)[1] for m in s["eom"].mods_of(wire.R_ADDHEADER)
               if m.data.startswith(b"X-Rspamd-Queue-Id\0")]
        check("rspamd: X-Rspamd-Queue-Id is the i macro", qid == [b"0123456789ABCDEF"], qid)
        s = session(r.spec, body=("spam " + GTUBE + "\r\n").encode())
        check("rspamd: GTUBE -> SMFIR_REPLYCODE 554 5.7.1 Gtube pattern",
              s["eom"].code == wire.R_REPLYCODE and s["eom"].final.text() == "554 5.7.1 Gtube pattern",
              s["eom"].final)
        s = session(r.spec, headers=HEADERS + [("X-Spam", " Yes"), ("X-Spam-Status", " Yes, forged")])
        chg = [(struct.unpack(">I", m.data[:4])[0], wire.split_cstrs(m.data[4:])) for m in s["eom"].mods_of(wire.R_CHGHEADER)]
        check("rspamd: forged X-Spam and X-Spam-Status deleted with CHGHEADER index 1, empty value",
              sorted(chg) == [(1, [b"X-Spam", b""]), (1, [b"X-Spam-Status", b""])], chg)
    finally:
        r.stop()


def main():
    try:
        scripted_checks()
        hostile_checks()
        opendkim_checks()
        rspamd_checks()
    finally:
        stop_all(PROCS)
    if FAILED:
        print("temp files kept in %s" % TMP)
    else:
        shutil.rmtree(TMP, ignore_errors=True)
    print("%d failed" % FAILED)
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
