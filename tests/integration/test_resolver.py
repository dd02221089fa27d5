"""mta-resolver on its own: this script plays the master (HELLO + CONFIG over a SEQPACKET pair on
fd 3), serves a test zone with NSD on a loopback address, and checks the resolve_reply messages:
MX order/values, A, AAAA, null MX, TLSA, TXT, PTR, CNAME, NXDOMAIN, NODATA, a bogus (unvalidated)
zone, a DNSSEC-signed zone validated through dns_trust_anchors (secure), peer links (and their
replacement), reload, privilege drop + chroot (as root), a malformed request (exit 2), stop, and an
upstream that stopped answering (answered within the 10 s bound)."""
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dnszone import Nsd, group_alive  # noqa: E402
from mtatest import BIN, Guard, check, finish, wait_for  # noqa: E402

T_HELLO, T_CONFIG, T_PEER, T_STOP, T_LOGLEVEL, T_REQ, T_REPLY = 1, 2, 3, 5, 6, 7, 8
TAG_VERSION, TAG_ROLE, TAG_INSTANCE, TAG_CONFIG_TEXT, TAG_TEXT = 1, 2, 3, 4, 6
TAG_NAME, TAG_QTYPE, TAG_RCODE, TAG_DNSSEC, TAG_RECORD = 40, 41, 42, 43, 44
A, PTR, MX, TXT, AAAA, TLSA = 1, 12, 15, 16, 28, 52
INSECURE, SECURE, BOGUS = 0, 1, 2
USER = "_mtar"
TLSA_HEX = "8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d"

ZONE = """$ORIGIN test.example.
$TTL 300
@       IN SOA ns.test.example. hostmaster.test.example. 1 3600 600 86400 300
@       IN NS ns
ns      IN A 127.0.0.1
@       IN MX 20 mx2
@       IN MX 10 MX1.Test.Example.
mx1     IN A 192.0.2.10
mx1     IN AAAA 2001:db8::10
mx2     IN A 192.0.2.20
mx2     IN A 192.0.2.21
nullmx  IN MX 0 .
_25._tcp.mx1 IN TLSA 3 1 1 %s
txt     IN TXT "v=STSv1; " "id=20240101"
alias   IN CNAME mx1
ptr     IN PTR mx1.test.example.
""" % TLSA_HEX.upper()

UNSIGNED = """$ORIGIN unsigned.example.
$TTL 300
@       IN SOA ns.unsigned.example. hostmaster.unsigned.example. 1 3600 600 86400 300
@       IN NS ns
ns      IN A 127.0.0.1
www     IN A 192.0.2.99
"""

# A private zone under the special-use .test TLD (RFC 6761), listed in dns_insecure_domains: libunbound
# would answer NXDOMAIN itself unless the resolver lets it through to the forwarder.
PRIVATE_TEST = """$ORIGIN mail.test.
$TTL 300
@       IN SOA ns.mail.test. hostmaster.mail.test. 1 3600 600 86400 300
@       IN NS ns
ns      IN A 127.0.0.1
@       IN MX 10 mx
mx      IN A 192.0.2.77
"""

SIGNED = """$ORIGIN signed.example.
$TTL 300
@       IN SOA ns.signed.example. hostmaster.signed.example. 1 3600 600 86400 300
@       IN NS ns
ns      IN A 127.0.0.1
@       IN MX 5 mx
mx      IN A 192.0.2.50
"""


def field(tag, value):
    if isinstance(value, int):
        value = struct.pack("<Q", value)
    elif isinstance(value, str):
        value = value.encode()
    return struct.pack("<HI", tag, len(value)) + value


def message(mtype, fields, reqid=0):
    payload = b"".join(field(t, v) for t, v in fields)
    return struct.pack("<HHIQ", 1, mtype, len(payload), reqid) + payload


