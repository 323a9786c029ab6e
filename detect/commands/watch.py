"""`detect watch site.yaml`: flags from `SiteSettings`' declarations (a flag given overrides the
site file's key), status lines on stderr, the summaries on stdout (with the counting figures of
each camera whose ground truth the site names); exit 1 when a camera failed."""

from __future__ import annotations

import argparse
import json
import sys

from detect.commands.flags import add_flags, given_flags
from detect.errors import DataError
from detect.watch import SiteSettings, read_site, watch


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, SiteSettings)


def run(args: argparse.Namespace) -> int:
    site = read_site(args.site, given_flags(SiteSettings, args))
    result = watch(site, site.settings.status_every)
    for name, summary in result.summaries.items():
        print(f"camera {name}:")
        for text in summary.lines():
            print(f"  {text}")
        if name in result.counting_scores:  # pycocotools (eval extra) only for a site with truth
            from detect.metrics.counting import counting_table

            print("  against its ground truth:")
            for text in counting_table(result.counting_scores[name]).splitlines():
                print(f"    {text}")
    totals = result.as_dict()
    print(
        f"site: {len(result.summaries)} cameras, {totals['frames_processed']} frames processed in "
        f"{totals['seconds']:.1f} s ({totals['fps']:.2f} frames/s), {result.events} events"
    )
    for name, report in result.sinks.items():
        line = f"sink {name}: {report['delivered']} events delivered"
        if report["refused"]:
            line += f", {report['refused']} refused for good (kept in the outbox's failures)"
        if report["left"]:
            line += f"; {report['left']} not yet delivered, kept in {site.outbox} for the next run"
        print(line)
    outputs = [str(p) for p in (site.events, site.summary) if p is not None]
    if site.settings.sinks:
        outputs.append(str(site.outbox))
    outputs += [str(p) for c in site.cameras for p in (c.jsonl, c.out_video) if p is not None]
    if outputs:
        print("outputs: " + ", ".join(outputs))
    for name, error in result.errors.items():
        print(f"error: camera {name}: {error}", file=sys.stderr)
    if site.summary is not None:
        try:
            site.summary.parent.mkdir(parents=True, exist_ok=True)
            site.summary.write_text(json.dumps(totals, indent=2))
        except OSError as exc:
            raise DataError(f"summary {site.summary}: cannot write it ({exc.strerror})") from None
    return 1 if result.errors else 0
