"""What a user compares after a restore: the tree, the bytes, the metadata."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def describe(root: str | Path, *, mtimes: bool = True) -> dict[str, tuple]:
    """path -> (type, mode, uid, gid, size or link target, sha256, mtime_ns) for every object."""
    root = str(root)
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames + ([""] if dirpath == root else []):
            path = os.path.join(dirpath, name) if name else dirpath
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            mode = st.st_mode
            if stat.S_ISLNK(mode):
                kind, extra, digest = "l", os.readlink(path), ""
            elif stat.S_ISDIR(mode):
                kind, extra, digest = "d", "", ""
            elif stat.S_ISREG(mode):
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                kind, extra, digest = "f", st.st_size, h.hexdigest()
            else:
                kind, extra, digest = "o", st.st_rdev, ""
            try:
                attrs = {n: os.getxattr(path, n, follow_symlinks=False) for n in os.listxattr(path, follow_symlinks=False)}
            except OSError:
                attrs = {}
            entry = (kind, stat.S_IMODE(mode), st.st_uid, st.st_gid, extra, digest, sorted(attrs.items()))
            if mtimes and kind != "l":
                entry += (st.st_mtime_ns,)
            out[rel] = entry
    return out


def make_sample_tree(root: Path, *, big: int = 3 * 1024 * 1024 + 12345, seed: bytes = b"x") -> Path:
    """Directories, files of several sizes, a sparse file, a symlink, a hard link,
    odd modes and owners, an old mtime, an empty directory."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "docs" / "nested").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "docs" / "hello.txt").write_text("hello convoy\n")
    os.chmod(root / "docs" / "hello.txt", 0o640)
    os.utime(root / "docs" / "hello.txt", ns=(1577934240_000000000, 1577934240_123456789))
    (root / "docs" / "nested" / "big.bin").write_bytes(hashlib.sha256(seed).digest() * 0 + os.urandom(big))
    (root / "zero-length").write_bytes(b"")
    with open(root / "sparse.img", "wb") as f:  # 64 MiB, 2 small data islands
        f.truncate(64 << 20)
        f.seek(5 << 20)
        f.write(b"island one")
        f.seek(40 << 20)
        f.write(os.urandom(200_000))
    os.symlink("docs/hello.txt", root / "link")
    os.symlink("/nonexistent/target", root / "dangling")
    os.link(root / "docs" / "hello.txt", root / "hardlink.txt")
    (root / "owned").write_bytes(b"owned by 1234:5678\n")
    os.chown(root / "owned", 1234, 5678)
    os.chmod(root / "owned", 0o4755)
    os.mkfifo(root / "fifo")
    os.setxattr(root / "docs" / "hello.txt", "user.comment", b"kept with the file")
    os.setxattr(root / "docs", "user.note", b"\x00binary\xff")
    os.setxattr(root / "owned", "security.capability",  # cap_net_bind_service=ep, as setcap writes it
                bytes.fromhex("0000000200040000000000000000000000000000"))
    os.chmod(root / "empty", 0o711)
    os.utime(root / "docs", ns=(1600000000_000000000, 1600000000_000000000))
    return root
