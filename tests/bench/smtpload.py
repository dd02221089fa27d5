"""The benchmark's own SMTP client (stdlib only): N concurrent sessions, one message per connection like
smtp-source, timing each final dot from the moment "\\r\\n.\\r\\n" is sent to its reply; an opener of
many idle connections for the memory-per-connection figure; and a Prometheus-like scraper of our
/metrics for the metrics-cost figure. The same code drives every system."""
import selectors
import socket
import threading
import time
import urllib.request


class SmtpError(Exception):
    pass


def _reply(f):
    """One (possibly multi-line) SMTP reply: (code, text)."""
    lines = []
    while True:
        line = f.readline(4096)
        if not line:
            raise SmtpError("connection closed")
        lines.append(line.decode("latin-1").rstrip("\r\n"))
        if len(line) < 4 or line[3:4] != b"-":
            break
    try:
        return int(lines[-1][:3]), "\n".join(lines)
    except ValueError:
        raise SmtpError("bad reply %r" % lines[-1])


def _expect(f, want):
    code, text = _reply(f)
    if code // 100 != want:
        raise SmtpError(text)
    return text


def make_body(size, subject="bench"):
    """Header plus `size` bytes of body in 76-char lines; ends without the final CRLF (the
    terminator "\\r\\n.\\r\\n" supplies it)."""
    head = ("From: <bench@client.test>\r\nTo: <sink@sink.test>\r\nSubject: %s\r\n"
            "Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n\r\n" % subject).encode()
    line = b"x" * 74 + b"\r\n"
    body = line * (size // len(line))
    body += b"y" * (size - len(body))
    return (head + body).rstrip(b"\r\n")


def run_load(host, port, total, sessions, size, rcpts, timeout=60.0, deadline=None, tag="lat"):
    """Send `total` messages over `sessions` concurrent connections (one message per connection).
    Returns dict(accepted, failed, errors, latencies (seconds), elapsed)."""
    body = make_body(size)
    lock = threading.Lock()
    state = {"next": 0, "accepted": 0, "failed": 0, "errors": []}
    lat = []

    def take():
        with lock:
            if state["next"] >= total or (deadline and time.time() > deadline):
                return None
            state["next"] += 1
            return state["next"]

    def one(n):
        with socket.create_connection((host, port), timeout) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            f = s.makefile("rb")
            _expect(f, 2)
            s.sendall(b"EHLO client.test\r\n")
            _expect(f, 2)
            s.sendall(b"MAIL FROM:<bench@client.test>\r\n")
            _expect(f, 2)
            for k in range(rcpts):
                s.sendall(b"RCPT TO:<%s%d-%d@sink.test>\r\n" % (tag.encode(), n, k))
                _expect(f, 2)
            s.sendall(b"DATA\r\n")
            _expect(f, 3)
            s.sendall(body)
            t0 = time.perf_counter()
            s.sendall(b"\r\n.\r\n")
            _expect(f, 2)
            dt = time.perf_counter() - t0
            try:
                s.sendall(b"QUIT\r\n")
                _reply(f)
            except (OSError, SmtpError):
                pass
            return dt

    def worker():
        while True:
            n = take()
            if n is None:
                return
            try:
                dt = one(n)
                with lock:
                    state["accepted"] += 1
                    lat.append(dt)
            except (OSError, SmtpError) as e:
                with lock:
                    state["failed"] += 1
                    if len(state["errors"]) < 5:
                        state["errors"].append(str(e))

    t0 = time.time()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return dict(accepted=state["accepted"], failed=state["failed"], errors=state["errors"],
                latencies=lat, elapsed=time.time() - t0)


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


class IdleConnections:
    """Opens `count` connections, each from its own loopback source address (127.1.x.y, so per-client
    limits never trigger and each looks like a different client), waits for every 220 greeting, sends
    EHLO and waits for its 250, then holds them open until close()."""

    def __init__(self, host, port, count, timeout=90.0):
        self.host, self.port, self.count, self.timeout = host, port, count, timeout
        self.socks = []

    @staticmethod
    def source(i):
        return "127.1.%d.%d" % (i // 250, i % 250 + 1)

    def open(self):
        sel = selectors.DefaultSelector()
        phase, buf = {}, {}
        for i in range(self.count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((self.source(i), 0))
            s.setblocking(False)
            try:
                s.connect((self.host, self.port))
            except BlockingIOError:
                pass
            self.socks.append(s)
            phase[s], buf[s] = "greet", b""
            sel.register(s, selectors.EVENT_READ)
        done, end = 0, time.time() + self.timeout
        while done < self.count:
            left = end - time.time()
            if left <= 0:
                break
            for key, _ in sel.select(min(left, 1.0)):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except OSError as e:
                    raise SmtpError("idle connection %s: %s" % (s.getsockname()[0], e))
                if not data:
                    raise SmtpError("idle connection closed by server (after %d ready)" % done)
                buf[s] += data
                # A complete reply ends with a line "NNN text\r\n".
                lines = buf[s].split(b"\r\n")
                if len(lines) < 2 or len(lines[-2]) < 4 or lines[-2][3:4] != b" ":
                    continue
                code = lines[-2][:3]
                buf[s] = b""
                if phase[s] == "greet" and code == b"220":
                    phase[s] = "ehlo"
                    s.sendall(b"EHLO idle.client.test\r\n")
                elif phase[s] == "ehlo" and code == b"250":
                    phase[s] = "idle"
                    sel.unregister(s)
                    done += 1
                else:
                    raise SmtpError("idle connection: unexpected reply %r" % lines[-2])
        sel.close()
        return done

    def close(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        self.socks = []


class MetricsScraper:
    """`with MetricsScraper(port) as sc:` GETs http://127.0.0.1:PORT/metrics once a second in a thread,
    as a Prometheus with scrape_interval 1s would, until the block ends. Records the time of each answer
    and every failure (a non-200 status, a refused or timed-out connection, an empty body)."""

    def __init__(self, port, interval=1.0, timeout=10.0):
        self.url = "http://127.0.0.1:%d/metrics" % port
        self.interval, self.timeout = interval, timeout
        self.times, self.errors, self.samples = [], [], 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        next_at = time.time()
        while not self.stopping.is_set():
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=self.timeout) as r:
                    body = r.read()
                lines = [l for l in body.splitlines() if l and not l.startswith(b"#")]
                if not lines:
                    raise SmtpError("empty /metrics")
                self.times.append(time.perf_counter() - t0)
                self.samples = len(lines)
            except (OSError, SmtpError) as e:  # HTTPError (a non-200) is an OSError
                self.errors.append(str(e))
            next_at += self.interval
            self.stopping.wait(max(0.0, next_at - time.time()))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(self.timeout + 5)
        return False
