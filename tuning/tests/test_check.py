"""tuning/check against fake /proc and /sys trees: each kind of judgment, read-only."""
import unittest

from faketree import GOOD_SYSCTLS, FakeTree, limits, load_script, run, sysctl_rel

import tuninglib  # noqa: E402  (faketree puts tuning/ on sys.path)

check = load_script("check")


def four_queue_nic(tree, affinity=("0", "1", "2", "3"), rps="0", xps=("1", "2", "4", "8")):
    """eth0 with 4 combined queues, a link-state IRQ named just 'eth0', and XPS per core."""
    irqs = [(40, "eth0")] + [(41 + i, f"eth0-TxRx-{i}", a) for i, a in enumerate(affinity)]
    tree.nic("eth0", irqs, rx=4, tx=4, rps=rps)
    for i, mask in enumerate(xps):
        tree.write(f"sys/class/net/eth0/queues/tx-{i}/xps_cpus", mask)


def lines(out, status=None):
    rows = [line for line in out.splitlines()[:-1]]
    return [r for r in rows if status is None or r.split()[0] == status]


class Base(unittest.TestCase):
    def tree(self, **kw):
        return FakeTree(self, **kw)

    def check(self, tree, *args, getrlimit=None):
        return run(check, ["--root", tree.root, *args], getrlimit=getrlimit or limits())

    def assertOnlyOff(self, out, *names):
        off = [line.split()[1] for line in lines(out, "OFF")]
        self.assertEqual(off, list(names), out)


class SysctlTest(Base):
    def test_all_recommended_exits_0(self):
        t = self.tree()
        four_queue_nic(t)
        rc, out, _ = self.check(t, "--cores", "0-3")
        self.assertEqual(rc, 0, out)
        self.assertOnlyOff(out)
        self.assertRegex(out.splitlines()[-1], r"^\d+ ok, 0 off, 2 info$")

    def test_each_bad_sysctl_is_the_only_line_off(self):
        bad = {
            "net.core.somaxconn": "128",
            "net.ipv4.tcp_max_syn_backlog": "512",
            "net.core.netdev_max_backlog": "1000",
            "net.ipv4.ip_local_port_range": "32768 60999",
            "net.ipv4.tcp_tw_reuse": "2",
            "net.ipv4.tcp_fin_timeout": "60",
            "net.ipv4.tcp_rmem": "4096 87380 4194304",
            "net.ipv4.tcp_wmem": "4096 16384 1048576",
            "net.core.rmem_max": "212992",
            "net.core.wmem_max": "212992",
            "net.ipv4.tcp_migrate_req": "0",
            "fs.file-max": "65536",
            "fs.nr_open": "65536",
            "kernel.io_uring_disabled": "2",
        }
        self.assertEqual(set(bad), set(GOOD_SYSCTLS) - {"net.core.busy_poll", "net.core.busy_read"})
        for name, value in bad.items():
            with self.subTest(name=name):
                rc, out, _ = self.check(self.tree(sysctls={**GOOD_SYSCTLS, name: value}))
                self.assertEqual(rc, 1, out)
                self.assertOnlyOff(out, name)

    def test_better_than_recommended_is_ok(self):
        better = {
            "net.core.somaxconn": "1048576",          # min: more is fine
            "net.ipv4.tcp_fin_timeout": "5",          # max: less is fine
            "net.ipv4.ip_local_port_range": "1024 65535",  # span: wider is fine
            "net.ipv4.tcp_rmem": "8192 262144 67108864",   # each field at least
            "fs.file-max": "9223372036854775807",
        }
        rc, out, _ = self.check(self.tree(sysctls={**GOOD_SYSCTLS, **better}))
        self.assertEqual(rc, 0, out)

    def test_absent_sysctl_is_off(self):
        t = self.tree()
        t.remove(sysctl_rel("net.ipv4.tcp_migrate_req"))  # kernel before 5.14
        rc, out, _ = self.check(t)
        self.assertEqual(rc, 1, out)
        self.assertOnlyOff(out, "net.ipv4.tcp_migrate_req")
        self.assertIn("(absent)", lines(out, "OFF")[0])

    def test_busy_polling_is_information_with_the_latency_value(self):
        for value in ("0", "50", "1000"):
            with self.subTest(value=value):
                sysctls = {**GOOD_SYSCTLS, "net.core.busy_poll": value, "net.core.busy_read": value}
                rc, out, _ = self.check(self.tree(sysctls=sysctls))
                self.assertEqual(rc, 0, out)
                info = [line for line in lines(out, "info") if "busy_" in line]
                self.assertEqual(len(info), 2, out)
                for line in info:
                    self.assertIn("want 50 (edge-latency)", line)


