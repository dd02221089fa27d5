"""A throw-away authoritative DNS server for integration tests: NSD in the foreground on a 127.x address,
serving the given zones, optionally DNSSEC-signed with ldns (a fresh KSK per zone, its DS written to a
trust anchor file for `dns_trust_anchors`). Used by test_outbound.py, test_resolver.py, test_msgauth.py
and test_milter.py (nsd_txt: a DNS function for dkimpy)."""
import os
import random
import subprocess
import time

from mtatest import free_port, stop_group


def _wait_for(cond, timeout, interval=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(interval)
    return bool(cond())


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def random_address(lo=100, hi=250):
    return "127.0.0.%d" % random.randint(lo, hi)


def nsd_txt(nsd):
    """dkimpy's DNS function (dnsfunc), asking NSD for TXT records."""
    import dns.resolver
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = [nsd.addr]
    res.port = nsd.port

    def lookup(name, timeout=5):
        try:
            ans = res.resolve(name.decode().rstrip("."), "TXT", lifetime=timeout)
        except Exception:  # noqa: BLE001 - NXDOMAIN, NODATA: dkimpy wants b""
            return b""
        return b"".join(b"".join(r.strings) for r in ans)
    return lookup


class Nsd:
    """zones: {"name": "zone text"}; signed: names of zones to sign. self.anchors is the trust anchor
    file (DS lines of every signed zone) or None."""

    def __init__(self, tmp, zones, signed=(), addr=None, port=None):
        self.addr = addr or random_address()
        self.port = port or free_port(self.addr)
        self.dir = os.path.join(tmp, "nsd")
        os.makedirs(self.dir, exist_ok=True)
        self.anchors = None
        entries = []
        for name, text in zones.items():
            with open(os.path.join(self.dir, name + ".zone"), "w") as f:
                f.write(text)
            zonefile = name + ".zone"
            if name in signed:
                self._sign(name)
                zonefile += ".signed"
            entries.append("zone:\n  name: %s\n  zonefile: %s\n" % (name, zonefile))
        conf = os.path.join(self.dir, "nsd.conf")
        d = self.dir
        with open(conf, "w") as f:
            f.write('server:\n  ip-address: %s@%d\n  username: ""\n  chroot: ""\n  database: ""\n'
                    '  zonesdir: "%s"\n  pidfile: "%s/nsd.pid"\n  xfrdfile: "%s/xfrd.state"\n'
                    '  zonelistfile: "%s/zone.list"\n  logfile: "%s/nsd.log"\n  server-count: 1\n'
                    '  do-ip6: no\n  verbosity: 1\nremote-control:\n  control-enable: no\n'
                    % (self.addr, self.port, d, d, d, d, d) + "".join(entries))
        self.proc = subprocess.Popen(["nsd", "-c", conf, "-d"], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "stderr"), "wb"), start_new_session=True)

    def _sign(self, zone):
        key = subprocess.run(["ldns-keygen", "-a", "ECDSAP256SHA256", "-k", zone], cwd=self.dir, check=True,
                             capture_output=True, text=True).stdout.strip()
        subprocess.run(["ldns-signzone", zone + ".zone", key], cwd=self.dir, check=True)
        path = os.path.join(self.dir, "anchors")
        with open(os.path.join(self.dir, key + ".ds")) as src, open(path, "a") as dst:
            dst.write("; DS of the test zone %s\n" % zone + src.read())
        self.anchors = path

    def forwarder(self):
        """The value for `dns_forwarder`."""
        return "%s@%d" % (self.addr, self.port)

    def query(self, name, qtype="A"):
        r = subprocess.run(["dig", "+short", "+time=1", "+tries=1", "-p", str(self.port), "@" + self.addr,
                            name, qtype], capture_output=True, text=True)
        return r.stdout

    def wait_answering(self, name, expect, timeout=15):
        return _wait_for(lambda: expect in self.query(name), timeout)

    def stop(self):
        stop_group(self.proc)
        # NSD forks helpers that share its process group; wait until every one is gone.
        _wait_for(lambda: not group_alive(self.proc.pid), 10)
