"""DSN and delivered-message format conformance: every DSN the queue generates is parsed with Python's
email package and checked field by field against RFC 6522 (multipart/report), RFC 3464 (delivery-status
fields), RFC 3461 (NOTIFY/RET/ENVID/ORCPT), RFC 6533 (SMTPUTF8 DSNs) and RFC 3834 (Auto-Submitted);
Maildir deliveries against RFC 5321 §4.4 (Return-Path, Received) and RFC 3848 ("with" names).
The relayhost is queuetest.ScriptedServer, once without and once with the DSN extension."""
import email
import email.policy
import email.utils
import re
import smtplib
import time

from mtatest import MTA, check, finish, wait_for
from queuetest import ScriptedServer, dsns, status_fields

HOST = "mx.test.example"
DATE_RE = re.compile(r"^(?:(Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?\d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                     r"\d{4} \d\d:\d\d(:\d\d)? [+-]\d{4}$")
LONG = "x" * 120 + " " + " ".join("word%d" % i for i in range(150))


def decide(rcpt, n):
    local = rcpt.split("@")[0]
    if local.startswith("nocode"):
        return "550 Mailbox unavailable"
    if local.startswith("multi"):
        return "550-5.7.1 first line of the refusal\r\n550 5.7.1 second line Subject: injected"
    if local.startswith("ctl"):
        return "550 5.1.1 bad\x00nul\x1b[31mescape\x7f " + LONG
    if local.startswith("slow"):
        return "451 4.2.0 try again later"
    if local.startswith(("nouser", "n\u00f6")):
        return "550 5.1.1 <%s>: No such user" % rcpt
    return "250 2.1.5 ok"


def submit(m, sender, rcpts, subject, mail_opts=(), text="Hello.\r\n", headers=None, utf8=False):
    """rcpts: [(addr, [rcpt options])]. Returns the server's reply to the final dot."""
    hdr = headers if headers is not None else (
        "From: <%s>\r\nTo: undisclosed-recipients:;\r\nSubject: %s\r\nMessage-ID: <%s@test>\r\n"
        "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n" % (sender, subject, subject.replace(" ", "-")))
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        s.ehlo("client.test")
        opts = list(mail_opts) + (["SMTPUTF8", "BODY=8BITMIME"] if utf8 else [])
        if utf8:
            s.command_encoding = "utf-8"
        code, resp = s.mail(sender, opts)
        assert code == 250, (code, resp)
        for addr, ro in rcpts:
            code, resp = s.rcpt(addr, list(ro))
            assert code == 250, (addr, code, resp)
        return s.data((hdr + "\r\n" + text).encode("utf-8"))


def parts(msg):
    return [p.get_content_type() for p in msg.iter_parts()] if msg.is_multipart() else []


def raw_status_part(raw):
    """The delivery-status part's text exactly as stored (for line-level checks), from the raw DSN."""
    mt = re.search(rb"(?s)Content-Type: message/(?:global-)?delivery-status\r?\n\r?\n(.*?)\r?\n--", raw)
    return mt.group(1).decode("utf-8", "replace") if mt else ""


def per_message(msg):
    for p in msg.walk():
        if p.get_content_type() == "message/delivery-status":
            return dict((k.lower(), str(v)) for k, v in p.get_payload()[0].items())
    return {}


def one_dsn(m, user, word, timeout=25):
    got = wait_for(lambda: dsns(m, user, word), timeout)
    return got[0] if got and len(got) == 1 else None


def check_structure(tag, r, returned):
    check("%s: RFC 6522 §3 multipart/report; report-type=delivery-status" % tag,
          r.get_content_type() == "multipart/report" and r.get_param("report-type") == "delivery-status", r["Content-Type"])
    check("%s: RFC 6522 §3 three parts in order: text, delivery-status, %s" % (tag, returned),
          parts(r) == ["text/plain", "message/delivery-status", returned], parts(r))
    pm = per_message(r)
    check("%s: RFC 3464 §2.2.2 Reporting-MTA: dns; hostname" % tag, pm.get("reporting-mta") == "dns; " + HOST, pm)
    check("%s: RFC 3464 §2.2.5 Arrival-Date is an RFC 5322 date" % tag, DATE_RE.match(pm.get("arrival-date", "")), pm)
    check("%s: RFC 3834 §5 Auto-Submitted: auto-replied" % tag, r["Auto-Submitted"] == "auto-replied", r["Auto-Submitted"])
    check("%s: RFC 5322 §3.6 Date, Message-ID, From MAILER-DAEMON@host" % tag,
          DATE_RE.match(str(r["Date"])) and re.match(r"^<[^<>@\s]+@[^<>@\s]+>$", str(r["Message-ID"]))
          and r["From"].addresses[0].addr_spec == "MAILER-DAEMON@" + HOST, (r["Date"], r["Message-ID"], r["From"]))


def failures(m):
    submit(m, "fail@localhost", [("nouser1@remote.test", ["ORCPT=rfc822;Orig+2BOne@Remote.TEST"]),
                                 ("nocode1@remote.test", []), ("multi1@remote.test", []), ("ctl1@remote.test", [])],
           "failure test", mail_opts=["ENVID=env+2Bid+3D42"])
    r = one_dsn(m, "fail", "Undelivered")
    if not check("failure: exactly one DSN for the four refusals", r is not None, m.log_text()[-1500:]):
        return
    path = m.mailbox("fail")[0]
    raw = open(path, "rb").read()
    check("failure: RFC 3461 §6.1 sent from the null sender (Return-Path: <>)", raw.startswith(b"Return-Path: <>\n"), raw[:80])
    check("failure: addressed to the original sender", r["To"].addresses[0].addr_spec == "fail@localhost", r["To"])
    check("failure: Subject says it was undelivered", "Undelivered" in str(r["Subject"]), r["Subject"])
    check_structure("failure", r, "message/rfc822")
    pm = per_message(r)
    check("failure: RFC 3464 §2.2.1 Original-Envelope-Id xtext-decoded", pm.get("original-envelope-id") == "env+id=42", pm)
    f = {x.get("final-recipient", ""): x for x in status_fields(r)}
    check("failure: RFC 3464 §2.3 one block per recipient", len(f) == 4, list(f))
    a = f.get("rfc822; nouser1@remote.test", {})
    check("failure: RFC 3461 §4.2 Original-Recipient as given (type; decoded value)",
          re.sub(r";\s*", ";", a.get("original-recipient", "")) == "rfc822;Orig+One@Remote.TEST", a)
    check("failure: RFC 3464 §2.3.1 no Original-Recipient without ORCPT",
          all("original-recipient" not in x for k, x in f.items() if "nouser1" not in k), f)
    check("failure: RFC 3464 §2.3.3/§2.3.4 Action failed, Status from the reply",
          a.get("action") == "failed" and a.get("status") == "5.1.1", a)
    check("failure: RFC 3464 §2.3.5 Remote-MTA: dns; relay host", a.get("remote-mta") == "dns; 127.0.0.1", a)
    check("failure: RFC 3464 §2.3.6 Diagnostic-Code: smtp; <the SMTP reply>",
          re.match(r"^smtp; ?550 5\.1\.1 <nouser1@remote\.test>: No such user", a.get("diagnostic-code", "")), a)
    check("failure: RFC 3464 §2.3.7 Last-Attempt-Date is an RFC 5322 date", DATE_RE.match(a.get("last-attempt-date", "")), a)
    check("failure: no Will-Retry-Until on a failure", all("will-retry-until" not in x for x in f.values()), f)
    b = f.get("rfc822; nocode1@remote.test", {})
    check("failure: RFC 3463 reply without enhanced code gives 5.0.0",
          b.get("status") == "5.0.0" and "Mailbox unavailable" in b.get("diagnostic-code", ""), b)
    c = f.get("rfc822; multi1@remote.test", {})
    check("failure: multi-line reply kept in one folded Diagnostic-Code, no injected field",
          c.get("status") == "5.7.1" and "first line" in c.get("diagnostic-code", "") and "second line" in
          c.get("diagnostic-code", "") and "subject" not in c, c)
    d = f.get("rfc822; ctl1@remote.test", {})
    text = raw_status_part(raw)
    check("failure: control characters never reach the report",
          not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text.replace("\r\n", "").replace("\n", "")) and "word30" in
          d.get("diagnostic-code", ""), repr(d.get("diagnostic-code", "")))
    long_lines = [l for l in text.splitlines() if len(l) > 78 and " " in l.strip()]
    check("failure: RFC 5322 §2.1.1 report lines at most 998, folded at 78 where a space allows",
          max(len(l) for l in raw.split(b"\n")) <= 998 and not long_lines, long_lines)
    inner = r.get_payload()[2].get_payload()[0] if parts(r)[2:] == ["message/rfc822"] else None
    check("failure: RFC 3461 §4.3 no RET returns the full message (Postfix default)", inner is not None and
          inner["Message-ID"] == "<failure-test@test>" and "Hello." in inner.get_content(), parts(r))
    check("failure: the text part names each failed recipient",
          all(x in r.get_payload()[0].get_content() for x in ("nouser1@remote.test", "ctl1@remote.test")), "")


