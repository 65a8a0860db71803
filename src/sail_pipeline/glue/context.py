"""The project's Kedro context: parameters validated once, nodes given the validated models.

Kedro adds a `params:<path>` dataset for every nested key of the parameters, descending into
pydantic models. This context hands Kedro the validated tree (`glue.project.load_project`,
the same function the pipeline registry and the tools call) instead of the raw dicts, so
`params:pretrain.alignment` is a `TrainParams` and `params:runtime` a `RuntimeParams`: nodes
take the narrowest part they need and never validate again. Each variant's merged tree sits
under its own name, which is the namespace its instance of the recipe runs in, so
`params:<variant>.sft.knowledge` is what that instance's node receives.
"""

from __future__ import annotations

from typing import Any

from kedro.framework.context import KedroContext

from sail_pipeline.glue.project import load_project
from sail_pipeline.schema import ProjectParams


def resolve_param(project: ProjectParams, dataset: str) -> Any:
    """What the `params:<path>` dataset holds for this tree, as the context hands it to nodes
    (a variant's name first: `params:<variant>.sft.knowledge`)."""
    node: Any = project
    parts = dataset.removeprefix("params:").split(".")
    if parts[0] in project.variants:
        node, parts = project.variants[parts[0]], parts[1:]
    for part in parts:
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


class ProjectContext(KedroContext):
    @property
    def project_params(self) -> ProjectParams:
        """The validated parameter tree of this context's environment and `--params`."""
        return load_project(self.env, self.project_path, self._runtime_params)

    def _get_validated_params(self) -> dict[str, Any]:
        # Replaces Kedro's own per-node validation from type hints: the whole tree is
        # validated once, with every bad key named, and the models themselves are returned.
        project = self.project_params
        tree: dict[str, Any] = {name: getattr(project, name)
                                for name in type(project).model_fields if name != "variants"}
        tree |= dict(project.variants)
        return tree
