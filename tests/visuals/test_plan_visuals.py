"""The scene plan drives the visuals: its visual prompts reach the image and clip backends
(tiny diffusers pipelines, the prompts they are called with recorded), and two different plans
give measurably different embedded images."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from avgen_dagster.assets import final_cut, records, talking_head, visuals
from avgen_dagster.backends.landscape import ProceduralImages
from avgen_dagster.backends.scene_plan import plan_for_script
from avgen_dagster.definitions import default_resources
from avgen_dagster.intake import NewRequest, submit_request
from avgen_dagster.portraits import Upload
from avgen_dagster.resources import ImageBackendResource, VideoBackendResource
from avgen_dagster.runs import request_tags
from avgen_dagster.store import AppDatabase, status
from tests.conftest import SAMPLE_PORTRAIT, AvgenEnv

pytestmark = pytest.mark.slow

VOLCANO = (
    "Volcanoes form where magma rises through the crust. "
    "Lava flows down the mountain and cools into black rock. "
    "Ash clouds can drift across the sky for days."
)
OCEAN = (
    "Coral reefs grow in warm, shallow seas. "
    "Bright fish hide between the branches of the coral. "
    "Sea turtles glide over the reef at dawn."
)


def _record_calls(monkeypatch: pytest.MonkeyPatch, cls: type) -> list[str]:
    """Record the prompt of every call of a diffusers pipeline class (then call through)."""
    seen: list[str] = []
    original = cls.__call__

    def recording(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        prompt = kwargs.get("prompt", args[0] if args else None)
        seen.extend(prompt if isinstance(prompt, list) else [prompt])  # batched or one
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__call__", recording)
    return seen


def test_the_plans_visual_prompts_reach_the_image_and_clip_backends(
    avgen_env: AvgenEnv, tiny_sd_dir: Path, tiny_ltx_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers import LTXImageToVideoPipeline, LTXPipeline, StableDiffusionPipeline

    image_prompts = _record_calls(monkeypatch, StableDiffusionPipeline)
    clip_prompts = _record_calls(monkeypatch, LTXImageToVideoPipeline)
    clip_prompts_t2v = _record_calls(monkeypatch, LTXPipeline)
    rid = submit_request(
        AppDatabase(avgen_env.db_url),
        avgen_env.content,
        NewRequest(
            "planner", None, VOLCANO, Upload.from_path(SAMPLE_PORTRAIT),
            options={"image_count": 3, "clip_count": 2, "clip_duration_s": 0.5,
                     "image_size": 128},
        ),
    )  # fmt: skip
    with AppDatabase(avgen_env.db_url).session() as s:
        status.submit(s, rid)  # as the request sensor does
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("user_id", ["planner"])
    resources = {
        **default_resources(),
        "image_backend": ImageBackendResource(backend="diffusers", model_path=str(tiny_sd_dir),
                                              steps=1, device="cpu"),
        "video_backend": VideoBackendResource(backend="ltx", model_path=str(tiny_ltx_dir),
                                              steps=1, device="cpu"),
    }  # fmt: skip
    result = dg.materialize(
        dg.load_assets_from_modules([talking_head, visuals, final_cut, records]),
        selection=["request", "script", "images", "video_clips"],
        instance=instance,
        partition_key="planner",
        resources=resources,
        tags=request_tags(rid, "planner", 0),
    )
    assert result.success
    plan = plan_for_script(VOLCANO)
    assert len(plan.visual_prompts) == 3 and len(set(plan.visual_prompts)) == 3
    assert image_prompts == plan.visual_prompts  # one image per scene, in narration order
    clips = clip_prompts + clip_prompts_t2v
    assert clips == [plan.visual_prompts[0], plan.visual_prompts[1]]  # 2 clips over 3 scenes
    assert all("volcano" in p.lower() or "lava" in p.lower() or "ash" in p.lower()
               for p in image_prompts)  # fmt: skip


def test_two_different_plans_give_different_embedded_images() -> None:
    painter = ProceduralImages()
    volcano, ocean = plan_for_script(VOLCANO), plan_for_script(OCEAN)
    assert volcano.visual_prompts != ocean.visual_prompts

    def paint(prompt: str) -> np.ndarray:
        return painter.generate(prompt, seed=0, width=256, height=256).astype(np.float32)

    a = [paint(p) for p in volcano.visual_prompts]
    b = [paint(p) for p in ocean.visual_prompts]
    differences = [float(np.abs(x - y).mean()) for x, y in zip(a, b, strict=True)]
    assert min(differences) > 10.0, differences  # grey levels of 255, per pixel
    # The same plan and seed paint the same pictures (deterministic).
    assert all(np.array_equal(x, paint(p)) for x, p in zip(a, volcano.visual_prompts, strict=True))
