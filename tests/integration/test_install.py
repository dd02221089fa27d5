"""What a packager gets: `make install DESTDIR=... PREFIX=/usr` lays out an FHS tree (sbin, libexec/mta,
/etc/mta, /var/spool/mta, man1/5/8, the systemd unit); the unit passes `systemd-analyze verify` and
scores well in `systemd-analyze security`; a packager's CPPFLAGS, CXXFLAGS and LDFLAGS reach every
compile and link (read from `make -n`, nothing is built); every man page passes `groff -man -ww -z`
and `lexgrog`. Two builds being bit-identical is `make repro` (it builds the tree twice, too long for
make check)."""
import glob
import os
import re
import shutil
import subprocess
import tempfile

from mtatest import check, finish, ROOT

PROGRAMS_SBIN = ("mtad", "mtactl", "mtaqueue", "mailq", "sendmail", "newaliases", "mtamap", "mtaconf", "mtadns",
                 "mtadkim")
ROLES = ("mta-smtpd", "mta-queue", "mta-smtp", "mta-local", "mta-resolver", "mta-msgauth")


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)


def layout(dest):
    r = run(["make", "-s", "install", "DESTDIR=" + dest, "PREFIX=/usr", "NO_DEPS=1"], cwd=ROOT)
    if not check("install: make install DESTDIR PREFIX=/usr", r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]):
        return False
    missing = [p for p in ["usr/sbin/" + x for x in PROGRAMS_SBIN] + ["usr/libexec/mta/" + x for x in ROLES]
               if not os.access(os.path.join(dest, p), os.X_OK)]
    check("install: tools in /usr/sbin, roles in /usr/libexec/mta", not missing, missing)
    stray = [x for x in os.listdir(os.path.join(dest, "usr/sbin")) if x.startswith("mta-")]
    check("install: no role program in sbin", not stray, stray)
    pages = sorted(os.path.relpath(p, dest) for p in glob.glob(os.path.join(dest, "usr/share/man/man*/*")))
    wrong = [p for p in pages if p.rsplit(".", 1)[1] != p.split("/")[3][3:]]
    check("install: every man page in its section's directory", len(pages) == len(glob.glob(os.path.join(
        ROOT, "man", "*.[158]"))) and not wrong, pages)
    conf = os.path.join(dest, "etc/mta/mta.conf")
    text = open(conf).read() if os.path.exists(conf) else ""
    check("install: /etc/mta/mta.conf names /usr/libexec/mta and /var/spool/mta",
          "libexec_dir = /usr/libexec/mta" in text and "spool_dir = /var/spool/mta" in text, text[:500])
    check("install: /var/spool/mta exists", os.path.isdir(os.path.join(dest, "var/spool/mta")), "")
    r = run([os.path.join(dest, "usr/sbin/mtad"), "-n", "-c", conf])
    check("install: the installed configuration is valid", r.returncode == 0, r.stdout + r.stderr)
    return True


def unit(dest, tmp):
    path = os.path.join(dest, "lib/systemd/system/mtad.service")
    if not check("install: the systemd unit is installed", os.path.exists(path), ""):
        return
    text = open(path).read()
    check("install: the unit runs /usr/sbin/mtad", "ExecStart=/usr/sbin/mtad -d -c /etc/mta/mta.conf" in text, text[:300])
    # Verified as installed, with the programs where DESTDIR put them (verify checks they exist).
    local = os.path.join(tmp, "mtad.service")
    with open(local, "w") as f:
        f.write(text.replace("/usr/sbin/", os.path.join(dest, "usr/sbin/")))
    r = run(["systemd-analyze", "verify", "--man=no", local])
    check("install: systemd-analyze verify finds nothing", r.returncode == 0 and not r.stdout.strip() and
          not r.stderr.strip(), r.stdout + r.stderr)
    r = run(["systemd-analyze", "security", "--offline=yes", local])
    m = re.search(r"Overall exposure level for mtad\.service: ([0-9.]+)", r.stdout + r.stderr)
    print("systemd-analyze security: %s" % (m.group(0) if m else (r.stdout + r.stderr)[-300:]))
    check("install: systemd-analyze security exposure at most 4.0 (OK) for a root master",
          m is not None and float(m.group(1)) <= 4.0, (r.stdout + r.stderr)[-3000:])


def flags(tmp):
    env = dict(os.environ)
    r = run(["make", "-n", "-B", "BUILD=" + os.path.join(tmp, "b"), "NO_DEPS=1", "CPPFLAGS=-DMTA_PKG_CPP=1",
             "CXXFLAGS=-O2 -g -fstack-protector-strong -DMTA_PKG_CXX=1", "LDFLAGS=-Wl,-z,relro -Wl,-z,now", "all"],
            cwd=ROOT, env=env)
    lines = r.stdout.splitlines()
    compiles = [x for x in lines if re.search(r"\s-c\s", x) and ("g++" in x or "clang" in x)]
    links = [x for x in lines if re.search(r"\s-o\s\S*/bin/", x)]
    bad_c = [x for x in compiles if "-DMTA_PKG_CPP=1" not in x or "-DMTA_PKG_CXX=1" not in x or
             "-fstack-protector-strong" not in x or "-ffile-prefix-map=" not in x]
    bad_l = [x for x in links if "-Wl,-z,relro -Wl,-z,now" not in x]
    check("install: CPPFLAGS and CXXFLAGS reach every compile (%d)" % len(compiles),
          r.returncode == 0 and len(compiles) > 100 and not bad_c, bad_c[:3] or r.stderr[-1000:])
    check("install: LDFLAGS reach every link (%d)" % len(links), len(links) >= 16 and not bad_l, bad_l[:3])


def man_pages():
    bad = []
    for page in sorted(glob.glob(os.path.join(ROOT, "man", "*.[158]"))):
        r = run(["groff", "-man", "-ww", "-z", page])
        if r.returncode != 0 or r.stderr.strip():
            bad.append((os.path.basename(page), r.stderr.strip()[:300]))
        r = run(["lexgrog", page])
        if r.returncode != 0 or ": parse failed" in r.stdout:
            bad.append((os.path.basename(page), "lexgrog: " + r.stdout.strip()[:200]))
    check("install: every man page passes groff -man -ww -z and lexgrog", not bad, bad)


def main():
    tmp = tempfile.mkdtemp(prefix="mtatest-install-")
    dest = os.path.join(tmp, "dest")
    try:
        if layout(dest):
            unit(dest, tmp)
        flags(tmp)
        man_pages()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
