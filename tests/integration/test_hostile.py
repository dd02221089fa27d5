"""Hostile and RFC-edge input against mta-smtpd (command grammar, VRFY/EXPN, addresses, reply hygiene,
published attacks), written as an outside black-box suite would: only cases test_smtpd.py and
test_protocol.py do not cover. After every scenario the mta-smtpd processes must be the same ones
(no crash, no restart) and the log must show no signal or sanitizer report.
STARTTLS/AUTH/resources: test_hostile_tls.py; data phase: test_hostile_data.py."""
import os
import re

from hostile import make_instance, raw_session, run_all
from mtatest import check, finish, wait_for
from test_smtpd import OUTSIDE, Client, session, start_data


# ---- 1. RFC 5321 §4.1 grammar edges ----

def grammar(m):
    c = session(m)
    r = c.cmd("MAIL FROM: <a@b.example>")
    check("grammar: MAIL FROM: <addr> (space after colon) accepted 250 2.1.0", r.startswith("250 2.1.0"), r)
    c.cmd("RSET")
    r = c.cmd("MAIL FROM:<a@b.example>   ")
    check("grammar: trailing spaces after the path accepted", r.startswith("250 2.1.0"), r)
    c.cmd("RSET")
    r = [c.cmd("MAIL  FROM:<a@b.example>"), c.cmd("RCPT   TO:<u@localhost>"), c.cmd("RSET")]
    check("grammar: extra spaces before FROM:/TO: accepted (as Postfix)", r[0].startswith("250 2.1.0") and
          r[1].startswith("250 2.1.5"), r)
    r = c.cmd("MAIL FROM:<a@b.example>\t")
    check("grammar: a tab after the path refused 501 (SP only)", r.startswith("501"), r)
    r = c.cmd("MAIL FROM:a@b.example")
    check("grammar: MAIL FROM without <> refused 501 5.1.7", r.startswith("501 5.1.7"), r)
    r = c.cmd("MAIL FROM:<a@b.example")
    check("grammar: MAIL FROM:<addr without '>' refused 501 5.1.7", r.startswith("501 5.1.7"), r)
    r = c.cmd("MAIL FROM:<a@b.example>junk")
    check("grammar: bytes glued to '>' refused 501", r.startswith("501"), r)
    r = c.cmd("MAIL FROM:<postmaster>")
    check("grammar: MAIL FROM:<postmaster> without domain refused 501 5.1.7", r.startswith("501 5.1.7"), r)
    for verb in ("HELO", "EHLO", "HELO ", "EHLO  "):
        r = c.cmd(verb)
        check("grammar: %r without argument 501 5.5.4" % verb, r.startswith("501 5.5.4"), r)
    for lit in ("[127.0.0.1]", "[IPv6:::1]", "[IPv6:2001:db8::1]", "win_pc.corp.example"):
        c.send("EHLO %s\r\n" % lit)
        r = c.reply()
        check("grammar: EHLO %s accepted 250" % lit, r[0].startswith("250-") and r[-1].startswith("250 "), r)
    for lit in ("[300.1.1.1]", "[IPv6:zz::1]", "[127.0.0.1", "[IPv7:::1]", "bad name.example", "-lead.example"):
        r = c.cmd("EHLO %s" % lit)
        check("grammar: EHLO %s refused 501 5.5.4" % lit, r.startswith("501 5.5.4"), r)
    c.close()
    # A second EHLO or HELO is an implicit RSET (RFC 5321 §4.1.4).
    for again in ("EHLO client.test.example", "HELO client.test.example"):
        c = session(m)
        c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<u@localhost>\r\n%s\r\nDATA\r\nRCPT TO:<u@localhost>\r\n" % again)
        r = [c.reply()[-1] for _ in range(5)]
        check("grammar: %s mid-transaction resets it (DATA and RCPT then 503 5.5.1)" % again.split()[0],
              r[0].startswith("250") and r[1].startswith("250") and r[2].startswith("250") and
              r[3].startswith("503 5.5.1") and r[4].startswith("503 5.5.1"), r)
        c.close()
    # RSET in every state.
    c = Client(m.port, OUTSIDE)
    c.last()
    r = [c.cmd("RSET"), c.cmd("MAIL FROM:<a@b.example>")]
    check("grammar: RSET before EHLO 250, still needs EHLO", r[0].startswith("250 2.0.0") and r[1].startswith("503 5.5.1"), r)
    c.cmd("EHLO client.test.example")
    r = [c.cmd("RSET"), c.cmd("MAIL FROM:<a@b.example>"), c.cmd("RSET"), c.cmd("RCPT TO:<u@localhost>")]
    check("grammar: RSET after MAIL 250, RCPT then 503 5.5.1", r[0].startswith("250") and r[1].startswith("250") and
          r[2].startswith("250 2.0.0") and r[3].startswith("503 5.5.1"), r)
    r = [c.cmd("MAIL FROM:<a@b.example>"), c.cmd("RCPT TO:<u@localhost>"), c.cmd("RSET"), c.cmd("DATA")]
    check("grammar: RSET after RCPT 250, DATA then 503 5.5.1", r[2].startswith("250 2.0.0") and
          r[3].startswith("503 5.5.1"), r)
    r = c.cmd("RSET x")
    check("grammar: RSET with an argument 501 5.5.4", r.startswith("501 5.5.4"), r)
    r = c.cmd("NOOP some argument")
    check("grammar: NOOP with an argument 250 2.0.0 (RFC 5321 §4.1.1.9)", r.startswith("250 2.0.0"), r)
    c.send("HELP\r\n")
    r = c.reply()
    check("grammar: HELP 214 2.0.0", all(x.startswith("214") for x in r) and "2.0.0" in r[-1], r)
    c.send("HELP MAIL\r\n")
    r = c.reply()
    check("grammar: HELP MAIL 214", r[-1].startswith("214"), r)
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<u@localhost>\r\nDATA now\r\nRCPT TO:<v@localhost>\r\n")
    r = [c.last() for _ in range(4)]
    check("grammar: DATA with an argument 501 5.5.4, transaction kept", r[2].startswith("501 5.5.4") and
          r[3].startswith("250 2.1.5"), r)
    c.cmd("RSET")
    for verb in ("TURN", "ETRN localhost", "ATRN localhost", "SEND FROM:<a@b.example>", "SOML FROM:<a@b.example>",
                 "SAML FROM:<a@b.example>"):
        r = c.cmd(verb)
        check("grammar: %s refused 502 5.5.1 (not implemented)" % verb.split()[0], r.startswith("502 5.5.1"), r)
    r = c.cmd("QUIT now")
    check("grammar: QUIT with an argument 221 2.0.0 and close", r.startswith("221 2.0.0") and c.closed(), r)