class SystemTest(Base):
    def test_thp(self):
        for setting, ok in (("[always] madvise never", False), ("always madvise [never]", True),
                            ("always [madvise] never", True)):
            with self.subTest(setting=setting):
                t = self.tree()
                t.write("sys/kernel/mm/transparent_hugepage/enabled", setting)
                rc, out, _ = self.check(t)
                self.assertEqual(rc, 0 if ok else 1, out)
                self.assertOnlyOff(out, *([] if ok else ["transparent_hugepage"]))

    def test_governor_judges_the_worker_cores(self):
        t = self.tree()
        t.write("sys/devices/system/cpu/cpu3/cpufreq/scaling_governor", "powersave")
        rc, out, _ = self.check(t)
        self.assertEqual(rc, 1, out)
        self.assertOnlyOff(out, "cpufreq")
        self.assertIn("powersave on 3", out)
        rc, out, _ = self.check(t, "--cores", "0-2")  # cpu3 runs no worker
        self.assertEqual(rc, 0, out)
        rc, out, _ = self.check(t, "--cores", "2-3")
        self.assertOnlyOff(out, "cpufreq")

    def test_no_cpufreq_is_fine(self):
        t = self.tree()
        for c in range(4):
            t.remove(f"sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor")
        rc, out, _ = self.check(t)
        self.assertEqual(rc, 0, out)
        self.assertIn("(no cpufreq)", out)

    def test_nofile(self):
        rc, out, _ = self.check(self.tree(), getrlimit=limits(nofile=1024))
        self.assertEqual(rc, 1, out)
        self.assertOnlyOff(out, "nofile")

    def test_memlock_matters_before_5_12_only(self):
        cases = [("5.10.0", 8 << 20, False), ("5.10.0", 64 << 20, True), ("5.10.0", None, True),
                 ("5.12.0", 8 << 20, True), ("6.18.4-fc", 64 << 10, True)]
        for kernel, memlock, ok in cases:
            with self.subTest(kernel=kernel, memlock=memlock):
                rc, out, _ = self.check(self.tree(kernel=kernel), getrlimit=limits(memlock=memlock))
                self.assertEqual(rc, 0 if ok else 1, out)
                self.assertOnlyOff(out, *([] if ok else ["memlock"]))

    def test_limits_of_a_running_process(self):
        t = self.tree()
        t.write("proc/4242/limits", "\n".join([
            "Limit                     Soft Limit           Hard Limit           Units     ",
            "Max open files            1024                 524288               files     ",
            "Max locked memory         unlimited            unlimited            bytes     ",
        ]))
        rc, out, _ = self.check(t, "--pid", "4242", getrlimit=limits(nofile=1))
        self.assertEqual(rc, 1, out)
        self.assertOnlyOff(out, "nofile")
        self.assertIn("nofile (pid 4242)", out)
        self.assertIn("unlimited", out)

    def test_usage_errors_exit_2(self):
        t = self.tree()
        for args in (["--cores", "3-1"], ["--cores", "x"], ["--cores", "0-7"], ["--nic", "eth9"],
                     ["--bogus"]):
            with self.subTest(args=args):
                rc, _, err = self.check(t, *args)
                self.assertEqual(rc, 2, err)
        rc, _, err = run(check, ["--root", t.path("nowhere")])
        self.assertEqual(rc, 2, err)


