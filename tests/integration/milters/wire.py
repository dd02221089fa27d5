"""The Sendmail milter protocol (version 6) on the wire, as far as the test milters and the test MTA
client in this directory need it: framing, the command and reply letters, the flag bits, and the
socket specs both libmilter ("unix:/path", "inet:PORT@HOST") and mta.conf ("unix:/path",
"inet:HOST:PORT") use. Every packet is: uint32 big-endian length (command byte + data), command byte,
data. Strings are NUL-terminated. Nothing here comes from libmilter; the numbers are those of mfdef.h."""
import socket
import struct

VERSION = 6

# MTA -> milter
C_ABORT, C_BODY, C_CONNECT, C_MACRO, C_BODYEOB = b"A", b"B", b"C", b"D", b"E"
C_HELO, C_QUIT_NC, C_HEADER, C_MAIL, C_EOH = b"H", b"K", b"L", b"M", b"N"
C_OPTNEG, C_QUIT, C_RCPT, C_DATA, C_UNKNOWN = b"O", b"Q", b"R", b"T", b"U"

# milter -> MTA
R_ADDRCPT, R_DELRCPT, R_ADDRCPT_PAR, R_SHUTDOWN = b"+", b"-", b"2", b"4"
R_ACCEPT, R_REPLBODY, R_CONTINUE, R_DISCARD = b"a", b"b", b"c", b"d"
R_CHGFROM, R_CONN_FAIL, R_ADDHEADER, R_INSHEADER = b"e", b"f", b"h", b"i"
R_SETSYMLIST, R_CHGHEADER, R_PROGRESS, R_QUARANTINE = b"l", b"m", b"p", b"q"
R_REJECT, R_SKIP, R_TEMPFAIL, R_REPLYCODE = b"r", b"s", b"t", b"y"

# The replies that end a command (everything else is a modification or progress)
FINAL = {R_ACCEPT, R_CONTINUE, R_DISCARD, R_REJECT, R_TEMPFAIL, R_REPLYCODE, R_SKIP, R_SHUTDOWN, R_CONN_FAIL}
MODIFICATIONS = {R_ADDRCPT, R_DELRCPT, R_ADDRCPT_PAR, R_REPLBODY, R_CHGFROM, R_ADDHEADER, R_INSHEADER,
                 R_CHGHEADER, R_QUARANTINE}

# actions (SMFIF_*)
F_ADDHDRS, F_CHGBODY, F_ADDRCPT, F_DELRCPT = 0x001, 0x002, 0x004, 0x008
F_CHGHDRS, F_QUARANTINE, F_CHGFROM, F_ADDRCPT_PAR, F_SETSYMLIST = 0x010, 0x020, 0x040, 0x080, 0x100
F_ALL = 0x1ff

# protocol flags (SMFIP_*)
P_NOCONNECT, P_NOHELO, P_NOMAIL, P_NORCPT = 0x1, 0x2, 0x4, 0x8
P_NOBODY, P_NOHDRS, P_NOEOH, P_NR_HDR = 0x10, 0x20, 0x40, 0x80
P_NOUNKNOWN, P_NODATA, P_SKIP, P_RCPT_REJ = 0x100, 0x200, 0x400, 0x800
P_NR_CONN, P_NR_HELO, P_NR_MAIL, P_NR_RCPT = 0x1000, 0x2000, 0x4000, 0x8000
P_NR_DATA, P_NR_UNKN, P_NR_EOH, P_NR_BODY = 0x10000, 0x20000, 0x40000, 0x80000
P_HDR_LEADSPC = 0x100000
P_ALL = 0x1fffff

# macro stages (SMFIM_*), by the names the scripts use
MACRO_STAGES = {"connect": 0, "helo": 1, "mail": 2, "rcpt": 3, "data": 4, "eom": 5, "eoh": 6}

# The SMTP stage of each command that needs an answer
STAGE_OF = {C_CONNECT: "connect", C_HELO: "helo", C_MAIL: "mail", C_RCPT: "rcpt", C_DATA: "data",
            C_UNKNOWN: "unknown", C_HEADER: "header", C_EOH: "eoh", C_BODY: "body", C_BODYEOB: "eom"}
NEEDS_REPLY = set(STAGE_OF) | {C_OPTNEG}

MAX_PACKET = 64 * 1024 * 1024  # what these test programs accept from a peer before giving up


def packet(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def cstr(*parts):
    """NUL-terminated strings, concatenated."""
    return b"".join((p.encode("utf-8", "surrogateescape") if isinstance(p, str) else p) + b"\0" for p in parts)


def split_cstrs(data):
    """The NUL-terminated strings of a packet's data (the trailing empty piece dropped)."""
    parts = data.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return parts


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("peer closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def read_packet(sock, limit=MAX_PACKET):
    """(command byte, data); EOFError when the peer closed at a packet boundary or inside one."""
    head = recv_exact(sock, 4)
    (n,) = struct.unpack(">I", head)
    if n < 1 or n > limit:
        raise ValueError("bad packet length %d" % n)
    body = recv_exact(sock, n)
    return body[:1], body[1:]


def parse_spec(spec):
    """A socket spec in either spelling -> ("unix", path) or ("inet", host, port).
    libmilter: unix:/p, local:/p, inet:PORT@HOST; mta.conf: unix:/p, local:/p, inet:HOST:PORT, inet:[v6]:PORT."""
    kind, _, rest = spec.partition(":")
    if kind in ("unix", "local"):
        return ("unix", rest)
    if kind != "inet":
        raise ValueError("unknown socket spec %r" % spec)
    if "@" in rest:
        port, _, host = rest.partition("@")
    elif rest.startswith("["):
        host, _, port = rest[1:].partition("]:")
    else:
        host, _, port = rest.rpartition(":")
    return ("inet", host or "127.0.0.1", int(port))


def libmilter_spec(spec):
    """The spelling libmilter's smfi_setconn wants."""
    p = parse_spec(spec)
    return "unix:%s" % p[1] if p[0] == "unix" else "inet:%d@%s" % (p[2], p[1])


def mta_spec(spec):
    """The spelling mta.conf's smtpd_milters wants."""
    p = parse_spec(spec)
    return "unix:%s" % p[1] if p[0] == "unix" else "inet:%s:%d" % (p[1], p[2])


def listen(spec, backlog=64):
    """A listening socket for a spec (an old unix socket file is replaced)."""
    p = parse_spec(spec)
    if p[0] == "unix":
        import os
        try:
            os.unlink(p[1])
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(p[1])
        os.chmod(p[1], 0o666)
    else:
        s = socket.socket(socket.AF_INET6 if ":" in p[1] else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((p[1], p[2]))
    s.listen(backlog)
    return s


def connect(spec, timeout=10):
    p = parse_spec(spec)
    if p[0] == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(p[1])
        return s
    return socket.create_connection((p[1], p[2]), timeout=timeout)


def reachable(spec):
    try:
        connect(spec, timeout=1).close()
        return True
    except OSError:
        return False
