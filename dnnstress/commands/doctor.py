"""``dnnstress doctor``: which backends and providers work here, and how to fix the rest."""

from __future__ import annotations

from dnnstress.commands._common import (add_json_argument, add_quiet_argument, human_output,
                                        write_json)
from dnnstress.runinfo import run_info


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "doctor", help="check the CPU and GPU backends and say how to fix what is missing",
        description="Probe every backend for real: numpy and numba on the CPU, CuPy and "
                    "dnnstress's CUDA kernels on the GPU, onnxruntime's CPU and CUDA "
                    "providers (a test session is asked which provider it got), cuML. "
                    "Prints package versions, the GPU seen, and for each missing piece "
                    "the error it raised and the command that fixes it.")
    add_json_argument(parser, what="the report")
    add_quiet_argument(parser)
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from dnnstress.doctor import diagnose

    report = diagnose()
    with human_output(args):
        _print_human({**run_info("doctor", {}), **report})
    write_json(args, "doctor", {}, report)
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
