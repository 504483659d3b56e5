"""What the tuning scripts share: the settings and both profiles (data), reading and writing a
filesystem root, CPU lists and masks, the NIC's queue IRQs and the pinning plan, the state file.

Owns: the one table of sysctls (`SYSCTLS`) that `check` judges and `apply` applies, and the one
plan (`pin_plan`) that `irq-pin` writes and `check` compares against. Takes a `Host` (a root
directory, `/` on a real machine, a temp dir in tests) and returns values and `Change`s; it writes
only through `Host.write`, and only the scripts call that. It never decides whether to write:
dry runs and the root check are the scripts' (`require_root`, `write_changes`).
"""
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Optional

# ---------------------------------------------------------------------------------------------
# The settings. One row per sysctl: how `check` judges it, and what each profile sets, with why.
#
# kind: MIN (at least; apply raises, never lowers), MAX (at most; apply lowers, never raises),
# EQ (exactly), SPAN (a "low high" port range at least as wide as the profile's), each applied
# field by field for multi-value settings such as tcp_rmem ("min default max").
# check: the bound `check` judges against (the laxer of the two profiles: what either accepts),
# or None: reported as information only, with the latency profile's value as the recommendation.
# profiles: {profile: (value, one-line reason)}; a profile without the setting leaves it alone.

MIN, MAX, EQ, SPAN = "min", "max", "eq", "span"
LATENCY, THROUGHPUT = "edge-latency", "edge-throughput"
PROFILES = (LATENCY, THROUGHPUT)


@dataclass(frozen=True)
class Sysctl:
    name: str
    kind: str
    check: Optional[str]
    why: str
    profiles: dict = field(default_factory=dict)

    @property
    def rel(self):
        return "proc/sys/" + self.name.replace(".", "/")


