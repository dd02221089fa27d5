"""Hostile and RFC-edge input in the data phase of mta-smtpd: DATA framing edges, dot-stuffing, long lines,
the exact message_size_limit boundary, BDAT edge cases and pipelining, and a 1,000-recipient transaction.
Every accepted message must arrive byte-exact (CRLF -> LF in the Maildir); every refused one must leave
nothing queued; the mta-smtpd process must survive all of it."""
import socket

from mtatest import MTA, check, finish, wait_for
from hostile import run_all
from test_smtpd import delivered_flush, session, start_data

LIMIT = 20000  # message_size_limit of this instance


def queued(m):
    return m.log_text().count("event=queued ")


def delivered(m, user, tag=None):
    """The Maildir file of user (containing tag), or b""."""
    def find():
        for f in m.mailbox(user):
            data = open(f, "rb").read()
            if tag is None or tag in data:
                return data
        return None
    return wait_for(find, 15) or b""


def after_received(data):
    lines = data.split(b"\n")
    i = 0
    while i < len(lines) and (lines[i].startswith(b"Return-Path:") or lines[i].startswith(b"Delivered-To:")):
        i += 1
    if i < len(lines) and lines[i].startswith(b"Received:"):
        i += 1
        while i < len(lines) and lines[i].startswith(b"\t"):
            i += 1
    return b"\n".join(lines[i:])


def send(c, rcpt, body, sender="a@b.example"):
    r = start_data(c, rcpt, sender)
    if not r[2].startswith("354"):
        return "no 354: %r" % r
    c.send(body)
    return c.last()


def data_edges(m):
    c = session(m)
    cases = [
        ("header-only message", "hdronly", b"Subject: only headers\r\n.\r\n", b"Subject: only headers\n"),
        ("empty message (DATA then the dot)", "empty", b".\r\n", b""),
        ("last line glued to the dot arrives with CRLF", "glued", b"Subject: g\r\n\r\nabc.\r\n\r\n.\r\n",
         b"Subject: g\n\nabc.\n\n"),
        ("dot-stuffed lines unstuffed", "stuffed", b"Subject: s\r\n\r\n..\r\n...\r\n..x\r\n. y\r\n.\r\n",
         b"Subject: s\n\n.\n..\n.x\n y\n"),
        ("a line of 998 octets", "l998", b"Subject: l\r\n\r\n" + b"a" * 998 + b"\r\n.\r\n", b"Subject: l\n\n" + b"a" * 998 + b"\n"),
        ("a line of 1000 octets", "l1000", b"Subject: l\r\n\r\n" + b"b" * 1000 + b"\r\n.\r\n",
         b"Subject: l\n\n" + b"b" * 1000 + b"\n"),
        ("a line of 10000 octets", "l10000", b"Subject: l\r\n\r\n" + b"c" * 10000 + b"\r\n.\r\n",
         b"Subject: l\n\n" + b"c" * 10000 + b"\n"),
        ("a 10000-octet header line", "h10000", b"X-Long: " + b"d" * 10000 + b"\r\n\r\nx\r\n.\r\n",
         b"X-Long: " + b"d" * 10000 + b"\n\nx\n"),
    ]
    for name, user, body, want in cases:
        r = send(c, user + "@localhost", body)
        ok = r.startswith("250 2.0.0")
        data = delivered(m, user) if ok else b""
        check("data: %s queued and delivered byte-exact" % name, ok and after_received(data) == want,
              (r, after_received(data)[-120:]))
    c.cmd("QUIT")


