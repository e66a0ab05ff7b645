"""`artifactfs mount | umount | demo`: the command line.

Credentials are never accepted here: they come from the environment and the
AWS default chain, so they never show in argv or /proc/<pid>/cmdline.
"""

from __future__ import annotations

import argparse
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
    m.add_argument("paths", nargs="+", metavar="[SOURCE] MOUNTPOINT",
                   help="SOURCE is s3://BUCKET[/PREFIX] or file:///DIR; "
                        "with --experiment-file, only MOUNTPOINT")  # fmt: skip
    m.add_argument("--experiment", metavar="KEY",
                   help="mount this StudioML experiment, read from the database bucket "
                        "named by --config")  # fmt: skip
    m.add_argument("--config", type=Path, metavar="FILE",
                   help="StudioML config.yaml: endpoint, buckets and credentials")  # fmt: skip
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
    m.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)

    u = sub.add_parser("umount", help="unmount (also recovers a mount whose daemon died)")
    u.add_argument("mountpoint", type=Path)
    u.add_argument("-z", "--lazy", action="store_true", help="detach even if busy")

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
        archives=args.archives,
        max_decoded_size=args.max_decoded_size,
        publish_index=args.publish_index,
        uid=args.uid,
        gid=args.gid,
        allow_other=args.allow_other,
        debug=args.debug,
        log_file=args.log_file.absolute() if args.log_file else None,
    )


def cmd_mount(args: argparse.Namespace, argv: list[str]) -> int:
    from artifactfs.logsetup import setup_logging

    try:
        opts = mount_options(args)
        opts.validate()
    except ArtifactFSError as exc:
        print(f"artifactfs: {exc}", file=sys.stderr)
        return 2
    if args.foreground:
        from artifactfs import daemon
        from artifactfs.notify import ReadyPipe

        setup_logging(opts.debug, opts.log_file)
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
    stop_process(proc)
    subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)


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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `mount [SOURCE] MOUNTPOINT` with options in between: argparse takes only the first
    # run of positionals, so the rest come back as extras and are added here.
    args, extras = parser.parse_known_args(argv)
    unknown = [e for e in extras if e.startswith("-") or args.command != "mount"]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "mount":
        args.paths += extras
    if args.command == "mount":
        return cmd_mount(args, argv)
    if args.command == "umount":
        return cmd_umount(args)
    if args.command == "demo":
        from artifactfs.demo import run_demo

        return run_demo(args.dir, args.exit_after)
    return 2