SYSCTLS = [
    Sysctl("net.core.somaxconn", MIN, "4096",
           "accept backlog cap; ringgate asks for 4096 per listener and the kernel clamps it silently", {
               LATENCY: ("65535", "room for accept bursts (restarts, reconnect storms) without SYN drops"),
               THROUGHPUT: ("65535", "the same: a full accept queue drops SYNs, a 1-3 s retransmit each"),
           }),
    Sysctl("net.ipv4.tcp_max_syn_backlog", MIN, "8192",
           "half-open connections kept during bursts and SYN floods", {
               LATENCY: ("65535", "keep half-open connections through a burst instead of dropping them"),
               THROUGHPUT: ("65535", "the same"),
           }),
    Sysctl("net.core.netdev_max_backlog", MIN, "16384",
           "packets queued per CPU before the stack drops them", {
               LATENCY: ("16384", "enough for 10 GbE bursts; a longer queue only hides overload as delay"),
               THROUGHPUT: ("65536", "absorb 25-100 GbE bursts rather than drop (and retransmit)"),
           }),
    Sysctl("net.ipv4.ip_local_port_range", SPAN, "0 50000",
           "ephemeral ports for upstream connections (each upstream target has the whole range)", {
               LATENCY: ("10240 65535", "55k ports per upstream target; keeps 1024-10239 free for listeners"),
               THROUGHPUT: ("10240 65535", "the same"),
           }),
    Sysctl("net.ipv4.tcp_tw_reuse", EQ, "1",
           "reuse TIME_WAIT ports for new upstream connections (the default 2 does so on loopback only)", {
               LATENCY: ("1", "upstream connects never wait for a TIME_WAIT port"),
               THROUGHPUT: ("1", "the same"),
           }),
    Sysctl("net.ipv4.tcp_fin_timeout", MAX, "15",
           "how long orphaned FIN_WAIT_2 sockets hold memory", {
               LATENCY: ("15", "release closed connections' memory in 15 s rather than 60"),
               THROUGHPUT: ("15", "the same"),
           }),
    Sysctl("net.ipv4.tcp_rmem", MIN, "4096 131072 6291456",
           "TCP receive buffer min/default/max per socket (autotuned up to max); kernel default shown", {
               LATENCY: ("4096 131072 6291456", "kernel default: autotuning is enough on a LAN and deeper "
                                                "buffers only queue"),
               THROUGHPUT: ("4096 131072 33554432", "32 MiB max fills a 10 Gbit/s x 25 ms path per connection"),
           }),
    Sysctl("net.ipv4.tcp_wmem", MIN, "4096 16384 4194304",
           "TCP send buffer min/default/max per socket (autotuned up to max); kernel default shown", {
               LATENCY: ("4096 16384 4194304", "kernel default: a deeper send queue adds delay for every "
                                               "byte behind it"),
               THROUGHPUT: ("4096 65536 33554432", "32 MiB max for large responses to far clients"),
           }),
    Sysctl("net.core.rmem_max", MIN, "4194304",
           "cap on an explicit SO_RCVBUF (ringgate sets none; upstreams and sidecars may)", {
               LATENCY: ("4194304", "let an explicit SO_RCVBUF reach what autotuning reaches"),
               THROUGHPUT: ("33554432", "match tcp_rmem's 32 MiB max"),
           }),
    Sysctl("net.core.wmem_max", MIN, "4194304",
           "cap on an explicit SO_SNDBUF (ringgate sets none; upstreams and sidecars may)", {
               LATENCY: ("4194304", "let an explicit SO_SNDBUF reach what autotuning reaches"),
               THROUGHPUT: ("33554432", "match tcp_wmem's 32 MiB max"),
           }),
    Sysctl("net.core.busy_poll", EQ, None,
           "µs to busy-poll the NIC in poll/epoll before sleeping; affects the epoll driver, not io_uring", {
               LATENCY: ("50", "spin up to 50 µs for packets instead of sleeping: lower wake-up latency, more CPU"),
               THROUGHPUT: ("0", "no spinning: the cores go to request work"),
           }),
    Sysctl("net.core.busy_read", EQ, None,
           "µs to busy-poll on a blocking socket read (the default SO_BUSY_POLL)", {
               LATENCY: ("50", "the same spin for blocking reads (helpers, sidecars)"),
               THROUGHPUT: ("0", "no spinning"),
           }),
    Sysctl("net.ipv4.tcp_migrate_req", EQ, "1",
           "requests queued on a closing SO_REUSEPORT listener move to its siblings instead of being reset", {
               LATENCY: ("1", "no resets for queued connections when a listener closes (Linux 5.14+)"),
               THROUGHPUT: ("1", "the same"),
           }),
    Sysctl("fs.file-max", MIN, "1048576",
           "system-wide open files: each connection is one, a proxied one two", {
               LATENCY: ("2097152", "a million proxied connections with room for everything else"),
               THROUGHPUT: ("2097152", "the same"),
           }),
    Sysctl("fs.nr_open", MIN, "1048576",
           "the highest nofile limit a process may get (the unit's LimitNOFILE=1048576 needs this)"),
    Sysctl("kernel.io_uring_disabled", EQ, "0",
           "1 (unprivileged users) or 2 forces ringgate's epoll fallback; not applied: sites set it on purpose"),
]


def sysctl(name):
    for s in SYSCTLS:
        if s.name == name:
            return s
    raise KeyError(name)


# ---------------------------------------------------------------------------------------------
# Values


def norm(raw):
    """A sysctl value as one line with single spaces ('1024\\t65535\\n' -> '1024 65535')."""
    return " ".join(raw.split())


def ints(raw):
    """The integers of a value, or None when it is not a list of integers."""
    parts = raw.split()
    if not parts or not all(re.fullmatch(r"-?\d+", p) for p in parts):
        return None
    return [int(p) for p in parts]


def satisfies(kind, bound, raw):
    """Whether the value `raw` meets `bound` under `kind` (False for absent or non-numeric values)."""
    if raw is None:
        return False
    have, want = ints(raw), ints(bound)
    if have is None or want is None or len(have) != len(want):
        return False
    if kind == SPAN:
        return have[1] - have[0] >= want[1] - want[0]
    if kind == MIN:
        return all(h >= w for h, w in zip(have, want))
    if kind == MAX:
        return all(h <= w for h, w in zip(have, want))
    if kind == EQ:
        return have == want
    raise ValueError(kind)


def target(kind, want, raw):
    """What apply writes to reach `want` from `raw`: MIN raises and MAX lowers field by field and
    never move a field the other way; EQ and SPAN write `want` as it is."""
    have, wanted = ints(raw or ""), ints(want)
    if kind in (MIN, MAX) and have is not None and len(have) == len(wanted):
        pick = max if kind == MIN else min
        return " ".join(str(pick(h, w)) for h, w in zip(have, wanted))
    return want