def size_boundary(m):
    c = session(m)
    head = b"Subject: size\r\n\r\n"
    line = b"z" * 98 + b"\r\n"

    def body(n):  # exactly n octets after unstuffing, CRLFs included
        k = (n - len(head)) // 100 - 1
        return head + line * k + b"y" * (n - len(head) - 100 * k - 2) + b"\r\n"
    exact = body(LIMIT)
    assert len(exact) == LIMIT, len(exact)
    r = send(c, "atlimit@localhost", exact + b".\r\n")
    check("size: DATA of exactly message_size_limit octets accepted", r.startswith("250 2.0.0"), r)
    before = queued(m)
    over = exact[:-2] + b"y\r\n"
    r = send(c, "overlimit@localhost", over + b".\r\n")
    check("size: DATA one octet over message_size_limit 552 5.3.4", r.startswith("552 5.3.4"), r)
    check("size: ... nothing queued, session usable", queued(m) == before and c.cmd("NOOP").startswith("250"), "")
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<bdatlimit@localhost>\r\nBDAT %d LAST\r\n" % LIMIT)
    c.send(exact)
    r = [c.last() for _ in range(3)]
    check("size: BDAT of exactly message_size_limit octets accepted", r[2].startswith("250 2.0.0"), r)
    c.send("MAIL FROM:<a@b.example> SIZE=%d\r\n" % LIMIT)
    r = c.last()
    check("size: SIZE=message_size_limit accepted at MAIL", r.startswith("250 2.1.0"), r)
    c.cmd("RSET")
    c.cmd("QUIT")
    data = delivered(m, "atlimit")
    check("size: the message at the limit delivered byte-exact", after_received(data) == exact.replace(b"\r\n", b"\n"),
          len(data))


def bdat_edges(m):
    c = session(m)
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<bdat0@localhost>\r\nBDAT 0 LAST\r\n")
    r = [c.last() for _ in range(3)]
    check("bdat: BDAT 0 LAST as the only chunk queues an empty message", r[2].startswith("250 2.0.0"), r)
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<bdat0b@localhost>\r\nBDAT 14\r\nSubject: b\r\n\r\nBDAT 0 LAST\r\n")
    r = [c.last() for _ in range(4)]
    check("bdat: BDAT 0 LAST ends a chunked message", r[2].startswith("250 2.0.0 14 octets") and
          r[3].startswith("250 2.0.0"), r)
    data = delivered(m, "bdat0b")
    check("bdat: ... delivered byte-exact", after_received(data) == b"Subject: b\n\n", data[-60:])
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<u@localhost>\r\nBDAT 5\r\nabc\r\nDATA\r\n")
    r = [c.last() for _ in range(4)]
    check("bdat: DATA after BDAT 503 5.5.1", r[2].startswith("250") and r[3].startswith("503 5.5.1"), r)
    r = c.cmd("RCPT TO:<v@localhost>")
    check("bdat: RCPT after BDAT 503 5.5.1", r.startswith("503 5.5.1"), r)
    before = queued(m)
    r = [c.cmd("RSET")]
    c.send("BDAT 3 LAST\r\nxyzNOOP\r\n")
    r += [c.last(), c.last()]
    check("bdat: RSET mid-sequence ends it; a later BDAT is 503 and its chunk skipped (in sync)",
          r[0].startswith("250 2.0.0") and r[1].startswith("503 5.5.1") and r[2].startswith("250 2.0.0"), r)
    check("bdat: nothing queued for the abandoned chunks", queued(m) == before, "")
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<u@localhost>\r\nDATA\r\n")
    r = [c.last() for _ in range(3)]
    c.send("x\r\n.\r\n")
    r.append(c.last())
    c.send("BDAT 4 LAST\r\nabcdNOOP\r\n")
    r += [c.last(), c.last()]
    check("bdat: BDAT after a finished DATA message needs MAIL (503), chunk skipped",
          r[3].startswith("250 2.0.0") and r[4].startswith("503 5.5.1") and r[5].startswith("250 2.0.0"), r)
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<lead0@localhost>\r\nBDAT 0005 last\r\nx\r\n\r\n")
    r = [c.last() for _ in range(3)]
    check("bdat: size with leading zeros and lower-case 'last' accepted", r[2].startswith("250 2.0.0"), r)
    # Chunks and commands pipelined in one write.
    c.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<piped@localhost>\r\nBDAT 14\r\nSubject: p\r\n\r\n"
           b"BDAT 7 LAST\r\nhello\r\nNOOP\r\nMAIL FROM:<a@b.example>\r\nRSET\r\n")
    r = [c.last() for _ in range(7)]
    check("bdat: pipelined chunks and commands answered in order",
          [x[:3] for x in r] == ["250", "250", "250", "250", "250", "250", "250"] and "queued as" in r[3], r)
    data = delivered(m, "piped")
    check("bdat: pipelined message delivered byte-exact", after_received(data) == b"Subject: p\n\nhello\n", data[-60:])
    # Huge declared sizes: refused without waiting for the bytes when past the limit.
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<u@localhost>\r\nBDAT 18446744073709551614 LAST\r\n")
    r = [c.last() for _ in range(3)]
    check("bdat: BDAT of 2^64-2 octets 552 5.3.4", r[2].startswith("552 5.3.4"), r)
    c.close()
    c = session(m)
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<u@localhost>\r\nBDAT %d\r\n" % (LIMIT - 10))
    c.send(b"a" * (LIMIT - 12) + b"\r\n")
    c.send("BDAT 11 LAST\r\n")
    c.send(b"b" * 9 + b"\r\n")
    r = [c.last() for _ in range(4)]
    check("bdat: chunks adding up past the limit 552 5.3.4, then in sync",
          r[2].startswith("250 2.0.0") and r[3].startswith("552 5.3.4") and c.cmd("NOOP").startswith("250"), r)
    c.close()


