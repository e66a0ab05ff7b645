"""`artifactfs mount | umount | demo`: the command line.

Credentials are never accepted here: they come from the environment and the
AWS default chain, so they never show in argv or /proc/<pid>/cmdline.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from artifactfs import __version__
from artifactfs.errors import ArtifactFSError, ConfigError
from artifactfs.options import MountOptions, Source, parse_size
from artifactfs.processes import stop_process

READY_TIMEOUT = 60.0


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="artifactfs",
        description="Mount StudioML artifacts in S3/MinIO as a read-only filesystem.",
    )
    parser.add_argument("--version", action="version", version=f"artifactfs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("mount", help="mount a bucket (or a prefix of it) read-only")
    m.add_argument("paths", nargs="*", metavar="[SOURCE] MOUNTPOINT",
                   help="SOURCE is s3://BUCKET[/PREFIX] or file:///DIR; "
                        "with --experiment-file, only MOUNTPOINT")  # fmt: skip
    m.add_argument("--experiment", metavar="KEY",
                   help="mount this StudioML experiment, read from the database bucket "
                        "named by --config")  # fmt: skip
    m.add_argument("--config", type=Path, metavar="FILE",
                   help="StudioML config.yaml: endpoint, buckets and credentials")  # fmt: skip
    m.add_argument("--conf", type=Path, metavar="FILE",
                   help="read SOURCE, MOUNTPOINT and flags from FILE (`key = value` lines, "
                        "as in /etc/artifactfs/NAME.conf); flags given here are added")  # fmt: skip
    m.add_argument("--experiment-file", type=Path, metavar="FILE",
                   help="mount this StudioML experiment (its JSON, or a runner's queue "
                        "message): one directory per artifact")  # fmt: skip
    g = m.add_argument_group("object store")
    g.add_argument("--endpoint-url", help="S3 endpoint, e.g. http://minio:9000 (default: AWS)")
    g.add_argument("--region", help="region to sign requests for (default: from AWS config)")
    g.add_argument(
        "--path-style", action=argparse.BooleanOptionalAction, default=None,
        help="path-style addressing (default: on with --endpoint-url)",
    )  # fmt: skip
    g.add_argument(
        "--request-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="deadline of one store request, retries included (default 30)",
    )
    g.add_argument("--max-attempts", type=int, default=3, help="tries per request (default 3)")
    g.add_argument(
        "--max-concurrency",
        type=int,
        default=16,
        help="store requests in flight at once (default 16)",
    )
    g.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="read public buckets unsigned: a request the credentials are refused for "
        "(or with no credentials at all) is sent again without a signature",
    )
    g = m.add_argument_group("cache")
    g.add_argument("--cache-dir", type=Path, help="block cache directory (default: per source)")
    g.add_argument("--cache-size", type=_size, default="10G", help="size limit (default 10G)")
    g.add_argument("--block-size", type=_size, default="8M", help="cache block size (default 8M)")
    g.add_argument(
        "--read-ahead",
        type=_size,
        default="64M",
        help="largest read-ahead window per file; 0 disables (default 64M)",
    )
    g.add_argument(
        "--kernel-read-ahead",
        type=_size,
        default="16M",
        help="read-ahead window of the kernel for this mount; needs root, "
        "0 keeps the kernel default of 128K (default 16M)",
    )
    g.add_argument(
        "--max-background",
        type=int,
        default=64,
        help="FUSE requests the kernel keeps in flight; needs root (default 64)",
    )
    g.add_argument(
        "--memory-budget",
        type=_size,
        default="64M",
        help="memory for blocks held between reads; read-ahead uses half (default 64M)",
    )
    g.add_argument(
        "--metadata-ttl",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how long listings and object metadata are trusted (default 1)",
    )
    g.add_argument(
        "--negative-ttl",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how long a missing name is remembered (default 1)",
    )
    g = m.add_argument_group("archives")
    g.add_argument(
        "--archives",
        choices=("unpack", "raw", "both"),
        default="unpack",
        help="show archive objects as directories (unpack), as files (raw) or both "
        "(default unpack)",
    )
    g.add_argument(
        "--max-decoded-size",
        type=_size,
        default="64G",
        help="most bytes one compressed archive may decode to (decompression bombs; default 64G)",
    )
    g.add_argument(
        "--publish-index",
        action="store_true",
        help="after indexing an archive, upload the index as <key>.afsidx next to it "
        "(needs write access); every mount uses a valid sidecar instead of scanning",
    )
    g = m.add_argument_group("mount")
    g.add_argument("--uid", type=int, default=-1, help="owner of every file (default: you)")
    g.add_argument("--gid", type=int, default=-1, help="group of every file (default: yours)")
    g.add_argument(
        "--allow-other",
        action="store_true",
        help="let other users read the mount (kernel checks permissions)",
    )
    g.add_argument("-f", "--foreground", action="store_true", help="do not detach")
    g.add_argument(
        "--recover",
        action="store_true",
        help="if MOUNTPOINT is a dead mount (its daemon was killed: ENOTCONN), detach it "
        "first (containers restarted in place)",
    )
    g.add_argument(
        "--debug",
        action="store_true",
        help="debug logs of artifactfs (botocore stays at warnings; secrets are masked)",
    )
    g.add_argument(
        "--log-file",
        type=Path,
        help="log here (default: stderr in the foreground, "
        "CACHE_DIR/artifactfs.log in the background)",
    )
    g.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="one line per event as text (journald-style under systemd) or JSON (default text)",
    )
    g.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default: off)",
    )
    m.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)

    u = sub.add_parser("umount", help="unmount (also recovers a mount whose daemon died)")
    u.add_argument("mountpoint", type=Path, nargs="?")
    u.add_argument("--conf", type=Path, metavar="FILE", help="the mount point of this conf file")
    u.add_argument("-z", "--lazy", action="store_true", help="detach even if busy")

    k = sub.add_parser(
        "kernel-mount",
        help="systemd's privileged step: mount the --conf FILE's mount point and hand the "
        "FUSE descriptor to systemd (see systemd/)",
    )
    k.add_argument("--conf", type=Path, metavar="FILE", required=True)

    st = sub.add_parser("stat", help="figures of a live mount: cache, store, operations")
    st.add_argument("mountpoint", type=Path)
    st.add_argument("--json", action="store_true", help="machine-readable")

    r = sub.add_parser("ready", help="exit 0 if MOUNTPOINT is a live artifactfs mount that "
                       "answers (readiness probes)")  # fmt: skip
    r.add_argument("mountpoint", type=Path)
    r.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")

    c = sub.add_parser("cache", help="inspect or shrink block cache directories")
    c.add_argument("action", choices=("stats", "verify", "prune", "clear"))
    c.add_argument("dirs", type=Path, nargs="*", metavar="CACHE_DIR",
                   help="cache directories (default: all under the default base)")  # fmt: skip
    c.add_argument("--to", type=_size, metavar="SIZE", help="prune: keep at most SIZE of blocks")
    c.add_argument("--json", action="store_true", help="stats: machine-readable")

    pf = sub.add_parser("prefetch", help="read PATHs of a mount into the cache "
                        "(before a job starts)")  # fmt: skip
    pf.add_argument("mountpoint", type=Path)
    pf.add_argument("paths", nargs="+", metavar="PATH", help="inside the mount (or relative to it)")
    pf.add_argument("-j", "--jobs", type=int, default=4, help="files read at once (default 4)")

    d = sub.add_parser("demo", help="serve a seeded StudioML bucket on loopback and mount it")
    d.add_argument("--dir", type=Path, help="work directory (default: a new temp dir)")
    d.add_argument(
        "--exit-after",
        type=float,
        metavar="SECONDS",
        help="unmount and stop after this long instead of waiting for Ctrl-C",
    )
    return parser


def mount_options(args: argparse.Namespace) -> MountOptions:
    config = None
    if args.config is not None:
        from artifactfs.studio import load_config

        config = load_config(args.config)
    endpoint = args.endpoint_url or (config.storage.endpoint if config else None)
    if args.experiment is not None:
        if config is None:
            raise ConfigError("--experiment needs --config (it names the database bucket)")
        if len(args.paths) != 1:
            raise ConfigError("with --experiment, give only the MOUNTPOINT")
        source = Source("s3", config.storage.bucket or "studioml-artifacts", "")
    elif args.experiment_file is not None:
        if len(args.paths) != 1:
            raise ConfigError("with --experiment-file, give only the MOUNTPOINT")
        from artifactfs.studio import load_experiment_file

        experiment = load_experiment_file(args.experiment_file)
        if not experiment.artifacts:
            raise ConfigError(f"{args.experiment_file}: no artifact can be served")
        buckets = [a.bucket for a in experiment.artifacts if a.bucket]
        if not buckets:
            raise ConfigError(f"{args.experiment_file}: only url artifacts; "
                              "an S3 artifact is needed too (for now)")  # fmt: skip
        source = Source("s3", buckets[0], "")
    else:
        if len(args.paths) != 2:
            raise ConfigError("give a SOURCE and a MOUNTPOINT")
        source = Source.parse(args.paths[0])
    return MountOptions(
        source=source,
        mountpoint=Path(args.paths[-1]).absolute(),
        experiment_file=args.experiment_file.absolute() if args.experiment_file else None,
        experiment_key=args.experiment,
        config_file=args.config.absolute() if args.config else None,
        endpoint_url=endpoint,
        region=args.region,
        path_style=args.path_style,
        cache_dir=args.cache_dir.absolute() if args.cache_dir else None,
        cache_size=args.cache_size,
        block_size=args.block_size,
        read_ahead=args.read_ahead,
        memory_budget=args.memory_budget,
        kernel_read_ahead=args.kernel_read_ahead,
        max_background=args.max_background,
        metadata_ttl=args.metadata_ttl,
        negative_ttl=args.negative_ttl,
        request_timeout=args.request_timeout,
        max_attempts=args.max_attempts,
        max_concurrency=args.max_concurrency,
        allow_anonymous=args.allow_anonymous,
        metrics_address=args.metrics_address,
        log_format=args.log_format,
        archives=args.archives,
        max_decoded_size=args.max_decoded_size,
        publish_index=args.publish_index,
        uid=args.uid,
        gid=args.gid,
        allow_other=args.allow_other,
        recover=args.recover,
        debug=args.debug,
        log_file=args.log_file.absolute() if args.log_file else None,
    )


def cmd_mount(args: argparse.Namespace, argv: list[str]) -> int:
    from artifactfs.credentials import use_loaded_credentials
    from artifactfs.logsetup import setup_logging

    try:
        opts = mount_options(args)
        opts.validate()
    except ArtifactFSError as exc:
        print(f"artifactfs: {exc}", file=sys.stderr)
        return 2
    if args.foreground:
        from artifactfs import daemon
        from artifactfs.kernelmount import FD_NAME
        from artifactfs.notify import ReadyPipe, listen_fds

        setup_logging(opts.debug, opts.log_file, opts.log_format)
        use_loaded_credentials()
        passed = listen_fds()
        if FD_NAME in passed:
            opts = dataclasses.replace(opts, fuse_fd=passed[FD_NAME])
        return daemon.run(opts, ReadyPipe(args.ready_fd))
    return _mount_in_background(opts, argv)


def _mount_in_background(opts: MountOptions, argv: list[str]) -> int:
    """Start the daemon detached and return only once it is mounted (or failed)."""
    log_file = opts.log_file or opts.resolved_cache_dir / "artifactfs.log"
    log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    read_fd, write_fd = os.pipe()
    child_argv = [sys.executable, "-m", "artifactfs", *argv, "--foreground",
                  "--log-file", str(log_file), "--ready-fd", str(write_fd)]  # fmt: skip
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            child_argv, pass_fds=(write_fd,), stdin=subprocess.DEVNULL,
            stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    os.close(write_fd)
    line = _read_line(read_fd, READY_TIMEOUT)
    os.close(read_fd)
    if line == "READY":
        return 0
    if line.startswith("ERROR "):
        print(f"artifactfs: cannot mount {opts.mountpoint}: {line[6:]}", file=sys.stderr)
    else:
        code = proc.poll()
        why = f"exited with status {code}" if code is not None else "did not answer in time"
        print(
            f"artifactfs: the daemon {why} before the mount was ready; see {log_file}",
            file=sys.stderr,
        )
        if code is None:
            _stop_wedged_daemon(proc, opts.mountpoint)
    return 1


def _stop_wedged_daemon(proc: subprocess.Popen[bytes], mountpoint: Path) -> None:
    """A daemon that never became ready must not stay behind, nor its mount."""
    from artifactfs.probe import detach

    stop_process(proc)
    detach(mountpoint)


def _read_line(fd: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            return ""
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return ""
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def cmd_umount(args: argparse.Namespace) -> int:
    if args.conf is not None:
        from artifactfs.conffile import read_conf

        try:
            args.mountpoint = Path(read_conf(args.conf, expand=False)["mountpoint"])
        except ArtifactFSError as exc:
            print(f"artifactfs: {exc}", file=sys.stderr)
            return 2
    if args.mountpoint is None:
        print("artifactfs: give a MOUNTPOINT (or --conf FILE)", file=sys.stderr)
        return 2
    flags = "-uz" if args.lazy else "-u"
    proc = subprocess.run(["fusermount3", flags, str(args.mountpoint)],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        msg = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"
        print(f"artifactfs: cannot unmount {args.mountpoint}: {msg}", file=sys.stderr)
        if "busy" in msg.lower():
            print(
                "artifactfs: close the files in use, or use `artifactfs umount --lazy`",
                file=sys.stderr,
            )
        return 1
    return 0


def cmd_kernel_mount(parser: argparse.ArgumentParser, conf: Path) -> int:
    from artifactfs.conffile import conf_to_argv
    from artifactfs.daemon import fuse_options
    from artifactfs.kernelmount import mount_into_fd_store

    try:
        args = _parse(parser, ["mount", *conf_to_argv(conf)])
        opts = mount_options(args)
        opts.validate()
        mount_into_fd_store(opts.mountpoint, fuse_options(opts))
    except ArtifactFSError as exc:
        print(f"artifactfs: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_stat(args: argparse.Namespace) -> int:
    import json

    from artifactfs.control import query
    from artifactfs.report import format_figures

    try:
        figures = query(args.mountpoint)
    except OSError as exc:
        print(f"artifactfs: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(json.dumps(figures, indent=2) if args.json else format_figures(figures))
    return 0


def cmd_ready(args: argparse.Namespace) -> int:
    from artifactfs.probe import not_ready_reason

    reason = not_ready_reason(args.mountpoint, args.timeout)
    if reason is not None:
        print(f"artifactfs: not ready: {reason}", file=sys.stderr)
        return 1
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from artifactfs import cachetool
    from artifactfs.report import human_size

    try:
        dirs = cachetool.find_cache_dirs(args.dirs)
        if args.action == "stats":
            rows = [cachetool.usage(d) for d in dirs]
            if args.json:
                print(json.dumps([{**asdict(r), "path": str(r.path)} for r in rows], indent=2))
                return 0
            for r in rows:
                use = f"in use by pid {r.in_use_by}" if r.in_use_by else "not in use"
                print(
                    f"{r.path}: {r.blocks} blocks, {human_size(r.block_bytes)}; "
                    f"{r.indexes} archive indexes, {human_size(r.index_bytes)}; {use}"
                )
            if not rows:
                print("no cache directories found")
            return 0
        if args.action == "verify":
            failed = 0
            for d in dirs:
                good, bad = cachetool.verify(d)
                failed += len(bad)
                print(f"{d}: {good} blocks verify, {len(bad)} corrupt")
                for path in bad:
                    print(f"  corrupt: {path} (discarded on first read)")
            return 1 if failed else 0
        if args.action == "prune" and args.to is None:
            raise ConfigError("prune needs --to SIZE")
        for d in dirs:
            if args.action == "prune":
                n, size = cachetool.prune(d, args.to)
            else:
                n, size = cachetool.clear(d)
            print(f"{d}: removed {n} files, {human_size(size)}")
    except ArtifactFSError as exc:
        print(f"artifactfs: {exc}", file=sys.stderr)
        return 1
    return 0


def _mount_from_conf(parser: argparse.ArgumentParser, conf: Path, argv: list[str]) -> int:
    """`mount --conf FILE [flags]`: the file's settings, then the command line's."""
    from artifactfs.conffile import conf_to_argv

    try:
        from_file = conf_to_argv(conf)
    except ArtifactFSError as exc:
        print(f"artifactfs: {exc}", file=sys.stderr)
        return 2
    rest = list(argv[argv.index("mount") + 1 :])
    for i, a in enumerate(rest):
        if a == "--conf":
            del rest[i : i + 2]
            break
        if a.startswith("--conf="):
            del rest[i]
            break
    new_argv = ["mount", *from_file, *rest]
    return cmd_mount(_parse(parser, new_argv), new_argv)


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse a command line. `mount [SOURCE] MOUNTPOINT` with options in between:
    argparse takes only the first run of positionals, so the rest come back as
    extras and are added to the paths here."""
    args, extras = parser.parse_known_args(argv)
    unknown = [e for e in extras if e.startswith("-") or args.command != "mount"]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "mount":
        args.paths = [*(args.paths or []), *extras]
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = _parse(parser, argv)
    if args.command == "mount":
        if args.conf is not None:
            return _mount_from_conf(parser, args.conf, argv)
        if not args.paths:
            parser.error("mount: give [SOURCE] MOUNTPOINT (or --conf FILE)")
        return cmd_mount(args, argv)
    if args.command == "umount":
        return cmd_umount(args)
    if args.command == "kernel-mount":
        return cmd_kernel_mount(parser, args.conf)
    if args.command == "stat":
        return cmd_stat(args)
    if args.command == "ready":
        return cmd_ready(args)
    if args.command == "cache":
        return cmd_cache(args)
    if args.command == "prefetch":
        from artifactfs.prefetch import prefetch

        return prefetch(args.mountpoint, args.paths, args.jobs)
    if args.command == "demo":
        from artifactfs.demo import run_demo

        return run_demo(args.dir, args.exit_after)
    return 2