def recommended_text(kind, bound):
    n = len(bound.split())
    if kind == SPAN:
        lo, hi = ints(bound)
        return f"span >= {hi - lo}"
    if kind == EQ:
        return bound
    op = ">=" if kind == MIN else "<="
    return f"{op} {bound}" + (" each" if n > 1 else "")


# ---------------------------------------------------------------------------------------------
# The filesystem root


class Host:
    """A filesystem root to read (and, for the writing scripts, write): '/' or a fake tree."""

    def __init__(self, root="/"):
        self.root = root

    def path(self, rel):
        return os.path.join(self.root, rel.lstrip("/"))

    def read(self, rel):
        """The file's text, stripped, or None when it cannot be read."""
        try:
            with open(self.path(rel)) as f:
                return f.read().strip()
        except OSError:
            return None

    def write(self, rel, text):
        with open(self.path(rel), "w") as f:
            f.write(text + "\n")

    def listdir(self, rel):
        try:
            return sorted(os.listdir(self.path(rel)))
        except OSError:
            return []

    def exists(self, rel):
        return os.path.exists(self.path(rel))

    def osrelease(self):
        """(major, minor) of the running kernel, or None."""
        m = re.match(r"(\d+)\.(\d+)", self.read("proc/sys/kernel/osrelease") or "")
        return (int(m.group(1)), int(m.group(2))) if m else None

    def online_cpus(self):
        raw = self.read("sys/devices/system/cpu/online")
        try:
            return parse_cpulist(raw) if raw else None
        except ValueError:
            return None

    def running(self, comm):
        """Whether a process named `comm` runs (from /proc/PID/comm)."""
        return any(d.isdigit() and self.read(f"proc/{d}/comm") == comm for d in self.listdir("proc"))


# ---------------------------------------------------------------------------------------------
# CPU lists ("0-3,8") and masks ("ff", "00000000,000000ff")


def parse_cpulist(text):
    """'0-3,8' -> [0, 1, 2, 3, 8]; ValueError when malformed. An empty list parses to []."""
    cpus = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"not a CPU list: {text!r} (use e.g. 0-3,8)")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"not a CPU list: {text!r} ({lo}-{hi} runs backwards)")
        cpus.update(range(lo, hi + 1))
    return sorted(cpus)


def format_cpulist(cpus):
    """[0, 1, 2, 3, 8] -> '0-3,8'; [] -> '(none)'."""
    cpus = sorted(set(cpus))
    if not cpus:
        return "(none)"
    runs, start, prev = [], cpus[0], cpus[0]
    for c in cpus[1:] + [None]:
        if c is not None and c == prev + 1:
            prev = c
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if c is not None:
            start = prev = c
    return ",".join(runs)


def parse_mask(text):
    """A sysfs CPU mask ('f', '00000000,0000000f') -> sorted CPU list; ValueError when malformed."""
    value = int(text.replace(",", "").strip() or "0", 16)
    return [i for i in range(value.bit_length()) if value >> i & 1]


def format_mask(cpus):
    """Sorted CPU list -> the mask as sysfs writes it: 32-bit groups separated by commas."""
    value = sum(1 << c for c in set(cpus))
    digits = f"{value:x}"
    groups = []
    while len(digits) > 8:
        groups.insert(0, digits[-8:])
        digits = digits[:-8]
    return ",".join([digits] + groups)


# ---------------------------------------------------------------------------------------------
# The NIC's queues and IRQs


@dataclass(frozen=True)
class Irq:
    number: int
    name: str        # as /proc/interrupts names it (shared IRQs: 'a,b')
    queue: int       # queue index read from the name (IRQs of one queue pair share it)


def parse_interrupts(text):
    """/proc/interrupts -> {irq number: [device names]} (numeric IRQs only)."""
    lines = (text or "").splitlines()
    if not lines:
        return {}
    ncpu = len(lines[0].split())
    out = {}
    for line in lines[1:]:
        head, _, rest = line.partition(":")
        if not head.strip().isdigit():
            continue
        tokens = rest.split()[ncpu:]  # chip, hwirq-trigger, then the names
        # The trigger token ends the chip part: '2-edge', '16-fasteoi', 'IO-APIC-edge', 'Level'.
        trig = re.compile(r"^\d+-[a-z]+$|(^|-)(edge|level)$", re.I)
        cut = max((i for i, t in enumerate(tokens) if trig.search(t)), default=None)
        names = tokens[cut + 1:] if cut is not None else tokens[-1:]
        out[int(head)] = [n.strip() for n in " ".join(names).split(",") if n.strip()]
    return out