def many_rcpts(m):
    c = session(m)
    n = 1005
    c.send("MAIL FROM:<a@b.example>\r\n" + "".join("RCPT TO:<r%d@localhost>\r\n" % i for i in range(n)))
    codes = [c.last()[:9] for _ in range(n + 1)]
    check("rcpts: 1005 pipelined RCPTs: 1000 x 250 2.1.5 then 452 4.5.3",
          codes[0].startswith("250") and codes[1:] == ["250 2.1.5"] * 1000 + ["452 4.5.3"] * 5,
          sorted(set(codes)))
    c.send("DATA\r\n")
    r = [c.last()]
    c.send("Subject: many\r\n\r\nto a thousand\r\n.\r\n")
    r.append(c.last())
    check("rcpts: the message for the accepted 1000 queued", r[0].startswith("354") and r[1].startswith("250 2.0.0"), r)
    c.cmd("QUIT")
    ok = wait_for(lambda: all(m.mailbox("r%d" % i) for i in range(0, 1000, 37)) and m.mailbox("r999"), 40, 0.2)
    check("rcpts: delivered to the accepted recipients, none to the refused",
          ok and not any(m.mailbox("r%d" % i) for i in range(1000, n)), "")


def half_close(m):
    """A client that writes a whole pipelined session and half-closes (`printf ... | nc -N`) still gets
    every answer, and its message is queued, as with Postfix."""
    for quit_ in (True, False):
        s = socket.socket()
        s.settimeout(10)
        s.bind(("127.0.0.9", 0))
        s.connect(("127.0.0.1", m.port))
        user = "halfclose%d" % quit_
        s.sendall(b"EHLO x.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<%s@localhost>\r\nDATA\r\n"
                  b"Subject: half-close\r\n\r\nx\r\n.\r\n%s" % (user.encode(), b"QUIT\r\n" if quit_ else b""))
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
        s.close()
        want = [b"250 2.1.0", b"250 2.1.5", b"354 ", b"250 2.0.0 Ok: queued as"] + ([b"221 2.0.0"] if quit_ else [])
        got = [x for x in out.split(b"\r\n") if x and not x.startswith((b"220", b"250-", b"250 CHUNKING"))]
        check("half-close%s: every pipelined command answered, then closed" % (" after QUIT" if quit_ else ""),
              len(got) == len(want) and all(g.startswith(w) for g, w in zip(got, want)), got)
        check("half-close%s: message delivered" % (" after QUIT" if quit_ else ""), delivered(m, user) != b"", "")
    c = session(m)
    start_data(c, "cutoff@localhost")
    c.send(b"Subject: cut\r\n\r\npartial body")
    c.s.shutdown(socket.SHUT_WR)
    check("half-close in the middle of a body: connection closed without a reply", c.s.recv(100) == b"", "")
    c.close()
    check("half-close in the middle of a body: nothing delivered", delivered_flush(m, "after-cutoff") and
          not m.mailbox("cutoff"), m.mailbox("cutoff"))


def main():
    m = MTA(name="hostile-data", extra="mynetworks = 127.0.0.1/32\nmessage_size_limit = %d\n" % LIMIT,
            smtpd_processes=1).start()
    try:
        run_all(m, (data_edges, size_boundary, bdat_edges, half_close, many_rcpts))
    finally:
        m.stop()
    finish()


if __name__ == "__main__":
    main()