def ret_variants(m):
    submit(m, "rethdrs@localhost", [("nouser2@remote.test", [])], "ret hdrs", mail_opts=["RET=HDRS"],
           text="SECRET BODY\r\n")
    r = one_dsn(m, "rethdrs", "Undelivered")
    if check("RET=HDRS: one DSN", r is not None, ""):
        check("RET=HDRS: RFC 3461 §4.3 text/rfc822-headers only, no body",
              parts(r)[2:] == ["text/rfc822-headers"] and b"SECRET BODY" not in r.as_bytes() and
              "Message-ID: <ret-hdrs@test>" in r.get_payload()[2].get_content(), parts(r))
    submit(m, "retfull@localhost", [("nouser3@remote.test", [])], "ret full", mail_opts=["RET=FULL"],
           text="FULL BODY\r\n")
    r = one_dsn(m, "retfull", "Undelivered")
    if check("RET=FULL: one DSN", r is not None, ""):
        inner = r.get_payload()[2].get_payload()[0] if parts(r)[2:] == ["message/rfc822"] else None
        check("RET=FULL: RFC 3461 §4.3 message/rfc822 with the whole message",
              inner is not None and "FULL BODY" in inner.get_content(), parts(r))
    big = ("y" * 998 + "\r\n") * 200
    submit(m, "retbig@localhost", [("nouser4@remote.test", [])], "ret big", mail_opts=["RET=FULL"], text=big)
    r = one_dsn(m, "retbig", "Undelivered")
    if check("RET=FULL, huge original: still a DSN (not refused)", r is not None, m.log_text()[-1000:]):
        size = len(r.as_bytes())
        check("RET=FULL, huge original: truncated to its headers, MIME intact",
              parts(r)[2:] == ["text/rfc822-headers"] and size < 100000 and "Message-ID: <ret-big@test>" in
              r.get_payload()[2].get_content(), (parts(r), size))


