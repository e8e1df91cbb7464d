"""``dnnstress report DIR``: Table 3, the paper's figures and the headline of a sweep."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from dnnstress.authors import default_authors_dir
from dnnstress.report import format_summary, write_report
from dnnstress.runinfo import run_info


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "report", help="write Table 3 and the figures of a sweep folder",
        description="Read DIR/results.csv and write DIR/table3.md, DIR/table3.csv and the "
                    "figures (fig2_dr.png, fig4_q.png, fig5_fc.png, fig_qb.png) of the "
                    "experiments present; print Table 3 and the best compression within "
                    "1 % of the score. The authors' published curves (VGG-M, VOC 2007) are "
                    "drawn dashed beside ours.")
    parser.add_argument("directory", metavar="DIR", help="sweep folder (dnnstress sweep --out)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--authors", metavar="PATH",
                        help="folder of the authors' result CSVs, named as theirs "
                             "('(DR-1) VGG-M [VOC 2007].csv', ...) (default: "
                             "$DNNSTRESS_AUTHORS_RESULTS if set, else the copy shipped "
                             "with dnnstress)")
    source.add_argument("--no-authors", action="store_true",
                        help="do not draw the authors' curves")
    parser.add_argument("--losses", type=_parse_losses, default="1,2,3,4,5", metavar="LIST",
                        help="Table 3 loss columns in percent (default %(default)s)")
    parser.add_argument("--json", metavar="FILE",
                        help="also write the report as JSON to FILE, with the dnnstress "
                             "version, date, machine and these options; '-' writes only "
                             "JSON to standard output (the table goes to standard error)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    authors = False if args.no_authors else args.authors
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = write_report(args.directory, authors=authors, losses=args.losses)
    notes = [str(warning.message) for warning in caught]
    for note in notes:
        print(f"dnnstress report: warning: {note}", file=sys.stderr)
    human = sys.stderr if args.json == "-" else sys.stdout
    print(format_summary(summary), file=human)
    print("Wrote " + ", ".join(summary["files"]), file=human)
    if args.json:
        params = {"directory": args.directory, "losses": args.losses,
                  "authors": False if args.no_authors
                  else str(args.authors or default_authors_dir())}
        text = json.dumps({**run_info("report", params), **summary, "warnings": notes},
                          indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text)
    return 0


def _parse_losses(text: str) -> tuple[float, ...]:
    """'1,2,3' (percent) -> (0.01, 0.02, 0.03)."""
    try:
        losses = tuple(float(item) / 100 for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"losses must be numbers in percent, got {text!r}")
    if not losses or any(not 0 <= loss < 1 for loss in losses):
        raise argparse.ArgumentTypeError(f"losses must be in [0, 100) percent, got {text!r}")
    return losses
