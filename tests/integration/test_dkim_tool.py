"""mtadkim(8) against independent DKIM code: keys made by `mtadkim keygen` sign with dkimpy and verify
with dkimpy through the printed TXT record; the records, served by NSD, satisfy `mtadkim check`; mail
signed by dkimpy (RSA and Ed25519) gets dkim=pass from `mtadkim verify` through the running resolver,
and dkim=fail once a byte changes."""
import base64
import json
import os
import re
import stat
import subprocess

import dkim

from dnszone import Nsd
from mtatest import BIN, MTA, TMP_ROOT, Guard, check, finish, wait_for

DOMAIN = "dkim.example"
MESSAGE = (b"From: Alice <alice@dkim.example>\r\nTo: bob@example.org\r\nSubject: signed by dkimpy\r\n"
           b"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <t1@dkim.example>\r\n\r\n"
           b"Hello Bob.\r\n\r\nA second paragraph  with  spaces.\r\n")


def mtadkim(*args, conf=None):
    cmd = [os.path.join(BIN, "mtadkim")] + (["-c", conf] if conf else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def record_of(zone_line):
    """The TXT record text of a zone line: its quoted strings joined (RFC 6376 §3.6.2.2)."""
    return "".join(re.findall(r'"([^"]*)"', zone_line))


def ed25519_seed(keyfile):
    """dkimpy takes an Ed25519 private key as the base64 of its 32-byte seed: the end of the PKCS#8 DER."""
    der = subprocess.run(["openssl", "pkey", "-in", keyfile, "-outform", "DER"], capture_output=True,
                         check=True).stdout
    return base64.b64encode(der[-32:])


def keygen_tests(tmp):
    keys = {}
    for sel, alg in (("rsa1", "rsa"), ("ed1", "ed25519"), ("other", "rsa")):
        path = os.path.join(tmp, "%s.key" % sel)
        r = mtadkim("keygen", "-d", DOMAIN.upper(), "-s", sel, "-a", alg, "-o", path)
        lines = r.stdout.splitlines()
        ok = (r.returncode == 0 and len(lines) == 1 and
              lines[0].startswith("%s._domainkey.%s. IN TXT \"v=DKIM1; k=%s; p=" % (sel, DOMAIN, alg)))
        check("keygen %s: one zone-file line with a fully qualified owner" % alg, ok, r.stdout + r.stderr)
        strings = re.findall(r'"([^"]*)"', lines[0]) if lines else []
        check("keygen %s: character-strings of at most 255 octets" % alg,
              strings and all(len(s) <= 255 for s in strings), strings)
        mode = stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else None
        check("keygen %s: key file readable by root (and _mtaauth) only" % alg, mode in (0o600, 0o640), oct(mode or 0))
        keys[sel] = (path, lines[0] if lines else "")
    r = mtadkim("keygen", "-d", DOMAIN, "-s", "rsa1", "-a", "rsa", "-o", keys["rsa1"][0])
    check("keygen: an existing key file is never overwritten", r.returncode == 1 and "exists" in r.stderr, r.stderr)
    r = mtadkim("keygen", "-d", DOMAIN, "-s", "small", "-a", "rsa", "-b", "512", "-o", os.path.join(tmp, "s.key"))
    check("keygen: RSA under 1024 bits refused", r.returncode != 0 and not os.path.exists(os.path.join(tmp, "s.key")),
          r.stderr)
    for bad in (["keygen", "-d", "bad domain", "-s", "x", "-a", "rsa"], ["keygen", "-d", DOMAIN, "-s", "x", "-a", "dsa"],
                ["keygen", "-d", DOMAIN, "-s", "../x", "-a", "rsa"], ["frobnicate"], ["verify"]):
        r = mtadkim(*bad)
        check("usage error: %s" % " ".join(bad), r.returncode == 2 and r.stderr, (r.returncode, r.stderr))
    r = mtadkim("--json", "keygen", "-d", DOMAIN, "-s", "js", "-a", "ed25519", "-o", os.path.join(tmp, "js.key"))
    try:
        j = json.loads(r.stdout)
        ok = j["selector"] == "js" and j["algorithm"] == "ed25519" and j["record"].startswith("v=DKIM1; k=ed25519; p=")
    except (ValueError, KeyError) as e:
        ok, j = False, e
    check("keygen --json", ok, r.stdout)

    # dkimpy signs with the key files and verifies against the printed records.
    def dns_of(sel):
        rec = record_of(keys[sel][1]).encode()
        return lambda name, timeout=5: rec if name.decode().rstrip(".") == "%s._domainkey.%s" % (sel, DOMAIN) else b""
    with open(keys["rsa1"][0], "rb") as f:
        sig = dkim.sign(MESSAGE, b"rsa1", DOMAIN.encode(), f.read(), include_headers=[b"from", b"to", b"subject"])
    check("dkimpy: signs with the RSA key file and verifies with the printed record",
          dkim.verify(sig + MESSAGE, dnsfunc=dns_of("rsa1")), sig)
    sig = dkim.sign(MESSAGE, b"ed1", DOMAIN.encode(), ed25519_seed(keys["ed1"][0]),
                    signature_algorithm=b"ed25519-sha256", include_headers=[b"from", b"to", b"subject"])
    check("dkimpy: signs with the Ed25519 key file and verifies with the printed record",
          dkim.verify(sig + MESSAGE, dnsfunc=dns_of("ed1")), sig)
    return keys


def zone(keys):
    lines = ["$ORIGIN %s." % DOMAIN, "$TTL 1", "@ IN SOA ns hostmaster 1 3600 600 86400 1", "@ IN NS ns",
             "ns IN A 127.0.0.1", keys["rsa1"][1], keys["ed1"][1],
             # "stale" publishes the other key: check with rsa1's file must say mismatch.
             keys["other"][1].replace("other._domainkey", "stale._domainkey"),
             'revoked._domainkey IN TXT "v=DKIM1; k=rsa; p="',
             'garbage._domainkey IN TXT "v=DKIM1; k=rsa; p=!!!notbase64"']
    return "\n".join(lines) + "\n"


def check_tests(m, keys):
    r = mtadkim("check", "-d", DOMAIN, "-s", "rsa1", "-k", keys["rsa1"][0], conf=m.conf)
    check("check: published RSA record matches its key file", r.returncode == 0 and ": match:" in r.stdout, r.stdout + r.stderr)
    r = mtadkim("check", "-d", DOMAIN, "-s", "ed1", "-k", keys["ed1"][0], conf=m.conf)
    check("check: published Ed25519 record matches", r.returncode == 0 and ": match:" in r.stdout, r.stdout + r.stderr)
    r = mtadkim("check", "-d", DOMAIN, "-s", "stale", "-k", keys["rsa1"][0], conf=m.conf)
    check("check: another key published -> mismatch, and the record to publish",
          r.returncode == 1 and ": mismatch:" in r.stdout and "publish: stale._domainkey." in r.stdout, r.stdout)
    r = mtadkim("check", "-d", DOMAIN, "-s", "absent", "-k", keys["rsa1"][0], conf=m.conf)
    check("check: nothing published -> missing", r.returncode == 1 and ": missing:" in r.stdout, r.stdout + r.stderr)
    r = mtadkim("check", "-d", DOMAIN, "-s", "revoked", "-k", keys["rsa1"][0], conf=m.conf)
    check("check: revoked record -> mismatch", r.returncode == 1 and "revoked" in r.stdout, r.stdout + r.stderr)
    r = mtadkim("check", "-d", DOMAIN, "-s", "garbage", "-k", keys["rsa1"][0], conf=m.conf)
    check("check: malformed record -> malformed", r.returncode == 1 and ": malformed:" in r.stdout, r.stdout + r.stderr)
    r = mtadkim("--json", "check", "-d", DOMAIN, "-s", "rsa1", "-k", keys["rsa1"][0], conf=m.conf)
    try:
        ok = json.loads(r.stdout)["result"] == "match"
    except (ValueError, KeyError):
        ok = False
    check("check --json", ok, r.stdout)
    r = mtadkim("check", "-d", DOMAIN, "-s", "rsa1", "-k", os.path.join(TMP_ROOT, "nonexistent.key"), conf=m.conf)
    check("check: missing key file is an error naming it", r.returncode == 1 and "nonexistent.key" in r.stderr, r.stderr)


def verify_tests(m, keys, tmp):
    def verify_file(data, *extra):
        path = os.path.join(tmp, "msg.eml")
        with open(path, "wb") as f:
            f.write(data)
        return mtadkim(*(list(extra) + ["verify", path]), conf=m.conf)

    with open(keys["rsa1"][0], "rb") as f:
        rsa_sig = dkim.sign(MESSAGE, b"rsa1", DOMAIN.encode(), f.read())
    ed_sig = dkim.sign(MESSAGE, b"ed1", DOMAIN.encode(), ed25519_seed(keys["ed1"][0]),
                       signature_algorithm=b"ed25519-sha256")
    for name, sig in (("RSA", rsa_sig), ("Ed25519", ed_sig)):
        r = verify_file(sig + MESSAGE)
        check("verify: dkimpy %s signature -> dkim=pass" % name,
              r.returncode == 0 and r.stdout.startswith("Authentication-Results: mx.test.example;") and
              "dkim=pass" in r.stdout and "header.d=dkim.example" in r.stdout, r.stdout + r.stderr)
    r = verify_file(rsa_sig + MESSAGE.replace(b"Hello Bob", b"Hello Rob"))
    check("verify: one changed body byte -> dkim=fail", r.returncode == 1 and "dkim=fail" in r.stdout, r.stdout + r.stderr)
    r = verify_file(ed_sig + MESSAGE.replace(b"Subject: signed", b"Subject: Signed"))
    check("verify: one changed signed header -> dkim=fail", r.returncode == 1 and "dkim=fail" in r.stdout, r.stdout)
    # Both at once, and the LF-only form of the same file (as in a Maildir) verifies the same.
    r = verify_file((ed_sig + rsa_sig + MESSAGE).replace(b"\r\n", b"\n"))
    check("verify: two signatures in an LF-only file -> two passes",
          r.returncode == 0 and r.stdout.count("dkim=pass") == 2, r.stdout + r.stderr)
    stale = rsa_sig.replace(b"s=rsa1", b"s=absent")
    r = verify_file(stale + MESSAGE)
    check("verify: key not in DNS -> dkim=permerror", r.returncode == 1 and "dkim=permerror" in r.stdout, r.stdout)
    r = verify_file(MESSAGE)
    check("verify: unsigned -> dkim=none", r.returncode == 1 and "dkim=none" in r.stdout, r.stdout)
    r = verify_file(rsa_sig + MESSAGE, "--json")
    try:
        j = json.loads(r.stdout)
        ok = [v["result"] for v in j["verdicts"]] == ["pass"] and j["verdicts"][0]["selector"] == "rsa1"
    except (ValueError, KeyError, IndexError):
        ok = False
    check("verify --json", ok, r.stdout)
    r = mtadkim("verify", os.path.join(tmp, "no-such-file"), conf=m.conf)
    check("verify: unreadable file is an error naming it", r.returncode == 1 and "no-such-file" in r.stderr, r.stderr)
    # Hostile input: thousands of signatures and header garbage give a clear answer, not a crash.
    junk = b"".join(b"DKIM-Signature: v=1; a=rsa-sha256; d=%d.x; s=s; b=!!; bh=; h=from\r\n" % i for i in range(3000))
    r = verify_file(junk + MESSAGE)
    check("verify: 3000 malformed signatures -> permerror, the rest not examined",
          r.returncode == 1 and "dkim=permerror" in r.stdout and "not examined" in r.stdout, r.stdout[-500:] + r.stderr)


def main():
    tmp = os.path.join(TMP_ROOT, "dkim")
    os.makedirs(tmp)
    keys = keygen_tests(tmp)
    nsd = Nsd(tmp, {DOMAIN: zone(keys)})
    with Guard("dkim_tool") as g:
        g.cleanups.append(nsd.stop)
        name = "ed1._domainkey.%s" % DOMAIN
        if not check("nsd serves the keys", wait_for(lambda: "k=ed25519" in nsd.query(name, "TXT"), 15),
                     nsd.query(name, "TXT")):
            return
        g.log = m = MTA(name="dkim", extra="dns_forwarder = %s\ndns_insecure_domains = %s\n"
                        % (nsd.forwarder(), DOMAIN)).start()
        g.cleanups.insert(0, m.stop)
        check_tests(m, keys)
        verify_tests(m, keys, tmp)


if __name__ == "__main__":
    main()
    finish()
