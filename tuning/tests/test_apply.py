"""tuning/apply and tuning/revert against fake /proc/sys trees: the changes printed, idempotence,
the state file, exact restore, dry runs and the root check (euid injected)."""
import json
import os
import unittest

from faketree import (GOOD_SYSCTLS, STOCK_SYSCTLS, FakeTree, assert_refused_without_root, failing_write,
                      load_script, run, sysctl_rel)

apply = load_script("apply")
revert = load_script("revert")
import tuninglib  # noqa: E402  (faketree puts tuning/ on sys.path)

STATE = "var/lib/ringgate-tuning/saved.json"

# What edge-latency changes on a stock kernel, in table order, as printed.
LATENCY_ON_STOCK = [
    "net.core.somaxconn: 4096 -> 65535",
    "net.ipv4.tcp_max_syn_backlog: 2048 -> 65535",
    "net.core.netdev_max_backlog: 1000 -> 16384",
    "net.ipv4.ip_local_port_range: 32768 60999 -> 10240 65535",
    "net.ipv4.tcp_tw_reuse: 2 -> 1",
    "net.ipv4.tcp_fin_timeout: 60 -> 15",
    "net.core.rmem_max: 212992 -> 4194304",
    "net.core.wmem_max: 212992 -> 4194304",
    "net.core.busy_poll: 0 -> 50",
    "net.core.busy_read: 0 -> 50",
    "net.ipv4.tcp_migrate_req: 0 -> 1",
]


def values(tree):
    return {name: " ".join(tree.read(sysctl_rel(name)).split()) for name in STOCK_SYSCTLS}


