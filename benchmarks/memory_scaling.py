"""How peak memory scales with batch size, image size and prompt length (issue #25).

    python benchmarks/memory_scaling.py              # the table the docs quote
    python benchmarks/memory_scaling.py --quick      # a smaller grid (the test runs it)

Each case runs in a fresh process, so its peak resident memory (the kernel's high-water mark)
is its own: load the tiny VLM (the embedded default's shapes) and caption one batch of
`batch` images of `side` x `side` pixels with prompts whose alt-text is `alt_chars` long,
through the same `LocalBackend` recaptioning uses. Prompts run capped, as the pipeline runs
them (`captioning.recaption.max_alt_text_chars`); the `uncapped` rows put the whole alt-text
in the prompt, as before issue #25, to show what the cap bounds. The figure printed last is the
ratio of the largest uncapped peak to the same case capped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CASE = r"""
import io, json, sys
import numpy as np
from PIL import Image
from sail_pipeline.captioning.backends import CaptionItem, LocalBackend
from sail_pipeline.captioning.recaptioning import build_prompt
from sail_pipeline.modeling.inference import VLMGenerator
from sail_pipeline.modeling.presets import build_vlm, get_preset
from sail_pipeline.modeling.processor import VLProcessor
from sail_pipeline.modeling.tokenizer import train_tokenizer
from sail_pipeline.process_stats import peak_rss_mb, reset_peak_rss
from sail_pipeline.schema import RecaptionParams

batch, side, alt_chars, capped = json.loads(sys.argv[1])
words = ["red", "blue", "circle", "square", "two", "three", "a", "photo", "of", "the"]
tokenizer = train_tokenizer([" ".join(words)] * 200, 512)
preset = get_preset("tiny")
generator = VLMGenerator(build_vlm(preset, tokenizer, seed=0),
                         VLProcessor(tokenizer, preset.image_settings()), batch_size=batch)
settings = RecaptionParams(backend="local", max_alt_text_chars=300 if capped else 10**9)
alt = ("a photo of two red circles " * (alt_chars // 27 + 1))[:alt_chars]
rng = np.random.default_rng(0)
items = []
for i in range(batch):
    pixels = rng.integers(0, 256, (max(1, side // 16), max(1, side // 16), 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((side, side), Image.NEAREST).save(buffer, format="PNG")
    items.append(CaptionItem(str(i), buffer.getvalue(), build_prompt(alt, settings)[0]))
# Budget the context by the model's own limit unless uncapped (the old behaviour).
if not capped:
    generator.context_length = 10**9
before = peak_rss_mb()
reset_peak_rss()
outcomes = LocalBackend(generator, max_new_tokens=8).caption(items)
print(json.dumps({"model_mib": before, "peak_mib": peak_rss_mb(),
                  "captioned": sum(o.ok for o in outcomes),
                  "failed": sorted({o.error.split(":")[0] for o in outcomes if not o.ok})}))
"""


def run_case(batch: int, side: int, alt_chars: int, capped: bool) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "case.py"
        script.write_text(CASE)
        done = subprocess.run([sys.executable, str(script),
                               json.dumps([batch, side, alt_chars, capped])],
                              capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        return {"peak_mib": float("nan"), "model_mib": float("nan"), "captioned": 0,
                "failed": [f"exit {done.returncode}: {done.stderr.strip()[-200:]}"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid (seconds)")
    args = parser.parse_args(argv)
    if args.quick:
        cases = [(8, 64, 20_000, True), (8, 64, 2_000, False)]
    else:
        cases = [(b, 64, 100, True) for b in (8, 32, 128)]
        cases += [(32, s, 100, True) for s in (256, 1024, 2048)]
        cases += [(32, 64, n, True) for n in (1_000, 100_000)]
        cases += [(32, 64, n, False) for n in (1_000, 4_000)]
    print("| batch | image side (px) | alt-text chars | prompt | peak MiB | of which model "
          "and libraries | captioned | failed |")
    print("|---|---|---|---|---|---|---|---|")
    peaks = {}
    for batch, side, alt_chars, capped in cases:
        row = run_case(batch, side, alt_chars, capped)
        peaks[(batch, side, alt_chars, capped)] = row["peak_mib"]
        print(f"| {batch} | {side} | {alt_chars} | {'capped' if capped else 'uncapped'} | "
              f"{row['peak_mib']:.0f} | {row['model_mib']:.0f} | {row['captioned']} | "
              f"{', '.join(row['failed']) or '-'} |", flush=True)
    uncapped = max((case for case in peaks if not case[3]), key=lambda case: case[2])
    capped_peak = peaks.get((*uncapped[:3], True)) or run_case(*uncapped[:3], True)["peak_mib"]
    print(f"uncapped/capped peak memory at batch {uncapped[0]}, alt-text {uncapped[2]} chars: "
          f"{peaks[uncapped] / capped_peak:.2f}x ({peaks[uncapped]:.0f} vs {capped_peak:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