def parse(data):
    version, mtype, length, reqid = struct.unpack_from("<HHIQ", data)
    assert version == 1 and length == len(data) - 16, "bad header"
    fields, off = [], 16
    while off < len(data):
        tag, flen = struct.unpack_from("<HI", data, off)
        off += 6
        fields.append((tag, data[off:off + flen]))
        off += flen
    return mtype, reqid, fields


class Reply:
    def __init__(self, fields):
        get = lambda t: [v for tg, v in fields if tg == t]  # noqa: E731
        self.rcode = struct.unpack("<Q", get(TAG_RCODE)[0])[0]
        self.dnssec = struct.unpack("<Q", get(TAG_DNSSEC)[0])[0]
        self.text = b"".join(get(TAG_TEXT)).decode("utf-8", "replace")
        self.records = [v.decode("utf-8", "replace") for v in get(TAG_RECORD)]

    def __repr__(self):
        return "rcode=%d dnssec=%d text=%r records=%r" % (self.rcode, self.dnssec, self.text, self.records)


class Link:
    """One SEQPACKET link to the resolver, as the master or as an smtp peer would hold it."""

    def __init__(self, sock):
        self.sock = sock
        self.reqid = 100

    def send(self, data, fds=()):
        if fds:
            socket.send_fds(self.sock, [data], list(fds))
        else:
            self.sock.send(data)

    def recv(self, timeout=15):
        self.sock.settimeout(timeout)
        return parse(self.sock.recv(300000))

    def resolve(self, name, qtype, timeout=15):
        self.reqid += 1
        self.send(message(T_REQ, [(TAG_NAME, name), (TAG_QTYPE, qtype)], self.reqid))
        while True:
            mtype, reqid, fields = self.recv(timeout)
            if mtype == T_REPLY and reqid == self.reqid:
                return Reply(fields)


def ensure_user():
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True)
        return pwd.getpwnam(USER)


class Resolver:
    """mta-resolver started the way mtad starts it: fd 3 = control link, then HELLO + CONFIG."""

    def __init__(self, tmp, config_text):
        self.log_path = os.path.join(tmp, "resolver.log")
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        binary = os.path.join(BIN, "mta-resolver")
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.setsid()
                os.dup2(child.fileno(), 3)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.closerange(4, 1024)
                os.execv(binary, [binary, "-d"])
            finally:
                os._exit(127)
        child.close()
        os.close(log)
        self.link = Link(parent)
        self.link.send(message(T_HELLO, [(TAG_VERSION, 1), (TAG_ROLE, "master")]))
        self.link.send(message(T_CONFIG, [(TAG_CONFIG_TEXT, config_text)]))
        mtype, _, fields = self.link.recv(10)
        assert mtype == T_HELLO and (TAG_ROLE, b"resolver") in fields, "no HELLO from mta-resolver"
        self.status = None

    def wait(self, timeout=15):
        end = time.time() + timeout
        while time.time() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
            time.sleep(0.05)
        return None

    def kill(self):
        if self.status is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait(5)

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/stat" % p) as f:
                    st = f.read()
                if int(st[st.rindex(")") + 2:].split()[1]) == pid:
                    out.append(int(p))
            except (OSError, ValueError):
                pass
    return out


def check_privileges(res, spool):
    """As root: the resolver and libunbound's forked worker run as _mtar inside <spool>/resolver."""
    if os.geteuid() != 0:
        print("SKIP resolver_privdrop: not root")
        return
    uid = pwd.getpwnam(USER).pw_uid
    for pid in [res.pid] + children(res.pid):
        with open("/proc/%d/status" % pid) as f:
            uids = [line.split()[1:] for line in f if line.startswith("Uid:")][0]
        root = os.readlink("/proc/%d/root" % pid)
        check("resolver_privdrop_pid%s" % ("" if pid == res.pid else "_worker"),
              uids == [str(uid)] * 4 and root == os.path.join(spool, "resolver"),
              "pid %d uids %s root %s" % (pid, uids, root))


