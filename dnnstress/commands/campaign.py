"""``dnnstress campaign CAMPAIGN.toml --out DIR``: many sweeps (features x grids) in one run."""

from __future__ import annotations

from dnnstress.campaign import Campaign
from dnnstress.commands._common import (add_cluster_arguments, add_json_argument,
                                        add_out_argument, add_quiet_argument,
                                        add_threads_argument, human_output, output_folder,
                                        params_of, show_progress, write_json)
from dnnstress.devices import DEVICES


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "campaign", help="run every (features, experiment grid) sweep a campaign file names",
        description="Run a campaign (a TOML file naming features files or extraction "
                    "recipes and experiment grids, see docs/campaigns.md): each (features, "
                    "grid) pair is a sweep in DIR/<features>.<grid>/, listed with its "
                    "status in DIR/campaign.json. Rerunning the same command skips the "
                    "finished sweeps and resumes the others.")
    parser.add_argument("campaign", metavar="CAMPAIGN.toml", help="campaign file")
    add_out_argument(parser, what="campaign.json, one folder per sweep and features/")
    add_cluster_arguments(parser)
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    add_threads_argument(parser)
    add_quiet_argument(parser)
    add_json_argument(parser, what="a summary of the run (sweeps run and skipped, rows)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    output_folder(args.out, create=False)
    campaign = Campaign.load(args.campaign)  # every check before any work
    with human_output(args):
        done = campaign.run(args.out, device=args.device, scheduler=args.scheduler,
                            workers=args.workers, progress=show_progress(args))
        print(f"{len(done.ran)} sweep(s) run, {len(done.skipped)} already done, "
              f"{done.rows_written} row(s) written -> {done.json_path}")
    write_json(args, "campaign", params_of(args),
               {"sweeps_run": done.ran, "sweeps_skipped": done.skipped,
                "rows_written": done.rows_written, "campaign_json": str(done.json_path)})
    return 0
