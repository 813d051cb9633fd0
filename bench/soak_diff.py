"""The allocators that grew between two ``tracemalloc`` snapshots of each soak worker
(``bench_soak.py --trace DIR``): the top lines by growth, and the top at each snapshot.

    .venv/bin/python bench/soak_diff.py DIR [--top 12]
"""

from __future__ import annotations

import argparse
import collections
import tracemalloc
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1]) + "/"


def where(stat: tracemalloc.Statistic | tracemalloc.StatisticDiff) -> str:
    frame = stat.traceback[0]
    return f"{frame.filename.replace(ROOT, '')}:{frame.lineno}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    by_pid: dict[str, list[Path]] = collections.defaultdict(list)
    for path in sorted(args.dir.glob("*.snap")):
        by_pid[path.stem.split("-")[0]].append(path)
    for pid, paths in sorted(by_pid.items()):
        if len(paths) < 2:
            continue
        first, last = (tracemalloc.Snapshot.load(str(p)) for p in (paths[0], paths[-1]))
        total = [sum(s.size for s in snap.statistics("filename")) for snap in (first, last)]
        mb = [t / 2**20 for t in total]
        print(f"\n### worker {pid}: {mb[0]:.1f} MB traced, then {mb[1]:.1f} MB")
        for name, snap in (("first", first), ("last", last)):
            print(f"\ntop at the {name} snapshot:\n\n| allocated at | MB | blocks |\n|---|---|---|")
            for stat in snap.statistics("lineno")[: args.top]:
                print(f"| {where(stat)} | {stat.size / 2**20:.2f} | {stat.count:,} |")
        print("\ngrowth between them:\n\n| allocated at | MB then | change MB | blocks change |")
        print("|---|---|---|---|")
        for stat in last.compare_to(first, "lineno")[: args.top]:
            print(
                f"| {where(stat)} | {(stat.size - stat.size_diff) / 2**20:.2f} | "
                f"{stat.size_diff / 2**20:+.2f} | {stat.count_diff:+,} |"
            )


if __name__ == "__main__":
    main()