def check_answers(link):
    r = link.resolve("test.example", MX)
    check("resolver_mx", r.rcode == 0 and r.dnssec == INSECURE and
          sorted(r.records) == ["10 mx1.test.example", "20 mx2.test.example"], r)
    r = link.resolve("mx1.test.example", A)
    check("resolver_a", r.rcode == 0 and r.records == ["192.0.2.10"], r)
    r = link.resolve("mx2.test.example", A)
    check("resolver_a_two", r.rcode == 0 and sorted(r.records) == ["192.0.2.20", "192.0.2.21"], r)
    r = link.resolve("mx1.test.example", AAAA)
    check("resolver_aaaa", r.rcode == 0 and r.records == ["2001:db8::10"], r)
    r = link.resolve("nullmx.test.example", MX)
    check("resolver_null_mx", r.rcode == 0 and r.records == ["0 ."], r)
    r = link.resolve("_25._tcp.mx1.test.example", TLSA)
    check("resolver_tlsa", r.rcode == 0 and r.records == ["3 1 1 " + TLSA_HEX], r)
    r = link.resolve("txt.test.example", TXT)
    check("resolver_txt", r.rcode == 0 and r.records == ["v=STSv1; id=20240101"], r)
    r = link.resolve("ptr.test.example", PTR)
    check("resolver_ptr", r.rcode == 0 and r.records == ["mx1.test.example"], r)
    r = link.resolve("alias.test.example", A)
    check("resolver_cname_followed", r.rcode == 0 and r.records == ["192.0.2.10"], r)
    r = link.resolve("MX1.Test.Example.", A)
    check("resolver_case_and_dot", r.rcode == 0 and r.records == ["192.0.2.10"], r)
    r = link.resolve("nope.test.example", A)
    check("resolver_nxdomain", r.rcode == 3 and r.records == [], r)
    r = link.resolve("mx2.test.example", AAAA)
    check("resolver_nodata", r.rcode == 0 and r.records == [], r)
    r = link.resolve("www.unsigned.example", A)
    check("resolver_bogus_unvalidated_zone", r.dnssec == BOGUS and r.records == [] and r.text != "", r)
    r = link.resolve("signed.example", MX)
    check("resolver_secure_signed_zone", r.rcode == 0 and r.dnssec == SECURE and r.records == ["5 mx.signed.example"], r)
    r = link.resolve("nope.signed.example", A)
    check("resolver_secure_nxdomain", r.rcode == 3 and r.dnssec == SECURE, r)
    r = link.resolve("mail.test", MX)
    check("resolver_private_special_use_tld", r.rcode == 0 and r.records == ["10 mx.mail.test"], r)
    r = link.resolve("bad name!.test.example", A)
    check("resolver_invalid_name_answered", r.rcode == 65535 and r.text == "invalid query name", r)
    r = link.resolve("a" * 64 + ".test.example", A)
    check("resolver_long_label_answered", r.rcode == 65535, r)
    r = link.resolve("test.example", 99)  # on the master link: an admin's typo, answered, not fatal
    check("resolver_master_bad_qtype_answered", r.rcode == 65535 and r.text == "unsupported qtype", r)


def check_peer(res):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    res.link.send(message(T_PEER, [(TAG_ROLE, "smtp"), (TAG_INSTANCE, 1)]), [theirs.fileno()])
    theirs.close()
    peer = Link(ours)
    peer.send(message(T_HELLO, [(TAG_VERSION, 1), (TAG_ROLE, "smtp")]))
    mtype, _, fields = peer.recv(10)
    r = peer.resolve("test.example", MX)
    check("resolver_peer_link", mtype == T_HELLO and sorted(r.records) == ["10 mx1.test.example", "20 mx2.test.example"], r)

    # A second peer for the same role+instance replaces the first: the old link is closed by the
    # resolver (which only works if no other process, e.g. libunbound's worker, holds a copy of it).
    ours2, theirs2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    res.link.send(message(T_PEER, [(TAG_ROLE, "smtp"), (TAG_INSTANCE, 1)]), [theirs2.fileno()])
    theirs2.close()
    peer.sock.settimeout(10)
    try:
        eof = peer.sock.recv(65536) == b""
    except OSError:
        eof = False
    check("resolver_peer_replaced_old_closed", eof, "old peer link still open")
    peer2 = Link(ours2)
    peer2.send(message(T_HELLO, [(TAG_VERSION, 1), (TAG_ROLE, "smtp")]))
    peer2.recv(10)
    r = peer2.resolve("mx1.test.example", A)
    check("resolver_peer_replacement_works", r.records == ["192.0.2.10"], r)
    return peer2


