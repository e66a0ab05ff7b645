"""`mount.fuse.artifactfs`: the helper mount(8) runs for `fuse.artifactfs` in /etc/fstab.

    s3://bucket  /mnt/artifacts  fuse.artifactfs  _netdev,allow_other,cache-size=20G  0 0
    artifactfs   /artifacts      fuse.artifactfs  _netdev,conf=/etc/artifactfs/exp.conf  0 0

mount(8) calls `mount.fuse.artifactfs SOURCE MOUNTPOINT -o OPTIONS`. Options
that are artifactfs flags are passed on (`cache-size=20G` -> `--cache-size
20G`, `allow_other` -> `--allow-other`); options meant for mount(8) or systemd
(`_netdev`, `nofail`, `x-systemd.*`, `ro`, ...) are dropped. The command
returns once the mount answers, as `artifactfs mount` does.
"""

from __future__ import annotations

import sys

from artifactfs.cli import main as artifactfs_main
from artifactfs.conffile import flags

_FOR_MOUNT = {"defaults", "ro", "rw", "auto", "noauto", "user", "users", "nouser", "_netdev",
              "nofail", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "atime", "noatime",
              "relatime", "sync", "async"}  # fmt: skip


def translate(source: str, mountpoint: str, options: str) -> list[str]:
    """mount(8)'s arguments -> `artifactfs mount` arguments."""
    settings: dict[str, str] = {}
    for opt in filter(None, options.split(",")):
        key, sep, value = opt.partition("=")
        if key not in _FOR_MOUNT and not key.startswith(("x-", "comment=")):
            settings[key.replace("_", "-")] = value if sep else "true"
    conf = settings.pop("conf", None)
    if conf is not None:
        return ["mount", "--conf", conf, *flags(settings)]
    return ["mount", source, mountpoint, *flags(settings)]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    options = ""
    if "-o" in args:
        i = args.index("-o")
        options = args[i + 1] if i + 1 < len(args) else ""
        del args[i : i + 2]
    args = [a for a in args if not a.startswith("-")]  # -n, -s, -v from mount(8)
    if len(args) != 2:
        print("usage: mount.fuse.artifactfs SOURCE MOUNTPOINT [-o OPTIONS]", file=sys.stderr)
        return 2
    return artifactfs_main(translate(args[0], args[1], options))


if __name__ == "__main__":
    sys.exit(main())
