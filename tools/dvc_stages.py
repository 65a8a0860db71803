"""Write dvc.yaml from the Kedro project itself, so the two cannot drift (`make dvc`).

One DVC stage per Kedro pipeline (`kedro run --pipelines=<name>`). For each:
- code deps: every module of the package that `kedro run --pipelines=<name>` may run,
  found by following the import statements (lazy ones inside functions too) from the Kedro
  glue (settings, pipeline registry; not into the other pipelines it registers), the
  pipeline's package, the dataset classes the catalog names and, where evaluation runs, the
  entry points lmms-eval loads; a folder is listed when all its modules are needed;
- config deps: the catalog, the DeepSpeed configs, `conf/local` (a user's own overrides;
  `.dvcignore` hides credentials), and the lock file (another environment computes other
  numbers);
- params: the `params:` inputs of the pipeline's nodes, as keys of the file that declares them;
- data deps and outs: the paths the catalog gives the pipeline's inputs and outputs; a
  node's working folder (a stage's checkpoints, resumable shards) is an out.

    python tools/dvc_stages.py            # write dvc.yaml
    python tools/dvc_stages.py --check    # exit 1 if dvc.yaml is not what would be written

Run it from the project's virtual environment (it loads the project's pipelines).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml

from sail_pipeline.identity import import_closure, module_file

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "sail_pipeline"
SRC = ROOT / "src"
DVC_FILE = ROOT / "dvc.yaml"
# The Kedro pipelines that are DVC stages, in the order they run.
STAGES = ("data", "backbones", "curation", "captioning", "quality", "pretrain", "sft",
          "evaluation", "scaling", "selection")
# Libraries of the experiment pipelines, and the stages that run them (the registry imports
# every pipeline, so without this every stage would depend on every experiment's code).
LIBRARIES = {f"{PACKAGE}.experiments": ("scaling", "selection")}
# Inputs a stage reads when they exist and does without when not: not a dependency, or
# `dvc repro scaling` would first run the whole selection stage (the sweep's report adds the
# schedule experiment's verdict only when that has run).
OPTIONAL_INPUTS = {"scaling": ("selection_schedule_points",)}
# Imported by every `kedro run` before any pipeline: the project's settings and registry.
GLUE = (f"{PACKAGE}.settings", f"{PACKAGE}.pipeline_registry", f"{PACKAGE}.__main__")
CONFIG_DEPS = ("conf/base/catalog.yml", "conf/base/globals.yml", "conf/base/deepspeed",
               "conf/local", "requirements/lock-cpu.txt")
# Working folders kept between runs: DVC deletes a stage's outs before it runs, and these hold
# the shards a killed run resumes from (one subfolder per caption identity).
PERSIST = ("reference_caption_shards", "recaption_shards", "captioner_heldout_shards",
           "quality_signal_cache", "scaling_store", "selection_store")
HEADER = """\
# Written by tools/dvc_stages.py from the Kedro pipelines, the catalog and the import graph
# (`make dvc`); tests/test_dvc.py fails when it is out of date. Do not edit by hand.
# One stage per Kedro pipeline: DVC reruns a stage only when its code, its parameters or its
# inputs changed. `kedro run` records what it ran in dvc.lock (sail_pipeline.glue.hooks), so after
# `make run`, `dvc status` is clean. `dvc exp run -S conf/base/parameters_sft.yml:sft.knowledge.lr=5e-4`
# runs an experiment. Run from an activated .venv (`source .venv/bin/activate`).
"""


# --- the import graph: sail_pipeline.identity walks it, for DVC and for point identities --------


def catalog_modules() -> set[str]:
    """Modules whose dataset classes the catalog names (`type: sail_pipeline.glue.io.X`)."""
    text = (ROOT / "conf/base/catalog.yml").read_text()
    return {".".join(name.split(".")[:-1]) for name in
            re.findall(rf"type:\s*({PACKAGE}\.[\w.]+)", text)}


def _other_pipelines(stage: str) -> tuple[str, ...]:
    """The packages of every other pipeline, and the experiment libraries it does not run."""
    folder = SRC / PACKAGE / "pipelines"
    others = tuple(f"{PACKAGE}.pipelines.{p.name}" for p in sorted(folder.iterdir())
                   if (p / "__init__.py").exists() and p.name != stage)
    return others + tuple(library for library, users in LIBRARIES.items() if stage not in users)


def stage_modules(stage: str) -> set[str]:
    # The registry imports every pipeline to register it, but a stage runs only its own: a
    # change to the sweep's report must not make `dvc status` call the whole chain stale.
    # What the stage's own pipeline imports (the recipe template, shared helpers) is followed.
    return (import_closure(GLUE, skip=_other_pipelines(stage))
            | import_closure([f"{PACKAGE}.pipelines.{stage}", *catalog_modules()]))


def covered(path: Path, deps: Iterable[str]) -> bool:
    relative = path.relative_to(ROOT).as_posix()
    return any(relative == dep or relative.startswith(dep.rstrip("/") + "/") for dep in deps)


def compress(files: set[Path]) -> list[str]:
    """Files as DVC deps: a folder where every module under it is needed, else the files."""
    chosen: list[str] = []
    package_root = SRC / PACKAGE

    def visit(folder: Path) -> None:
        modules = sorted(folder.rglob("*.py"))
        modules = [m for m in modules if "__pycache__" not in m.parts]
        if modules and all(m in files for m in modules):
            chosen.append(folder.relative_to(ROOT).as_posix())
            return
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and entry.name != "__pycache__":
                visit(entry)
            elif entry in files:
                chosen.append(entry.relative_to(ROOT).as_posix())

    visit(package_root)
    return chosen


# --- the pipelines and the catalog -------------------------------------------------------------


def _project() -> tuple[dict, object]:
    from kedro.config import OmegaConfigLoader
    from kedro.framework.project import configure_project
    from kedro.io import DataCatalog

    sys.path.insert(0, str(SRC))
    configure_project(PACKAGE)
    from sail_pipeline.glue.project import load_project
    from sail_pipeline.pipeline_registry import register_pipelines

    loader = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env="local")
    # The pipelines built from parameters (the sweep's points, the SFT candidate sets, the
    # selection experiments) come from the committed ones (conf/base), not a user's
    # conf/local, so dvc.yaml is the same on every machine.
    project = load_project("base", ROOT)
    return register_pipelines(project), DataCatalog.from_config(loader["catalog"])


def dataset_path(catalog: object, name: str) -> str | None:
    dataset = catalog.get(name)  # type: ignore[attr-defined]
    if dataset is None:
        return None
    described = dataset._describe()
    path = described.get("filepath") or described.get("path")
    return None if path is None else Path(str(path)).as_posix()


def _param_files() -> dict[str, Path]:
    """Top-level parameter key -> the conf/base file that declares it."""
    files = {}
    for path in sorted((ROOT / "conf/base").glob("parameters*.yml")):
        for key in yaml.safe_load(path.read_text()) or {}:
            files[key] = path
    return files


def _declared(path: Path, key: str) -> bool:
    node = yaml.safe_load(path.read_text())
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _params(names: Iterable[str]) -> list[dict[str, list[str]]]:
    files = _param_files()
    by_file: dict[Path, set[str]] = {}
    for name in names:
        key = name.removeprefix("params:")
        path = files.get(key.split(".")[0])
        if path is None:
            continue
        while "." in key and not _declared(path, key):  # a default of the schema: its parent
            key = key.rsplit(".", 1)[0]
        by_file.setdefault(path, set()).add(key)
    out = []
    for path in sorted(by_file):
        keys = sorted(by_file[path])
        # a key inside another listed key adds nothing
        keys = [k for k in keys if not any(k.startswith(other + ".") for other in keys)]
        out.append({path.relative_to(ROOT).as_posix(): keys})
    return out


def _folders(pipeline: object, catalog: object) -> dict[str, str]:
    """The pipeline's working folders (inputs that load as a folder path), by dataset name."""
    return {name: path for name in sorted(pipeline.inputs())  # type: ignore[attr-defined]
            if type(catalog.get(name)).__name__ == "FolderDataset"  # type: ignore[attr-defined]
            for path in [dataset_path(catalog, name)] if path}


