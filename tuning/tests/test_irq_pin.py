"""tuning/irq-pin against fake /proc/interrupts, /proc/irq and /sys/class/net trees: the computed
affinities and masks, what it prints, dry runs, the root check; then check agrees with the result."""
import unittest

from faketree import FakeTree, assert_refused_without_root, failing_write, limits, load_script, run

import tuninglib  # noqa: E402  (faketree puts tuning/ on sys.path)

irq_pin = load_script("irq-pin")
check = load_script("check")


def affinity(tree, irq):
    return tree.read(f"proc/irq/{irq}/smp_affinity_list")


def queue_mask(tree, nic, queue, kind):
    return tree.read(f"sys/class/net/{nic}/queues/{queue}/{kind}")


class IrqPinTest(unittest.TestCase):
    def pin(self, tree, nic, cores, *args, euid=0):
        return run(irq_pin, [nic, "--cores", cores, "--root", tree.root, *args], euid=euid)

    def test_round_robin_over_the_cores(self):
        t = FakeTree(self, cpus=8)
        t.nic("eth0", [(40, "eth0")] + [(41 + i, f"eth0-TxRx-{i}") for i in range(8)], rx=8, tx=8)
        rc, out, err = self.pin(t, "eth0", "2-5")
        self.assertEqual(rc, 0, err)
        self.assertEqual([affinity(t, 41 + i) for i in range(8)], ["2", "3", "4", "5", "2", "3", "4", "5"])
        self.assertEqual(affinity(t, 40), "0-7")  # the link-state IRQ is left alone
        self.assertIn("irq 41 (eth0-TxRx-0) smp_affinity_list: 0-7 -> 2", out)
        # 8 rx queues for 4 cores: RPS off. XPS: tx-i -> core 2+i for i < 4, none after.
        self.assertEqual([queue_mask(t, "eth0", f"rx-{i}", "rps_cpus") for i in range(8)], ["0"] * 8)
        self.assertEqual([queue_mask(t, "eth0", f"tx-{i}", "xps_cpus") for i in range(8)],
                         ["4", "8", "10", "20", "0", "0", "0", "0"])
        self.assertIn("eth0 tx-0 xps_cpus: 0 -> 4  (cpus 2)", out)

    def test_queue_pairs_stay_together_and_rps_covers_the_cores(self):
        t = FakeTree(self)
        t.nic("eth0", [(37, "virtio2-config"), (38, "virtio2-input.0"), (39, "virtio2-output.0")],
              device="pci0000:00/0000:00:03.0/virtio2", rx=1, tx=1)
        t.remove("sys/class/net/eth0/queues/tx-0/xps_cpus")  # single queue: no XPS file to set
        rc, out, err = self.pin(t, "eth0", "0-3")
        self.assertEqual(rc, 0, err)
        self.assertEqual((affinity(t, 38), affinity(t, 39), affinity(t, 37)), ("0", "0", "0-3"))
        self.assertEqual(queue_mask(t, "eth0", "rx-0", "rps_cpus"), "f")
        self.assertEqual(out.splitlines(), [
            "irq 38 (virtio2-input.0) smp_affinity_list: 0-3 -> 0",
            "irq 39 (virtio2-output.0) smp_affinity_list: 0-3 -> 0",
            "eth0 rx-0 rps_cpus: 0 -> f  (cpus 0-3)",
        ])

    def test_fewer_queues_than_cores(self):
        t = FakeTree(self, cpus=8)
        t.nic("eth0", [(50, "eth0-rx-0"), (51, "eth0-tx-0"), (52, "eth0-rx-1"), (53, "eth0-tx-1")], rx=2, tx=2)
        self.pin(t, "eth0", "0-3")
        self.assertEqual([affinity(t, n) for n in (50, 51, 52, 53)], ["0", "0", "1", "1"])
        self.assertEqual([queue_mask(t, "eth0", q, "rps_cpus") for q in ("rx-0", "rx-1")], ["5", "a"])
        self.assertEqual([queue_mask(t, "eth0", q, "xps_cpus") for q in ("tx-0", "tx-1")], ["5", "a"])

    def test_check_agrees_after_pinning_and_second_run_changes_nothing(self):
        t = FakeTree(self, cpus=8)
        t.nic("eth0", [(40 + i, f"eth0-TxRx-{i}") for i in range(6)], rx=6, tx=6, rps="ff", xps="ff")
        rc, out, _ = run(check, ["--root", t.root, "--cores", "1-4"], getrlimit=limits())
        self.assertEqual(rc, 1, out)
        self.pin(t, "eth0", "1-4")
        rc, out, _ = run(check, ["--root", t.root, "--cores", "1-4"], getrlimit=limits())
        self.assertEqual(rc, 0, out)
        before = t.snapshot()
        rc, out, _ = self.pin(t, "eth0", "1-4")
        self.assertEqual((rc, out.strip()), (0, "nothing to change: eth0's queues already match cores 1-4"))
        self.assertEqual(t.snapshot(), before)

    def test_dry_run_touches_nothing_and_needs_no_root(self):
        t = FakeTree(self)
        t.nic("eth0", [(41, "eth0-TxRx-0"), (42, "eth0-TxRx-1")], rx=2, tx=2)
        before = t.snapshot()
        rc, out, _ = self.pin(t, "eth0", "0-1", "--dry-run", euid=1000)
        self.assertEqual(rc, 0)
        self.assertIn("irq 42 (eth0-TxRx-1) smp_affinity_list: 0-3 -> 1", out)
        self.assertIn("nothing written", out)
        self.assertEqual(t.snapshot(), before)

    def test_refuses_without_root(self):
        t = FakeTree(self)
        t.nic("eth0", [(41, "eth0-TxRx-0")])
        assert_refused_without_root(self, t, lambda euid: self.pin(t, "eth0", "0-1", euid=euid))

    def test_a_kernel_managed_irq_refuses_and_the_rest_goes_on(self):
        t = FakeTree(self)
        t.nic("eth0", [(41, "eth0-TxRx-0"), (42, "eth0-TxRx-1")], rx=2, tx=2)
        with failing_write("proc/irq/41/smp_affinity_list", OSError(5, "Input/output error")):
            rc, _, err = self.pin(t, "eth0", "0-1")
        self.assertEqual(rc, 1)
        self.assertIn("kernel manages", err)
        self.assertEqual((affinity(t, 41), affinity(t, 42)), ("0-3", "1"))

    def test_no_irqs_found_or_bad_arguments(self):
        t = FakeTree(self)
        t.nic("eth0", [])
        self.assertEqual(self.pin(t, "eth0", "0-1")[0], 1)
        self.assertEqual(self.pin(t, "eth9", "0-1")[0], 2)
        self.assertEqual(self.pin(t, "eth0", "0-9")[0], 2)  # only 4 CPUs online
        self.assertEqual(run(irq_pin, ["eth0", "--root", t.root], euid=0)[0], 2)  # --cores is required

    def test_warns_about_irqbalance(self):
        t = FakeTree(self)
        t.nic("eth0", [(41, "eth0-TxRx-0")])
        t.write("proc/812/comm", "irqbalance")
        _, _, err = self.pin(t, "eth0", "0", "--dry-run")
        self.assertIn("irqbalance is running", err)


class MaskTest(unittest.TestCase):
    def test_cpulists_and_masks(self):
        self.assertEqual(tuninglib.parse_cpulist("0-3,8,10-11"), [0, 1, 2, 3, 8, 10, 11])
        self.assertEqual(tuninglib.format_cpulist([11, 0, 1, 2, 3, 8, 10]), "0-3,8,10-11")
        self.assertEqual(tuninglib.format_mask([0, 1, 2, 3]), "f")
        self.assertEqual(tuninglib.format_mask([0, 33]), "2,00000001")
        self.assertEqual(tuninglib.format_mask([]), "0")
        self.assertEqual(tuninglib.parse_mask("00000000,00000000,00000002,00000001"), [0, 33])
        for bad in ("3-1", "a", "1-"):
            with self.assertRaises(ValueError):
                tuninglib.parse_cpulist(bad)


if __name__ == "__main__":
    unittest.main()