class ApplyTest(unittest.TestCase):
    def setUp(self):
        self.t = FakeTree(self, sysctls=STOCK_SYSCTLS)

    def apply(self, *args, euid=0):
        return run(apply, [*args, "--root", self.t.root], euid=euid)

    def revert(self, *args, euid=0):
        return run(revert, [*args, "--root", self.t.root], euid=euid)

    def state(self):
        with open(self.t.path(STATE)) as f:
            return json.load(f)

    def test_prints_each_change_and_writes_it(self):
        rc, out, err = self.apply("edge-latency")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.splitlines()[:-1], LATENCY_ON_STOCK)
        now = values(self.t)
        for line in LATENCY_ON_STOCK:
            name, change = line.split(": ")
            self.assertEqual(now[name], change.split(" -> ")[1])
        self.assertEqual(now["fs.file-max"], "9223372036854775807")  # never lowered
        self.assertEqual(now["kernel.io_uring_disabled"], "0")

    def test_the_result_passes_check(self):
        self.apply("edge-throughput")
        check = load_script("check")
        rc, out, _ = run(check, ["--root", self.t.root, "--no-limits"])
        self.assertEqual(rc, 0, out)

    def test_state_file_holds_the_previous_values_of_what_changed(self):
        self.apply("edge-latency")
        state = self.state()
        expected = {line.split(": ")[0]: line.split(": ")[1].split(" -> ")[0] for line in LATENCY_ON_STOCK}
        self.assertEqual(state["saved"], expected)
        self.assertEqual(state["profiles"], ["edge-latency"])

    def test_second_apply_changes_nothing_and_keeps_the_state(self):
        self.apply("edge-latency")
        before, state = self.t.snapshot(), self.state()
        rc, out, _ = self.apply("edge-latency")
        self.assertEqual(rc, 0)
        self.assertEqual(out.strip(), "nothing to change: edge-latency is in effect")
        self.assertEqual(self.t.snapshot(), before)
        self.assertEqual(self.state(), state)

    def test_a_second_profile_keeps_the_original_values(self):
        self.apply("edge-latency")
        rc, out, _ = self.apply("edge-throughput")
        self.assertEqual(rc, 0)
        self.assertIn("net.core.busy_poll: 50 -> 0", out)
        self.assertIn("net.ipv4.tcp_rmem: 4096 131072 6291456 -> 4096 131072 33554432", out)
        saved = self.state()["saved"]
        self.assertEqual(saved["net.core.busy_poll"], "0")  # the stock value, not edge-latency's 50
        self.assertEqual(saved["net.core.rmem_max"], "212992")
        self.assertEqual(saved["net.ipv4.tcp_rmem"], "4096 131072 6291456")
        self.assertEqual(self.state()["profiles"], ["edge-latency", "edge-throughput"])
        self.revert()
        self.assertEqual(values(self.t), {k: " ".join(v.split()) for k, v in STOCK_SYSCTLS.items()})

    def test_min_settings_are_raised_field_by_field_never_lowered(self):
        self.t.write(sysctl_rel("net.ipv4.tcp_wmem"), "8192\t16384\t67108864")
        self.t.write(sysctl_rel("net.core.netdev_max_backlog"), "100000")
        rc, out, _ = self.apply("edge-throughput")
        self.assertIn("net.ipv4.tcp_wmem: 8192 16384 67108864 -> 8192 65536 67108864", out)
        self.assertNotIn("netdev_max_backlog", out)

    def test_absent_sysctl_is_skipped_not_created(self):
        self.t.remove(sysctl_rel("net.ipv4.tcp_migrate_req"))
        rc, out, _ = self.apply("edge-latency")
        self.assertEqual(rc, 0)
        self.assertIn("net.ipv4.tcp_migrate_req: not on this kernel, skipped", out)
        self.assertFalse(os.path.exists(self.t.path(sysctl_rel("net.ipv4.tcp_migrate_req"))))
        self.assertNotIn("net.ipv4.tcp_migrate_req", self.state()["saved"])

    def test_dry_run_touches_nothing_and_needs_no_root(self):
        before = self.t.snapshot()
        rc, out, _ = self.apply("edge-latency", "--dry-run", euid=1000)
        self.assertEqual(rc, 0)
        self.assertEqual(out.splitlines()[:len(LATENCY_ON_STOCK)], LATENCY_ON_STOCK)
        self.assertIn("nothing written", out)
        self.assertEqual(self.t.snapshot(), before)
        self.assertFalse(os.path.exists(self.t.path(STATE)))

    def test_refuses_without_root(self):
        assert_refused_without_root(self, self.t, lambda euid: self.apply("edge-latency", euid=euid))

    def test_state_path_is_overridable(self):
        path = self.t.path("elsewhere/state.json")
        self.apply("edge-latency", "--state", path)
        self.assertTrue(os.path.exists(path))
        self.assertFalse(os.path.exists(self.t.path(STATE)))
        rc, out, _ = self.revert("--state", path)
        self.assertEqual(rc, 0, out)
        self.assertFalse(os.path.exists(path))

    def test_a_failed_write_is_reported_and_not_saved(self):
        with failing_write(sysctl_rel("net.core.busy_poll"), PermissionError(13, "Permission denied")):
            rc, out, err = self.apply("edge-latency")
        self.assertEqual(rc, 1)
        self.assertIn("failed: Permission denied", err)
        self.assertNotIn("net.core.busy_poll", self.state()["saved"])
        self.assertEqual(self.t.read(sysctl_rel("net.core.busy_poll")), "0")

    def test_usage_errors_exit_2(self):
        for args in (["edge-fast"], []):
            with self.subTest(args=args):
                self.assertEqual(self.apply(*args)[0], 2)

    def test_print_conf_shows_the_values_after_apply(self):
        conf = apply_conf(self.t.root)
        self.assertIn("net.core.somaxconn = 65535\n", conf)
        self.assertIn("fs.file-max = 9223372036854775807\n", conf)  # this machine's, kept
        self.assertIn("net.core.busy_poll = 50\n", conf)
        self.assertNotIn("io_uring", conf)


def apply_conf(root):
    rc, out, _ = run(apply, ["edge-latency", "--print-conf", "--root", root], euid=1000)
    assert rc == 0
    return out


