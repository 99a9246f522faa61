"""The ``avgen`` command: a thin layer over intake, the runner and the store.

``avgen generate`` takes the request in through the one intake (every input checked before
anything is written: no folder, no database row on bad input) and runs its job in this process
on the Dagster instance at ``DAGSTER_HOME`` (so the run shows in ``dagster dev``), showing
progress per stage and printing the outputs. ``avgen request`` queues it for the sensor.
Bad input exits 2 with the intake's message; a failed run exits 1 with its reason.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

# Quiet third-party chatter before those libraries load: model-loading progress bars (our own
# stage bar passes disable= explicitly) and MediaPipe/TFLite's C++ info logs.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import typer
from tqdm import tqdm

from avgen_dagster.errors import AvgenError, InvalidInputError
from avgen_dagster.intake import NewRequest
from avgen_dagster.options import RequestOptions, option_help
from avgen_dagster.portraits import Upload
from avgen_dagster.settings import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from avgen_dagster.runner import RunOutcome

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
request_app = typer.Typer(help="Queue a request, or retry a Failed one.")
app.add_typer(request_app, name="request")
key_app = typer.Typer(
    help="HTTP API keys: create (shown once), list, revoke.", no_args_is_help=True
)
app.add_typer(key_app, name="key")

MAX_SCRIPT_BYTES = 200_000
EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 1


def _opt(name: str, flag: str) -> Any:
    """A typer option for the request option ``name``, its help (range, default) from the one
    model (:class:`avgen_dagster.options.RequestOptions`); the range is checked by intake."""
    return typer.Option(flag, help=option_help(name))


# Options shared by `generate` and `request` (one declaration each).
_USER_ID = typer.Option("--user-id", help="1-64 of [A-Za-z0-9_-].")
_PORTRAIT = typer.Option(
    "--portrait",
    help="Portrait photo (PNG/JPEG/WebP, ≤ 10 MB), or a driving video (MP4/MOV/MKV/WebM).",
)
_VOICE_REFERENCE = typer.Option(
    "--voice-reference",
    help="A recording of the voice to clone (WAV/FLAC/OGG/MP3, 3-30 s of speech, ≤ 20 MB); "
    "needs a voice-cloning speech backend (AVGEN_SPEECH_BACKEND=coqui with an XTTS model).",
)
UserIdOpt = Annotated[str, _USER_ID]
VoiceReferenceOpt = Annotated[Path | None, _VOICE_REFERENCE]
PortraitOpt = Annotated[Path, _PORTRAIT]
PromptOpt = Annotated[str | None, typer.Option("--prompt", help="What to talk about.")]
ScriptOpt = Annotated[
    Path | None, typer.Option("--script-file", help="UTF-8 text to speak verbatim.")
]
TargetLufsOpt = Annotated[float | None, _opt("target_lufs", "--target-lufs")]
CrossfadeOpt = Annotated[float | None, _opt("crossfade_s", "--crossfade")]
MaxWordsOpt = Annotated[int | None, _opt("max_words", "--max-words")]
GenreOpt = Annotated[str | None, _opt("genre", "--genre")]
MusicDurationOpt = Annotated[float | None, _opt("music_duration_s", "--music-duration")]
ClipDurationOpt = Annotated[float | None, _opt("clip_duration_s", "--clip-duration")]
ImagesOpt = Annotated[int | None, _opt("image_count", "--images")]
ClipsOpt = Annotated[int | None, _opt("clip_count", "--clips")]
ImageSizeOpt = Annotated[int | None, _opt("image_size", "--image-size")]
SeedOpt = Annotated[int | None, _opt("seed", "--seed")]
DrivingModeOpt = Annotated[str | None, _opt("driving_mode", "--driving-mode")]
TalkingHeadOnlyOpt = Annotated[
    bool | None, _opt("talking_head_only", "--talking-head-only/--full-package")
]
FormatOpt = Annotated[str | None, _opt("format", "--format")]
CaptionsOpt = Annotated[bool | None, _opt("captions", "--captions/--no-captions")]
CaptionPositionOpt = Annotated[str | None, _opt("caption_position", "--caption-position")]
CaptionSizeOpt = Annotated[float | None, _opt("caption_size", "--caption-size")]
CaptionColorOpt = Annotated[str | None, _opt("caption_color", "--caption-color")]
CaptionHighlightOpt = Annotated[str | None, _opt("caption_highlight", "--caption-highlight")]
CaptionOutlineOpt = Annotated[str | None, _opt("caption_outline", "--caption-outline")]
CaptionFontOpt = Annotated[str | None, _opt("caption_font", "--caption-font")]
BrollOpt = Annotated[str | None, _opt("broll", "--broll")]
BrollEveryOpt = Annotated[int | None, _opt("broll_every", "--broll-every")]
MusicBedOpt = Annotated[bool | None, _opt("music_bed", "--music-bed/--no-music-bed")]
BedLevelOpt = Annotated[float | None, _opt("bed_level_lu", "--bed-level")]
NotifyAtOpt = Annotated[
    str | None,
    typer.Option("--notify-at", help="ISO 8601 time with offset, e.g. 2026-12-01T09:00+01:00."),
]
EmailOpt = Annotated[str | None, typer.Option("--email", help="Where to notify.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _given_options(params: dict[str, Any]) -> dict[str, Any]:
    """The request options a command was given: its parameters named like a
    :class:`~avgen_dagster.options.RequestOptions` field, when set (unset ones take the
    model's defaults at intake)."""
    return {
        name: params[name] for name in RequestOptions.model_fields if params.get(name) is not None
    }


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _read_script_file(path: Path | None) -> str | None:
    if path is None:
        return None
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


def _notify_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInputError(f"--notify-at {text!r} is not an ISO 8601 time") from exc


def _new_request(
    user_id: str,
    portrait: Path,
    prompt: str | None,
    script_file: Path | None,
    options: dict[str, Any],
    notify_at: str | None = None,
    email: str | None = None,
    voice_reference: Path | None = None,
) -> NewRequest:
    """The CLI's inputs as intake's :class:`NewRequest` (files read; nothing checked here that
    intake checks — every entry point gets the same checks and messages)."""
    from avgen_dagster.voice_reference import voice_reference_upload

    if prompt is not None and script_file is not None:
        raise InvalidInputError("give either a prompt or a script (exactly one)")
    return NewRequest(
        user_id=user_id,
        prompt=prompt,
        script=_read_script_file(script_file),
        portrait=Upload.from_path(portrait),
        options={k: v for k, v in options.items() if v is not None},
        notify_at=_notify_time(notify_at),
        email=email,
        voice_reference=voice_reference_upload(voice_reference) if voice_reference else None,
    )


@contextlib.contextmanager
def _bad_input_exits() -> Iterator[None]:
    """Turn an :class:`AvgenError` (bad input, an unreachable database) into ``error: …`` on
    stderr and exit status 2."""
    try:
        yield
    except AvgenError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None


@contextlib.contextmanager
def _app_session() -> Iterator[Session]:
    """A session of the app database at the settings' URL (``DAGSTER_HOME`` created), with
    :func:`_bad_input_exits`."""
    settings = get_settings()
    _ensure_dagster_home(settings)
    with _bad_input_exits(), settings.database().session() as s:
        yield s


def _ensure_dagster_home(settings: Settings) -> Path:
    home = settings.dagster_home_path
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


class _StageProgress:
    """Prints the run's steps as they finish, polling the instance's event log."""

    def __init__(self, instance: Any, run_id: str, total: int) -> None:
        self._instance = instance
        self._run_id = run_id
        self._stop = threading.Event()
        self._bar = tqdm(total=total, desc="starting", unit="step", file=sys.stderr, disable=False)
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
            ev = record.event_log_entry.dagster_event
            if ev is None:
                continue
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


def _request_options(
    *,
    target_lufs: TargetLufsOpt = None,
    crossfade_s: CrossfadeOpt = None,
    max_words: MaxWordsOpt = None,
    genre: GenreOpt = None,
    music_duration_s: MusicDurationOpt = None,
    clip_duration_s: ClipDurationOpt = None,
    image_count: ImagesOpt = None,
    clip_count: ClipsOpt = None,
    image_size: ImageSizeOpt = None,
    seed: SeedOpt = None,
    driving_mode: DrivingModeOpt = None,
    talking_head_only: TalkingHeadOnlyOpt = None,
    format: FormatOpt = None,
    captions: CaptionsOpt = None,
    caption_position: CaptionPositionOpt = None,
    caption_size: CaptionSizeOpt = None,
    caption_color: CaptionColorOpt = None,
    caption_highlight: CaptionHighlightOpt = None,
    caption_outline: CaptionOutlineOpt = None,
    caption_font: CaptionFontOpt = None,
    broll: BrollOpt = None,
    broll_every: BrollEveryOpt = None,
    music_bed: MusicBedOpt = None,
    bed_level_lu: BedLevelOpt = None,
) -> None:
    """The request options both `generate` and `request` take, declared once (a signature
    template for :func:`with_request_options`; each is a ``RequestOptions`` field by name)."""


def with_request_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` (which takes ``**options``) the shared request-option flags of
    :func:`_request_options`, as typer reads them (its signature and annotations)."""
    own = inspect.signature(command, eval_str=True)
    shared = inspect.signature(_request_options, eval_str=True).parameters.values()
    kept = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
    command.__signature__ = own.replace(parameters=[*kept, *shared])  # type: ignore[attr-defined]
    command.__annotations__ = {
        **{p.name: p.annotation for p in [*kept, *shared]},
        "return": own.return_annotation,
    }
    return command


@app.command()
@with_request_options
def generate(
    user_id: UserIdOpt,
    portrait: PortraitOpt,
    prompt: PromptOpt = None,
    script_file: ScriptOpt = None,
    voice_reference: VoiceReferenceOpt = None,
    lipsync: Annotated[
        str | None,
        typer.Option("--lipsync", help="landmark (default) or wav2lip (driving videos need it)."),
    ] = None,
    wav2lip_checkpoint: Annotated[
        Path | None,
        typer.Option("--wav2lip-checkpoint", help="Default: $AVGEN_WAV2LIP_CHECKPOINT."),
    ] = None,
    as_json: JsonOpt = False,
    **options: Any,
) -> None:
    """Take a request in (the same intake as the portal and `avgen request`) and run it now, in
    this process: the talking head, images, music, clips, a music video and the composed final
    cut (``generation_job``), or with ``--talking-head-only`` the talking head and its final
    cut (``talking_head_job``)."""
    from avgen_dagster.runner import submit_and_run

    try:
        new = _new_request(
            user_id,
            portrait,
            prompt,
            script_file,
            _given_options(options),
            voice_reference=voice_reference,
        )
        resources, backend = _lipsync_resources(lipsync, wav2lip_checkpoint)
        outcome = submit_and_run(
            new,
            resources=resources,
            progress=_StageProgress,
            photo_only_backend=None if backend == "wav2lip" else backend,
        )
    except AvgenError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    _print_outcome(outcome, as_json)
    if outcome.status != "Completed":
        raise _fail(f"generation failed: {outcome.error}", EXIT_RUN_FAILED)


def _print_outcome(outcome: RunOutcome, as_json: bool) -> None:
    out = outcome.outputs
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "request_id": outcome.request_id,
                    "user_id": outcome.user_id,
                    "status": outcome.status,
                    "stitched_mp4": out.talking_head_mp4,
                    "hls_playlist": out.hls_playlist,
                    "music_video": out.music_video,
                    "music": out.music,
                    "images": out.images,
                    "final_video": out.final_video,
                    "hls_master": out.hls_master,
                    "captions_vtt": out.captions_vtt,
                    "captions_srt": out.captions_srt,
                    "error": outcome.error,
                    "run_id": outcome.run_id,
                }
            )
        )
        return
    typer.echo(f"request   {outcome.request_id} ({outcome.status})")
    if outcome.status != "Completed":
        return
    typer.echo(f"final cut {out.final_video}")
    typer.echo(f"  HLS     {out.hls_master}")
    typer.echo(f"  captions {out.captions_vtt} {out.captions_srt}")
    typer.echo(f"MP4       {out.talking_head_mp4}")
    typer.echo(f"HLS       {out.hls_playlist}")
    if out.music_video:
        typer.echo(f"music video {out.music_video}")
        typer.echo(f"music     {out.music}")
        typer.echo(f"images    {len(out.images)} in {Path(out.images[0]).parent}")


def _lipsync_resources(
    lipsync: str | None, checkpoint: Path | None
) -> tuple[dict[str, Any] | None, str]:
    """Resource overrides for the chosen lip-sync backend, and its name; the model is loaded
    (and a missing or wrong checkpoint reported) before anything is recorded."""
    from avgen_dagster.resources import LipsyncBackendResource

    backend = lipsync or ("wav2lip" if checkpoint else "landmark")
    if backend not in {"landmark", "wav2lip"}:
        raise InvalidInputError(f"--lipsync {lipsync!r}: choose landmark or wav2lip")
    if backend == "landmark":
        return None, backend
    resource = LipsyncBackendResource(
        backend="wav2lip", checkpoint=str(checkpoint) if checkpoint else None
    )
    resource.lipsync()  # fails fast: BackendError names the missing or wrong checkpoint
    return {"lipsync_backend": resource}, backend


@request_app.callback(invoke_without_command=True)
@with_request_options
def enqueue_request(
    ctx: typer.Context,
    user_id: Annotated[str | None, _USER_ID] = None,
    portrait: Annotated[Path | None, _PORTRAIT] = None,
    prompt: PromptOpt = None,
    script_file: ScriptOpt = None,
    voice_reference: VoiceReferenceOpt = None,
    notify_at: NotifyAtOpt = None,
    email: EmailOpt = None,
    as_json: JsonOpt = False,
    **options: Any,
) -> None:
    """Queue a request; the request sensor (``make serve``) picks it up and runs it.
    ``avgen request retry ID`` re-queues a Failed request."""
    from avgen_dagster.intake import check_request, record_request
    from avgen_dagster.resources.backends import SpeechBackendResource

    if ctx.invoked_subcommand is not None:
        return
    try:
        if user_id is None or portrait is None:
            raise InvalidInputError("give --user-id and --portrait (or a subcommand: retry)")
        new = _new_request(
            user_id,
            portrait,
            prompt,
            script_file,
            _given_options(options),
            notify_at=notify_at,
            email=email,
            voice_reference=voice_reference,
        )
        # The sensor's runs speak with the speech backend the environment configures.
        speech = SpeechBackendResource.from_env()
        # Before anything is created, the database included.
        checked = check_request(new, non_cloning_speech=speech.without_cloning())
        settings = get_settings()
        _ensure_dagster_home(settings)
        request_id = record_request(settings.database(), settings.content_tree(), checked)
    except AvgenError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    if as_json:
        typer.echo(json.dumps({"request_id": request_id, "user_id": user_id, "status": "Queued"}))
    else:
        typer.echo(f"request {request_id} queued for {user_id}")


@request_app.command("retry")
def retry_request(
    request_id: Annotated[str, typer.Argument(help="The id of a Failed request.")],
) -> None:
    """Re-queue a Failed request under a new run key (same id, inputs and history)."""
    from avgen_dagster.store import status
    from avgen_dagster.validation import validate_request_id

    with _bad_input_exits():
        validate_request_id(request_id)
    with _app_session() as s:
        attempt = status.retry(s, request_id, by="avgen request retry").attempt
    typer.echo(f"request {request_id} queued again (attempt {attempt + 1})")


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

    with _app_session() as s:
        ensure_user(s, user_id, email=normalise_email(email) if email else None)
        code = set_access_code(s, user_id, access_code)
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


@app.command("serve-api")
def serve_api(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8502,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="uvicorn worker processes (one per CPU core serves the most calls; rate-limit "
            "counts are per process unless AVGEN_API_RATE_LIMIT_STORAGE names Redis).",
        ),
    ] = 1,
) -> None:
    """Serve the HTTP API (/v1/…, /docs) and the signed media URLs in one process (uvicorn)."""
    import uvicorn

    from avgen_dagster.api.app import create_served_app

    settings = get_settings()
    _ensure_dagster_home(settings)
    try:
        api = create_served_app(settings)  # fails here, once, on a bad configuration
    except AvgenError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    if workers == 1:
        uvicorn.run(api, host=host, port=port)
        return
    # Several workers: each process builds its own app from the environment (uvicorn needs
    # an import string to start them).
    del api
    uvicorn.run(
        "avgen_dagster.api.app:create_served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
    )


@app.command("serve-media")
def serve_media(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8502,
) -> None:
    """Alias of ``serve-api``: the media URLs are served by the API's process."""
    serve_api(host=host, port=port)


@key_app.command("create")
def key_create(
    user_id: Annotated[str, typer.Argument(help="An existing user id.")],
    name: Annotated[str | None, typer.Option("--name", help="A label, e.g. n8n.")] = None,
) -> None:
    """Create an API key for USER_ID; the key is printed once, alone on the last line."""
    from avgen_dagster.notifications.webhooks import webhook_secret
    from avgen_dagster.settings import secret_key
    from avgen_dagster.store.api_keys import create_key

    with _app_session() as s:
        info, key = create_key(s, user_id, name)
    typer.echo(f"API key {info.prefix} for {user_id} (shown once: store it now)")
    typer.echo(f"webhook signing secret: {webhook_secret(user_id, secret_key(get_settings()))}")
    typer.echo(key)


@key_app.command("list")
def key_list(user_id: Annotated[str, typer.Argument(help="A user id.")]) -> None:
    """List USER_ID's keys: prefix, state, created, last used, name (never the key)."""
    from avgen_dagster.store.api_keys import list_keys

    with _app_session() as s:
        keys = list_keys(s, user_id)
    if not keys:
        typer.echo(f"{user_id} has no API keys")
    for k in keys:
        used = k.last_used_at.strftime("%Y-%m-%d %H:%M") if k.last_used_at else "never"
        state = "active" if k.active else f"revoked {k.revoked_at:%Y-%m-%d %H:%M}"
        typer.echo(
            f"{k.prefix}  {state:<24} created {k.created_at:%Y-%m-%d %H:%M}  last used {used}"
            f"  {k.name or ''}".rstrip()
        )


@key_app.command("revoke")
def key_revoke(
    key: Annotated[str, typer.Argument(help="The key, or its 12-character prefix.")],
) -> None:
    """Revoke a key: it stops working at once."""
    from avgen_dagster.store.api_keys import revoke_key

    with _app_session() as s:
        info = revoke_key(s, key)
    typer.echo(f"API key {info.prefix} of {info.user_id} revoked")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Alembic revision.")] = "head",
) -> None:
    """Create or upgrade the app database schema (AVGEN_DATABASE_URL or SQLite)."""
    from avgen_dagster.store.session import shown_url, upgrade_database

    url = get_settings().database_url
    try:
        upgrade_database(url, revision)
    except AvgenError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    typer.echo(f"app database at {shown_url(url)} upgraded to {revision}")


if __name__ == "__main__":
    app()