def verify(m):
    c = session(m)
    answers = [c.cmd("VRFY %s" % u) for u in ("postmaster", "alice", "no-such-user-4711", "<alice@localhost>")]
    check("vrfy: 252 2.x for every name, never confirms or denies",
          all(a.startswith("252 2.") for a in answers) and len(set(a[4:] for a in answers)) == 1, answers)
    answers = [c.cmd("EXPN %s" % u) for u in ("postmaster", "no-such-list")]
    check("expn: 502 5.5.1, same answer for every name", all(a.startswith("502 5.5.1") for a in answers) and
          answers[0] == answers[1], answers)
    c.close()


# ---- 2. addresses ----

def addresses(m):
    c = session(m)
    c.cmd("MAIL FROM:<a@b.example>")
    cases = [
        ("local part of 64 octets", "<%s@localhost>" % ("l" * 64), "250 2.1.5"),
        ("local part of 65 octets", "<%s@localhost>" % ("l" * 65), "501 5.1.3"),
        ("domain over 255 octets", "<u@%s.localhost>" % ".".join(["d" * 60] * 5), "501 5.1.3"),
        ("path over 256 octets", "<@%s:u@localhost>" % ".".join(["r" * 60] * 4), "501 5.1.3"),
        ("empty local part", "<@localhost>", "501 5.1.3"),
        ("empty quoted local part", '<""@localhost>', "501 5.1.3"),
        ("null path", "<>", "501 5.1.3"),
        ("postmaster", "<postmaster>", "250 2.1.5"),
        ("POSTMASTER", "<POSTMASTER>", "250 2.1.5"),
        ("PostMaster@localhost", "<PostMaster@localhost>", "250 2.1.5"),
        ("postmaster with a source route", "<@a.example:postmaster>", "501 5.1.3"),
        ("quoted postmaster", '<"postmaster">', "501 5.1.3"),
        ("unterminated quote", '<"abc@localhost>', "501 5.1.3"),
        ("escaped closing quote", '<"abc\\"@localhost>', "501 5.1.3"),
        ("two @", "<a@b@localhost>", "501 5.1.3"),
        ("trailing dot in local part", "<a.@localhost>", "501 5.1.3"),
        ("double dot in local part", "<a..b@localhost>", "501 5.1.3"),
        ("IPv4 literal with leading zero", "<u@[127.0.0.01]>", "501 5.1.3"),
        ("General-address-literal", "<u@[x-tag:abc]>", "501 5.1.3"),
    ]
    for name, path, want in cases:
        r = c.cmd("RCPT TO:%s" % path)
        check("address: RCPT %s -> %s" % (name, want), r.startswith(want), r)
    c.close()
    # Address literals never relay for an outside client, whatever the spelling.
    for lit in ("[IPv6:::ffff:127.0.0.1]", "[IPv6:0:0:0:0:0:0:0:1]", "[ipv6:::1]", "[127.0.0.9]", "[10.0.0.1]"):
        c = session(m)
        c.cmd("MAIL FROM:<a@b.example>")
        r = c.cmd("RCPT TO:<postmaster@%s>" % lit)
        check("address: RCPT to literal %s from outside refused 5xx (no relay)" % lit, r[:1] == "5", r)
        c.close()
    # Quoted local parts with escaped quote and backslash: parsed per RFC 5321 quoted-pairSMTP.
    c = session(m)
    c.cmd("MAIL FROM:<\"odd \\\"sender\\\"\"@b.example>")
    r = c.cmd('RCPT TO:<"john\\"doe"@localhost>')
    check("address: quoted local part with an escaped quote accepted", r.startswith("250 2.1.5"), r)
    r = c.cmd('RCPT TO:<"a\\\\b"@localhost>')
    check("address: quoted local part with a backslash refused as a mailbox 550 5.1.1", r.startswith("550 5.1.1"), r)
    c.send("DATA\r\nSubject: quoted\r\n\r\nq\r\n.\r\n")
    r = [c.last() for _ in range(2)]
    check("address: message with a quoted sender queued", r[1].startswith("250 2.0.0"), r)
    c.cmd("QUIT")
    files = wait_for(lambda: m.mailbox('john"doe'), 15)
    data = open(files[0], "rb").read() if files else b""
    check("address: delivered to the mailbox of the unquoted local part, Return-Path re-quoted",
          b"Subject: quoted" in data and b'"odd \\"sender\\""@b.example' in data.split(b"\n", 1)[0], data[:300])


