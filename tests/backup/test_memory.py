"""Memory stays bounded whatever the volume size: a backup and a restore of a
file much larger than the bound keep the process small."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# VmHWM (peak RSS of this process image); ru_maxrss would include the parent's
# size at fork time, since Linux keeps it across execve.
SCRIPT = """
import sys
from app.backup import SnapshotSource, create_backup, restore_backup

def peak_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

r = create_backup(sys.argv[1], "bigvol", SnapshotSource("s", sys.argv[2]))
after_backup = peak_kib()
restore_backup(r["url"], sys.argv[3])
print(after_backup, peak_kib())
"""


def test_backup_and_restore_of_a_large_file_stay_small(tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    size = 400 << 20
    with open(vol / "big.bin", "wb") as f:
        for _ in range(size // (8 << 20)):
            f.write(os.urandom(8 << 20))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, f"vfs://{tmp_path}/store", str(vol), str(tmp_path / "r")],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    after_backup_kib, after_restore_kib = map(int, out.split())
    assert after_backup_kib < 150 * 1024, f"backup peaked at {after_backup_kib // 1024} MiB for a 400 MiB file"
    assert after_restore_kib < 150 * 1024, f"restore peaked at {after_restore_kib // 1024} MiB"
    assert (tmp_path / "r" / "big.bin").stat().st_size == size