def _within(path: str, folders: Iterable[str]) -> str | None:
    return next((f for f in folders if path == f or path.startswith(f + "/")), None)


def build() -> dict:
    pipelines, catalog = _project()
    every_folder = {p for stage in STAGES for p in _folders(pipelines[stage], catalog).values()}
    stages = {}
    for stage in STAGES:
        pipeline = pipelines[stage]
        folders = _folders(pipeline, catalog)
        # An input inside another stage's working folder (a checkpoint pointer) depends on
        # that whole folder: the weights beside the pointer are what the stage reads.
        data_deps = set()
        for name in pipeline.inputs():
            path = None if name.startswith("params:") or name in folders or \
                name in OPTIONAL_INPUTS.get(stage, ()) else dataset_path(catalog, name)
            if path:
                data_deps.add(_within(path, every_folder) or path)
        # every dataset the pipeline writes, those its own later nodes read included
        # A namespaced instance's output (a sweep point's result) is one file of many in its
        # folder, and which ones exist depends on the parameters: the folder is the out.
        outs = {name: dataset_path(catalog, name) for name in sorted(pipeline.all_outputs())}
        outs = {name: str(Path(path).parent.as_posix()) if path and "." in name else path
                for name, path in outs.items()}
        own = list(folders.values())
        plain = sorted({p for n, p in outs.items() if p and not n.endswith("_metrics")
                        and not _within(p, own)} | set(own))
        # a file inside another out (a table beside a stage's plots) is covered by it
        plain = [p for p in plain if not _within(p, [q for q in plain if q != p])]
        metrics = sorted({p for n, p in outs.items() if p and n.endswith("_metrics")})
        persist = {folders[n] for n in PERSIST if n in folders}
        files = {module_file(m) for m in stage_modules(stage)}
        entry = {
            "cmd": f"kedro run --pipelines={stage}",
            "deps": [*sorted(data_deps), *compress({f for f in files if f}), *CONFIG_DEPS],
            "params": _params(n for n in pipeline.inputs() if n.startswith("params:")),
            "outs": [{p: {"persist": True}} if p in persist else p for p in plain],
        }
        if metrics:
            # Cached: data/ is not in git, and a queued `dvc exp run` can only carry its
            # metrics back through DVC's cache (an uncached metric would need a git commit).
            entry["metrics"] = list(metrics)
        stages[stage] = entry
    return {"stages": stages}


def render() -> str:
    return HEADER + yaml.safe_dump(build(), sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if dvc.yaml differs from what would be written")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if DVC_FILE.read_text() != text:
            print("dvc.yaml is out of date with the pipelines, catalog or imports: run "
                  "`make dvc`", file=sys.stderr)
            return 1
        print("dvc.yaml is up to date")
        return 0
    DVC_FILE.write_text(text)
    print(f"wrote {DVC_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
