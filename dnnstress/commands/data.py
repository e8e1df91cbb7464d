"""``dnnstress data``: list the known data sets, fetch Fashion-MNIST, inspect one."""

from __future__ import annotations

import os
import textwrap

import numpy as np

from dnnstress.commands._common import human_output, output_folder
from dnnstress.datasets import (
    DatasetNotFoundError,
    available_datasets,
    cache_root,
    dataset_info,
    fetch_fashion_mnist,
)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "data", help="list, fetch and inspect data sets",
        description="Data sets are looked for in $DNNSTRESS_DATA/NAME, then in the dnnstress "
                    "cache ($DNNSTRESS_CACHE/datasets/NAME or the user cache directory), "
                    "unless --root names the place.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list", help="show the known data sets and where each is",
        description="For each known data set: where it was found (or that it is missing, "
                    "with how to get it) and what it is.")
    listing.set_defaults(func=run_list)

    fetch = actions.add_parser(
        "fetch", help="download a data set (Fashion-MNIST)",
        description="Fashion-MNIST comes from the Debian package dataset-fashion-mnist "
                    "(apt-get download, unpacked by dnnstress, no root), or from --url. Other data "
                    "sets need a manual download; this command prints how.")
    fetch.add_argument("name", help="data set name (see `dnnstress data list`)")
    fetch.add_argument("--out", "--dest", dest="out", metavar="DIR",
                       help="folder to put the files in (default: the dnnstress cache, "
                            "searched automatically); created if missing, files already "
                            "there are kept")
    fetch.add_argument("--url", metavar="BASE_URL",
                       help="base URL serving the four *.gz files, instead of apt")
    fetch.add_argument("--force", action="store_true",
                       help="fetch again even if a verified copy is present")
    fetch.add_argument("--quiet", action="store_true",
                       help="print nothing but errors")
    fetch.set_defaults(func=run_fetch)

    info = actions.add_parser(
        "info", help="open a data set and summarise its splits",
        description="Open a data set where it is found (or at --root) and print its "
                    "splits: image counts and labels per class.")
    info.add_argument("name", help="data set name (see `dnnstress data list`)")
    info.add_argument("--root", metavar="DIR", help="where the data set is")
    info.set_defaults(func=run_info)
    return parser


def run_list(args) -> int:
    data = os.environ.get("DNNSTRESS_DATA")
    first = f"{data}/NAME" if data else "$DNNSTRESS_DATA/NAME (unset)"
    print(f"Looking in {first}, then {cache_root() / 'datasets'}/NAME")
    for name in available_datasets():
        info = dataset_info(name)
        try:
            where, missing = f"found    {info.locate()}", False
        except DatasetNotFoundError:
            where, missing = "missing", True
        if info.needs_root:
            where, missing = "give its place with --root", False
        print(f"\n{name:<14} {where}\n{'':<14} {info.description}")
        if missing:
            wrapped = textwrap.wrap(f"to get it: {info.how_to_get}", width=74,
                                    break_long_words=False, break_on_hyphens=False)
            print("\n".join(f"{'':<14} {line}" for line in wrapped))
    return 0


def run_fetch(args) -> int:
    info = dataset_info(args.name)
    if not info.fetchable:
        print(f"{info.name} cannot be fetched automatically (no redistributable copy). "
              f"To get it: {info.how_to_get}")
        return 1
    dest = output_folder(args.out) if args.out else None
    with human_output(args):
        fetch_fashion_mnist(dest=dest, url=args.url, progress=not args.quiet,
                            force=args.force)
    return 0


def run_info(args) -> int:
    info = dataset_info(args.name)
    splits = info.open(args.root)
    first = next(iter(splits.values()))
    print(f"{info.name}: {info.description}\nroot {first.root} (layout {first.layout}), "
          f"{len(first.class_names)} classes")
    for split in splits.values():
        print(f"  {split.name:<5} {len(split):>7} images  {_label_summary(split.labels)}")
    return 0


def _label_summary(labels: np.ndarray) -> str:
    if labels.ndim == 2:
        return (f"labels {labels.shape[1]} columns, {int((labels == 1).sum())} positive, "
                f"{int((labels == 0).sum())} ignored")
    counts = np.bincount(labels)
    return f"per class {counts.min()}..{counts.max()}"
