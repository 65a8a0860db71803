import json

import numpy as np
import pandas as pd
import pytest
import torch

from sail_pipeline.modeling.presets import build_vlm, get_preset
from sail_pipeline.modeling.processor import VLProcessor
from sail_pipeline.modeling.tokenizer import IMG_CONTEXT
from sail_pipeline.training.data import ConversationData
from sail_pipeline.training.packing import (
    IGNORE_INDEX,
    TokenBatches,
    TokenSample,
    best_fit,
    collate,
    padding_efficiency,
)
from sail_pipeline.training.train import SupervisedLM


def _samples(lengths, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        ids = rng.integers(10, 100, n).tolist()
        labels = [IGNORE_INDEX] * (n // 2) + ids[n // 2:]
        out.append(TokenSample(ids, labels))
    return out


def test_best_fit_places_every_sample_once_within_capacity():
    lengths = np.random.default_rng(1).integers(40, 150, 500)
    rows = best_fit(lengths, np.arange(500), capacity=256)
    placed = sorted(i for row in rows for i in row)
    assert placed == list(range(500))
    assert max(lengths[row].sum() for row in rows) <= 256
    assert lengths.sum() / (256 * len(rows)) > 0.94
    with pytest.raises(ValueError, match="more than the row's 256"):
        best_fit([300], [0], capacity=256)


def test_packed_rows_restart_positions_and_never_predict_across_samples():
    a, b = _samples([5, 7])
    batch = collate([[a, b]], pad_id=0, norm="token", packed=True)
    assert batch["position_ids"][0].tolist() == list(range(5)) + list(range(7))
    assert "attention_mask" not in batch
    targets = batch["targets"][0].tolist()
    # The last token of each sample predicts nothing; inside, token j predicts j+1.
    assert targets[4] == IGNORE_INDEX and targets[11] == IGNORE_INDEX
    assert targets[5:11] == b.labels[1:]


@pytest.mark.parametrize("norm", ["token", "sample", "square"])
def test_loss_normalisation_weights(norm):
    short, long = _samples([6, 30])
    weights = collate([[short, long]], 0, norm, packed=True)["loss_weights"][0]
    n_short, n_long = int((weights[:6] > 0).sum()), int((weights[6:] > 0).sum())
    share_short, share_long = float(weights[:6].sum()), float(weights[6:].sum())
    expected = {"token": n_short / n_long, "sample": 1.0,
                "square": (n_short / n_long) ** 0.5}[norm]
    assert share_short / share_long == pytest.approx(expected)


@pytest.mark.parametrize("preset_name", ["tiny", "llava-tiny"])
def test_packing_gives_each_sample_the_losses_it_has_alone(preset_name, world_tokenizer,
                                                           small_world):
    """Three image conversations in one packed row: no attention, image or target leaks."""
    preset = get_preset(preset_name)
    processor = VLProcessor(world_tokenizer, preset.image_settings())
    conversations = small_world.conversations.head(3)
    table = pd.DataFrame({"id": conversations["id"],
                          "image": [small_world.scenes["image"].iloc[i] for i in range(3)],
                          "messages": conversations["messages"]})
    data = ConversationData(table, processor, max_seq_len=512)
    model = SupervisedLM(build_vlm(preset, world_tokenizer, seed=0)).eval()
    model.net.set_attn_implementation("sdpa")
    pad = world_tokenizer.pad_token_id

    def losses(rows, packed):
        batch = collate(rows, pad, "token", packed=packed)
        batch["pixel_values"] = torch.cat([data.pixels(s) for row in rows for s in row])
        with torch.no_grad():
            return model.token_losses(**batch)[0]

    together = losses([data.samples], packed=True)
    apart = torch.cat([losses([[s]], packed=False) for s in data.samples])
    torch.testing.assert_close(together, apart, atol=2e-5, rtol=1e-4)
    image_token = world_tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
    packed_ids = collate([data.samples], pad, "token", packed=True)["input_ids"]
    assert int((packed_ids == image_token).sum()) == 3 * preset.tokens_per_tile


def test_token_batches_are_a_function_of_seed_and_step():
    samples = _samples(np.random.default_rng(2).integers(20, 90, 300).tolist())
    plan = TokenBatches(samples, rows=4, world_size=2, seed=7, packed=True, max_seq_len=256)
    epoch = plan.rows_per_epoch
    stream = [plan.row_indices(k, rank) for k in range(epoch // 8 + 2) for rank in (0, 1)]
    first_epoch = [i for rows in stream for row in rows for i in row][:300]
    assert sorted(first_epoch) == list(range(300))  # every sample once per epoch
    fresh = TokenBatches(samples, rows=4, world_size=2, seed=7, packed=True, max_seq_len=256)
    assert fresh.row_indices(5, 1) == plan.row_indices(5, 1)  # what a resumed run sees
    assert plan.row_indices(0, 0) != plan.row_indices(0, 1)
    # The token budget converts to steps through the packed epoch's real length.
    tokens_per_step = plan.mean_tokens_per_row() * 4 * 2 * 3
    assert plan.steps_for_tokens(int(tokens_per_step * 10), grad_accum=3) == 10


def test_micro_batches_stay_even_across_epochs_whose_rows_do_not_fill_a_step():
    """Instruction-like lengths (67-123 tokens, 2-3 a row): the sorted chunks must stay
    aligned with the steps. A partial step shuffled into an epoch's middle put 0.944 real
    tokens into the batches instead of 0.997."""
    samples = _samples(np.random.default_rng(4).integers(67, 124, 2000).tolist())
    plan = TokenBatches(samples, rows=12, world_size=1, seed=0, packed=True, max_seq_len=256)
    assert plan.rows_per_epoch % 12, "the case under test: a partial step per epoch"
    assert padding_efficiency(samples, 12, 0, True, 256, epochs=3) >= 0.99
    # Still every sample once per epoch, epochs back to back.
    for epoch in range(3):
        chunk = [plan._row(p) for p in range(plan._epoch_start(epoch),
                                             plan._epoch_start(epoch + 1))]
        assert sorted(i for row in chunk for i in row) == list(range(2000))


def test_packing_beats_padding_on_the_worlds_conversations(world_tokenizer, small_world):
    processor = VLProcessor(world_tokenizer, get_preset("tiny").image_settings())
    data = ConversationData(small_world.conversations.assign(
        image=[small_world.scenes["image"].iloc[0]] * len(small_world.conversations)),
        processor, max_seq_len=256)
    packed = padding_efficiency(data.samples, rows=4, seed=0, packed=True, max_seq_len=256)
    padded = padding_efficiency(data.samples, rows=16, seed=0, packed=False, max_seq_len=256)
    assert packed > 0.9 and packed > padded
    assert json.loads(small_world.conversations["messages"].iloc[0])  # real conversations


def test_gradient_checkpointing_changes_memory_not_gradients(world_tokenizer):
    torch.manual_seed(0)
    samples = _samples([30, 50, 20])
    batch = collate([samples], world_tokenizer.pad_token_id, "sample", packed=True)
    grads = []
    for checkpointing in (False, True):
        model = build_vlm(get_preset("tiny"), world_tokenizer, seed=0)
        model.set_attn_implementation("sdpa")
        if checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": False})
        network = SupervisedLM(model).train()
        network(**batch).backward()
        grads.append(model.lm_head.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
