"""``dnnstress doctor``: which backends and providers work here, and how to fix the rest."""

from __future__ import annotations

import json
import sys


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "doctor", help="check the CPU and GPU backends and say how to fix what is missing",
        description="Probe every backend for real: numpy and numba on the CPU, CuPy and "
                    "dnnstress's CUDA kernels on the GPU, onnxruntime's CPU and CUDA "
                    "providers (a test session is asked which provider it got), cuML. "
                    "Prints package versions, the GPU seen, and for each missing piece "
                    "the error it raised and the command that fixes it.")
    parser.add_argument("--json", metavar="FILE",
                        help="write the report as JSON to FILE ('-': standard output only)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from dnnstress.doctor import diagnose
    from dnnstress.runinfo import run_info

    report = {**run_info("doctor", {}), **diagnose()}
    if args.json == "-":
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")
    _print_human(report)
    return 0


def _print_human(report: dict) -> None:
    machine = report["machine"]
    print(f"dnnstress {report['dnnstress']}, Python {machine['python']}, {machine['system']}")
    print(f"CPU: {machine['cpu']} ({machine['cores_usable']} usable cores)")
    installed = [f"{name} {version}" for name, version in report["packages"].items() if version]
    print("packages: " + ", ".join(installed))
    for probe in report["probes"]:
        print(f"{'ok' if probe['ok'] else '--':<3}{probe['name']}: {probe['detail']}")
        if not probe["ok"] and probe["fix"]:
            print(f"     fix: {probe['fix']}")