def check_reload(res, config):
    res.link.send(message(T_LOGLEVEL, [(TAG_TEXT, "info")]))
    res.link.send(message(T_CONFIG, [(TAG_CONFIG_TEXT, config)]))
    r = res.link.resolve("mx1.test.example", A)
    check("resolver_reload", r.records == ["192.0.2.10"] and
          wait_for(lambda: "event=reloaded" in res.log_text(), 5), res.log_text()[-500:])


def main():
    if not shutil.which("nsd"):
        print("FAIL resolver_setup: nsd not installed")
        sys.exit(1)
    tmp = tempfile.mkdtemp(prefix="mtatest-resolver-")
    os.chmod(tmp, 0o755)
    spool = os.path.join(tmp, "spool")
    os.makedirs(os.path.join(spool, "resolver"))
    if os.geteuid() == 0:
        pw = ensure_user()
        os.chown(os.path.join(spool, "resolver"), pw.pw_uid, pw.pw_gid)
        os.chmod(os.path.join(spool, "resolver"), 0o700)
    nsd = Nsd(tmp, {"test.example": ZONE, "unsigned.example": UNSIGNED, "signed.example": SIGNED,
                    "mail.test": PRIVATE_TEST}, signed=("signed.example",))
    with Guard("resolver") as g:
        g.cleanups += [lambda: g.log and g.log.kill(), nsd.stop]
        if not check("resolver_nsd_up", nsd.wait_answering("mx1.test.example", "192.0.2.10", 15),
                     "nsd did not answer"):
            return
        config = ("spool_dir = %s\ndns_forwarder = %s\ndns_insecure_domains = test.example mail.test\n"
                  "dns_trust_anchors = %s\nlog_level = debug\n" % (spool, nsd.forwarder(), nsd.anchors))
        g.log = res = Resolver(tmp, config)
        check_answers(res.link)
        check_privileges(res, spool)
        peer = check_peer(res)
        check_reload(res, config)

        # A malformed request on a peer link ends the process with status 2.
        peer.send(message(T_REQ, [(TAG_NAME, "test.example"), (TAG_QTYPE, 99)], 7))
        check("resolver_malformed_exit2", res.wait(10) == 2, "status %r" % res.status)
        check("resolver_worker_gone", wait_for(lambda: not group_alive(res.pid), 10), "libunbound worker left")

        # A fresh process: stop while idle exits 0.
        g.log = res = Resolver(tmp, config)
        r = res.link.resolve("mx1.test.example", A)
        res.link.send(message(T_STOP, []))
        check("resolver_stop_exit0", r.records == ["192.0.2.10"] and res.wait(10) == 0, "status %r" % res.status)

        # Upstream gone: an uncached name is still answered within the 10 s bound (SERVFAIL or timeout).
        g.log = res = Resolver(tmp, config)
        nsd.stop()
        start = time.time()
        r = res.link.resolve("gone.test.example", A, timeout=14)
        check("resolver_upstream_down_answered", r.rcode in (2, 65535) and time.time() - start < 12.5, r)
        res.link.sock.close()
        check("resolver_master_close_exit0", res.wait(10) == 0, "status %r" % res.status)


if __name__ == "__main__":
    main()
    finish()
