"""Shared by the benchmark scripts: append a result table to a Markdown file with the
command that produced it and the machine it ran on."""
from __future__ import annotations

import datetime as dt
import platform
import sys

import psutil


def append_markdown(path: str, script: str, table: str) -> None:
    cmd = f"python bench/{script} " + " ".join(sys.argv[1:])
    with open(path, "a") as f:
        f.write(f"\n### {dt.date.today().isoformat()} — `{cmd}`\n\n{platform.node()}: {psutil.cpu_count()} cores, "
                f"{psutil.virtual_memory().total / 2**30:.0f} GB, Spark local[2]\n\n{table}")
