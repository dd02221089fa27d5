"""Process accounting from /proc for the benchmark: which processes belong to a system under test (the
tree below its master), their CPU time and their memory. No cgroups needed: a daemon's reaped children
show up in its cutime/cstime, so "sum over the live tree" before and after a phase is exact."""
import os
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
HZ = os.sysconf("SC_CLK_TCK")


class Proc:
    __slots__ = ("pid", "ppid", "comm", "state", "ticks", "rss")

    def __init__(self, pid, ppid, comm, state, ticks, rss):
        self.pid, self.ppid, self.comm, self.state, self.ticks, self.rss = pid, ppid, comm, state, ticks, rss


def read_proc(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            st = f.read().decode("ascii", "replace")
    except OSError:
        return None
    lp, rp = st.index("("), st.rindex(")")
    rest = st[rp + 2:].split()
    # rest[0] = field 3 (state); utime=14, stime=15, cutime=16, cstime=17, rss=24 (1-based fields).
    ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
    return Proc(pid, int(rest[1]), st[lp + 1:rp], rest[0], ticks, int(rest[21]) * PAGE)


def snapshot():
    """Every process on the machine, pid -> Proc."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            p = read_proc(int(name))
            if p:
                out[p.pid] = p
    return out


def tree(root, snap=None):
    """The root pid and all its descendants that are alive (zombies count: their times still show)."""
    snap = snap if snap is not None else snapshot()
    if root not in snap:
        return {}
    children = {}
    for p in snap.values():
        children.setdefault(p.ppid, []).append(p.pid)
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in out or pid not in snap:
            continue
        out[pid] = snap[pid]
        todo.extend(children.get(pid, ()))
    return out


def cpu_seconds(procs):
    """utime+stime of every process plus that of the children they already reaped."""
    return sum(p.ticks for p in procs.values()) / HZ


def rss_bytes(procs, comm=None):
    return sum(p.rss for p in procs.values() if comm is None or p.comm == comm)


def pss_bytes(procs, comm=None):
    """Proportional set size (shared pages divided among their users), from smaps_rollup."""
    total = 0
    for p in procs.values():
        if comm is not None and p.comm != comm:
            continue
        try:
            with open("/proc/%d/smaps_rollup" % p.pid) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


def alive(pid):
    p = read_proc(pid)
    return p is not None and p.state not in ("Z", "X")


class PeakMemory:
    """Samples the summed RSS of a system's processes in the background (every `interval`, PSS every
    fifth time since smaps_rollup is dearer); .peak_rss and .peak_pss are the highest sums seen.
    `procs_fn` returns the processes (pid -> Proc) as they are now."""

    def __init__(self, procs_fn, interval=0.1):
        self.procs_fn, self.interval = procs_fn, interval
        self.peak_rss = self.peak_pss = 0
        self._n = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self):
        procs = self.procs_fn()
        if not procs:
            return
        self.peak_rss = max(self.peak_rss, rss_bytes(procs))
        if self._n % 5 == 0:
            self.peak_pss = max(self.peak_pss, pss_bytes(procs))
        self._n += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._n = 0
        self.sample()
        return False


def reap_orphans(keep=()):
    """Reap zombie children that were re-parented to us (we are a child subreaper: daemons started by
    `postfix start` and the stragglers of a stopped master end up here). Pids in `keep` belong to
    subprocess.Popen objects, which reap their own."""
    me = os.getpid()
    for p in snapshot().values():
        if p.ppid == me and p.state == "Z" and p.pid not in keep:
            try:
                os.waitpid(p.pid, os.WNOHANG)
            except ChildProcessError:
                pass


def wait_gone(pid, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)