CONTROL_IRQ = re.compile(r"config|async|ctrl|cmd|admin|mbx|mailbox|misc|event|lsc|link|pages|-aq\b", re.I)


def nics(host):
    """Network devices backed by hardware (those with a 'device' link): skips lo, bridges, veths."""
    return [n for n in host.listdir("sys/class/net") if host.exists(f"sys/class/net/{n}/device")]


def _tokens(host, nic):
    """Strings that name this NIC in /proc/interrupts: its name and its device's (virtio2,
    0000:01:00.0), plus the IRQ numbers listed under msi_irqs (the device's, or for a virtio NIC
    its PCI parent's)."""
    dev = host.path(f"sys/class/net/{nic}/device")
    real = os.path.realpath(dev)
    base = os.path.basename(real)
    tokens = [nic] + ([base] if base not in ("device", nic) else [])
    msi = host.listdir(f"sys/class/net/{nic}/device/msi_irqs")
    if not msi and base.startswith("virtio"):
        try:
            msi = sorted(os.listdir(os.path.join(os.path.dirname(real), "msi_irqs")))
        except OSError:
            msi = []
    return tokens, {int(m) for m in msi if m.isdigit()}


def nic_irqs(host, nic):
    """The NIC's queue IRQs, sorted by queue then IRQ number. Control IRQs (config, async, misc,
    link state...) are left out unless they are all the NIC has (a single-IRQ NIC)."""
    table = parse_interrupts(host.read("proc/interrupts"))
    tokens, msi = _tokens(host, nic)
    pats = [re.compile(r"(?<![A-Za-z0-9])" + re.escape(t) + r"(?![A-Za-z0-9])") for t in tokens]
    found = []
    for number, names in sorted(table.items()):
        if number in msi or any(p.search(n) for p in pats for n in names):
            found.append((number, ",".join(names) or "?"))
    def rest(name):  # the name less the NIC's tokens and any '@pci:...' suffix
        name = name.split("@")[0]
        for p in pats:
            name = p.sub("", name)
        return name
    queues = [(n, name) for n, name in found if not CONTROL_IRQ.search(name) and re.search(r"\d", rest(name))]
    if not queues:
        queues = [(n, name) for n, name in found if not CONTROL_IRQ.search(name)] or found
    irqs = []
    for i, (n, name) in enumerate(queues):
        nums = re.findall(r"\d+", rest(name))
        irqs.append(Irq(n, name, int(nums[-1]) if nums else 1_000_000 + i))
    return sorted(irqs, key=lambda q: (q.queue, q.number))


def queues(host, nic, kind):
    """Queue directory names of `kind` ('rx' or 'tx'), in index order: ['rx-0', 'rx-1', ...]."""
    names = [q for q in host.listdir(f"sys/class/net/{nic}/queues") if q.startswith(kind + "-")]
    return sorted(names, key=lambda q: int(q.split("-")[1]) if q.split("-")[1].isdigit() else 0)


@dataclass
class Plan:
    """Where irq-pin puts a NIC's queue IRQs and what RPS/XPS masks it gives each queue."""
    irq_core: dict          # Irq -> core
    rps: dict               # 'rx-N' -> [cores]
    xps: dict               # 'tx-N' -> [cores]


def pin_plan(host, nic, cores):
    """Queue i (by rank among the NIC's queue IRQs) -> cores[i % n]; IRQs of one queue pair stay
    together. RPS: with fewer rx queues than cores, rx-i steers to every core j with j % nrx == i, so
    the protocol work of all worker cores is covered; with at least as many queues, RPS is off (the
    hardware already spreads). XPS: tx-i gets the cores j with j % ntx == i, so each worker core
    sends on exactly one queue."""
    n = len(cores)
    irqs = nic_irqs(host, nic)
    rank = {q: i for i, q in enumerate(sorted({q.queue for q in irqs}))}
    irq_core = {q: cores[rank[q.queue] % n] for q in irqs}
    # Readable, not just present: a single-queue NIC lists xps_cpus but reading it fails (ENOENT).
    rx = [q for q in queues(host, nic, "rx") if host.read(f"sys/class/net/{nic}/queues/{q}/rps_cpus") is not None]
    tx = [q for q in queues(host, nic, "tx") if host.read(f"sys/class/net/{nic}/queues/{q}/xps_cpus") is not None]
    rps = {q: ([cores[j] for j in range(n) if j % len(rx) == i] if len(rx) < n else [])
           for i, q in enumerate(rx)}
    xps = {q: [cores[j] for j in range(n) if j % len(tx) == i] for i, q in enumerate(tx)}
    return Plan(irq_core, rps, xps)