def notify_variants(m, srv):
    submit(m, "never@localhost", [("nouser5@remote.test", ["NOTIFY=NEVER"])], "notify never")
    wait_for(lambda: "rcpt=<nouser5@remote.test>" in m.log_text(), 20)
    time.sleep(1.0)
    check("NOTIFY=NEVER: RFC 3461 §4.1 no DSN at all", m.mailbox("never") == [], m.mailbox("never"))
    submit(m, "succ@localhost", [("ok1@remote.test", ["NOTIFY=SUCCESS"]), ("succ@localhost", ["NOTIFY=SUCCESS"])],
           "notify success")
    # The queue reports the recipients whose results arrive together in one DSN; the relayed and the
    # local delivery usually do, but on a loaded machine they may finish in different batches, and two
    # DSNs are as correct (RFC 3461 asks for a report per recipient, not for one message).
    def reported():
        got = dsns(m, "succ", "Successful")
        fields = [x for d in got for x in status_fields(d)]
        return (got, fields) if len(fields) >= 2 else None
    r = wait_for(reported, 20)
    got, fields = r if r else ([], [])
    if check("NOTIFY=SUCCESS: each recipient reported once, in one or two DSNs",
             len(fields) == 2 and 1 <= len(got) <= 2, [str(x["Subject"]) for x in dsns(m, "succ")]):
        f = {x.get("final-recipient", ""): x for x in fields}
        check_structure("success", got[0], "text/rfc822-headers")
        a = f.get("rfc822; ok1@remote.test", {})
        check("NOTIFY=SUCCESS: RFC 3461 §5.2.2 'relayed' to a next hop without DSN",
              a.get("action") == "relayed" and a.get("status", "").startswith("2."), a)
        b = f.get("rfc822; succ@localhost", {})
        check("NOTIFY=SUCCESS: RFC 3461 §5.2.3 'delivered' on local delivery",
              b.get("action") == "delivered" and b.get("status", "").startswith("2."), b)
    submit(m, "delay@localhost", [("slow1@remote.test", ["NOTIFY=DELAY"]), ("slow2@remote.test", ["NOTIFY=FAILURE"]),
                                  ("slow3@remote.test", [])], "notify delay")
    r = wait_for(lambda: dsns(m, "delay", "Delayed"), 20)
    if check("delay: one delay DSN", r and len(r) == 1, m.log_text()[-1500:]):
        check_structure("delay", r[0], "text/rfc822-headers")
        f = {x.get("final-recipient", ""): x for x in status_fields(r[0])}
        check("delay: RFC 3461 §4.1 NOTIFY=DELAY and default are warned, NOTIFY=FAILURE is not",
              set(f) == {"rfc822; slow1@remote.test", "rfc822; slow3@remote.test"}, list(f))
        a = f.get("rfc822; slow1@remote.test", {})
        check("delay: RFC 3464 §2.3.3 Action delayed, 4.2.0, Will-Retry-Until a date",
              a.get("action") == "delayed" and a.get("status") == "4.2.0" and
              DATE_RE.match(a.get("will-retry-until", "")), a)
    r = wait_for(lambda: dsns(m, "delay", "Undelivered"), 25)
    if check("expiry: one failure DSN", r and len(r) == 1, m.log_text()[-1500:]):
        f = {x.get("final-recipient", ""): x for x in status_fields(r[0])}
        check("expiry: RFC 3461 §4.1 NOTIFY=DELAY gets no failure DSN; FAILURE and default do",
              set(f) == {"rfc822; slow2@remote.test", "rfc822; slow3@remote.test"}, list(f))
    # A DSN that cannot be delivered is dropped, never answered with another DSN.
    submit(m, "nouser-sender@remote.test", [("nouser6@remote.test", [])], "dsn for dsn")
    ok = wait_for(lambda: re.search(r"event=dsn_suppressed qid=\S+ reason=\"null sender\"", m.log_text()), 20)
    check("DSN for a DSN: RFC 3461 §6.1 the failed DSN is dropped with a log line", ok, m.log_text()[-1500:])
    cmds = srv.commands
    i = [n for n, c in enumerate(cmds) if c.startswith("RCPT TO:<nouser-sender@remote.test>")]
    check("DSN for a DSN: the DSN went out from MAIL FROM:<>",
          i and any(c.startswith("MAIL FROM:<>") for c in cmds[:i[0]][-1:]), cmds[-6:])


