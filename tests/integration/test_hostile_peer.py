"""Hostile next hops for the outbound client (mta-smtp): scripted servers (scriptsmtp.Esmtp) on
127.0.0.121-156, reached through NSD MX records (smtp_port = one random port) or transport_map (LMTP),
each answering one way nobody should: malformed codes (2500, 25, abc, a multiline reply whose last line
has another code), 354/334 to MAIL, an unsolicited 250 after the greeting, replies one byte at a time,
a 250 before the body was sent, hostile text (ANSI escapes, NUL, CR, 8-bit) in 5xx replies, a 100 KiB
continuation line, 10 MB of "250-" lines, a greeting without CRLF, 421 at EHLO/MAIL/RCPT/DATA/dot,
SIZE 100 / SIZE garbage / lowercase duplicated keywords, more or fewer pipelined or LMTP replies,
LMTP sockets missing or not sockets, STARTTLS refused (may/encrypt), TLS garbage or hang-up, a cached
connection closed silently, 421 to RSET, bare CR/LF bodies from sendmail -i. Invariants: a recipient
logged delivered was received in full by that server; every recipient ends delivered, bounced with a
DSN or still queued; nothing raw reaches the log or a DSN; mta-smtp never restarts, memory stays bounded."""
import os
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dnszone import Nsd  # noqa: E402
from mtatest import BIN, check, delivery_events, finish, free_port, Guard, MTA, wait_for  # noqa: E402
from queuetest import queue_json  # noqa: E402
from scriptsmtp import BASE_EXT, Esmtp  # noqa: E402

HOSTS = range(121, 157)
EVIL = b"\x1b[31mRED\x1b[0m \xff\xfe caf\xc3\xa9\x00nul\rX-Evil: 1"
BIG = b"".join(b"%06d %s\r\n" % (i, b"y" * 90) for i in range(12000))  # ~1.2 MB: more than one write burst
SENT = []  # every recipient submitted


def trickle(data):
    def send(srv, conn, cmd=None):
        for i in range(len(data)):
            conn.sendall(data[i:i + 1])
            time.sleep(0.002)
        return b""
    return send


def then_close(data, delay=0.0):
    def send(srv, conn, cmd=None):
        conn.sendall(data)
        time.sleep(delay)
        return None
    return send


