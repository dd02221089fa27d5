"""Hostile input around TLS and AUTH in mta-smtpd (SNI attacks, STARTTLS injection on submission and
smtps, SASL edge cases, impersonation) and resource abuse (stalled TLS handshakes, byte-by-byte
commands). Same watchdog as test_hostile.py: mta-smtpd must survive every scenario unrestarted."""
import base64
import smtplib
import socket
import ssl
import struct
import time

from hostile import make_instance, run_all, smtps_session, tls_session
from mtatest import check, finish, wait_for
from test_smtpd import OUTSIDE, Client, TlsClient, client_ctx, session, start_data


def sni(m):
    # CVE-2019-15846 (Exim): an SNI ending in a backslash. STARTTLS and smtps.
    ctx = ssl.create_default_context(cafile=m.cert)
    ctx.check_hostname = False
    for name in ("STARTTLS", "smtps"):
        for server_name in ("abc\\", "a\\\\b\\", "x" * 60 + "\\"):
            c = Client(m.port if name == "STARTTLS" else m.smtps_port, OUTSIDE)
            if name == "STARTTLS":
                c.last()
                c.cmd("EHLO sni.example")
                c.cmd("STARTTLS")
            c.s = ctx.wrap_socket(c.s, server_hostname=server_name)
            c.buf = b""
            if name == "smtps":
                c.last()
            r = [c.cmd("EHLO sni.example"), c.cmd("QUIT")]
            check("attack CVE-2019-15846: %s SNI %r: handshake and session work" % (name, server_name[-6:]),
                  r[0].startswith("250 ") and r[1].startswith("221 2.0.0"), r)


# ---- 5. STARTTLS and AUTH ----

