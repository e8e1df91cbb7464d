"""``dnnstress report DIR``: Table 3, the paper's figures, the headline and the rate-score
frontier of a sweep; of every sweep of a campaign, and the campaign's cross-sweep figures
and combined table."""

from __future__ import annotations

import argparse
import sys
import warnings

from dnnstress.authors import default_authors_dir
from dnnstress.commands._common import add_json_argument, add_quiet_argument, \
    human_output, params_of, write_json
from dnnstress.campaign_report import format_campaign_summary, is_campaign, \
    write_campaign_report
from dnnstress.report import format_summary, write_report


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "report", help="write Table 3, the figures and the frontier of a sweep or campaign",
        description="Read DIR/results.csv and write DIR/table3.md, DIR/table3.csv and the "
                    "figures (fig2_dr.png, fig4_q.png, fig5_fc.png, fig_qb.png) of the "
                    "experiments present, and for each score column the rate-score figure "
                    "and frontier table (rate_score_COLUMN.png, frontier_COLUMN.csv/.json/"
                    ".md); print Table 3, the best compression within 1 % of the score and "
                    "the best configuration within 1, 2 and 4 bits per dimension. The "
                    "authors' published curves (VGG-M, VOC 2007) are drawn dashed beside "
                    "ours. A campaign folder (DIR/campaign.json) gets every sweep's report "
                    "in its folder, plus Fig. 3 per data set (fig3_dr_*.png), the score per "
                    "layer (layers_*.png) and campaign_table.csv/.json/.md.")
    parser.add_argument("directory", metavar="DIR",
                        help="sweep folder (dnnstress sweep --out) or campaign folder")
    add_authors_arguments(parser)
    parser.add_argument("--losses", type=_parse_losses, default="1,2,3,4,5", metavar="LIST",
                        help="Table 3 loss columns in percent (default %(default)s)")
    add_json_argument(parser, what="the report (Table 3, the headline, the files written)")
    add_quiet_argument(parser)
    parser.set_defaults(func=run)
    return parser


def add_authors_arguments(parser) -> None:
    """``--authors DIR`` / ``--no-authors``, for every command that draws the figures."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--authors", metavar="DIR",
                        help="folder of the authors' result CSVs to draw dashed, named as "
                             "theirs ('(DR-1) VGG-M [VOC 2007].csv', ...) (default: "
                             "$DNNSTRESS_AUTHORS_RESULTS if set, else the copy shipped "
                             "with dnnstress)")
    source.add_argument("--no-authors", action="store_true",
                        help="do not draw the authors' curves")


def authors_choice(args):
    """The ``authors=`` of :func:`dnnstress.report.write_report` for these arguments."""
    return False if args.no_authors else args.authors


def run(args) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        campaign = is_campaign(args.directory)
        write, summarize = ((write_campaign_report, format_campaign_summary) if campaign
                            else (write_report, format_summary))
        summary = write(args.directory, authors=authors_choice(args), losses=args.losses)
    notes = [str(warning.message) for warning in caught]
    for note in notes:
        print(f"dnnstress report: warning: {note}", file=sys.stderr)
    with human_output(args):
        print(summarize(summary))
        print("Wrote " + ", ".join(summary["files"]))
    authors = False if args.no_authors else str(args.authors or default_authors_dir())
    params = {**params_of(args, leave_out=("no_authors", "no_progress")), "authors": authors}
    write_json(args, "report", params, {**summary, "warnings": notes})
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
