"""tuning/ringgate.service: the settings the operations docs rely on, and that ringgate still speaks
the notify protocol Type=notify waits for. `systemd-analyze verify` runs when it is installed."""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from faketree import TUNING

UNIT = os.path.join(TUNING, "ringgate.service")
SRC = os.path.join(os.path.dirname(TUNING), "src")
DRAIN_TIMEOUT_DEFAULT = 30  # shutdown.drain_timeout (docs/operations.md, src/config/mod.rs)


def directives():
    """[(key, value)] of the unit's uncommented lines, in order (keys may repeat)."""
    out = []
    with open(UNIT) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "[")):
                key, _, value = line.partition("=")
                out.append((key, value))
    return out


class UnitTest(unittest.TestCase):
    def test_the_settings_the_docs_rely_on(self):
        d = dict(directives())  # last value wins, as systemd's would for single-valued keys
        self.assertEqual(d["ExecStart"], "/usr/local/bin/ringgate run -c /etc/ringgate/ringgate.toml")
        self.assertEqual(d["Type"], "notify")
        self.assertEqual(d["NotifyAccess"], "all")
        self.assertEqual(d["LimitNOFILE"], "1048576")
        self.assertEqual(d["LimitMEMLOCK"], "infinity")
        self.assertEqual(d["AmbientCapabilities"], "CAP_NET_BIND_SERVICE")
        self.assertEqual(d["CapabilityBoundingSet"], "CAP_NET_BIND_SERVICE")
        self.assertEqual(d["KillSignal"], "SIGTERM")
        self.assertEqual(d["Restart"], "on-failure")
        self.assertGreater(int(d["TimeoutStopSec"]), DRAIN_TIMEOUT_DEFAULT)
        reloads = [v for k, v in directives() if k == "ExecReload"]
        self.assertEqual(reloads[-1], "/bin/kill -HUP $MAINPID")
        with open(UNIT) as f:
            text = f.read()
        self.assertIn("#CPUAffinity=", text)
        self.assertIn("--takeover", text)
        self.assertIn("docs/operations.md", text)

    def test_ringgate_sends_ready_and_mainpid(self):
        with open(os.path.join(SRC, "main.rs")) as f:
            main = f.read()
        self.assertRegex(main, r"sd_notify\(.*READY=1\\nMAINPID=")
        with open(os.path.join(SRC, "upgrade.rs")) as f:
            self.assertIn("NOTIFY_SOCKET", f.read())

    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze not installed")
    def test_systemd_analyze_verify(self):
        # verify insists that ExecStart's binary exists: point the unit at a stub.
        with tempfile.TemporaryDirectory() as d:
            stub = os.path.join(d, "ringgate")
            with open(stub, "w") as f:
                f.write("#!/bin/sh\n")
            os.chmod(stub, 0o755)
            with open(UNIT) as f:
                unit = re.sub(r"/usr/local/bin/ringgate\b", stub, f.read())
            path = os.path.join(d, "ringgate.service")
            with open(path, "w") as f:
                f.write(unit)
            r = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("Unknown key", r.stderr)


if __name__ == "__main__":
    unittest.main()
