"""The chain as an SVG (docs/images/chain.svg, the README's and the site's picture).

The boxes come from the code, not a list kept here: the pipelines of plain `kedro run`
(`schema.CHAIN_PIPELINES`), and under the training pipelines their stages from the stage
registry. `tools/docs_reference.py` writes it with the other generated pages (`make
docs-reference`), and its `--check` in `make test` fails when the committed picture is stale.
"""

from __future__ import annotations

from html import escape

from sail_pipeline.schema import CHAIN_PIPELINES
from sail_pipeline.schema.stages import STAGES

BOX_W, BOX_H, GAP, TOP, LEFT = 118, 44, 26, 20, 10
# The experiments that rerun parts of the chain many times (their own pipelines).
EXPERIMENTS = (("variants", "the recipe once per named variant"),
               ("scaling", "pretrain + fixed SFT per (variant, N, seed) → law fits"),
               ("selection", "SFT per candidate set / mixture / schedule → analyses"))
COLOURS = {"data": "#e8eef7", "train": "#fdf0d5", "eval": "#e3f2e1", "experiment": "#f3e5f5"}


def _stages(pipeline: str) -> list[str]:
    group = pipeline.removesuffix("s") if pipeline == "backbones" else pipeline
    return [s.name for s in STAGES.values() if s.group == group]


def _box(x: float, y: float, w: float, h: float, fill: str, title: str,
         lines: list[str]) -> str:
    parts = [f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" fill="{fill}" '
             'stroke="#555" stroke-width="1"/>',
             f'<text x="{x + w / 2}" y="{y + 18}" text-anchor="middle" font-weight="bold">'
             f'{escape(title)}</text>']
    for i, line in enumerate(lines):
        parts.append(f'<text x="{x + w / 2}" y="{y + 34 + 14 * i}" text-anchor="middle" '
                     f'font-size="11">{escape(line)}</text>')
    return "\n".join(parts)


def render() -> str:
    stage_rows = max(len(_stages(p)) for p in CHAIN_PIPELINES)
    height_box = BOX_H + 14 * max(0, stage_rows - 1)
    width = LEFT * 2 + len(CHAIN_PIPELINES) * BOX_W + (len(CHAIN_PIPELINES) - 1) * GAP
    exp_y = TOP + height_box + 50
    height = exp_y + BOX_H + 20
    body = []
    for i, pipeline in enumerate(CHAIN_PIPELINES):
        x = LEFT + i * (BOX_W + GAP)
        stages = _stages(pipeline)
        kind = ("train" if stages else
                "eval" if pipeline == "evaluation" else "data")
        order = " → " if pipeline != "backbones" else ", "
        body.append(_box(x, TOP, BOX_W, height_box, COLOURS[kind], pipeline,
                         [stage + (order.rstrip() if j < len(stages) - 1 else "")
                          for j, stage in enumerate(stages)]))
        if i:
            y = TOP + height_box / 2
            body.append(f'<line x1="{x - GAP + 2}" y1="{y}" x2="{x - 4}" y2="{y}" '
                        'stroke="#333" stroke-width="1.5" marker-end="url(#arrow)"/>')
    exp_w = (width - 2 * LEFT - 2 * GAP) / len(EXPERIMENTS)
    for i, (name, what) in enumerate(EXPERIMENTS):
        x = LEFT + i * (exp_w + GAP)
        body.append(_box(x, exp_y, exp_w, BOX_H, COLOURS["experiment"], name, [what]))
    mid = LEFT + (width - 2 * LEFT) / 2
    body.append(f'<line x1="{mid}" y1="{TOP + height_box + 4}" x2="{mid}" y2="{exp_y - 6}" '
                'stroke="#777" stroke-dasharray="4 3" marker-end="url(#arrow)"/>')
    body.append(f'<text x="{mid + 8}" y="{(TOP + height_box + exp_y) / 2 + 4}" font-size="11" '
                'fill="#555">the same stages, run many times by the experiment engine</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="13">\n'
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker>'
            '</defs>\n<rect width="100%" height="100%" fill="white"/>\n'
            + "\n".join(body) + "\n</svg>\n")
