"""Builds the C++ simulated pilots (bench_pilots) that bench/dispatch.py runs by default.

    python bench/pilots/build.py        # -> bench/pilots/build/bench_pilots

Needs Debian's gRPC C++ packages (`scripts/test.sh` installs them): the message
and stub code is generated from proto/ with Debian's protoc, to match its libprotobuf, into
build/ (never committed). Rebuilds only when a source or a contract changed.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # tools/ is not an installed package

from tools.protos import GOOGLEAPIS_DIR, PROTO_DIR  # noqa: E402

BUILD_DIR = HERE / "build"
BINARY = BUILD_DIR / "bench_pilots"
SOURCE = HERE / "bench_pilots.cc"
# The dispatch contract and what it imports (google/protobuf's own come with libprotobuf).
PROTOS = ["panda/server/v1/dispatch_service.proto", "panda/server/v1/job.proto", "panda/common/v1/resources.proto"]
GOOGLEAPIS_PROTOS = ["google/rpc/status.proto", "google/api/field_behavior.proto"]
PACKAGES = "libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler pkg-config g++"


class BuildError(RuntimeError):
    pass


def _inputs() -> list[Path]:
    return [SOURCE, Path(__file__), *(PROTO_DIR / p for p in PROTOS)]


def up_to_date() -> bool:
    if not BINARY.exists():
        return False
    built = BINARY.stat().st_mtime
    return all(path.stat().st_mtime <= built for path in _inputs())


def _run(args: list[str]) -> None:
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{shlex.join(args[:3])} ... failed:\n{result.stderr[-4000:]}")


def build(quiet: bool = False) -> Path:
    """The binary, built first when missing or older than its sources."""
    if up_to_date():
        return BINARY
    missing = [tool for tool in ("protoc", "grpc_cpp_plugin", "pkg-config", "g++") if shutil.which(tool) is None]
    if missing:
        raise BuildError(f"{', '.join(missing)} not found: install Debian's {PACKAGES} "
                         "(scripts/test.sh does), or run the benchmark with --client python")
    if not quiet:
        print("building the C++ simulated pilots (bench/pilots/build/bench_pilots)", flush=True)
    generated = BUILD_DIR / "gen"
    shutil.rmtree(generated, ignore_errors=True)
    generated.mkdir(parents=True)
    _run([
        "protoc", f"-I{PROTO_DIR}", f"-I{GOOGLEAPIS_DIR}", f"--cpp_out={generated}", f"--grpc_out={generated}",
        f"--plugin=protoc-gen-grpc={shutil.which('grpc_cpp_plugin')}", *PROTOS, *GOOGLEAPIS_PROTOS,
    ])
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "grpc++", "protobuf"], capture_output=True,
                           text=True, check=True).stdout.split()
    sources = [SOURCE, *sorted(generated.rglob("*.pb.cc"))]
    objects = [BUILD_DIR / "obj" / (source.relative_to(HERE).as_posix().replace("/", "_") + ".o")
               for source in sources]
    objects[0].parent.mkdir(exist_ok=True)
    compile_flags = [flag for flag in flags if not flag.startswith(("-l", "-L"))]

    def compile_one(source: Path, target: Path) -> None:
        _run(["g++", "-O2", "-std=c++17", "-Wall", f"-I{generated}", *compile_flags, "-c", str(source), "-o",
              str(target)])

    with ThreadPoolExecutor() as pool:
        list(pool.map(compile_one, sources, objects))
    partial = BINARY.with_suffix(".partial")
    _run(["g++", "-o", str(partial), *map(str, objects), *flags, "-pthread"])
    partial.replace(BINARY)
    return BINARY


def main() -> int:
    try:
        print(build())
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