def smtputf8(m):
    sender = "s\u00e9nder@localhost"
    submit(m, sender, [("n\u00f6user@remote.test", [])], "utf8 bounce", utf8=True,
           headers="From: <%s>\r\nSubject: utf8 bounce\r\nMessage-ID: <utf8-bounce@test>\r\n" % sender)
    r = one_dsn(m, "s\u00e9nder", "")
    if not check("SMTPUTF8: a DSN reached the UTF-8 sender", r is not None, m.log_text()[-1500:]):
        return
    check("SMTPUTF8: RFC 6533 §3 message/global-delivery-status part",
          "message/global-delivery-status" in parts(r), parts(r))
    text = raw_status_part(open(m.mailbox("s\u00e9nder")[0], "rb").read())
    check("SMTPUTF8: RFC 6533 §3 Final-Recipient keeps the UTF-8 address",
          re.search(r"(?m)^Final-Recipient: (utf-8|rfc822); ?n\u00f6user@remote\.test", text), text[:400])


def received_and_local(m):
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        s.ehlo("client.example")
        s.sendmail("rp@remote.test", ["Local1@localhost"], b"From: a@b\r\nSubject: local one\r\n\r\nbody\r\n")
    files = wait_for(lambda: m.mailbox("local1") or m.mailbox("Local1"), 15)
    if not check("local: delivered", files, m.log_text()[-1000:]):
        return
    raw = open(files[0], "rb").read()
    head = raw.split(b"\n\n")[0].decode()
    lines = head.split("\n")
    check("local: RFC 5321 §4.4 Return-Path: <sender> is the first line", lines[0] == "Return-Path: <rp@remote.test>", lines[:2])
    check("local: Delivered-To: names the recipient", re.search(r"(?mi)^Delivered-To: <?local1@localhost>?$", head), head)
    rec = re.search(r"(?ms)^Received: (.*?)(?=^\S)", head + "\nX:")
    rec = re.sub(r"\s+", " ", rec.group(1)).strip() if rec else ""
    check("local: RFC 5321 §4.4 Received from <helo> ([ip]) by <host> with ESMTP id <qid> for <rcpt>; <date>",
          re.match(r"^from client\.example \((?:\S+ )?\[127\.0\.0\.1\]\) by %s with ESMTP id [0-9A-F]{16} "
                   r"for <Local1@localhost>; (.*)$" % re.escape(HOST), rec), rec)
    mt = re.search(r"; (.*)$", rec)
    check("local: Received date is RFC 5322", mt and DATE_RE.match(mt.group(1)), rec)
    # HELO (RFC 3848 "SMTP"), and a HELO argument that tries to start a new header line.
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        code, _ = s.helo("evil.example Injected: yes")
        helo_refused = code >= 500
        if helo_refused:
            s.helo("plain.example")
        s.sendmail("rp@remote.test", ["local2@localhost"], b"Subject: local two\r\n\r\nbody\r\n")
    files = wait_for(lambda: m.mailbox("local2"), 15)
    head = open(files[0], "rb").read().split(b"\n\n")[0].decode() if files else ""
    msg = email.message_from_string(head + "\n\n", policy=email.policy.default)
    check("local: RFC 3848 HELO session is 'with SMTP'", re.search(r"\bwith SMTP id ", head), head)
    check("local: HELO text cannot inject a header line",
          helo_refused and "Injected" not in [k for k in msg.keys()] and len(msg.get_all("Received")) == 1, head)
    check("local: a message without Date/Message-ID/From is stored as sent (smtpd invents no headers)",
          msg["Date"] is None and msg["Message-ID"] is None and msg["From"] is None, head)
    # SMTPUTF8 transaction: RFC 6531 §3.7.3 "UTF8SMTP".
    submit(m, "rp@remote.test", [("local3@localhost", [])], "utf8 local", utf8=True)
    files = wait_for(lambda: m.mailbox("local3"), 15)
    head = open(files[0], "rb").read().split(b"\n\n")[0].decode() if files else ""
    check("local: RFC 6531 §3.7.3 SMTPUTF8 session is 'with UTF8SMTP'", re.search(r"\bwith UTF8SMTP id ", head), head)


