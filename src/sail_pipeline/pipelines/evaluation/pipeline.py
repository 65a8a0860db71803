from kedro.pipeline import Pipeline, node

from sail_pipeline.pipelines.evaluation import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        node(nodes.evaluate_checkpoints,
             ["benchmark", "params:evaluation", "alignment_model", "advance_model",
              "knowledge_model", "instruction_model", "preference_model"],
             ["evaluation_scores", "evaluation_chart", "evaluation_report",
              "evaluation_metrics"],
             name="evaluate_checkpoints"),
    ])