def starttls_auth(m):
    # STARTTLS injection on submission (CVE-2011-0411): plaintext behind STARTTLS is discarded.
    c = TlsClient(m.sub_port, OUTSIDE)
    c.last()
    c.cmd("EHLO client.test.example")
    c.send("STARTTLS\r\nRSET\r\nAUTH PLAIN %s\r\n" % base64.b64encode(b"\0alice\0wonderland").decode())
    r = c.last()
    c.starttls(m)
    r2 = c.cmd("NOOP")
    r3 = c.cmd("MAIL FROM:<a@b.example>")
    check("starttls: injection on submission discarded (220, then our NOOP's 250, not authenticated)",
          r.startswith("220 2.0.0") and r2.startswith("250 2.0.0") and r3.startswith("503"), (r, r2, r3))
    c.close()
    # smtps: already TLS, STARTTLS refused; commands pipelined with it inside TLS are ordinary commands.
    c = smtps_session(m)
    c.send("STARTTLS\r\nRSET\r\n")
    r = [c.last(), c.last()]
    check("starttls: on smtps refused 5xx 5.5.1, pipelined RSET answered 250",
          r[0][:1] == "5" and " 5.5.1 " in r[0] and r[1].startswith("250 2.0.0"), r)
    c.close()
    c = Client(m.smtps_port, OUTSIDE)
    c.send("EHLO plaintext.example\r\n")
    try:
        got = c.s.recv(4096)
        got += c.s.recv(4096) if got else b""
    except ConnectionResetError:
        got = b""
    check("starttls: plaintext on the smtps port gets no SMTP reply and is closed", b"250" not in got and
          not got.endswith(b"\r\n"), got)
    c.close()
    c = session(m)
    r = c.cmd("STARTTLS now")
    check("starttls: STARTTLS with an argument 501 5.5.4", r.startswith("501 5.5.4"), r)
    c.send("MAIL FROM:<a@b.example>\r\n")
    r = [c.last(), c.cmd("STARTTLS")]
    check("starttls: STARTTLS inside a transaction 503 5.5.1", r[1].startswith("503 5.5.1"), r)
    c.close()
    # AUTH edges (inside TLS on submission).
    c = tls_session(m)
    r = c.cmd("AUTH")
    check("auth: AUTH without mechanism 501 5.5.4", r.startswith("501 5.5.4"), r)
    r = c.cmd("AUTH CRAM-MD5")
    check("auth: unsupported mechanism 504 5.5.4", r.startswith("504 5.5.4"), r)
    r = c.cmd("AUTH PLAIN =")
    check("auth: PLAIN with an empty initial response ('=') refused 501/535", r[:3] in ("501", "535"), r)
    r = [c.cmd("AUTH LOGIN"), c.cmd("*")]
    check("auth: LOGIN cancelled with '*' 501 5.7.0", r[0].startswith("334") and r[1].startswith("501 5.7.0"), r)
    r = [c.cmd("AUTH PLAIN"), c.cmd("*")]
    check("auth: PLAIN cancelled with '*' 501 5.7.0", r[0] == "334 " and r[1].startswith("501 5.7.0"), r)
    r = [c.cmd("AUTH LOGIN"), c.cmd(base64.b64encode(b"alice").decode()), c.cmd("*")]
    check("auth: LOGIN cancelled at the password 501 5.7.0", r[2].startswith("501 5.7.0"), r)
    big = base64.b64encode(b"\0alice\0" + b"w" * 15000).decode()  # 20 KiB of base64
    r = c.cmd("AUTH PLAIN " + big)
    check("auth: 20 KiB AUTH line refused 500 5.5.2", r.startswith("500 5.5.2"), r)
    r = [c.cmd("AUTH PLAIN"), c.cmd(big)]
    check("auth: 20 KiB SASL response refused 500 5.5.2", r[0] == "334 " and r[1].startswith("500 5.5.2"), r)
    r = [c.cmd("NOOP"), c.cmd("MAIL FROM:<a@b.example>")]
    check("auth: session in sync and still unauthenticated after the long lines",
          r[0].startswith("250 2.0.0") and r[1].startswith("530 5.7.0"), r)
    r = c.cmd("AUTH PLAIN %s" % base64.b64encode(b"alice\0alice\0wonderland").decode())
    check("auth: authzid equal to authcid accepted 235", r.startswith("235 2.7.0"), r)
    r = [c.cmd("AUTH PLAIN %s" % base64.b64encode(b"\0bob\0builder").decode()), c.cmd("AUTH LOGIN")]
    check("auth: AUTH again after success 503 5.5.1 (no identity switch)", all(x.startswith("503 5.5.1") for x in r), r)
    c.send("EHLO again.example\r\n")
    ext = [x[4:] for x in c.reply()]
    r = c.cmd("MAIL FROM:<a@b.example>")
    check("auth: EHLO after AUTH keeps the login, AUTH no longer offered",
          r.startswith("250") and not any(e.startswith("AUTH") for e in ext), (ext, r))
    r = c.cmd("AUTH PLAIN %s" % base64.b64encode(b"\0bob\0builder").decode())
    check("auth: AUTH inside a transaction 503 5.5.1", r.startswith("503 5.5.1"), r)
    c.cmd("QUIT")
    # Impersonation: bob authenticating as alice's authzid never works.
    c = tls_session(m)
    r = c.cmd("AUTH PLAIN %s" % base64.b64encode(b"alice\0bob\0builder").decode())
    r2 = c.cmd("MAIL FROM:<a@b.example>")
    check("auth: authzid of another user refused, session stays unauthenticated",
          r[:1] == "5" and r2.startswith("530 5.7.0"), (r, r2))
    c.close()
    # AUTH pipelined with MAIL in one packet: MAIL is answered after the AUTH verdict.
    c = tls_session(m)
    c.send("AUTH PLAIN %s\r\nMAIL FROM:<alice@b.example>\r\n" % base64.b64encode(b"\0alice\0wonderland").decode())
    r = [c.last(), c.last()]
    check("auth: pipelined AUTH then MAIL: 235, then 250", r[0].startswith("235") and r[1].startswith("250 2.1.0"), r)
    c.close()
    c = tls_session(m)
    c.send("AUTH PLAIN %s\r\nMAIL FROM:<alice@b.example>\r\n" % base64.b64encode(b"\0alice\0wrong").decode())
    r = [c.last(), c.last()]
    check("auth: pipelined failed AUTH then MAIL: 535, then 530", r[0].startswith("535 5.7.8") and
          r[1].startswith("530 5.7.0"), r)
    c.close()