def read_cpus(host, rel, mask):
    """The CPUs of an affinity list or mask file, or None when unreadable."""
    raw = host.read(rel)
    if raw is None:
        return None
    try:
        return parse_mask(raw) if mask else parse_cpulist(raw)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# Writing: one change, printed as `name: old -> new`


@dataclass(frozen=True)
class Change:
    label: str      # what the user reads: 'net.core.somaxconn', 'irq 38 (eth0-TxRx-0)'
    rel: str        # file under the root
    old: Optional[str]
    new: str
    note: str = ""  # printed after the change, e.g. a mask's CPUs


def write_changes(host, changes, dry_run, out=None):
    """Print each change as `label: old -> new` and, unless dry_run, write it. Returns the changes
    that failed, each with its error (printed to stderr); the rest went through."""
    out = out or sys.stdout
    failed = []
    for c in changes:
        note = f"  ({c.note})" if c.note else ""
        print(f"{c.label}: {c.old if c.old is not None else '(absent)'} -> {c.new}{note}", file=out)
        if dry_run:
            continue
        try:
            host.write(c.rel, c.new)
        except OSError as e:
            print(f"  failed: {e.strerror or e}", file=sys.stderr)
            failed.append(c)
    if dry_run:
        print(f"dry run: {len(changes)} change(s) shown, nothing written", file=out)
    return failed


def require_root(euid, dry_run, prog):
    """None when the script may write, else the refusal (exit 1). euid None: this process's."""
    if dry_run or (os.geteuid() if euid is None else euid) == 0:
        return None
    print(f"{prog}: needs root (euid 0) to write kernel settings; --dry-run shows what would change",
          file=sys.stderr)
    return 1


# ---------------------------------------------------------------------------------------------
# The state file: what apply changed, so revert restores exactly that

DEFAULT_STATE = "/var/lib/ringgate-tuning/saved.json"


def state_path(host, state):
    """--state as given, else the default under the root (so tests never touch the real one)."""
    return state if state else host.path(DEFAULT_STATE)


def load_state(path):
    """The saved state, or None when there is none. ValueError when it is unreadable."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("saved"), dict):
        raise ValueError(f"{path} is not a ringgate-tuning state file (no 'saved' object)")
    return data


def save_state(path, data):
    """Write atomically (temp file, fsync, rename) so a crash leaves the old or the new file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Command-line pieces the scripts share


def add_root(ap):
    ap.add_argument("--root", default="/", metavar="DIR",
                    help="filesystem root holding proc/ and sys/ (default /; tests use a fake tree)")


def add_dry_run(ap):
    ap.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")


def add_state(ap):
    ap.add_argument("--state", metavar="FILE",
                    help=f"the state file of previous values (default {DEFAULT_STATE}, under --root)")


def add_cores(ap, required):
    ap.add_argument("--cores", required=required, metavar="LIST",
                    help="the CPUs ringgate's workers are pinned to (pin_cores in the config), e.g. 0-3")


def host_and_cores(ap, args):
    """Check --root and --cores (usage errors exit 2 through ap.error) and return (Host, cores)."""
    if not os.path.isdir(args.root):
        ap.error(f"--root {args.root}: not a directory")
    host = Host(args.root)
    cores = None
    if getattr(args, "cores", None) is not None:
        try:
            cores = parse_cpulist(args.cores)
        except ValueError as e:
            ap.error(f"--cores: {e}")
        if not cores:
            ap.error("--cores: empty CPU list")
        online = host.online_cpus()
        if online is not None and not set(cores) <= set(online):
            ap.error(f"--cores {args.cores}: CPU(s) {format_cpulist(set(cores) - set(online))} are not "
                     f"online (online: {format_cpulist(online)})")
    return host, cores
