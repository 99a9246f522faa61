"""The ``avgen`` command: record a request and run the talking-head job now, or manage the DB.

``avgen generate`` validates every input before anything is written (no folder, no database
row on bad input), records the request, materializes ``talking_head_job`` for the user's
partition on the Dagster instance at ``DAGSTER_HOME`` (so the run shows in ``dagster dev``),
shows progress per stage and prints the output paths.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

# Quiet third-party chatter before those libraries load: model-loading progress bars (our own
# stage bar passes disable= explicitly) and MediaPipe/TFLite's C++ info logs.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import typer
from tqdm import tqdm

from avgen_dagster.errors import AvgenError, InvalidInputError
from avgen_dagster.settings import Settings, get_settings

app = typer.Typer(
    name="avgen",
    help="avgen: personal AI media as Dagster assets partitioned by user_id.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The app database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
user_app = typer.Typer(help="Portal users: access codes and sign-in links.", no_args_is_help=True)
app.add_typer(user_app, name="user")

MAX_SCRIPT_BYTES = 200_000
VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"}
# Options shared by `generate` and `request` (one declaration each).
UserIdOpt = Annotated[str, typer.Option("--user-id", help="1-64 of [A-Za-z0-9_-].")]
PortraitOpt = Annotated[
    Path,
    typer.Option(
        "--portrait", help="Portrait photo (PNG/JPEG/WebP), or a driving video (MP4/MOV/…)."
    ),
]
PromptOpt = Annotated[str | None, typer.Option("--prompt", help="What to talk about.")]
ScriptOpt = Annotated[
    Path | None, typer.Option("--script-file", help="UTF-8 text to speak verbatim.")
]
TargetLufsOpt = Annotated[
    float | None,
    typer.Option("--target-lufs", help="Integrated loudness target, LUFS (default -16)."),
]
CrossfadeOpt = Annotated[
    float | None, typer.Option("--crossfade", help="Cross-fade between segments, seconds.")
]
MaxWordsOpt = Annotated[
    int | None, typer.Option("--max-words", help="Length of an LLM-written narration.")
]
GenreOpt = Annotated[str | None, typer.Option("--genre", help="Music genre.")]
MusicDurationOpt = Annotated[
    float | None, typer.Option("--music-duration", help="Seconds of music (default 30).")
]
ClipDurationOpt = Annotated[
    float | None, typer.Option("--clip-duration", help="Seconds per clip (default 5).")
]
ImagesOpt = Annotated[int | None, typer.Option("--images", help="Images (default 5).")]
ClipsOpt = Annotated[int | None, typer.Option("--clips", help="Clips (default 5).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed of images/music.")]
DrivingModeOpt = Annotated[
    str | None, typer.Option("--driving-mode", help="loop (default), pingpong or trim.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]

EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 1


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _read_script_file(path: Path) -> str:
    if not path.is_file():
        raise InvalidInputError(f"script file {str(path)!r} does not exist")
    if path.stat().st_size > MAX_SCRIPT_BYTES:
        raise InvalidInputError(
            f"script file {str(path)!r} is {path.stat().st_size} bytes; the limit is "
            f"{MAX_SCRIPT_BYTES}"
        )
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"script file {str(path)!r} is not UTF-8 text") from exc


def validate_inputs(
    user_id: str, prompt: str | None, script_file: Path | None, portrait: Path
) -> tuple[str | None, str | None]:
    """Check every input of ``generate`` before anything is written.

    Returns:
        (prompt, script): the validated prompt or script text (exactly one is not None).

    Raises:
        InvalidInputError: naming the bad input (user id, prompt, script, portrait);
            NoFaceError when the portrait shows no face.
    """
    from avgen_dagster.backends.textproc import validate_prompt, validate_script
    from avgen_dagster.media.faces import load_image_rgb, require_face
    from avgen_dagster.validation import validate_user_id

    validate_user_id(user_id)
    if (prompt is None) == (script_file is None):
        raise InvalidInputError("give exactly one of --prompt and --script-file")
    script = None
    if prompt is not None:
        prompt = validate_prompt(prompt)
    else:
        assert script_file is not None
        script = validate_script(_read_script_file(script_file))
    if portrait.suffix.lower() in VIDEO_SUFFIXES:
        from avgen_dagster.media.probe import probe_media

        if not portrait.is_file():
            raise InvalidInputError(f"driving video {str(portrait)!r} does not exist")
        info = probe_media(portrait)
        if info.video is None:
            raise InvalidInputError(f"driving video {portrait.name!r} has no video stream")
        return prompt, script
    image = load_image_rgb(portrait)
    require_face(image, portrait.name)
    return prompt, script


def _ensure_dagster_home(settings: Settings) -> Path:
    home = settings.dagster_home_path
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


class _StageProgress:
    """Prints the run's steps as they finish, polling the instance's event log."""

    def __init__(self, instance: Any, run_id: str, total: int, enabled: bool) -> None:
        self._instance = instance
        self._run_id = run_id
        self._stop = threading.Event()
        self._bar = tqdm(
            total=total, desc="starting", unit="step", disable=not enabled, file=sys.stderr
        )
        self._cursor: str | None = None
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> _StageProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._update()
        self._bar.close()

    def _update(self) -> None:
        import dagster as dg

        conn = self._instance.get_records_for_run(
            self._run_id,
            cursor=self._cursor,
            of_type={
                dg.DagsterEventType.STEP_START,
                dg.DagsterEventType.STEP_SUCCESS,
                dg.DagsterEventType.STEP_FAILURE,
            },
        )
        self._cursor = conn.cursor
        for record in conn.records:
            if record.event_log_entry.dagster_event is None:
                continue
            rec = record.event_log_entry
            ev = rec.dagster_event
            if ev.event_type == dg.DagsterEventType.STEP_START:
                self._bar.set_description(f"running {ev.step_key}")
            elif ev.event_type == dg.DagsterEventType.STEP_SUCCESS:
                self._bar.update(1)
                self._bar.write(f"  done   {ev.step_key}", file=sys.stderr)
            else:
                self._bar.write(f"  FAILED {ev.step_key}", file=sys.stderr)

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            # Progress display must never break the run.
            with contextlib.suppress(Exception):
                self._update()


@app.command()
def generate(
    user_id: UserIdOpt,
    portrait: PortraitOpt,
    prompt: PromptOpt = None,
    script_file: ScriptOpt = None,
    lipsync: Annotated[
        str | None,
        typer.Option("--lipsync", help="landmark (default) or wav2lip (driving videos need it)."),
    ] = None,
    wav2lip_checkpoint: Annotated[
        Path | None,
        typer.Option("--wav2lip-checkpoint", help="Default: $AVGEN_WAV2LIP_CHECKPOINT."),
    ] = None,
    driving_mode: DrivingModeOpt = None,
    target_lufs: TargetLufsOpt = None,
    crossfade: CrossfadeOpt = None,
    max_words: MaxWordsOpt = None,
    genre: GenreOpt = None,
    music_duration: MusicDurationOpt = None,
    clip_duration: ClipDurationOpt = None,
    image_count: ImagesOpt = None,
    clip_count: ClipsOpt = None,
    seed: SeedOpt = None,
    talking_head_only: Annotated[
        bool, typer.Option("--talking-head-only", help="Skip images, music and clips.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Record a request and run it now: the talking head plus images, music, clips and a
    music video (``generation_job``), or only the talking head."""
    try:
        prompt, script = validate_inputs(user_id, prompt, script_file, portrait)
        options = _options(
            target_lufs,
            crossfade,
            max_words,
            genre=genre,
            music_duration_s=music_duration,
            clip_duration_s=clip_duration,
            image_count=image_count,
            clip_count=clip_count,
            seed=seed,
            driving_mode=driving_mode,
        )
        resources = _lipsync_resources(lipsync, wav2lip_checkpoint, portrait)
    except AvgenError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    result = run_generation(
        user_id=user_id,
        prompt=prompt,
        script=script,
        portrait=portrait,
        options=options,
        show_progress=True,
        job_name="talking_head_job" if talking_head_only else "generation_job",
        resources=resources,
    )
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"request   {result['request_id']} ({result['status']})")
        if result["status"] == "Completed":
            typer.echo(f"MP4       {result['stitched_mp4']}")
            typer.echo(f"HLS       {result['hls_playlist']}")
            if result["music_video"]:
                typer.echo(f"music video {result['music_video']}")
                typer.echo(f"music     {result['music']}")
                typer.echo(
                    f"images    {len(result['images'])} in {Path(result['images'][0]).parent}"
                )
    if result["status"] != "Completed":
        raise _fail(f"generation failed: {result['error']}", EXIT_RUN_FAILED)


