"""Make a StudioML-style artifact bucket, packed the way the client packs it.

Used by `artifactfs demo`, the tests and the benchmarks, so all three see
the layout real runners see (see DESIGN.md, "How StudioML stores artifacts"):
- immutable artifacts under `blobstore/<sha256 of the archive>.tar[.gz]`
  (the extension names the compression setting, not the content: current
  clients write an uncompressed tar under `.tar.gz`);
- mutable artifacts under `experiments/<key>/<tag>.tar`;
- the experiment JSON in the database bucket at `experiments/<key>`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import time
from pathlib import Path

WORKSPACE = {
    "train.py": (
        "import json, os\n\n"
        "def main():\n"
        "    data = open(os.path.join('/artifacts', 'data', 'train.csv')).read()\n"
        "    print('training on', len(data.splitlines()), 'rows')\n\n"
        "if __name__ == '__main__':\n"
        "    main()\n"
    ),
    "requirements.txt": "numpy\n",
    "lib/model.py": "LAYERS = [64, 64, 10]\n",
    "README.md": "# demo experiment\n",
}


def pack_like_studioml(src: Path, dest: Path) -> None:
    """tarfile.open(path, 'w'), then add(child, arcname=name) per top-level entry."""
    with tarfile.open(dest, "w") as tar:
        children = sorted(os.listdir(src))
        if len(children) == 1 and (src / children[0]).is_file():
            tar.add(src / children[0], arcname="./" + children[0])  # a single file
        else:
            for name in children:
                tar.add(src / name, arcname=name)


def _tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        path.write_bytes(data)
    return root


def seed_studioml(artifact_bucket: Path, meta_bucket: Path, key: str = "demo-exp-1") -> dict:
    """Write one experiment's artifacts and its JSON; return the experiment dict."""
    artifacts: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        rows = "".join(f"{i},{i * i % 97},{i % 3}\n" for i in range(5000))
        specs: dict[str, tuple[dict[str, str | bytes], bool, str]] = {
            "workspace": (WORKSPACE, False, ".tar.gz"),
            "data": ({"train.csv": "x,y,label\n" + rows}, False, ".tar"),
            "modeldir": ({"checkpoint.bin": os.urandom(256 << 10), "config.json": "{}"},
                         True, ""),
            "output": ({"output.log": "epoch 1 loss 0.9\nepoch 2 loss 0.5\n"}, True, ""),
            "_metrics": ({"metrics.json": json.dumps({"loss": 0.5})}, True, ""),
            "_metadata": ({"metadata.json": json.dumps({"host": "demo"})}, True, ""),
            "tb": ({"events.out.tfevents.1": os.urandom(4096)}, True, ""),
        }  # fmt: skip
        for tag, (files, mutable, ext) in specs.items():
            src = _tree(t / tag, files)
            archive = t / f"{tag}.tar"
            pack_like_studioml(src, archive)
            if mutable:
                rel = f"experiments/{key}/{tag}.tar"
            else:
                digest = hashlib.sha256(archive.read_bytes()).hexdigest()
                rel = f"blobstore/{digest}{ext}"
            dest = artifact_bucket / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            archive.replace(dest)
            artifacts[tag] = {
                "key": rel,
                "bucket": artifact_bucket.name,
                "mutable": mutable,
                "unpack": True,
                "local": f"/tmp/studioml/{key}/{tag}",
                "qualified": f"s3://ENDPOINT/{artifact_bucket.name}/{rel}",
            }
    experiment = {
        "key": key,
        "filename": "train.py",
        "args": [],
        "status": "finished",
        "time_added": time.time(),
        "artifacts": artifacts,
    }
    meta = meta_bucket / "experiments" / key
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(experiment, indent=2))
    return experiment