# ---- 6. resources ----

def half_open(m):
    socks = []
    try:
        for i in range(160):  # four source addresses, under smtpd_client_connection_limit each
            s = socket.socket()
            s.bind(("127.0.0.%d" % (40 + i % 4), 0))
            s.connect(("127.0.0.1", m.smtps_port if i % 2 else m.port))
            if i % 2:
                s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello that stops
            else:
                s.sendall(b"EHLO x.example\r\nSTARTTLS\r\n")
            socks.append(s)
        t0 = time.time()
        with smtplib.SMTP_SSL("127.0.0.1", m.smtps_port, timeout=20, context=client_ctx(m)) as s:
            s.login("alice", "wonderland")
            bad = s.sendmail("alice@b.example", ["halfopen@localhost"], b"Subject: beside half-open\r\n\r\nx\r\n")
        check("resources: 160 stalled TLS handshakes, another smtps client still sends", bad == {}, bad)
        check("resources: ... and it is delivered", wait_for(lambda: m.mailbox("halfopen"), 15), time.time() - t0)
    finally:
        for s in socks:
            s.close()


def slow_command(m):
    s = socket.socket()
    s.settimeout(10)
    s.bind((OUTSIDE, 0))
    s.connect(("127.0.0.1", m.port))
    s.recv(512)
    for b in b"EHLO slow.example\r\nNO":
        s.send(bytes([b]))
        time.sleep(0.05)
    c = session(m, "127.0.0.1")
    r = start_data(c, "beside-slow@localhost")
    c.send("Subject: beside slow\r\n\r\nx\r\n.\r\n")
    r.append(c.last())
    c.cmd("QUIT")
    check("resources: a client typing byte by byte does not block another session", r[3].startswith("250 2.0.0"), r)
    for b in b"OP\r\n":
        s.send(bytes([b]))
        time.sleep(0.05)
    data = b""
    while data.count(b"\r\n") < 2 or not data.endswith(b"250 2.0.0 Ok\r\n"):
        d = s.recv(4096)
        if not d:
            break
        data += d
    check("resources: the slow client's byte-by-byte commands are answered", data.endswith(b"250 2.0.0 Ok\r\n"), data[-200:])
    s.close()


def reset_mid_pipeline(m):
    """Clients that pipeline verbs inside TLS (STARTTLS and smtps) and reset the connection at once: the
    server's reply write fails, or its next read finds the reset, while a verb is being handled. An OpenSSL
    bufferevent that ran its callbacks from inside that verb once finished the session under it and
    mta-smtpd aborted (run_all's health check sees any restart or sanitizer report)."""
    pipeline = b"EHLO reset.example\r\nMAIL FROM:<a@b.example>\r\nRSET\r\n" * 200
    for i in range(30):
        s = socket.socket()
        s.settimeout(10)
        s.bind(("127.0.0.%d" % (50 + i % 4), 0))
        if i % 2:
            s.connect(("127.0.0.1", m.smtps_port))
        else:
            s.connect(("127.0.0.1", m.port))
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"EHLO x.example\r\nSTARTTLS\r\n")
            while not f.readline().startswith(b"220 2.0.0"):
                pass
        t = client_ctx(m).wrap_socket(s, server_hostname="mx.test.example")
        t.sendall(pipeline)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        t.close()
    c = smtps_session(m)
    r = c.cmd("NOOP")
    c.close()
    check("reset: 30 TLS clients resetting mid-pipeline, the next session is served", r.startswith("250"), r)


def main():
    m = make_instance()
    try:
        run_all(m, (sni, starttls_auth, half_open, slow_command, reset_mid_pipeline))
    finally:
        m.stop()
    finish()


if __name__ == "__main__":
    main()