def _lipsync_resources(
    lipsync: str | None, checkpoint: Path | None, portrait: Path
) -> dict[str, Any] | None:
    """Resource overrides for the chosen lip-sync backend; the model is loaded (and a missing
    or wrong checkpoint reported) before anything is recorded."""
    from avgen_dagster.resources import LipsyncBackendResource

    backend = lipsync or ("wav2lip" if checkpoint else "landmark")
    if backend not in {"landmark", "wav2lip"}:
        raise InvalidInputError(f"--lipsync {lipsync!r}: choose landmark or wav2lip")
    if backend == "landmark":
        if portrait.suffix.lower() in VIDEO_SUFFIXES:
            raise InvalidInputError("a driving video needs --lipsync wav2lip (and a checkpoint)")
        return None
    resource = LipsyncBackendResource(
        backend="wav2lip", checkpoint=str(checkpoint) if checkpoint else None
    )
    resource.lipsync()  # fails fast: BackendError names the missing or wrong checkpoint
    return {"lipsync_backend": resource}


def _options(
    target_lufs: float | None,
    crossfade: float | None,
    max_words: int | None,
    **more: Any,
) -> dict[str, Any]:
    from avgen_dagster.options import parse_options

    options: dict[str, Any] = {k: v for k, v in more.items() if v is not None}
    if target_lufs is not None:
        if not -40.0 <= target_lufs <= -5.0:
            raise InvalidInputError(f"--target-lufs {target_lufs} is outside -40..-5 LUFS")
        options["target_lufs"] = target_lufs
    if crossfade is not None:
        if not 0.0 <= crossfade <= 2.0:
            raise InvalidInputError(f"--crossfade {crossfade} is outside 0..2 seconds")
        options["crossfade_s"] = crossfade
    if max_words is not None:
        if not 10 <= max_words <= 600:
            raise InvalidInputError(f"--max-words {max_words} is outside 10..600")
        options["max_words"] = max_words
    return parse_options(options).model_dump(exclude_none=True)


