"""One command for the contracts: regenerate generated/, check it is fresh, lint, breaking.

    python -m tools.protos generate   # proto/ -> generated/ (messages, stubs, .pyi)
    python -m tools.protos check      # fail when generated/ differs from what proto/ gives
    python -m tools.protos lint       # buf lint (STANDARD)
    python -m tools.protos breaking [--against REF]   # buf breaking (WIRE_JSON) against a git ref

The googleapis protos the contracts import (google/api, google/rpc) are vendored, unchanged, in
third_party/googleapis/: every build (protoc here, buf from the repository root, other languages'
clients) reads that one copy, offline. `lint` is plain `buf lint` with buf.yaml; `breaking`
builds a descriptor image of each side with protoc (the old side is a git ref's proto/) for buf.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
GENERATED_DIR = ROOT / "generated"
GOOGLEAPIS_DIR = ROOT / "third_party" / "googleapis"
GRPC_TOOLS_INCLUDE = Path(grpc_tools.__file__).parent / "_proto"


def _proto_files(proto_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(proto_dir)) for p in proto_dir.rglob("*.proto"))


def _bin(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def _protoc(proto_dir: Path, extra: list[str]) -> None:
    args = [
        "protoc",
        f"-I{proto_dir}",
        f"-I{GOOGLEAPIS_DIR}",
        f"-I{GRPC_TOOLS_INCLUDE}",
        *extra,
        *_proto_files(proto_dir),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def generate(out_dir: Path = GENERATED_DIR) -> None:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    _protoc(
        PROTO_DIR,
        [
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            f"--plugin=protoc-gen-mypy={_bin('protoc-gen-mypy')}",
            f"--plugin=protoc-gen-mypy_grpc={_bin('protoc-gen-mypy_grpc')}",
            f"--mypy_out={out_dir}",
            f"--mypy_grpc_out={out_dir}",
        ],
    )
    for package_dir in [p for p in out_dir.rglob("*") if p.is_dir()]:
        (package_dir / "__init__.py").touch()
    (out_dir / "panda" / "py.typed").touch()
    (out_dir / "README.md").write_text(
        "Generated from proto/ by `python -m tools.protos generate`. Do not edit.\n"
    )


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "generated"
        generate(fresh)
        diff = filecmp.dircmp(GENERATED_DIR, fresh) if GENERATED_DIR.exists() else None
        stale = _differences(diff) if diff else ["generated/ is missing"]
    if stale:
        print("generated/ is stale; run `python -m tools.protos generate`:", *stale, sep="\n  ")
        return 1
    print("generated/ is up to date")
    return 0


def _differences(diff: filecmp.dircmp) -> list[str]:
    found = [f"{diff.left}/{n}" for n in diff.left_only + diff.right_only + diff.diff_files]
    found += [f"{diff.left}/{n}" for n in diff.funny_files]
    for sub in diff.subdirs.values():
        if sub.left.endswith("__pycache__"):
            continue
        found += _differences(sub)
    return [f for f in found if "__pycache__" not in f]


def _image(proto_dir: Path, image: Path) -> None:
    _protoc(proto_dir, ["--include_imports", "--include_source_info", f"--descriptor_set_out={image}"])


def _buf() -> str:
    found = shutil.which("buf") or str(ROOT / "node_modules" / ".bin" / "buf")
    if not Path(found).exists():
        raise SystemExit("buf not found: `npm install @bufbuild/buf` (see .ci/run)")
    return found


def _buf_paths() -> list[str]:
    return [arg for f in _proto_files(PROTO_DIR) for arg in ("--path", f)]


def lint() -> int:
    return subprocess.call([_buf(), "lint"], cwd=ROOT)


def breaking(against: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        old_root = Path(tmp) / "old"
        old_root.mkdir()
        archive = subprocess.run(
            ["git", "archive", against, "proto"], cwd=ROOT, capture_output=True, check=False
        )
        if archive.returncode != 0:
            print(f"no landed contracts at {against}; nothing to compare")
            return 0
        subprocess.run(["tar", "-x", "-C", str(old_root)], input=archive.stdout, check=True)
        old_image, new_image = Path(tmp) / "old.binpb", Path(tmp) / "new.binpb"
        _image(old_root / "proto", old_image)
        _image(PROTO_DIR, new_image)
        config = (ROOT / "buf.yaml").read_text()
        return subprocess.call(
            [_buf(), "breaking", f"{new_image}#format=binpb", "--against", f"{old_image}#format=binpb",
             "--config", config, *_buf_paths()]
        )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.protos")
    parser.add_argument("command", choices=["generate", "check", "lint", "breaking"])
    parser.add_argument("--against", default="origin/main", help="git ref of the last landed contracts")
    args = parser.parse_args()
    if args.command == "generate":
        generate()
        return 0
    if args.command == "check":
        return check()
    if args.command == "lint":
        return lint()
    return breaking(args.against)


if __name__ == "__main__":
    sys.exit(main())
