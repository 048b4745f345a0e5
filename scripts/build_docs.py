"""Builds the HTML API reference of ebrl from its docstrings with pdoc, into docs/api/.

    pip install pdoc              # or: pip install -e ".[docs]"
    python scripts/build_docs.py  # writes docs/api/index.html; open it in a browser
    python scripts/build_docs.py --out /tmp/ebrl-api
    python scripts/build_docs.py --serve   # a live server at http://localhost:8080

Every module of the package is documented (``ebrl.__main__`` aside), with the docstrings read
as Google style. The output is not committed: it is generated, several megabytes of HTML that
GitHub shows as source, and rebuilt in seconds; the Markdown pages in docs/ are the readable
documentation and docs/api.md maps the public names.
"""

from __future__ import annotations

import argparse
import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "api"
SKIP = {"ebrl.__main__"}


def modules() -> list[str]:
    """``ebrl`` and every module under it (imported by pdoc, so they must import cleanly)."""
    import ebrl

    names = ["ebrl"]
    for info in pkgutil.walk_packages(ebrl.__path__, prefix="ebrl."):
        if info.name not in SKIP and not info.name.rsplit(".", 1)[-1].startswith("_"):
            names.append(info.name)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--serve", action="store_true", help="serve live instead of writing")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("pdoc") is None:
        print("build_docs: pdoc is not installed: pip install pdoc", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "pdoc", "--docformat", "google", *modules()]
    if not args.serve:
        command += ["--output-directory", str(args.out)]
    done = subprocess.run(command, cwd=ROOT, check=False)
    if done.returncode == 0 and not args.serve:
        print(f"build_docs: wrote {args.out / 'index.html'}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