def run_generation(
    *,
    user_id: str,
    prompt: str | None,
    script: str | None,
    portrait: Path,
    options: dict[str, Any],
    show_progress: bool = False,
    instance: Any = None,
    resources: dict[str, Any] | None = None,
    job_name: str = "generation_job",
) -> dict[str, Any]:
    """Record a request (inputs already validated) and run ``job_name`` for it.

    Args:
        instance: a ``DagsterInstance``; default the one at ``DAGSTER_HOME``.
        resources: resource overrides (tests); default the embedded defaults.

    Returns:
        ``{"request_id", "user_id", "status", "stitched_mp4", "hls_playlist", "error",
        "run_id"}`` with file URIs: absolute paths, or object URLs when the content store
        is an object store (None when the run failed).
    """
    import dagster as dg
    from dagster._core.utils import make_new_run_id

    from avgen_dagster.definitions import build_definitions
    from avgen_dagster.failures import REQUEST_ID_TAG, mark_request_failed, run_failure_reason
    from avgen_dagster.media.atomic import atomic_path
    from avgen_dagster.partitions import user_partitions
    from avgen_dagster.resources import AppDatabaseResource, ContentStore
    from avgen_dagster.store.models import RequestStatus, new_request_id
    from avgen_dagster.store.requests import create_request, get_request

    settings = get_settings()
    if instance is None:
        _ensure_dagster_home(settings)
        instance = dg.DagsterInstance.get()
    defs = build_definitions(resources)
    db_resource: AppDatabaseResource = (resources or {}).get("app_db", AppDatabaseResource())
    content: ContentStore = (resources or {}).get("content", ContentStore())
    db = db_resource.get()

    request_id = new_request_id()
    stored_portrait = (
        content.asset_dir(user_id, request_id, "input")
        / f"{'driving' if portrait.suffix.lower() in VIDEO_SUFFIXES else 'portrait'}"
        f"{portrait.suffix.lower()}"
    )
    with atomic_path(stored_portrait) as tmp:
        shutil.copyfile(portrait, tmp)
    (portrait_uri,) = content.publish(stored_portrait)
    with db.session() as s:
        create_request(
            s,
            user_id=user_id,
            prompt=prompt,
            script=script,
            portrait_path=portrait_uri,
            options=options,
            status=RequestStatus.PROCESSING,
            request_id=request_id,
        )
    if not instance.has_dynamic_partition(user_partitions.name, user_id):
        instance.add_dynamic_partitions(user_partitions.name, [user_id])

    job = defs.resolve_job_def(job_name)
    run_id = make_new_run_id()
    steps = len(job.asset_layer.executable_asset_keys) + len(
        list(job.asset_layer.asset_graph.asset_check_keys)
    )
    with _StageProgress(instance, run_id, steps, enabled=show_progress):
        result = job.execute_in_process(
            instance=instance,
            partition_key=user_id,
            run_id=run_id,
            tags={REQUEST_ID_TAG: request_id, "avgen/user_id": user_id},
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    if not result.success:
        mark_request_failed(db, request_id, run_failure_reason(instance, run_id))
    with db.session() as s:
        req = get_request(s, request_id)
        mp4 = next((p for p in req.video_paths if p.endswith("/talking_head.mp4")), None)
        playlist = next((p for p in req.video_paths if p.endswith(".m3u8")), None)
        music_video = next((p for p in req.video_paths if p.endswith("/music_video.mp4")), None)
        return {
            "request_id": request_id,
            "user_id": user_id,
            "status": req.status,
            "stitched_mp4": mp4,
            "hls_playlist": playlist,
            "music_video": music_video,
            "images": list(req.image_paths),
            "music": next((p for p in req.audio_paths or [] if p.endswith(".m4a")), None),
            "error": req.error,
            "run_id": run_id,
        }


@app.command("request")
def enqueue_request(
    user_id: UserIdOpt,
    portrait: Annotated[Path, typer.Option("--portrait", help="Portrait photo (PNG/JPEG/WebP).")],
    prompt: PromptOpt = None,
    script_file: ScriptOpt = None,
    notify_at: Annotated[
        str | None,
        typer.Option("--notify-at", help="ISO 8601 time with offset, e.g. 2026-12-01T09:00+01:00."),
    ] = None,
    email: Annotated[str | None, typer.Option("--email", help="Where to notify.")] = None,
    target_lufs: TargetLufsOpt = None,
    crossfade: CrossfadeOpt = None,
    max_words: MaxWordsOpt = None,
    genre: GenreOpt = None,
    music_duration: MusicDurationOpt = None,
    clip_duration: ClipDurationOpt = None,
    image_count: ImagesOpt = None,
    clip_count: ClipsOpt = None,
    seed: SeedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue a request; the request sensor (``make serve``) picks it up and runs it."""
    from datetime import datetime

    from avgen_dagster.intake import NewRequest, submit_request
    from avgen_dagster.store.session import AppDatabase

    try:
        if (prompt is None) == (script_file is None):
            raise InvalidInputError("give exactly one of --prompt and --script-file")
        script = _read_script_file(script_file) if script_file is not None else None
        when = None
        if notify_at:
            try:
                when = datetime.fromisoformat(notify_at)
            except ValueError as exc:
                raise InvalidInputError(f"--notify-at {notify_at!r} is not ISO 8601") from exc
        if not portrait.is_file():
            raise InvalidInputError(f"portrait {str(portrait)!r} does not exist")
        if portrait.stat().st_size > 50 * 1024 * 1024:
            raise InvalidInputError(f"portrait {str(portrait)!r} is larger than 50 MB")
        settings = get_settings()
        _ensure_dagster_home(settings)
        request_id = submit_request(
            AppDatabase(settings.database_url),
            settings.content_tree(),
            NewRequest(
                user_id=user_id,
                prompt=prompt,
                script=script,
                portrait=portrait.read_bytes(),
                portrait_name=portrait.name,
                options=_options(
                    target_lufs,
                    crossfade,
                    max_words,
                    genre=genre,
                    music_duration_s=music_duration,
                    clip_duration_s=clip_duration,
                    image_count=image_count,
                    clip_count=clip_count,
                    seed=seed,
                ),
                notify_at=when,
                email=email,
            ),
        )
    except AvgenError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    if as_json:
        typer.echo(json.dumps({"request_id": request_id, "user_id": user_id, "status": "Queued"}))
    else:
        typer.echo(f"request {request_id} queued for {user_id}")


@user_app.command("create")
def user_create(
    user_id: Annotated[str, typer.Argument(help="1-64 of [A-Za-z0-9_-].")],
    email: Annotated[str | None, typer.Option("--email")] = None,
    access_code: Annotated[
        str | None, typer.Option("--access-code", help="Default: a new random code.")
    ] = None,
) -> None:
    """Create the user (or keep it) and set a new access code; prints the code once."""
    from avgen_dagster.auth import normalise_email, set_access_code
    from avgen_dagster.store.requests import ensure_user
    from avgen_dagster.store.session import AppDatabase

    settings = get_settings()
    _ensure_dagster_home(settings)
    try:
        with AppDatabase(settings.database_url).session() as s:
            ensure_user(s, user_id, email=normalise_email(email) if email else None)
            code = set_access_code(s, user_id, access_code)
    except AvgenError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    typer.echo(f"user {user_id}: access code {code}")


@user_app.command("link")
def user_link(user_id: Annotated[str, typer.Argument(help="An existing user id.")]) -> None:
    """Print a signed sign-in link to the portal (valid for 7 days)."""
    from avgen_dagster.auth import issue_login_token
    from avgen_dagster.settings import secret_key

    settings = get_settings()
    _ensure_dagster_home(settings)
    try:
        token = issue_login_token(user_id, secret_key(settings))
    except AvgenError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    typer.echo(f"{settings.portal_url.rstrip('/')}/?token={token}")


@app.command("serve-media")
def serve_media(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8502,
) -> None:
    """Serve generated media to browsers under signed URLs (uvicorn)."""
    import uvicorn

    from avgen_dagster.media_server import create_app
    from avgen_dagster.settings import secret_key

    settings = get_settings()
    _ensure_dagster_home(settings)
    uvicorn.run(create_app(settings.content_tree(), secret_key(settings)), host=host, port=port)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Alembic revision.")] = "head",
) -> None:
    """Create or upgrade the app database schema (AVGEN_DATABASE_URL or SQLite)."""
    from sqlalchemy import make_url

    from avgen_dagster.store.session import upgrade_database

    url = get_settings().database_url
    upgrade_database(url, revision)
    shown = make_url(url).render_as_string(hide_password=True)
    typer.echo(f"app database at {shown} upgraded to {revision}")


if __name__ == "__main__":
    app()
