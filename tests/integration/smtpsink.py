"""A small scriptable SMTP/LMTP receiving server for the outbound tests. It records every session and
transaction with the raw DATA bytes exactly as they came over the wire (dot-stuffing and CRLF intact).
Behaviour per recipient is chosen by the local part: "reject*" 550, "defer*" 451, anything else 250;
a DATA body containing FAILDATA is refused with 554. Optional STARTTLS with a given (cert, key) or SSLContext.
LMTP mode (RFC 2033): LHLO instead of EHLO, one reply per accepted recipient after the final dot
("lmtpfail*" recipients get 452 there)."""
import socket
import socketserver
import ssl
import threading


class Sink:
    def __init__(self, host, port, tls=None, lmtp=False, unix_path=None,
                 ext=("PIPELINING", "SIZE 10000000", "8BITMIME", "DSN", "ENHANCEDSTATUSCODES")):
        self.host, self.port, self.lmtp = host, port, lmtp
        self.ext = list(ext) + (["STARTTLS"] if tls else [])
        self.tls = tls
        self.lock = threading.Lock()
        self.sessions = 0
        self.tls_sessions = 0
        self.tx = []          # {"mail", "rcpts", "data", "tls", "session"}
        self.commands = []    # every command line, in order
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                with sink.lock:
                    sink.sessions += 1
                    session = sink.sessions
                try:
                    sink._serve(self, session)
                except (OSError, ssl.SSLError):
                    pass

        if unix_path:
            class Server(socketserver.ThreadingUnixStreamServer):
                daemon_threads = True
            self.srv = Server(unix_path, Handler)
        else:
            class Server(socketserver.ThreadingTCPServer):
                allow_reuse_address = True
                daemon_threads = True
                request_queue_size = 128
            self.srv = Server((host, port), Handler)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def _serve(self, h, session):
        rfile, w = h.rfile, h.wfile
        tls = False

        def send(s):
            w.write(s.encode() if isinstance(s, str) else s)
            w.flush()

        send("220 sink.test %s\r\n" % ("LMTP" if self.lmtp else "ESMTP"))
        mail, rcpts = None, []
        while True:
            line = rfile.readline(5000)
            if not line:
                return
            cmd = line.decode("latin1").rstrip("\r\n")
            with self.lock:
                self.commands.append(cmd)
            u = cmd.upper()
            hello = "LHLO" if self.lmtp else "EHLO"
            if u.startswith(hello):
                lines = ["sink.test"] + [e for e in self.ext if not (tls and e == "STARTTLS")]
                send("".join("250%s%s\r\n" % (" " if i == len(lines) - 1 else "-", x) for i, x in enumerate(lines)))
            elif u.startswith("HELO") and not self.lmtp:
                send("250 sink.test\r\n")
            elif u.startswith("MAIL FROM:"):
                mail, rcpts = cmd, []
                send("250 2.1.0 ok\r\n")
            elif u.startswith("RCPT TO:"):
                local = cmd[8:].strip().lstrip("<").lower()
                if mail is None:
                    send("503 5.5.1 need MAIL\r\n")
                elif local.startswith("reject"):
                    send("550 5.1.1 no such user\r\n")
                elif local.startswith("defer"):
                    send("451 4.3.0 try later\r\n")
                else:
                    rcpts.append(cmd)
                    send("250 2.1.5 ok\r\n")
            elif u == "DATA":
                if not rcpts:
                    send("554 5.5.1 no valid recipients\r\n")
                    continue
                send("354 go ahead\r\n")
                data = b""
                while True:
                    chunk = rfile.readline(1 << 20)
                    if not chunk:
                        return
                    if chunk == b".\r\n":
                        break
                    data += chunk
                with self.lock:
                    self.tx.append({"mail": mail, "rcpts": rcpts, "data": data, "tls": tls, "session": session})
                    n = len(self.tx)
                if self.lmtp:
                    send("".join("452 4.2.2 mailbox full\r\n" if "<lmtpfail" in r.lower()
                                 else "250 2.0.0 delivered %d\r\n" % n for r in rcpts))
                elif b"FAILDATA" in data:
                    send("554 5.6.0 content rejected\r\n")
                else:
                    send("250 2.0.0 queued as S%d\r\n" % n)
                mail, rcpts = None, []
            elif u == "RSET":
                mail, rcpts = None, []
                send("250 2.0.0 ok\r\n")
            elif u == "NOOP":
                send("250 2.0.0 ok\r\n")
            elif u == "QUIT":
                send("221 2.0.0 bye\r\n")
                return
            elif u == "STARTTLS" and self.tls and not tls:
                send("220 2.0.0 go ahead\r\n")
                if isinstance(self.tls, ssl.SSLContext):  # a test's own context (versions, client certs)
                    ctx = self.tls
                else:
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    ctx.load_cert_chain(*self.tls)
                conn = ctx.wrap_socket(h.connection, server_side=True)
                h.connection = conn
                rfile, w = conn.makefile("rb"), conn.makefile("wb")
                tls = True
                with self.lock:
                    self.tls_sessions += 1
                mail, rcpts = None, []
            else:
                send("502 5.5.2 unknown command\r\n")

    def messages_to(self, addr):
        with self.lock:
            return [t for t in self.tx if any(("<%s>" % addr) in r for r in t["rcpts"])]

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def refuses(host, port):
    """True if nothing listens on host:port (the connection is refused)."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except OSError:
        return True
