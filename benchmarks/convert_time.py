"""Converting the installed diffusers' StableDiffusionPipeline, measured against parsing it with LibCST.

    .venv/bin/python benchmarks/convert_time.py [--repeat 5]

In one run (so the ratio holds on a busy machine) it times `libcst.parse_module` of the source and the whole
in-process `convert` of it (parse, analysis, emit, formatting), alternating the two, and prints their medians and
ratio (target <= 5). Then the in-process time of each pass (parse+analyze, emit+format), peak Python memory, and
the CLI's end-to-end wall time (a fresh process, imports included), which the foundation issue bounds at 2 s.
The ratio is also given in CPU time (the formatter's processes included), which a busy machine stretches less.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import libcst

from modularize.convert import ConvertOptions, convert, generator_string, plan_for
from modularize.emit.package import emit_package
from modularize.frontend.source_file import installed_diffusers_file, read_source

RATIO_TARGET = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    path = installed_diffusers_file("pipelines/stable_diffusion/pipeline_stable_diffusion.py")
    source = read_source(str(path))
    options = ConvertOptions(path=str(path), label=source.label, module_name=source.module_name)

    convert(source.text, options)  # warm up: imports, caches, the formatter's first start
    parse_times, convert_times, parse_cpu, convert_cpu = [], [], [], []
    for _ in range(args.repeat):
        started, cpu_started = time.perf_counter(), _cpu()
        libcst.parse_module(source.text)
        parse_times.append(time.perf_counter() - started)
        parse_cpu.append(_cpu() - cpu_started)
        started, cpu_started = time.perf_counter(), _cpu()
        convert(source.text, options)
        convert_times.append(time.perf_counter() - started)
        convert_cpu.append(_cpu() - cpu_started)

    analyze_times, emit_times = [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        plan = plan_for(source.text, options)
        analyzed = time.perf_counter()
        emit_package(plan, source.text, generator_string(options))
        analyze_times.append(analyzed - started)
        emit_times.append(time.perf_counter() - analyzed)

    tracemalloc.start()
    emit_package(plan_for(source.text, options), source.text, generator_string(options))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    cli_times = []
    with tempfile.TemporaryDirectory() as directory:
        for index in range(args.repeat):
            out = Path(directory) / f"out{index}"
            command = [sys.executable, "-m", "modularize.cli", str(path), "-o", str(out), "-q"]
            started = time.perf_counter()
            subprocess.run(command, check=True)
            cli_times.append(time.perf_counter() - started)

    parse_ms = statistics.median(parse_times) * 1000
    convert_ms = statistics.median(convert_times) * 1000
    print(f"source: {source.label} ({len(source.text.splitlines())} lines), {args.repeat} runs, medians")
    print(f"  libcst.parse_module  {parse_ms:8.1f} ms")
    print(f"  convert (in-process) {convert_ms:8.1f} ms")
    print(f"  ratio                {convert_ms / parse_ms:8.1f}    (target <= {RATIO_TARGET:g})")
    print(f"  ratio in CPU time    {statistics.median(convert_cpu) / statistics.median(parse_cpu):8.1f}")
    print(f"  parse + analyze      {statistics.median(analyze_times) * 1000:8.1f} ms")
    print(f"  emit + format        {statistics.median(emit_times) * 1000:8.1f} ms")
    print(f"  peak Python memory   {peak / 2**20:8.1f} MiB (tracemalloc, one conversion)")
    print(f"  CLI end to end       {statistics.median(cli_times) * 1000:8.1f} ms (fresh process; target < 2000 ms)")


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the formatter)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