def flood(srv, conn, cmd):
    line = b"250-" + b"f" * 76 + b"\r\n"
    block = line * 1000
    try:
        for _ in range(10 * 1024 * 1024 // len(block)):
            conn.sendall(block)
        conn.sendall(b"250 done\r\n")
        with srv.lock:
            srv.notes["flood_sent_all"] = True
    except OSError:
        pass
    return None


def tls_evil(garbage):
    def starttls(srv, conn, cmd):
        conn.sendall(b"220 2.0.0 go ahead\r\n")
        conn.settimeout(10)
        try:
            hello = conn.recv(4096)
            with srv.lock:
                srv.notes["client_hello"] = hello[:1] == b"\x16"
            if garbage:
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n" + bytes(range(256)) * 8)
            time.sleep(0.5)
        except OSError:
            pass
        return None
    return starttls


def reuse_mail(srv, conn, cmd):
    """A cached connection the server dropped silently: the second MAIL on a session is never answered."""
    with srv.lock:
        n = srv.notes.setdefault(id(conn), 0) + 1
        srv.notes[id(conn)] = n
    return b"250 2.1.0 ok\r\n" if n == 1 else None


LHLO = {"LHLO": b"250-lmtp.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"}
SERVERS = {  # octet: (name, Esmtp keyword arguments)
    121: ("m2500", dict(replies={"MAIL": b"2500 ok\r\n"})),
    122: ("m25", dict(replies={"MAIL": b"25 ok\r\n"})),
    123: ("mabc", dict(replies={"MAIL": b"abc\r\n"})),
    124: ("mixcode", dict(replies={"MAIL": b"250-first\r\n251 last\r\n"})),
    125: ("m354", dict(replies={"MAIL": b"354 go ahead\r\n"})),
    126: ("m334", dict(replies={"MAIL": b"334 VXNlcm5hbWU6\r\n"})),
    127: ("unsol", dict(greeting=b"220 hp.test ESMTP\r\n250 2.0.0 unsolicited\r\n")),
    128: ("trickle", dict(greeting=lambda s, c: trickle(b"220-hp.test\r\n220 ESMTP\r\n")(s, c),
                         replies={"EHLO": trickle(b"250-hp.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
                                  "MAIL": trickle(b"250 2.1.0 ok\r\n"),
                                  "DATA": trickle(b"354 go\r\n"), "DOT": trickle(b"250 2.0.0 queued\r\n")})),
    129: ("early", dict(replies={"DATA": b"354 go\r\n250 2.0.0 fake early\r\n"})),
    130: ("earlybig", dict(replies={"DATA": b"354 go\r\n250 2.0.0 fake early\r\n"})),
    131: ("dot5xx", dict(replies={"DOT": b"554 5.7.1 rejected " + EVIL + b"\r\n"})),
    132: ("rcpt5xx", dict(replies={"RCPT": b"550-5.1.1 no " + EVIL + b"\r\n550 5.1.1 \x1b]0;title\x07end\r\n"})),
    133: ("cont100k", dict(ehlo_reply=b"250-hp.test\r\n250-" + b"x" * 100 * 1024 + b"\r\n250 PIPELINING\r\n")),
    134: ("flood", dict(replies={"MAIL": flood})),
    135: ("nocrlf", dict(greeting=lambda s, c: then_close(b"220 " + b"x" * (1 << 20), 8)(s, c))),
    136: ("e421", dict(ehlo_reply=b"421 4.3.2 going down\r\n")),
    137: ("m421", dict(replies={"MAIL": then_close(b"421 4.3.2 going down\r\n")})),
    138: ("r421", dict(replies={"RCPT": then_close(b"421 4.3.2 going down\r\n")})),
    139: ("good", {}),
    140: ("d421", dict(replies={"DATA": then_close(b"421 4.3.2 going down\r\n")})),
    141: ("dot421", dict(replies={"DOT": then_close(b"421 4.3.2 going down\r\n")})),
    142: ("size100", dict(ext=("PIPELINING", "SIZE 100", "8BITMIME"))),
    143: ("sizejunk", dict(ext=("PIPELINING", "SIZE lots", "8BITMIME"))),
    144: ("lowerdup", dict(ext=("pipelining", "size 1000000", "SIZE 1000000", "8bitmime", "chunking", "chunking"))),
    145: ("extra", dict(replies={"MAIL": b"250 2.1.0 ok\r\n250 2.1.0 ok\r\n250 2.1.0 extra\r\n"})),
    146: ("fewer", dict(replies={"MAIL": b"", "DATA": then_close(b"354 go\r\n", 3)})),
    147: ("tls454", dict(ext=BASE_EXT + ("STARTTLS",), replies={"STARTTLS": b"454 4.7.0 TLS not available\r\n"})),
    148: ("tls454enc", dict(ext=BASE_EXT + ("STARTTLS",), replies={"STARTTLS": b"454 4.7.0 TLS not available\r\n"})),
    149: ("tlsjunk", dict(ext=BASE_EXT + ("STARTTLS",), replies={"STARTTLS": tls_evil(True)})),
    150: ("tlsclose", dict(ext=BASE_EXT + ("STARTTLS",), replies={"STARTTLS": tls_evil(False)})),
    151: ("reuse", dict(replies={"MAIL": reuse_mail})),
    152: ("rset421", dict(replies={"RCPT": lambda s, c, cmd: b"550 5.1.1 no\r\n" if "<no@" in cmd else b"250 ok\r\n",
                                  "RSET": then_close(b"421 4.3.2 shutting down\r\n")})),
    153: ("lmtpfew", dict(replies=dict(LHLO, DOT=then_close(b"250 2.0.0 first ok\r\n", 2)))),
    154: ("lmtpmore", dict(replies=dict(LHLO, DOT=b"250 2.0.0 ok\r\n250 2.0.0 extra\r\n452 4.0.0 more\r\n"))),
    155: ("dots", {}),
}
NAMES = {name: octet for octet, (name, _) in SERVERS.items()}
LMTP = ("lmtpfew", "lmtpmore")


def zone():
    z = ("$ORIGIN hp.example.\n$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 86400 300\n@ IN NS ns\n"
         "ns IN A 127.0.0.1\n")
    for octet, (name, _) in SERVERS.items():
        z += "mx%d IN A 127.0.0.%d\n%s IN MX 10 mx%d\n" % (octet, octet, name, octet)
    return z + "e421 IN MX 20 mx139\nm421 IN MX 20 mx139\n"


def addr(name, user="u"):
    return "%s@%s.hp.example" % (user, name)


def send(m, rcpts, tag, body=b"Subject: %s\r\n\r\nhello\r\n.dot\r\n"):
    SENT.extend(rcpts)
    with smtplib.SMTP("127.0.0.1", m.port, timeout=30) as s:
        s.sendmail("bouncer@localhost", rcpts, body.replace(b"%s", tag.encode()))


def final(m, a, timeout=20):
    """The first delivered/bounced event, else the first deferred one."""
    ev = wait_for(lambda: [e for e in delivery_events(m, a) if e[0] != "deferred"], timeout)
    if ev:
        return ev[0]
    ev = delivery_events(m, a)
    return ev[0] if ev else (None, None, None)


def first(m, a, timeout=20):
    ev = wait_for(lambda: delivery_events(m, a), timeout)
    return ev[0] if ev else (None, None, None)


def received(s, a):
    """Transactions that brought a body (an empty one is what a client sends after 354 with no recipients)."""
    return [t for t in s.messages_to(a) if t["data"]]


def deferred_only(m, a, s, why, name):
    """Deferred (reason matching `why`), never bounced, and the server received no message for it."""
    ev = first(m, a)
    bad = [e for e in delivery_events(m, a) if e[0] != "deferred"]
    check(name, ev[0] == "deferred" and re.search(why, ev[2] or "") and not bad and not received(s, a),
          "%r bad=%r tx=%d" % (ev, bad, len(received(s, a))))


def replies(m, s):
    for name, why in (("m2500", "malformed reply separator"), ("m25", "malformed reply code"),
                      ("mabc", "malformed reply code"), ("mixcode", "inconsistent code"),
                      ("m354", "354 go ahead"), ("m334", "334 VXNlcm5hbWU6"), ("unsol", "."),
                      ("extra", "."), ("fewer", "."), ("cont100k", "reply line too long"),
                      ("flood", "too many reply lines"), ("nocrlf", "reply line too long"),
                      ("r421", "421 4.3.2"), ("d421", "421 4.3.2"), ("early", "premature"),
                      ("earlybig", "premature")):
        deferred_only(m, addr(name), s[NAMES[name]], why, "hostile_%s_deferred" % name)
    ev = final(m, addr("trickle"))
    check("hostile_byte_at_a_time_delivered", ev[0] == "delivered" and len(s[128].messages_to(addr("trickle"))) == 1, ev)
    ev = first(m, addr("dot421"))
    check("hostile_dot421_deferred_not_bounced", ev[0] == "deferred" and "421 4.3.2" in ev[2] and
          not [e for e in delivery_events(m, addr("dot421")) if e[0] == "bounced"], ev)
    ev = final(m, addr("e421"))
    check("hostile_ehlo421_next_mx", ev[0] == "delivered" and "127.0.0.139" in ev[1] and s[139].messages_to(addr("e421")), ev)
    ev = final(m, addr("m421"))
    check("hostile_mail421_next_mx", ev[0] == "delivered" and "127.0.0.139" in ev[1] and s[139].messages_to(addr("m421")), ev)


def hostile_text(m, s):
    for name, stage in (("dot5xx", "554 5.7.1 rejected"), ("rcpt5xx", "550 5.1.1 no")):
        ev = final(m, addr(name))
        check("hostile_%s_bounced_sanitized" % name, ev[0] == "bounced" and stage in ev[2] and "X-Evil: 1" in ev[2], ev)
        d = wait_for(lambda: [p for p in m.mailbox("bouncer") if addr(name).encode() in open(p, "rb").read()], 20)
        raw = open(d[0], "rb").read() if d else b""
        bare_cr = raw.replace(b"\r\n", b"").count(b"\r")
        check("hostile_%s_dsn_clean" % name, d and stage.encode() in raw and b"\x1b" not in raw and b"\x00" not in raw
              and b"\x07" not in raw and not bare_cr and not re.search(rb"(?m)^X-Evil", raw), raw[-600:])


def extensions(m, s):
    ev = final(m, addr("size100"))
    cmds = [c for _, c in s[142].commands]
    check("ehlo_size100_bounced_5_3_4", ev[0] == "bounced" and ev[2].startswith("5.3.4") and
          not any(c.upper().startswith(("MAIL", "DATA")) for c in cmds), "%r %r" % (ev, cmds))
    ev = final(m, addr("sizejunk"))
    check("ehlo_size_garbage_delivered", ev[0] == "delivered" and len(s[143].messages_to(addr("sizejunk"))) == 1, ev)
    ev = final(m, addr("lowerdup"))
    tx = s[144].messages_to(addr("lowerdup"))
    check("ehlo_lowercase_duplicates_understood", ev[0] == "delivered" and len(tx) == 1 and tx[0]["via"] == "BDAT" and
          " SIZE=" in tx[0]["mail"], "%r %r" % (ev, tx and (tx[0]["mail"], tx[0]["via"])))


def tls(m, s):
    ev = final(m, addr("tls454"))
    check("starttls_454_may_delivered_plain", ev[0] == "delivered" and len(s[147].messages_to(addr("tls454"))) == 1, ev)
    deferred_only(m, addr("tls454enc"), s[148], r"^4\.7\.4 .*refused STARTTLS", "starttls_454_encrypt_deferred")
    check("starttls_454_encrypt_no_mail", not any(c.upper().startswith("MAIL") for _, c in s[148].commands), s[148].commands)
    # Level may: a failed handshake means one more connection to the same address without TLS (as
    # Postfix's RETRY_AS_PLAINTEXT); nothing is ever sent on the connection whose handshake failed.
    for name, octet in (("tlsjunk", 149), ("tlsclose", 150)):
        ev = final(m, addr(name))
        cmds = s[octet].commands
        tls_sessions = {n for n, c in cmds if c.upper() == "STARTTLS"}
        check("starttls_%s_may_retried_in_plaintext" % name, ev[0] == "delivered" and s[octet].notes.get("client_hello")
              and len(s[octet].messages_to(addr(name))) == 1 and "event=tls_fallback" in m.log_text(), (ev, cmds))
        check("starttls_%s_nothing_sent_on_the_failed_tls_session" % name,
              not any(c.upper().startswith("MAIL") for n, c in cmds if n in tls_sessions), cmds)


def reuse(m, s):
    ev = final(m, addr("reuse", "r1"))
    send(m, [addr("reuse", "r2")], "reuse2")
    ev2 = final(m, addr("reuse", "r2"))
    check("reuse_silently_dropped_connection_redelivered", ev[0] == "delivered" and ev2[0] == "delivered" and
          len(s[151].messages_to(addr("reuse", "r2"))) == 1 and s[151].sessions >= 2, "%r %r" % (ev, ev2))
    ev = final(m, addr("rset421", "no"))
    send(m, [addr("rset421", "yes")], "rset2")
    ev2 = final(m, addr("rset421", "yes"))
    verbs = [c.split(" ")[0].upper() for _, c in s[152].commands]
    check("rset_421_bounce_then_fresh_connection", ev[0] == "bounced" and "RSET" in verbs and ev2[0] == "delivered"
          and len(s[152].messages_to(addr("rset421", "yes"))) == 1, "%r %r %r" % (ev, ev2, verbs))


def lmtp(m, s, port):
    a, b = addr("lmtpfew", "a"), addr("lmtpfew", "b")
    ea, eb = final(m, a), first(m, b)
    check("lmtp_fewer_replies_rest_deferred", ea[0] == "delivered" and eb[0] == "deferred" and
          len(s[153].messages_to(a)) >= 1 and not [e for e in delivery_events(m, b) if e[0] == "bounced"], "%r %r" % (ea, eb))
    ev = final(m, addr("lmtpmore"))
    send(m, [addr("lmtpmore", "again")], "more2")
    ev2 = final(m, addr("lmtpmore", "again"))
    check("lmtp_extra_replies_harmless", ev[0] == "delivered" and ev2[0] == "delivered" and
          len(s[154].messages_to(addr("lmtpmore"))) == 1, "%r %r" % (ev, ev2))
    for name in ("nosock", "notsock"):
        ev = first(m, addr(name))
        check("lmtp_unix_%s_deferred" % name, ev[0] == "deferred" and "unix:/" in (ev[1] + ev[2]) and
              not [e for e in delivery_events(m, addr(name)) if e[0] == "bounced"], ev)


def dots(m, s):
    body = b"Subject: dots\n\n.lead\nbare lf\rbare cr\r\n..two\n.\nend"
    SENT.append(addr("dots"))
    r = subprocess.run([os.path.join(BIN, "sendmail"), "-C", m.conf, "-i", "-f", "bouncer@localhost", addr("dots")],
                       input=body, capture_output=True, timeout=30)
    ev = final(m, addr("dots"))
    tx = s[155].messages_to(addr("dots"))
    cmds = [c for _, c in s[155].commands]
    data = tx[0]["data"] if tx else b""
    check("sendmail_bare_cr_lf_crlf_on_wire", r.returncode == 0 and ev[0] == "delivered" and
          b"\r\n..lead\r\nbare lf\r\nbare cr\r\n...two\r\n..\r\nend\r\n" in data and
          b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b""),
          "%r %r %r" % (r.stderr, ev, data[-120:] or cmds[-6:]))
    # RFC 5321 4.5.3.1.6: no line over 998 octets goes out; a longer one is broken with CRLF SPACE.
    long_body = b"Subject: long\n\n" + b"L" * 2500 + b"\nend\n"
    SENT.append(addr("dots", "long"))
    r = subprocess.run([os.path.join(BIN, "sendmail"), "-C", m.conf, "-i", "-f", "bouncer@localhost", addr("dots", "long")],
                       input=long_body, capture_output=True, timeout=30)
    ev = final(m, addr("dots", "long"))
    tx = s[155].messages_to(addr("dots", "long"))
    data = tx[0]["data"] if tx else b""
    lines = data.split(b"\r\n")
    check("long_line_broken_at_998_with_crlf_space", ev[0] == "delivered" and max(map(len, lines or [b""])) == 998 and
          b"\r\n".join(lines).replace(b"\r\n ", b"").count(b"L" * 2500) == 1, "%r %r" % (ev, [len(x) for x in lines]))


def invariants(m, s, smtp_pids, hwm0):
    falsely = []
    for a in SENT:
        for ev, relay, text in delivery_events(m, a):
            octet = re.search(r"\[127\.0\.0\.(\d+)\]", relay)
            if ev == "delivered" and octet and not received(s[int(octet.group(1))], a):
                falsely.append((a, relay, text))
    check("delivered_means_received_in_full", not falsely, falsely)
    queued = {r["address"] for msg in queue_json(m).get("messages", []) for r in msg["recipients"]}
    lost = [a for a in SENT if a not in queued and not [e for e in delivery_events(m, a) if e[0] != "deferred"]]
    check("no_recipient_lost", not lost, lost)
    bounced = [a for a in SENT if [e for e in delivery_events(m, a) if e[0] == "bounced"]]
    # DSNs are queued and delivered like any mail: give the last ones time to arrive.
    missing = lambda: [a for a in bounced if a.encode() not in b"".join(open(p, "rb").read() for p in m.mailbox("bouncer"))]
    wait_for(lambda: not missing(), 20)
    check("every_bounce_has_dsn", not missing(), "%r of %r; %d messages in bouncer's Maildir" %
          (missing(), bounced, len(m.mailbox("bouncer"))))
    log = open(m.log_path, "rb").read()
    check("log_no_raw_control_bytes", not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", log),
          [l[:200] for l in log.split(b"\n") if re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", l)][:3])
    check("log_no_injected_line", not re.search(rb"(?m)^X-Evil", log), "")
    st = m.ctl("status").stdout
    restarts = re.findall(r"role=(\S+) .*restarts=(\d+)", st)
    check("hostile_no_role_restarted", restarts and all(n == "0" for _, n in restarts), st)
    check("hostile_smtp_pids_unchanged", sorted(m.pids("mta-smtp")) == smtp_pids, "%r -> %r" % (smtp_pids, m.pids("mta-smtp")))
    hwm = max(vm_hwm(p) for p in smtp_pids)
    check("hostile_smtp_memory_bounded", hwm - hwm0 < 48 * 1024, "VmHWM %d kB -> %d kB" % (hwm0, hwm))


def vm_hwm(pid):
    try:
        return int(re.search(r"VmHWM:\s+(\d+)", open("/proc/%d/status" % pid).read()).group(1))
    except (OSError, AttributeError):
        return 0


def submit(m):
    for name in NAMES:
        if name in ("good", "reuse", "rset421", "lmtpfew", "dots"):
            continue
        send(m, [addr(name)], name, body=b"Subject: big\r\n\r\n" + BIG if name == "earlybig" else
             b"Subject: %s\r\n\r\nhello\r\n.dot\r\n")
    send(m, [addr("reuse", "r1")], "reuse1")
    send(m, [addr("rset421", "no")], "rset1")
    send(m, [addr("lmtpfew", "a"), addr("lmtpfew", "b")], "lmtpfew")
    send(m, [addr("nosock"), addr("notsock")], "unix")


def main():
    tmp = tempfile.mkdtemp(prefix="mtatest-hostile-peer-")
    os.chmod(tmp, 0o755)
    port = free_port(*["127.0.0.%d" % i for i in HOSTS])
    nsd = Nsd(tmp, {"hp.example": zone()})
    s = {}
    with Guard("hostile_peer") as g:
        g.cleanups += [lambda: [srv.close() for srv in s.values()], nsd.stop]
        if not check("hostile_peer_nsd_up", nsd.wait_answering("mx139.hp.example", "127.0.0.139"), "nsd did not answer"):
            return
        s = {octet: Esmtp("127.0.0.%d" % octet, port, **kw) for octet, (_, kw) in SERVERS.items()}
        with open(os.path.join(tmp, "transport.txt"), "w") as f:
            f.write("".join("%s.hp.example lmtp:[127.0.0.%d]:%d\n" % (n, NAMES[n], port) for n in LMTP) +
                    "nosock.hp.example lmtp:unix:/no-such.sock\nnotsock.hp.example lmtp:unix:/not-a-socket\n")
        with open(os.path.join(tmp, "tls.txt"), "w") as f:
            f.write("tls454enc.hp.example encrypt\n")
        for kind, src in (("transport", "transport.txt"), ("tls_policy", "tls.txt")):
            r = subprocess.run([os.path.join(BIN, "mtamap"), "-t", kind, os.path.join(tmp, src)], capture_output=True,
                               text=True, timeout=30)
            if not check("hostile_peer_mtamap_" + kind, r.returncode == 0, r.stderr):
                return
        g.log = m = MTA(name="hostile-peer", extra="smtp_port = %d\ndns_forwarder = %s\ndns_insecure_domains = hp.example\n"
                "maximal_backoff_time = 2s\ndelay_warning_time = 0\nsmtp_helo_timeout = 6s\ntransport_map = %s\n"
                "smtp_tls_policy_map = %s\n" % (port, nsd.forwarder(), os.path.join(tmp, "transport.lmdb"),
                                                 os.path.join(tmp, "tls.lmdb"))).start()
        g.cleanups.insert(0, m.stop)
        open(os.path.join(m.spool, "empty", "not-a-socket"), "w").close()
        smtp_pids = sorted(m.pids("mta-smtp"))
        hwm0 = max(vm_hwm(p) for p in smtp_pids)
        submit(m)
        replies(m, s)
        hostile_text(m, s)
        extensions(m, s)
        tls(m, s)
        reuse(m, s)
        lmtp(m, s, port)
        dots(m, s)
        invariants(m, s, smtp_pids, hwm0)
    if os.environ.get("MTA_KEEP_TMP") is None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    t0 = time.time()
    main()
    print("hostile peer suite took %.0f s" % (time.time() - t0))
    finish()
