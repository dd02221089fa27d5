"""A minimal MTA side of the milter protocol, for checking the test milters (and OpenDKIM, rspamd) without
the MTA under test: negotiate, send macros and commands, collect each command's modifications and final
reply. Used by selftest.py; plain Python, no libmilter."""
import struct

import wire


class Reply:
    """One reply packet, decoded as far as the tests look at it."""

    def __init__(self, code, data):
        self.code, self.data = code, data
        self.fields = wire.split_cstrs(data)

    def text(self):
        return b"\n".join(self.fields).decode("utf-8", "replace")

    def __repr__(self):
        return "Reply(%r, %r)" % (self.code, self.data[:200])


class Answer:
    """What one command got: modifications/progress packets in order, then the final reply. A command the
    milter negotiated away (SMFIP_NO*: not sent) or whose reply it negotiated away (SMFIP_NR_*: sent, no
    answer) counts as continue; `how` says which ("reply", "noreply", "notsent")."""

    def __init__(self, final, mods, progress, how="reply"):
        self.final, self.mods, self.progress, self.how = final, mods, progress, how

    @property
    def code(self):
        if self.how != "reply":
            return wire.R_CONTINUE
        return self.final.code if self.final else None

    def mods_of(self, code):
        return [m for m in self.mods if m.code == code]


class Client:
    def __init__(self, spec, timeout=10):
        self.sock = wire.connect(spec, timeout)
        self.version = self.actions = self.protocol = None
        self.symlists = {}

    def close(self):
        try:
            self.sock.sendall(wire.packet(wire.C_QUIT))
        except OSError:
            pass
        self.sock.close()

    def _read_answer(self):
        mods, progress = [], 0
        while True:
            code, data = wire.read_packet(self.sock)
            if code == wire.R_PROGRESS:
                progress += 1
                continue
            if code in wire.MODIFICATIONS:
                mods.append(Reply(code, data))
                continue
            return Answer(Reply(code, data), mods, progress)  # final, or a code no milter may send

    def negotiate(self, actions=wire.F_ALL, protocol=wire.P_ALL):
        self.sock.sendall(wire.packet(wire.C_OPTNEG, struct.pack(">III", wire.VERSION, actions, protocol)))
        code, data = wire.read_packet(self.sock)
        if code != wire.C_OPTNEG:
            raise ValueError("negotiation answered with %r" % code)
        self.version, self.actions, self.protocol = struct.unpack(">III", data[:12])
        rest = data[12:]
        while len(rest) >= 4:  # symbol lists: uint32 stage, then one NUL-terminated string
            (stage,) = struct.unpack(">I", rest[:4])
            text, _, rest = rest[4:].partition(b"\0")
            self.symlists[stage] = text.decode()
        return self

    def macros(self, cmd, values):
        """values: {"j": "...", "{client_addr}": "..."}; sent before cmd, no answer."""
        parts = [cmd]
        for k, v in values.items():
            parts.append(wire.cstr(k, v))
        self.sock.sendall(wire.packet(wire.C_MACRO, b"".join(parts)))

    NO = {wire.C_CONNECT: wire.P_NOCONNECT, wire.C_HELO: wire.P_NOHELO, wire.C_MAIL: wire.P_NOMAIL,
          wire.C_RCPT: wire.P_NORCPT, wire.C_DATA: wire.P_NODATA, wire.C_UNKNOWN: wire.P_NOUNKNOWN,
          wire.C_HEADER: wire.P_NOHDRS, wire.C_EOH: wire.P_NOEOH, wire.C_BODY: wire.P_NOBODY}
    NR = {wire.C_CONNECT: wire.P_NR_CONN, wire.C_HELO: wire.P_NR_HELO, wire.C_MAIL: wire.P_NR_MAIL,
          wire.C_RCPT: wire.P_NR_RCPT, wire.C_DATA: wire.P_NR_DATA, wire.C_UNKNOWN: wire.P_NR_UNKN,
          wire.C_HEADER: wire.P_NR_HDR, wire.C_EOH: wire.P_NR_EOH, wire.C_BODY: wire.P_NR_BODY}

    def command(self, cmd, data=b""):
        proto = self.protocol or 0
        if proto & self.NO.get(cmd, 0):
            return Answer(None, [], 0, "notsent")
        self.sock.sendall(wire.packet(cmd, data))
        if proto & self.NR.get(cmd, 0):
            return Answer(None, [], 0, "noreply")
        return self._read_answer()

    def send_only(self, cmd, data=b""):
        """A command whose answer the milter negotiated away (NR_*), or one with none (ABORT)."""
        self.sock.sendall(wire.packet(cmd, data))

    def connect(self, hostname="client.test.example", addr="127.0.0.1", port=4242, macros=None):
        if macros:
            self.macros(wire.C_CONNECT, macros)
        return self.command(wire.C_CONNECT, wire.cstr(hostname) + b"4" + struct.pack(">H", port) + wire.cstr(addr))

    def helo(self, name, macros=None):
        if macros:
            self.macros(wire.C_HELO, macros)
        return self.command(wire.C_HELO, wire.cstr(name))

    def mail(self, sender, *args, macros=None):
        if macros:
            self.macros(wire.C_MAIL, macros)
        return self.command(wire.C_MAIL, wire.cstr("<%s>" % sender, *args))

    def rcpt(self, rcpt, *args, macros=None):
        if macros:
            self.macros(wire.C_RCPT, macros)
        return self.command(wire.C_RCPT, wire.cstr("<%s>" % rcpt, *args))

    def data(self, macros=None):
        if macros:
            self.macros(wire.C_DATA, macros)
        return self.command(wire.C_DATA)

    def unknown(self, line):
        return self.command(wire.C_UNKNOWN, wire.cstr(line))

    def header(self, name, value):
        return self.command(wire.C_HEADER, wire.cstr(name, value))

    def eoh(self, macros=None):
        if macros:
            self.macros(wire.C_EOH, macros)
        return self.command(wire.C_EOH)

    def body(self, chunk):
        return self.command(wire.C_BODY, chunk)

    def eom(self, macros=None):
        if macros:
            self.macros(wire.C_BODYEOB, macros)
        return self.command(wire.C_BODYEOB)

    def abort(self):
        self.send_only(wire.C_ABORT)

    def message(self, headers, body, macros=None, leadspace=None):
        """Headers [(name, value as in the message, with its leading space)], body bytes (CRLF): the
        header/eoh/body/eom sequence as an MTA sends it (folds as LF, the one space after the colon left
        out unless HDR_LEADSPC was negotiated). Returns the answers per stage; stops at the first one that
        is not continue."""
        if leadspace is None:
            leadspace = bool((self.protocol or 0) & wire.P_HDR_LEADSPC)
        out = {}
        for name, value in headers:
            v = value if leadspace or not value.startswith(" ") else value[1:]
            a = self.header(name, v.replace("\r\n", "\n"))
            out.setdefault("header", []).append(a)
            if a.code != wire.R_CONTINUE:
                return out
        out["eoh"] = self.eoh()
        if out["eoh"].code != wire.R_CONTINUE:
            return out
        for i in range(0, len(body), 65535):
            a = self.body(body[i:i + 65535])
            out.setdefault("body", []).append(a)
            if a.code == wire.R_SKIP:
                break
            if a.code != wire.R_CONTINUE:
                return out
        out["eom"] = self.eom(macros)
        return out
