"""`sail-sweep-commands`: the sweep as shell commands, one per line, for a cluster scheduler.

    sail-sweep-commands [--env ENV] > points.txt

Line 1 makes the pools (run it once, first); then one line per point (run them concurrently:
a Slurm array, Ray job submission); the last line fits whatever finished. The sweep is the
`scaling` section of the parameters of `--env` (default: base + local), validated as
`kedro run` validates it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from sail_pipeline.experiments.scaling.plan import plan_points, sweep_commands


def configured_commands(project: Path, env: str | None) -> list[str]:
    from sail_pipeline.glue.project import load_project

    sweep = load_project(env, project).scaling
    if sweep is None:
        raise SystemExit("no `scaling` section in the parameters (conf/base/parameters_scaling.yml)")
    return sweep_commands(plan_points(sweep), env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--env", default=None, help="Kedro environment (conf/<env>)")
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="project root")
    args = parser.parse_args(argv)
    # Kedro announces its logging setup on stdout when it loads; stdout is for the commands.
    with contextlib.redirect_stdout(sys.stderr):
        commands = configured_commands(args.project, args.env)
    print("\n".join(commands))
    return 0


if __name__ == "__main__":
    sys.exit(main())
