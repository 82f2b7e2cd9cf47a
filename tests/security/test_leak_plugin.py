"""The suite-wide secret grep (leak_plugin.py) fails a test whose output shows a secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.security.leak_plugin import DEV_RGW_SECRET

ROOT = Path(__file__).resolve().parents[2]

LEAKY = """
import logging

def test_prints_a_canary():
    print("token=NSCANARYADMIN0123456789ABCDEF")

def test_logs_the_rgw_secret():
    logging.getLogger("netscope.audit").warning("key %s", "{rgw_secret}")

def test_clean():
    print("nothing to see")
    logging.getLogger("netscope.audit").warning("a warning without secrets")

def test_the_test_side_client_may_log_its_own_url():
    logging.getLogger("httpx").warning("GET /?token=NSCANARYWS0123456789ABCDEF")
"""


def test_a_secret_in_captured_output_fails_that_test_only(tmp_path: Path) -> None:
    test_file = tmp_path / "test_leaky.py"
    test_file.write_text(LEAKY.replace("{rgw_secret}", DEV_RGW_SECRET))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p",
         "tests.security.leak_plugin", "-q", "-rA", "--rootdir", str(tmp_path),
         "-c", "/dev/null", str(test_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "2 failed, 2 passed" in out, out
    assert "FAILED" in out and "test_prints_a_canary" in out and "secret grep" in out, out
    assert "PASSED" in out and "test_clean" in out, out
    failed = {line.split("::")[1].split()[0] for line in out.splitlines() if "FAILED" in line}
    assert failed == {"test_prints_a_canary", "test_logs_the_rgw_secret"}, out
