"""Fake /proc and /sys trees for the tuning scripts' tests, and a way to run a script's main().

Nothing here touches the real /proc or /sys: every tree is a fresh temp dir.
"""
import importlib.machinery
import importlib.util
import io
import os
import resource
import shutil
import sys
import tempfile
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from unittest import mock

TUNING = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TUNING not in sys.path:
    sys.path.insert(0, TUNING)  # for `import tuninglib` in the tests, as the scripts do
import tuninglib  # noqa: E402

# Every sysctl the kit knows, at a value `check` accepts (busy polling at the kernel default 0).
GOOD_SYSCTLS = {
    "net.core.somaxconn": "65535",
    "net.ipv4.tcp_max_syn_backlog": "65535",
    "net.core.netdev_max_backlog": "16384",
    "net.ipv4.ip_local_port_range": "10240\t65535",
    "net.ipv4.tcp_tw_reuse": "1",
    "net.ipv4.tcp_fin_timeout": "15",
    "net.ipv4.tcp_rmem": "4096\t131072\t6291456",
    "net.ipv4.tcp_wmem": "4096\t16384\t4194304",
    "net.core.rmem_max": "4194304",
    "net.core.wmem_max": "4194304",
    "net.core.busy_poll": "0",
    "net.core.busy_read": "0",
    "net.ipv4.tcp_migrate_req": "1",
    "fs.file-max": "2097152",
    "fs.nr_open": "1048576",
    "kernel.io_uring_disabled": "0",
}

# A stock kernel's values (as Debian 12 ships them), for apply and revert.
STOCK_SYSCTLS = {
    **GOOD_SYSCTLS,
    "net.core.somaxconn": "4096",
    "net.ipv4.tcp_max_syn_backlog": "2048",
    "net.core.netdev_max_backlog": "1000",
    "net.ipv4.ip_local_port_range": "32768\t60999",
    "net.ipv4.tcp_tw_reuse": "2",
    "net.ipv4.tcp_fin_timeout": "60",
    "net.core.rmem_max": "212992",
    "net.core.wmem_max": "212992",
    "net.ipv4.tcp_migrate_req": "0",
    "fs.file-max": "9223372036854775807",
}


def sysctl_rel(name):
    return "proc/sys/" + name.replace(".", "/")


def load_script(name):
    """Import tuning/<name> (a script without .py) as a module."""
    path = os.path.join(TUNING, name)
    modname = "tuning_" + name.replace("-", "_")
    loader = importlib.machinery.SourceFileLoader(modname, path)
    spec = importlib.util.spec_from_loader(modname, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def run(script, argv, **kw):
    """(exit status, stdout, stderr) of script.main(argv, **kw). Always against a fake tree: a
    test without --root would read, or write, the real /proc and /sys."""
    assert "--root" in argv and argv[argv.index("--root") + 1] != "/", argv
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = script.main(argv, **kw)
        except SystemExit as e:  # argparse usage errors
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


class FakeTree:
    """A temp dir laid out like / for the files the scripts read. Call .done() after adding NICs
    (it writes /proc/interrupts); cleaned up by the test's addCleanup."""

    def __init__(self, test, sysctls=GOOD_SYSCTLS, cpus=4, kernel="6.1.0"):
        self.root = tempfile.mkdtemp(prefix="ringgate-tuning-")
        test.addCleanup(shutil.rmtree, self.root, True)
        self.cpus = cpus
        self.interrupts = []  # (number, chip text, name)
        for name, value in sysctls.items():
            self.write(sysctl_rel(name), value)
        self.write("proc/sys/kernel/osrelease", kernel)
        self.write("sys/devices/system/cpu/online", f"0-{cpus - 1}")
        for c in range(cpus):
            self.write(f"sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor", "performance")
        self.write("sys/kernel/mm/transparent_hugepage/enabled", "always [madvise] never")
        self.irq(1, "i8042", chip="IO-APIC   1-edge")
        self.done()

    def path(self, rel):
        return os.path.join(self.root, rel)

    def write(self, rel, text):
        path = self.path(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text + "\n")

    def read(self, rel):
        with open(self.path(rel)) as f:
            return f.read().strip()

    def remove(self, rel):
        os.remove(self.path(rel))

    def irq(self, number, name, affinity=None, chip=None):
        self.interrupts.append((number, chip or f"IR-PCI-MSI {524288 + number}-edge", name))
        self.write(f"proc/irq/{number}/smp_affinity_list", affinity or f"0-{self.cpus - 1}")

    def nic(self, name, irqs, rx=1, tx=1, rps="0", xps="0", device=None, msi=()):
        """A NIC with queue dirs and IRQs [(number, name[, affinity])]. `device` makes
        sys/class/net/NAME/device a relative symlink to sys/devices/DEVICE (else a plain dir);
        msi lists IRQ numbers under the device's msi_irqs."""
        base = f"sys/class/net/{name}"
        if device:
            target = self.path(f"sys/devices/{device}")
            os.makedirs(target, exist_ok=True)
            os.makedirs(self.path(base), exist_ok=True)
            os.symlink(os.path.relpath(target, self.path(base)), self.path(f"{base}/device"))
        else:
            os.makedirs(self.path(f"{base}/device"), exist_ok=True)
        for m in msi:
            self.write(f"{base}/device/msi_irqs/{m}", "msix")
        for i in range(rx):
            self.write(f"{base}/queues/rx-{i}/rps_cpus", rps)
        for i in range(tx):
            self.write(f"{base}/queues/tx-{i}/xps_cpus", xps)
        for irq in irqs:
            self.irq(*irq)
        self.done()

    def done(self):
        header = "".join(f"{'CPU' + str(c):>11}" for c in range(self.cpus))
        lines = [header]
        for number, chip, name in sorted(self.interrupts):
            counts = "".join(f"{7:>11}" for _ in range(self.cpus))
            lines.append(f"{number:>4}:{counts}  {chip}      {name}")
        self.write("proc/interrupts", "\n".join(lines))

    def snapshot(self):
        """{relative path: (content, mtime_ns)} of every file (to prove a dry run wrote nothing)."""
        out = {}
        for d, _, files in os.walk(self.root):
            for f in files:
                p = os.path.join(d, f)
                with open(p, "rb") as fh:
                    out[os.path.relpath(p, self.root)] = (fh.read(), os.stat(p).st_mtime_ns)
        return out


def limits(nofile=1048576, memlock=None):
    """A getrlimit stand-in (memlock None = unlimited)."""
    def getrlimit(which):
        v = nofile if which == resource.RLIMIT_NOFILE else resource.RLIM_INFINITY if memlock is None else memlock
        return (v, v)
    return getrlimit


@contextmanager
def failing_write(rel, error):
    """Make the scripts' write of one file fail with `error` (as a kernel refusal would)."""
    real = tuninglib.Host.write

    def write(host, path, text):
        if path == rel:
            raise error
        real(host, path, text)

    with mock.patch.object(tuninglib.Host, "write", write):
        yield


def assert_refused_without_root(test, tree, call):
    """call(euid=...) as a non-root user exits 1 saying so, prints nothing and writes nothing."""
    before = tree.snapshot()
    rc, out, err = call(euid=1000)
    test.assertEqual(rc, 1, err)
    test.assertIn("needs root", err)
    test.assertEqual(out, "")
    test.assertEqual(tree.snapshot(), before)
