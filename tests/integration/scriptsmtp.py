"""Scripted receiving SMTP servers for test_client.py (the outbound client's end-to-end checks).
Esmtp: greeting, EHLO keywords, EHLO reply, a recipient limit (452 4.5.3 past it) and CHUNKING are
chosen per instance; any reply can be replaced by raw bytes or a function (hostile servers). Every
command line and every transaction is recorded: how the body came (DATA or BDAT), the raw bytes,
and the BDAT chunk sizes. Listens on IPv4 or IPv6 (a host with ':')."""
import socket
import threading
import time

BASE_EXT = ("PIPELINING", "SIZE 10000000", "8BITMIME", "ENHANCEDSTATUSCODES")


class Esmtp:
    def __init__(self, host, port, ext=BASE_EXT, greeting=b"220 scripted.test ESMTP\r\n", ehlo_reply=None,
                 max_rcpts=0, replies=None):
        """replies: {"MAIL"|"RCPT"|"DATA"|"DOT"|"EHLO"|"STARTTLS"|...: bytes or fn(server, conn, cmd)}.
        "DOT" also answers "BDAT n LAST"; "BDAT" answers the chunks before it.
        A function returns the bytes to send, or None when it handled (and ended) the session itself."""
        self.host, self.port = host, port
        self.ext, self.greeting, self.ehlo_reply = list(ext), greeting, ehlo_reply
        self.max_rcpts, self.replies = max_rcpts, dict(replies or {})
        self.lock = threading.Lock()
        self.sessions = 0
        self.commands = []   # (session, command line) in arrival order
        self.tx = []         # {"session", "mail", "rcpts", "via", "data", "chunks"}
        self.notes = {}      # free-form records of scripted behaviour
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        with self.lock:
            self.sessions += 1
            session = self.sessions
        conn.settimeout(120)
        try:
            self._serve(conn, conn.makefile("rb"), session)
        except (OSError, ValueError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _reply(self, conn, key, cmd, default):
        r = self.replies.get(key, default)
        if callable(r):
            r = r(self, conn, cmd)
            if r is None:
                return False
        conn.sendall(r)
        return True

    def _serve(self, conn, f, session):
        g = self.greeting(self, conn) if callable(self.greeting) else self.greeting
        if g is None:
            return
        conn.sendall(g)
        mail, rcpts, chunks, data = None, [], [], b""
        while True:
            line = f.readline(1 << 16)
            if not line:
                return
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            with self.lock:
                self.commands.append((session, cmd))
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "EHLO":
                lines = ["scripted.test"] + self.ext
                default = self.ehlo_reply or "".join(
                    "250%s%s\r\n" % (" " if i == len(lines) - 1 else "-", x) for i, x in enumerate(lines)).encode()
                ok = self._reply(conn, "EHLO", cmd, default)
            elif verb == "HELO":
                ok = self._reply(conn, "HELO", cmd, b"250 scripted.test\r\n")
            elif verb == "MAIL":
                mail, rcpts, chunks, data = cmd, [], [], b""
                ok = self._reply(conn, "MAIL", cmd, b"250 2.1.0 ok\r\n")
            elif verb == "RCPT":
                if self.max_rcpts and len(rcpts) >= self.max_rcpts:
                    ok = self._reply(conn, "RCPT452", cmd, b"452 4.5.3 too many recipients\r\n")
                    continue
                default = b"250 2.1.5 ok\r\n"
                r = self.replies.get("RCPT", default)
                reply = r(self, conn, cmd) if callable(r) else r
                if reply is None:
                    return
                if reply.startswith(b"2"):
                    rcpts.append(cmd)
                conn.sendall(reply)
                ok = True
            elif verb == "DATA":
                if not rcpts:
                    conn.sendall(b"554 5.5.1 no valid recipients\r\n")
                    continue
                if not self._reply(conn, "DATA", cmd, b"354 go ahead\r\n"):
                    return
                data = b""
                while True:
                    chunk = f.readline(1 << 20)
                    if not chunk:
                        return
                    if chunk == b".\r\n":
                        break
                    data += chunk
                self._record(session, mail, rcpts, "DATA", data, [])
                ok = self._reply(conn, "DOT", cmd, b"250 2.0.0 queued\r\n")
                mail, rcpts = None, []
            elif verb == "BDAT":
                parts = cmd.split()
                n = int(parts[1])
                got = f.read(n)
                if len(got) != n:
                    return
                data += got
                chunks.append(n)
                if len(parts) > 2 and parts[2].upper() == "LAST":
                    self._record(session, mail, rcpts, "BDAT", data, chunks)
                    ok = self._reply(conn, "DOT", cmd, b"250 2.0.0 queued\r\n")
                    mail, rcpts, chunks, data = None, [], [], b""
                else:
                    ok = self._reply(conn, "BDAT", cmd, b"250 2.0.0 %d octets\r\n" % n)
            elif verb == "RSET":
                mail, rcpts, chunks, data = None, [], [], b""
                ok = self._reply(conn, "RSET", cmd, b"250 2.0.0 ok\r\n")
            elif verb == "QUIT":
                conn.sendall(b"221 2.0.0 bye\r\n")
                return
            elif verb in self.replies:
                ok = self._reply(conn, verb, cmd, b"")
            else:
                conn.sendall(b"502 5.5.2 unknown command\r\n")
                ok = True
            if not ok:
                return

    def _record(self, session, mail, rcpts, via, data, chunks):
        with self.lock:
            self.tx.append({"session": session, "mail": mail, "rcpts": list(rcpts), "via": via,
                            "data": data, "chunks": list(chunks)})

    def messages_to(self, addr):
        with self.lock:
            return [t for t in self.tx if any(("<%s>" % addr) in r for r in t["rcpts"])]

    def session_commands(self, session):
        with self.lock:
            return [c for s, c in self.commands if s == session]

    def close(self):
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def trickle_greeting(interval=2.0, limit=200):
    """A greeting that never ends: a "220-" continuation line every `interval` seconds until the client
    hangs up (or `limit` lines: a safety stop for a client that never times out)."""
    def greet(server, conn):
        for i in range(limit):
            try:
                conn.sendall(b"220-still greeting %d\r\n" % i)
            except OSError:
                break
            with server.lock:
                server.notes["trickled"] = i + 1
            time.sleep(interval)
        with server.lock:
            server.notes["trickle_end"] = time.time()
        return None
    return greet
