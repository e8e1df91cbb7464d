"""``dnnstress bench TOPIC``: microbenchmarks against a baseline measured in the same run."""

from __future__ import annotations

import importlib
import json

_TOPICS = ("quantize", "svm", "sweep", "extract")


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "bench", help="measure throughput against the hardware limit",
        description="Each benchmark prints a table and compares itself with a baseline "
                    "(memory-copy bandwidth, sklearn, bare onnxruntime) timed in the same run.")
    topics = parser.add_subparsers(dest="topic", metavar="TOPIC", required=True)
    for name in _TOPICS:
        module = importlib.import_module(f"dnnstress.benchmarks.{name}")
        topic = topics.add_parser(name, help=module.__doc__.splitlines()[0])
        topic.add_argument("--json", metavar="FILE", help="also write the results as JSON "
                           "('-' for standard output)")
        topic.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                           help="where to run (default: every device present)")
        module.add_arguments(topic)
        topic.set_defaults(func=run, bench_module=module)
    return parser


def run(args) -> int:
    result = args.bench_module.run(args)
    if args.json:
        text = json.dumps(result, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as handle:
                handle.write(text + "\n")
    return 0