class NicTest(Base):
    def test_irqs_without_cores_are_reported_not_judged(self):
        t = self.tree()
        four_queue_nic(t, affinity=("0-3",) * 4, xps=("0",) * 4)
        rc, out, _ = self.check(t)
        self.assertEqual(rc, 0, out)
        info = lines(out, "info")
        self.assertEqual(sum("eth0 irq" in line for line in info), 4, out)
        self.assertEqual(sum("rps_cpus" in line for line in info), 4, out)
        self.assertEqual(sum("xps_cpus" in line for line in info), 4, out)
        self.assertNotIn("irq 40 ", out)  # 'eth0' alone is the link-state IRQ, not a queue

    def test_irq_on_a_core_without_a_worker_is_off(self):
        t = self.tree(cpus=8)
        four_queue_nic(t, affinity=("0", "1", "2", "7"))
        rc, out, _ = self.check(t, "--cores", "0-3")
        self.assertEqual(rc, 1, out)
        self.assertOnlyOff(out, "eth0", "eth0")  # irq 44, and the spread (3 cores, not 4)
        self.assertIn("eth0 irq 44 (eth0-TxRx-3)", lines(out, "OFF")[0])
        self.assertIn("eth0 IRQ spread", lines(out, "OFF")[1])

    def test_irq_on_several_cores_or_stacked_is_off(self):
        t = self.tree()
        four_queue_nic(t, affinity=("0-3", "1", "2", "3"))
        rc, out, _ = self.check(t, "--cores", "0-3")
        self.assertIn("eth0 irq 41 (eth0-TxRx-0)", lines(out, "OFF")[0])
        t = self.tree()
        four_queue_nic(t, affinity=("0", "0", "0", "0"))
        rc, out, _ = self.check(t, "--cores", "0-3")
        self.assertEqual(rc, 1, out)
        off = lines(out, "OFF")
        self.assertEqual(len(off), 1, out)
        self.assertIn("IRQ spread", off[0])
        self.assertIn("1 worker core(s)", off[0])

    def test_any_permutation_of_worker_cores_is_ok(self):
        t = self.tree()
        four_queue_nic(t, affinity=("3", "2", "1", "0"))
        rc, out, _ = self.check(t, "--cores", "0-3")
        self.assertEqual(rc, 0, out)

    def test_rps_with_fewer_rx_queues_than_cores(self):
        for rps, off in (("0", ["eth0", "eth0"]), ("f", []), ("3", ["eth0"]), ("1f", ["eth0"])):
            with self.subTest(rps=rps):
                t = self.tree(cpus=8)
                t.nic("eth0", [(50, "eth0-rx-0", "0"), (51, "eth0-tx-0", "0")], rx=1, tx=1, rps=rps)
                rc, out, _ = self.check(t, "--cores", "0-3")
                self.assertOnlyOff(out, *off)
                for line in lines(out, "OFF"):
                    self.assertTrue("rx-0 rps_cpus" in line or "RPS coverage" in line, line)

    def test_rps_with_enough_rx_queues_may_be_off(self):
        t = self.tree()
        four_queue_nic(t, rps="0")
        self.assertEqual(self.check(t, "--cores", "0-3")[0], 0)
        t = self.tree(cpus=8)
        four_queue_nic(t, rps="f0")  # steers to cores without workers
        rc, out, _ = self.check(t, "--cores", "0-3")
        self.assertEqual(len(lines(out, "OFF")), 4, out)

    def test_xps_each_worker_core_on_one_queue_of_its_own(self):
        def off(xps, cores="0-3", affinity=("0", "1", "2", "3")):
            t = self.tree()
            four_queue_nic(t, affinity=affinity, xps=xps)
            rc, out, _ = self.check(t, "--cores", cores)
            self.assertEqual(rc, 1 if lines(out, "OFF") else 0, out)
            return [line.split()[4] for line in lines(out, "OFF")]

        self.assertEqual(off(("1", "2", "4", "8")), [])
        self.assertEqual(off(("0", "0", "0", "0")), ["0", "1", "2", "3"])  # XPS off: hashed over all
        self.assertEqual(off(("3", "0", "4", "8")), ["0", "1"])  # cores 0 and 1 share tx-0
        self.assertEqual(off(("1", "1", "4", "8")), ["0", "1"])  # core 0 on two queues, core 1 on none
        # Cores 2 and 3 run no worker: their place in the masks does not matter.
        self.assertEqual(off(("5", "a", "0", "0"), cores="0-1", affinity=("0", "1", "0", "1")), [])
        # Fewer tx queues than workers: sharing is unavoidable, one queue per core is enough.
        t = self.tree()
        t.nic("eth0", [(50, "eth0-TxRx-0", "0"), (51, "eth0-TxRx-1", "1")], rx=2, tx=2, rps="0")
        t.write("sys/class/net/eth0/queues/rx-0/rps_cpus", "5")
        t.write("sys/class/net/eth0/queues/rx-1/rps_cpus", "a")
        t.write("sys/class/net/eth0/queues/tx-0/xps_cpus", "5")
        t.write("sys/class/net/eth0/queues/tx-1/xps_cpus", "a")
        rc, out, _ = self.check(t, "--cores", "0-3")
        self.assertEqual(rc, 0, out)


