"""`modularize plan PIPELINE_FILE`: print every decision the converter makes, without writing anything."""

from __future__ import annotations

import sys

from ..errors import EXIT_OK
from .convert import conversion_options


def command_plan(args) -> int:
    from ..convert import plan_for
    from ..frontend.source_file import module_reader, read_source
    from ..planning.plan import plan_json, render_plan

    source = read_source(args.pipeline)
    plan = plan_for(source.text, conversion_options(args, source), module_reader(source.path))
    sys.stdout.write(plan_json(plan) + "\n" if args.json else render_plan(plan))
    return EXIT_OK