class RevertTest(unittest.TestCase):
    def setUp(self):
        self.t = FakeTree(self, sysctls=STOCK_SYSCTLS)
        self.stock = values(self.t)
        run(apply, ["edge-latency", "--root", self.t.root], euid=0)

    def revert(self, *args, euid=0):
        return run(revert, [*args, "--root", self.t.root], euid=euid)

    def test_restores_exactly_the_saved_values_and_removes_the_state(self):
        rc, out, err = self.revert()
        self.assertEqual(rc, 0, err)
        self.assertEqual(values(self.t), self.stock)
        self.assertIn("net.core.busy_poll: 50 -> 0", out)
        self.assertIn("net.ipv4.ip_local_port_range: 10240 65535 -> 32768 60999", out)
        self.assertFalse(os.path.exists(self.t.path(STATE)))
        self.assertEqual(self.revert()[1].strip(), f"nothing to revert: no state file at {self.t.path(STATE)}")

    def test_touches_only_what_apply_changed(self):
        self.t.write(sysctl_rel("fs.file-max"), "4096")  # apply never saved it: revert leaves it
        self.t.write(sysctl_rel("net.core.somaxconn"), "1024")  # changed after apply: restored anyway
        rc, out, _ = self.revert()
        self.assertEqual(rc, 0)
        self.assertEqual(self.t.read(sysctl_rel("fs.file-max")), "4096")
        self.assertIn("net.core.somaxconn: 1024 -> 4096", out)

    def test_dry_run_touches_nothing(self):
        before = self.t.snapshot()
        rc, out, _ = self.revert("--dry-run", euid=1000)
        self.assertEqual(rc, 0)
        self.assertIn("net.core.busy_poll: 50 -> 0", out)
        self.assertEqual(self.t.snapshot(), before)

    def test_refuses_without_root(self):
        assert_refused_without_root(self, self.t, self.revert)

    def test_a_failed_write_keeps_it_in_the_state(self):
        with failing_write(sysctl_rel("net.core.busy_read"), OSError(22, "Invalid argument")):
            rc, _, err = self.revert()
        self.assertEqual(rc, 1)
        self.assertIn("Invalid argument", err)
        with open(self.t.path(STATE)) as f:
            self.assertEqual(json.load(f)["saved"], {"net.core.busy_read": "0"})
        self.assertEqual(self.revert()[0], 0)
        self.assertEqual(values(self.t), self.stock)

    def test_a_corrupt_state_file_is_refused(self):
        with open(self.t.path(STATE), "w") as f:
            f.write("{not json")
        rc, _, err = self.revert()
        self.assertEqual(rc, 1)
        self.assertIn("cannot read", err)


class ProfilesTest(unittest.TestCase):
    def test_profiles_are_complete_and_valid(self):
        for s in tuninglib.SYSCTLS:
            with self.subTest(name=s.name):
                self.assertIn(s.kind, (tuninglib.MIN, tuninglib.MAX, tuninglib.EQ, tuninglib.SPAN))
                for profile, (value, why) in s.profiles.items():
                    self.assertIn(profile, tuninglib.PROFILES)
                    self.assertTrue(why)
                    self.assertIsNotNone(tuninglib.ints(value))
                    if s.check is not None:  # each profile satisfies check
                        self.assertTrue(tuninglib.satisfies(s.kind, s.check, value), (profile, value))
        self.assertEqual(set(GOOD_SYSCTLS), {s.name for s in tuninglib.SYSCTLS})

    def test_latency_busy_polls_and_throughput_raises_buffers(self):
        lat = {s.name: s.profiles[tuninglib.LATENCY][0] for s in tuninglib.SYSCTLS if s.profiles}
        thr = {s.name: s.profiles[tuninglib.THROUGHPUT][0] for s in tuninglib.SYSCTLS if s.profiles}
        self.assertEqual((lat["net.core.busy_poll"], lat["net.core.busy_read"]), ("50", "50"))
        self.assertEqual((thr["net.core.busy_poll"], thr["net.core.busy_read"]), ("0", "0"))
        for name in ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.core.rmem_max", "net.core.wmem_max"):
            self.assertGreater(int(thr[name].split()[-1]), int(lat[name].split()[-1]), name)
        self.assertNotIn("kernel.io_uring_disabled", lat)


if __name__ == "__main__":
    unittest.main()
