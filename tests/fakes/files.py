"""Files laid out as the kernel lays them out: written whole, rewritten in place, linked."""

import os


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{text}\n")
    return path


def rewrite(path, value):
    """Change a sysfs-like value in place, fixed width, as the kernel does: same inode, no torn read."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, f"{int(value):>10d}\n".encode(), 0)
    finally:
        os.close(fd)


def link(root, target, name):
    """A relative symlink root/name -> root/target, as sysfs's class folders are."""
    src, dst = root / target, root / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(src, dst.parent), dst)