# ---- 3. reply hygiene ----

def hygiene(m):
    payload = (b"EHLO client.test.example\r\nHELP\r\nBOGUS \x1b[31mred\r\nEHLO \xff\xfe.example\r\n"
               b"MAIL FROM:<a@b.example> X-P=\xff\r\nMAIL FROM:<\xe9@b.example>\r\nMAIL FROM:<a@b.example>\r\n"
               b"RCPT TO:<\xc3\xa9t\xc3\xa9@localhost>\r\nRCPT TO:<x\x7fy@localhost>\r\n"
               b"RCPT TO:<someone@remote.example>\r\nRCPT TO:<\"a\\\"b\r\nVRFY <\x01>\r\nEHLO client.test.example\r\n"
               b"QUIT\r\nNOOP\r\n")
    out = raw_session(m, payload)
    check("hygiene: every reply line ends in CRLF, no bare CR or LF", not re.search(rb"[^\r]\n|\r[^\n]", out)
          and out.endswith(b"\r\n"), out[-200:])
    lines = out.split(b"\r\n")[:-1]
    check("hygiene: no reply echoes 8-bit, NUL or control bytes from the client",
          all(re.fullmatch(rb"[\x20-\x7e]*", x) for x in lines), [x for x in lines if not re.fullmatch(rb"[\x20-\x7e]*", x)])
    bad, group = [], []
    for x in lines:  # multi-line replies: ddd- ... ddd (same code), single lines ddd SP
        if not re.match(rb"^\d{3}[ -]", x):
            bad.append(x)
            continue
        group.append(x)
        if x[3:4] == b" ":
            if len({g[:3] for g in group}) != 1:
                bad.append(group)
            group = []
    check("hygiene: every line is ddd-/ddd with one code per reply", not bad and not group, bad or group)
    check("hygiene: 221 after QUIT is the last line, nothing answered after it (connection closed)",
          lines and lines[-1].startswith(b"221 2.0.0"), lines[-3:])
    # Refused recipients are named only in their canonical form, never with the client's raw bytes.
    c = session(m)
    c.cmd("MAIL FROM:<a@b.example> SMTPUTF8")
    c.send(b"RCPT TO:<\xc3\xa9t\xc3\xa9@remote.example>\r\n")
    r = c.last()
    check("hygiene: relay refusal of a UTF-8 address 554 5.7.1 (SMTPUTF8 session)", r.startswith("554 5.7.1"), r)
    c.close()


