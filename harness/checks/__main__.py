"""python -m harness.checks NAME --device cpu|cuda [--smoke]: one check in a process of its
own (its CUDA context, compiler state and memory leave with it), the result as one JSON line."""

from __future__ import annotations

import argparse
import json

from harness.checks import CHECKS


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.checks")
    parser.add_argument("name", choices=sorted(CHECKS))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    print(json.dumps(CHECKS[args.name](args.device, args.smoke).to_json()))


if __name__ == "__main__":
    main()
