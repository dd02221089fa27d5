"""TLS-RPT reports as the receiving end sees them: each message goes through tests/unit/tlsrpt_check.py
(Python's email, gzip and json modules, not our code), which checks the RFC 8460 structure and prints
the report; here the reports are returned by policy domain, with their policies' counts summed up."""
import json
import os
import subprocess
import tempfile

from mtatest import BIN, TMP_ROOT

CHECKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "unit", "tlsrpt_check.py")


def mtaqueue_tlsrpt(m, *args):
    return subprocess.run([os.path.join(BIN, "mtaqueue"), "-c", m.conf, "tlsrpt"] + list(args),
                          capture_output=True, text=True, timeout=30)


def parse_reports(messages):
    """messages: raw RFC 5322 bytes. Returns ({policy domain: report}, [problems])."""
    reports, problems = {}, []
    for data in messages:
        with tempfile.NamedTemporaryFile(dir=TMP_ROOT, suffix=".eml", delete=False) as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        r = subprocess.run(["/usr/bin/python3", CHECKER, f.name], capture_output=True, text=True, timeout=30)
        os.unlink(f.name)
        if r.returncode != 0:
            problems.append(r.stderr.strip())
            continue
        report = json.loads(r.stdout)
        for p in report["policies"]:
            reports.setdefault(p["policy"]["policy-domain"], []).append((report, p))
    return reports, problems


def counts(reports, domain):
    """(successes, {result-type: failed sessions}, policy types) of one policy domain over its reports."""
    ok, failed, types = 0, {}, set()
    for _, p in reports.get(domain, []):
        ok += p["summary"]["total-successful-session-count"]
        types.add(p["policy"]["policy-type"])
        for d in p.get("failure-details", []):
            failed[d["result-type"]] = failed.get(d["result-type"], 0) + d["failed-session-count"]
    return ok, failed, types