def dsn_capable_next_hop():
    srv = ScriptedServer(decide)
    srv.extensions = ["DSN"]
    m = MTA(extra="relayhost = [127.0.0.1]:%d\nmaximal_backoff_time = 1s\n" % srv.port, name="dsnhop").start()
    try:
        submit(m, "hop@localhost", [("ok2@remote.test", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Ok2+2BX@remote.test"])],
               "dsn hop", mail_opts=["RET=HDRS", "ENVID=hop+2B1"])
        ok = wait_for(lambda: srv.delivered, 20)
        cmds = [c for c in srv.commands if c.startswith(("MAIL", "RCPT"))]
        check("DSN next hop: RFC 3461 §5.2.1 RET and ENVID passed on", ok and any(
            "RET=HDRS" in c and "ENVID=hop+2B1" in c for c in cmds if c.startswith("MAIL")), cmds)
        check("DSN next hop: RFC 3461 §5.2.1 NOTIFY and ORCPT passed on", any(
            "NOTIFY=SUCCESS,FAILURE" in c.upper() and "ORCPT=rfc822;Ok2+2BX@remote.test" in c for c in cmds), cmds)
        time.sleep(1.5)
        check("DSN next hop: RFC 3461 §5.2.1 no 'relayed' DSN when the next hop takes over", m.mailbox("hop") == [],
              [str(x["Subject"]) for x in dsns(m, "hop")])
    finally:
        m.stop()
        srv.stop()


def main():
    srv = ScriptedServer(decide)
    m = MTA(extra="relayhost = [127.0.0.1]:%d\nmaximal_backoff_time = 1s\ndelay_warning_time = 2s\n"
                  "maximal_queue_lifetime = 7s\n" % srv.port, name="dsnfmt").start()
    try:
        failures(m)
        ret_variants(m)
        notify_variants(m, srv)
        smtputf8(m)
        received_and_local(m)
    finally:
        m.stop()
        srv.stop()
    dsn_capable_next_hop()
    finish()


if __name__ == "__main__":
    main()
