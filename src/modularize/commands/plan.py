"""`modularize plan PIPELINE_FILE`: print every decision the converter makes, without writing anything."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import EXIT_OK
from .convert import conversion_options, family_sources


def command_plan(args) -> int:
    from ..convert import plan_for
    from ..frontend.source_file import module_reader, read_source
    from ..planning.plan import plan_json, render_plan

    if len(args.pipelines) > 1:
        return _family_plan(args)
    source = read_source(args.pipelines[0])
    plan = plan_for(source.text, conversion_options(args, source, args.pipelines[0]), module_reader(source.path))
    sys.stdout.write(plan_json(plan) + "\n" if args.json else render_plan(plan))
    return EXIT_OK


def _family_plan(args) -> int:
    """Several pipelines: each one's plan, then how they make one family (`planning.family`)."""
    from ..convert import plan_for
    from ..frontend.source_file import module_reader
    from ..planning.family import family_plan
    from ..planning.family_report import family_summary, render_family_plan

    sources = family_sources(args)
    reader = module_reader(Path(sources[0][1].path))
    family = family_plan([plan_for(text, options, reader) for text, options in sources])
    sys.stdout.write(json.dumps(family_summary(family), indent=2) + "\n" if args.json else render_family_plan(family))
    return EXIT_OK