class IrqDiscoveryTest(Base):
    """Which IRQs belong to a NIC's queues (shared with irq-pin through tuninglib)."""

    def irqs(self, tree, nic):
        return [(q.number, q.name, q.queue) for q in tuninglib.nic_irqs(tuninglib.Host(tree.root), nic)]

    def test_by_name_skipping_other_nics_and_control_irqs(self):
        t = self.tree()
        t.nic("eth1", [(60, "eth1"), (61, "eth1-TxRx-0"), (62, "eth1-TxRx-1")])
        t.nic("eth10", [(70, "eth10-TxRx-0")])
        t.nic("veth1", [(80, "veth1-rx-0")])
        self.assertEqual(self.irqs(t, "eth1"), [(61, "eth1-TxRx-0", 0), (62, "eth1-TxRx-1", 1)])

    def test_single_irq_nic_keeps_its_only_irq(self):
        t = self.tree()
        t.nic("eth0", [(19, "eth0")])
        self.assertEqual(self.irqs(t, "eth0"), [(19, "eth0", 1_000_000)])

    def test_by_pci_address_and_msi_irqs(self):
        t = self.tree()
        t.nic("ens1f0", [(90, "mlx5_async_eq@pci:0000:01:00.0"), (91, "mlx5_comp0@pci:0000:01:00.0"),
                         (92, "mlx5_comp1@pci:0000:01:00.0"), (93, "mlx5_comp10@pci:0000:01:00.0")],
              device="pci0000:00/0000:01:00.0", rx=2, tx=2)
        t.irq(94, "mlx5_comp0@pci:0000:01:00.1")  # the other port
        t.done()
        self.assertEqual([q[0] for q in self.irqs(t, "ens1f0")], [91, 92, 93])
        t = self.tree()
        t.nic("eth0", [(95, "weird-q0"), (96, "weird-q1")], msi=(95, 96))  # only msi_irqs says so
        self.assertEqual([q[0] for q in self.irqs(t, "eth0")], [95, 96])

    def test_virtio_pairs_input_and_output(self):
        t = self.tree()
        t.nic("eth0", [(37, "virtio2-config"), (38, "virtio2-input.0"), (39, "virtio2-output.0"),
                       (40, "virtio2-input.1"), (41, "virtio2-output.1")],
              device="pci0000:00/0000:00:03.0/virtio2", rx=2, tx=2)
        t.irq(42, "virtio3-input.0")
        t.done()
        self.assertEqual([(q[0], q[2]) for q in self.irqs(t, "eth0")], [(38, 0), (39, 0), (40, 1), (41, 1)])

    def test_interrupts_parsing_formats(self):
        text = "\n".join([
            "           CPU0       CPU1",
            "  0:         46          0   IO-APIC   2-edge      timer",
            " 16:          0          0   IO-APIC  16-fasteoi   i8042, eth3",
            " 27:        100          0   GICv3  34 Level     eth4-rx-0",
            " 28:          5          0   PCI-MSI 524288-edge      eth0-TxRx-0",
            "NMI:          0          0   Non-maskable interrupts",
        ])
        table = tuninglib.parse_interrupts(text)
        self.assertEqual(table[0], ["timer"])
        self.assertEqual(table[27], ["eth4-rx-0"])
        self.assertEqual(table[28], ["eth0-TxRx-0"])
        self.assertEqual(table[16], ["i8042", "eth3"])
        self.assertNotIn("NMI", table)


if __name__ == "__main__":
    unittest.main()
