"""The sweep's points: one per (variant, size, seed), each runnable alone."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from sail_pipeline.schema import ScalingParams

PIPELINE = "scaling"


@dataclass(frozen=True, order=True)
class Point:
    variant: str
    n: int
    seed: int

    @property
    def namespace(self) -> str:
        """The Kedro namespace of the point's nodes (and its MLflow instance tag)."""
        return f"{self.variant}_n{self.n}_s{self.seed}"

    @property
    def label(self) -> str:
        """What the MLflow UI shows as the point's run name."""
        return f"{self.variant} N={self.n} seed={self.seed}"


def size_label(n: int) -> str:
    """N as plots and reports print it: 4k, 1M, 1,700."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return f"{n:,}"


def sweep_description(params: ScalingParams) -> str:
    """What tells one sweep from another in its MLflow run name: variants, sizes, seeds."""
    variants = (",".join(params.variants) if len(params.variants) <= 3
                else f"{len(params.variants)} variants")
    sizes = sorted(params.sizes)
    seeds = sorted(params.seeds)
    seed_text = (f"seed {seeds[0]}" if len(seeds) == 1
                 else f"seeds {','.join(str(s) for s in seeds)}" if len(seeds) <= 3
                 else f"{len(seeds)} seeds")
    return (f"{variants} · N {size_label(sizes[0])}–{size_label(sizes[-1])} ({len(sizes)} sizes)"
            f" · {seed_text}")


def plan_points(params: ScalingParams) -> list[Point]:
    """Every point of the sweep: variants x sizes x seeds."""
    return [Point(variant, n, seed) for variant in params.variants for n in params.sizes
            for seed in params.seeds]


def point_command(point: Point, env: str | None = None) -> str:
    """The shell command that runs this point alone (a Slurm array line, a Ray job)."""
    args = ["kedro", "run", f"--pipelines={PIPELINE}", f"--namespaces={point.namespace}"]
    if env not in (None, "", "local", "base"):
        args.append(f"--env={env}")
    return shlex.join(args)


def _tagged_command(tag: str, env: str | None) -> str:
    args = ["kedro", "run", f"--pipelines={PIPELINE}", f"--tags={tag}"]
    if env not in (None, "", "local", "base"):
        args.append(f"--env={env}")
    return shlex.join(args)


def fit_command(env: str | None = None) -> str:
    """The command that gathers the finished points and fits them."""
    return _tagged_command("scaling_fit", env)


def sweep_commands(points: list[Point], env: str | None = None) -> list[str]:
    """The sweep as commands: the pools (once, first), one per point, then the fit."""
    return [_tagged_command("scaling_pool", env), *(point_command(p, env) for p in points),
            fit_command(env)]
