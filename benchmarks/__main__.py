"""`make bench` / `python -m benchmarks`: list the benchmarks, or run one by name.

Each benchmark is one command that measures its baseline in the same run and prints ratios against it.
"""

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    scripts = sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_"))
    if len(sys.argv) < 2:
        print("usage: python -m benchmarks NAME [args...]   (or python benchmarks/NAME.py)\n")
        for name in scripts:
            doc = (runpy.run_path(str(HERE / f"{name}.py"), run_name="__doc__").get("__doc__") or "").strip()
            print(f"  {name:20s} {doc.splitlines()[0] if doc else ''}")
        return
    name, sys.argv = sys.argv[1], [str(HERE / f"{sys.argv[1]}.py"), *sys.argv[2:]]
    if name not in scripts:
        sys.exit(f"unknown benchmark {name!r}; one of {scripts}")
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
