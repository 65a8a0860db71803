"""sail-pipeline: the SAIL-VL recipe as a Kedro + DeepSpeed + MLflow + DVC project."""

import warnings

# kedro-mlflow's KedroPipelineModel subclasses MLflow's PythonModel without type hints on
# `predict`, and MLflow warns about it (15 lines) when that class is defined, which is on every
# `kedro` command, `--help` included. We never log a pyfunc model: the warning is noise. Kedro
# imports this package (its settings) before kedro-mlflow's commands are loaded.
warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict` method",
                        category=UserWarning)
