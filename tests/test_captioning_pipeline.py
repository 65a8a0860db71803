"""`kedro run --pipelines=captioning`: the reference set through an API, keyed by credentials."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from sail_pipeline.captioning.factory import caption_identity
from sail_pipeline.captioning.local_server import chat_reply, image_of, serve_canned
from sail_pipeline.pipelines.captioning.nodes import reference_set
from sail_pipeline.schema import CaptioningParams
from tests.project import run

SECRET = "sk-test-SECRET-7781"


@pytest.mark.slow
def test_reference_captions_through_an_api_with_kedro_credentials(project_copy):
    project = project_copy
    calls = {"n": 0}

    async def handler(body, request):
        calls["n"] += 1
        if calls["n"] == 3:  # one scripted client error: recorded, not retried, not fatal
            from aiohttp import web
            return web.json_response({"error": {"message": "bad image"}}, status=400)
        return chat_reply(f"a picture of {len(image_of(body))} bytes")

    with serve_canned(handler) as server:
        local = project / "conf" / "local"
        (local / "credentials.yml").write_text(yaml.safe_dump({"openai": {"api_key": SECRET}}))
        local_params = yaml.safe_load((local / "parameters.yml").read_text())
        local_params["captioning"]["reference"] = {
            "backend": "api", "size": 20, "batch_size": 8, "shard_size": 8,
            "api": {"base_url": server.base_url, "model": "canned", "max_retries": 1,
                    "backoff_s": 0.01}}
        (local / "parameters.yml").write_text(yaml.safe_dump(local_params))
        # Up to the reference captions (the world and backbones exist from the fixture's run).
        first = run(project, "kedro", "run", "--pipelines=curation,captioning",
                    "--to-nodes=reference_captions")
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        sent = len(server.received)
        captions = pd.read_parquet(project / "data/03_primary/reference_captions.parquet")
        failures = pd.read_parquet(
            project / "data/03_primary/reference_caption_failures.parquet")
        again = run(project, "kedro", "run", "--pipelines=captioning",
                    "--nodes=reference_captions")
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        resent = len(server.received) - sent

    assert len(captions) == 19 and len(failures) == 1
    assert failures["error"].iloc[0].startswith("http 400")
    assert captions["caption"].str.startswith("a picture of ").all()
    assert set(captions["id"]).isdisjoint(failures["id"])
    manifest = pd.read_parquet(project / "data/02_intermediate/curation_manifest.parquet")
    assert set(captions["id"]) | set(failures["id"]) == set(reference_set(manifest, 20)["id"])
    # The key came from conf/<env>/credentials.yml, and nothing printed or logged it.
    assert {r["headers"]["Authorization"] for r in server.received} == {f"Bearer {SECRET}"}
    for output in (first.stdout, first.stderr, again.stdout, again.stderr):
        assert SECRET not in output
    assert SECRET not in (project / "mlflow.db").read_bytes().decode("latin-1")
    # Nowhere else either: MLflow's artifacts, data/ (shards, tables, reports), DVC's files,
    # logs. Only the credentials file the user wrote holds it.
    holders = [str(path.relative_to(project)) for path in project.rglob("*")
               if path.is_file() and SECRET.encode() in path.read_bytes()]
    assert holders == ["conf/local/credentials.yml"], holders
    # The re-run resumed: only the failed id was asked again, and this time it got a caption.
    assert resent == 1
    final = pd.read_parquet(project / "data/03_primary/reference_captions.parquet")
    assert len(final) == 20 and final["id"].is_unique
    assert len(pd.read_parquet(project / "data/03_primary/reference_caption_failures.parquet")) == 0


def test_shard_folder_follows_what_changes_a_caption():
    base = CaptioningParams.model_validate({}).reference

    def folder(reference):
        return caption_identity(reference.recaption_params(), api=reference.api)

    assert folder(base) == folder(base.model_copy(update={"size": 5, "shard_size": 7}))
    assert folder(base) != folder(base.model_copy(update={"caption_prompt": "Say what you see."}))
    api = {"base_url": "http://127.0.0.1:1/v1", "model": "m"}
    on_api = CaptioningParams.model_validate({"reference": {"backend": "api", "api": api}})
    faster = CaptioningParams.model_validate(
        {"reference": {"backend": "api", "api": api | {"concurrency": 64, "max_retries": 9}}})
    other_model = CaptioningParams.model_validate(
        {"reference": {"backend": "api", "api": api | {"model": "other"}}})
    assert folder(on_api.reference) == folder(faster.reference)
    assert folder(on_api.reference) != folder(other_model.reference)
    with pytest.raises(ValueError, match="needs `api` settings"):
        CaptioningParams.model_validate({"reference": {"backend": "api"}})
