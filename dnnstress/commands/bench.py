"""``dnnstress bench TOPIC``: microbenchmarks against a baseline measured in the same run."""

from __future__ import annotations

import importlib

from dnnstress.commands._common import (add_json_argument, add_quiet_argument,
                                        add_threads_argument, human_output, params_of,
                                        write_json)

_TOPICS = ("quantize", "svm", "sweep", "extract", "memory", "retrieval", "campaign")


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "bench", help="measure throughput against the hardware limit",
        description="Each benchmark prints a table and compares itself with a baseline "
                    "(memory-copy bandwidth, sklearn, bare onnxruntime) timed in the same run.")
    topics = parser.add_subparsers(dest="topic", metavar="TOPIC", required=True)
    for name in _TOPICS:
        module = importlib.import_module(f"dnnstress.benchmarks.{name}")
        topic = topics.add_parser(name, help=module.__doc__.splitlines()[0],
                                  description=module.__doc__.strip())
        add_json_argument(topic, what="the measurements")
        topic.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                           help="where to run (default: every device present)")
        add_threads_argument(topic)
        add_quiet_argument(topic)
        module.add_arguments(topic)
        topic.set_defaults(func=run, bench_module=module)
    return parser


def run(args) -> int:
    with human_output(args):
        result = args.bench_module.run(args)
    write_json(args, f"bench {args.topic}", params_of(args), result)
    return 0