# ---- 4. published attacks ----

def attacks(m):
    canary = "/tmp/mtatest-hostile-pwned"
    if os.path.exists(canary):
        os.unlink(canary)
    # CVE-2020-7247 (OpenSMTPD): shell metacharacters in the sender's local part.
    for sender in ("<;touch %s;>" % canary, "<;touch${IFS}%s;@localhost>" % canary,
                   "<;for i in 0 1 2 3 4 5 6 7 8 9 a b c d;do read r;done;sh;exit 0;>", "<`touch %s`@b.example>" % canary,
                   "<$(touch %s)@b.example>" % canary, "<|touch %s@b.example>" % canary):
        c = session(m)
        c.send("MAIL FROM:%s\r\nRCPT TO:<root@localhost>\r\nDATA\r\n" % sender)
        r = [c.last() for _ in range(3)]
        check("attack CVE-2020-7247: MAIL FROM:%s refused 501 5.1.7, no transaction" % sender,
              r[0].startswith("501 5.1.7") and r[1].startswith("503") and r[2].startswith("503"), r)
        c.close()
    # CVE-2019-10149 (Exim): string expansion in the recipient.
    exim = "<${run{\\x2Fbin\\x2Fsh\\t-c\\t\\x22touch\\t%s\\x22}}@localhost>" % canary.replace("/", "\\x2F")
    for rcpt, want in ((exim, "501 5.1.3"), ("<${run{/bin/touch %s}}@localhost>" % canary, "501 5.1.3"),
                       ("<\"${run{/bin/touch %s}}\"@localhost>" % canary, "550 5.1.1")):
        c = session(m, "127.0.0.1")
        c.cmd("MAIL FROM:<a@b.example>")
        r = c.cmd("RCPT TO:%s" % rcpt)
        check("attack CVE-2019-10149: RCPT TO:%s refused %s" % (rcpt, want), r.startswith(want), r)
        c.close()
    # An expansion-looking but valid dot-atom local part is just a name: delivered literally, nothing runs.
    c = session(m, "127.0.0.1")
    r = start_data(c, "${run{id}}@localhost")
    c.send("Subject: exim-expansion\r\n\r\n${run{id}}\r\n.\r\n")
    r.append(c.last())
    c.cmd("QUIT")
    files = wait_for(lambda: m.mailbox("${run{id}}"), 15)
    data = open(files[0], "rb").read() if files else b""
    check("attack: <${run{id}}@localhost> is a plain local part, delivered literally",
          r[1].startswith("250") and b"for <${run{id}}@localhost>" in data and b"\n${run{id}}\n" in data, (r, data[:300]))
    check("attack: no shell command ever ran", not os.path.exists(canary), canary)
    # Exim 21Nails (CVE-2020-28021/28022/28023): AUTH= and other parameter edges.
    c = session(m, "127.0.0.1")
    for name, param, want in (("AUTH= ending in '+'", "AUTH=abc+", "501 5.5.4"), ("AUTH= with '+' and one hex digit", "AUTH=a+4",
                              "501 5.5.4"), ("AUTH= with a bad hex escape", "AUTH=a+ZZ", "501 5.5.4"),
                              ("AUTH= of 1,900 octets", "AUTH=" + "A" * 1900, "501 5.5.4"),
                              ("AUTH= decoding to NUL", "AUTH=a+00b", "501 5.5.4"),
                              ("empty AUTH=", "AUTH=", "501 5.5.4"),
                              ("200 unknown parameters", " ".join("X%d=1" % i for i in range(200)), "555 5.5.4")):
        r = c.cmd("MAIL FROM:<a@b.example> " + param)
        check("attack 21Nails: MAIL %s -> %s" % (name, want), r.startswith(want), r)
    r = c.cmd("MAIL FROM:<a@b.example> AUTH=alice+40b.example")
    check("attack 21Nails: a well-formed AUTH= xtext accepted", r.startswith("250 2.1.0"), r)
    c.close()


def main():
    m = make_instance()
    try:
        run_all(m, (grammar, verify, addresses, hygiene, attacks))
    finally:
        m.stop()
    finish()


if __name__ == "__main__":
    main()
