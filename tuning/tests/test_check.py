"""tuning/check against fake /proc/sys and /sys trees (no root, nothing changed)."""
import importlib.machinery
import importlib.util
import io
import os
import tempfile
import unittest
from contextlib import redirect_stdout

HERE = os.path.dirname(os.path.abspath(__file__))
_loader = importlib.machinery.SourceFileLoader("tuning_check", os.path.join(HERE, "..", "check"))
_spec = importlib.util.spec_from_loader("tuning_check", _loader)
check = importlib.util.module_from_spec(_spec)
_loader.exec_module(check)

GOOD = {
    "proc/sys/net/core/somaxconn": "65535",
    "proc/sys/net/ipv4/tcp_max_syn_backlog": "65535",
    "proc/sys/net/core/netdev_max_backlog": "16384",
    "proc/sys/net/ipv4/ip_local_port_range": "1024\t65535",
    "proc/sys/net/ipv4/tcp_tw_reuse": "1",
    "proc/sys/net/ipv4/tcp_fin_timeout": "10",
    "proc/sys/net/ipv4/tcp_migrate_req": "1",
    "proc/sys/fs/file-max": "2097152",
    "proc/sys/kernel/io_uring_disabled": "0",
    "sys/kernel/mm/transparent_hugepage/enabled": "always [madvise] never",
    "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "performance",
}


def tree(values):
    root = tempfile.mkdtemp()
    for rel, v in values.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(v + "\n")
    return root


def run(values):
    out = io.StringIO()
    with redirect_stdout(out):
        rc = check.main(["--root", tree(values), "--no-limits"])
    return rc, out.getvalue()


class CheckTest(unittest.TestCase):
    def test_all_recommended_exits_0(self):
        rc, out = run(GOOD)
        self.assertEqual(rc, 0, out)
        self.assertIn("11 ok, 0 off", out)

    def test_each_bad_value_is_flagged(self):
        bad = {
            "proc/sys/net/core/somaxconn": "128",
            "proc/sys/net/ipv4/ip_local_port_range": "32768 60999",
            "proc/sys/net/ipv4/tcp_fin_timeout": "60",
            "proc/sys/kernel/io_uring_disabled": "2",
            "sys/kernel/mm/transparent_hugepage/enabled": "[always] madvise never",
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "powersave",
        }
        for rel, value in bad.items():
            with self.subTest(rel=rel):
                rc, out = run({**GOOD, rel: value})
                self.assertEqual(rc, 1, out)
                self.assertIn("10 ok, 1 off", out)
                off = [line for line in out.splitlines() if line.startswith("OFF")]
                self.assertEqual(len(off), 1, out)

    def test_missing_sysctl_is_off_and_missing_cpufreq_is_fine(self):
        values = dict(GOOD)
        del values["proc/sys/net/ipv4/tcp_migrate_req"]  # kernel before 5.14
        del values["sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"]  # VM without cpufreq
        rc, out = run(values)
        self.assertEqual(rc, 1, out)
        self.assertIn("(absent)", out)
        self.assertIn("(no cpufreq)", out)
        self.assertIn("10 ok, 1 off", out)


if __name__ == "__main__":
    unittest.main()
