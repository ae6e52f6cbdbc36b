"""LabelSession on real stores (SQLite label store, the built-in groove library) and rendered riffs.

The player here records what it was asked to play (no audio device needed):
the session's logic (which pairs, what is saved, what a skip does, errors
that keep the pair) is what is under test. The same session plays through
PortAudio on JACK in tests/test_label_app.py.
"""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from sjtui.grooves.store import GrooveStore
from sjtui.labels.errors import LabelError, LabelStoreNewerError, LabelStoreReadOnlyError
from sjtui.labels.loops import generated_loops
from sjtui.labels.pairing import STRATEGY_NAMES
from sjtui.labels.player import render_pair
from sjtui.labels.session import LabelSession
from sjtui.labels.store import LabelStore


class RecordingPlayer:
    """Stands in for the audio/MIDI player: remembers calls; ``position_s`` fixed."""

    name = "recording player"

    def __init__(self):
        self.played: list[tuple[object, str]] = []
        self.stops = 0
        self.closed = 0

    def play(self, loop, groove):
        self.played.append((loop, groove.name))

    def stop(self):
        self.stops += 1

    def position_s(self):
        return 1.0 if self.played else None

    def poll(self):
        return None

    def close(self):
        self.closed += 1


@pytest.fixture(scope="module")
def loops():
    return generated_loops(2, seed=3)


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("SJTUI_DATA_DIR", str(tmp_path))
    grooves = GrooveStore(tmp_path)
    store = LabelStore.open(tmp_path, groove_store=grooves)
    yield grooves, store
    store.close()
    grooves.close()


def make_session(env, loops, **kwargs):
    grooves, store = env
    player = RecordingPlayer()
    session = LabelSession(
        loops, grooves.load_library(), store, groove_of=grooves.get, player=player, **kwargs
    )
    return session, player


def test_rate_skip_and_note_reach_the_database(env, loops):
    session, player = make_session(env, loops, picks_per_loop=2, model_version="0.1.0")
    _, store = env
    first = session.start()
    assert first.number == 1 and player.played[-1][1] == first.groove.name
    assert first.pick.strategy in STRATEGY_NAMES
    row = session.rate(4, note="  hat too busy ")
    rows = store.rating_rows()
    assert len(rows) == 1 and rows[0]["id"] == row
    assert rows[0]["rating"] == 4 and rows[0]["note"] == "hat too busy"
    assert rows[0]["model_version"] == "0.1.0" and rows[0]["strategy"] == first.pick.strategy
    assert rows[0]["groove_name"] == first.groove.name
    # the clip was saved with its fingerprint and meta
    clips = store.clip_rows()
    assert len(clips) == 1 and clips[0]["source"] == "generated"
    assert store.clip_path(clips[0]["hash"]).is_file()

    second = session.current
    assert second.number == 2 and second.loop_index == 0 and second.groove.name != first.groove.name
    session.skip()  # nothing saved
    assert store.count() == 1 and session.skipped == 1
    third = session.current
    assert third.loop_index == 1  # two picks per loop
    session.rate(0)
    assert store.count() == 2 and len(store.clip_rows()) == 2
    session.skip()
    assert session.current is None and session.done
    with pytest.raises(LabelError, match="nothing to rate"):
        session.rate(3)
    assert player.stops >= 1
    session.close()
    session.close()
    assert player.closed == 1


def test_pairs_fit_the_loop_and_rated_grooves_are_not_offered_again(env, loops):
    loop = loops[0]
    session, _ = make_session(env, [loop], picks_per_loop=3)
    session.start()
    rated = []
    while session.current is not None:
        groove = session.current.groove
        assert str(groove.meter) == str(loop.meter)
        assert abs(np.log(loop.bpm / groove.bpm)) <= np.log(1.25) + 1e-9
        rated.append(groove.name)
        session.rate(3)
    assert len(rated) == 3
    again, _ = make_session(env, [loop], picks_per_loop=3)
    again.start()
    offered = []
    while again.current is not None:
        offered.append(again.current.groove.name)
        again.skip()
    assert offered and not set(offered) & set(rated)


def test_scores_steer_the_favourite_pick(env, loops):
    grooves, _ = env
    library = grooves.load_library()
    target = None

    def scores_of(loop):
        nonlocal target
        from sjtui.labels.pairing import eligible_mask

        ok = eligible_mask(library.bpm, library.meters, loop.bpm, loop.meter)
        scores = np.where(ok, np.linspace(0.0, 1.0, len(library.ids)), 0.0)
        target = int(library.ids[np.flatnonzero(ok)[-1]])
        return scores

    session, _ = make_session(env, [loops[0]], picks_per_loop=10, scores_of=scores_of)
    session.start()
    picks = []
    while session.current is not None:
        picks.append(session.current.pick)
        session.skip()
    favourites = [p for p in picks if p.strategy == "favourite"]
    assert favourites and favourites[0].groove_id == target
    assert {p.strategy for p in picks} == {"favourite", "uncertain", "explore"}


def test_failed_save_keeps_the_pair_and_loses_nothing(env, loops, tmp_path):
    _, store = env
    session, _ = make_session(env, loops)
    session.start()
    session.rate(5)
    pair = session.current
    store.readonly = True  # as a store opened read-only: the write is refused with the store's message
    try:
        with pytest.raises(LabelStoreReadOnlyError):
            session.rate(2)
        assert session.current is pair and session.rated == 1
    finally:
        store.readonly = False
    session.rate(2)
    assert [r["rating"] for r in store.rating_rows()] == [5, 2]


READONLY_ATTEMPT = """
import sys
import numpy as np
from sjtui.labels.errors import LabelStoreReadOnlyError
from sjtui.labels.store import LabelStore
try:
    with LabelStore.open(sys.argv[1]) as store:
        store.add_clip(np.zeros(48000, np.float32), 48000)
except LabelStoreReadOnlyError as error:
    print(error)
    sys.exit(3)
sys.exit(0)
"""
_NOBODY = 65534


def test_readonly_and_newer_database_are_refused_with_the_stores_messages(loops):
    """A database file and folder without write permission. chmod does not stop root, and the tests
    run as root here: then the attempt runs in a process of the unprivileged user ``nobody``."""
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from sjtui.labels.store import DB_FILENAME

    base = Path(tempfile.mkdtemp(prefix="sjtui-ro-", dir="/tmp"))  # not under root's private pytest folder
    base.chmod(0o755)
    try:
        with LabelStore.open(base) as store:
            clip = store.add_clip(
                loops[0].audio, loops[0].sample_rate_hz, loops[0].fingerprint, loops[0].clip_meta()
            )
            with GrooveStore(base) as grooves:
                store.groove_store = grooves
                store.add_rating(clip, grooves.get(1), 4)
        db = base / DB_FILENAME
        before = db.read_bytes()
        os.chmod(db, 0o444)
        os.chmod(base, 0o555)
        try:
            if os.geteuid() == 0:
                setpriv = shutil.which("setpriv")
                if setpriv is None:
                    pytest.skip(
                        "running as root and setpriv is missing: cannot make a permission really apply"
                    )
                repo = Path(__file__).resolve().parent.parent
                result = subprocess.run(
                    [setpriv, f"--reuid={_NOBODY}", f"--regid={_NOBODY}", "--clear-groups",
                     sys.executable, "-c", READONLY_ATTEMPT, str(base)],
                    capture_output=True, text=True, timeout=120, check=False,
                    env=dict(os.environ, PYTHONPATH=str(repo), HOME="/tmp"),
                )  # fmt: skip
                assert result.returncode == 3, (result.returncode, result.stdout, result.stderr)
                message = result.stdout
            else:
                with pytest.raises(LabelStoreReadOnlyError) as info, LabelStore.open(base) as store:
                    store.add_clip(loops[1].audio, loops[1].sample_rate_hz)
                message = str(info.value)
            assert any(word in message for word in ("read-only", "cannot be written", "SJTUI_DATA_DIR")), (
                message
            )
        finally:
            os.chmod(base, stat.S_IRWXU)
            os.chmod(db, stat.S_IRUSR | stat.S_IWUSR)
        assert db.read_bytes() == before
        with LabelStore.open(base, readonly=True) as store:
            assert store.count() == 1  # nothing lost
        import sqlite3

        conn = sqlite3.connect(db)
        conn.execute("PRAGMA user_version = 99")
        conn.close()
        with pytest.raises(LabelStoreNewerError, match="99"):
            LabelStore.open(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_locked_database_keeps_the_pair_until_the_lock_goes(env, loops, tmp_path):
    """Another process holds the write lock: the store's message, the pair stays; the retry saves it."""
    import sqlite3

    from sjtui.labels.errors import LabelStoreLockedError
    from sjtui.labels.store import DB_FILENAME

    _, store = env
    store.busy_timeout_s = 0.2
    store.conn.execute("PRAGMA busy_timeout = 200")
    session, _ = make_session(env, loops)
    session.start()
    session.rate(3)
    pair = session.current
    other = sqlite3.connect(tmp_path / DB_FILENAME, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(LabelStoreLockedError, match="lock|another"):
            session.rate(4, note="kept")
        assert session.current is pair and store.count() == 1
    finally:
        other.execute("ROLLBACK")
        other.close()
    session.rate(4, note="kept")
    assert [(r["rating"], r["note"]) for r in store.rating_rows()] == [(3, ""), (4, "kept")]


def test_session_needs_loops_and_grooves(env):
    grooves, store = env
    with pytest.raises(LabelError, match="--folder"):
        LabelSession([], grooves.load_library(), store, groove_of=grooves.get)


def test_render_pair_holds_guitar_and_drums(env, loops):
    grooves, _ = env
    loop = loops[0]
    groove = grooves.get(1)
    from sjtui.synth.drums import DrumSynth

    mix = render_pair(loop, groove, DrumSynth(loop.sample_rate_hz))
    assert mix.shape == loop.audio.shape and mix.dtype == np.float32
    drums = mix - 0.8 * loop.audio
    assert np.abs(drums).max() > 0.05  # the drums are there
    assert np.abs(mix).max() <= 1.0


def _label_args(**overrides):
    import argparse

    from sjtui.commands import label

    parser = argparse.ArgumentParser()
    label.add_parser(parser.add_subparsers())
    args = parser.parse_args(["label", "--no-recordings"])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_find_loops_from_a_folder_of_recordings_at_the_output_rate(guitar_audio_dir, tmp_path):
    import shutil

    from sjtui.commands.label import find_loops

    folder = tmp_path / "takes"
    folder.mkdir()
    shutil.copy(guitar_audio_dir / "berklee_guitar_riff_cutup5.wav", folder)  # 20.3 s at 44.1 kHz
    shutil.copy(guitar_audio_dir / "berklee_guitar_chord1.wav", folder)  # too short for 4 bars
    notes = []
    loops = find_loops(_label_args(folder=[folder], bpm=123.0), log=notes.append)
    assert len(loops) == 2 and all(loop.sample_rate_hz == 48000 for loop in loops)
    assert all(
        loop.source == "user-file" and loop.audio.shape[0] == round(4 * 4 * 60 / 123 * 48000)
        for loop in loops
    )
    assert any("berklee_guitar_chord1.wav" in note and "shorter than 4 bars" in note for note in notes)


def test_find_loops_says_where_it_looked(guitar_audio_dir, tmp_path):
    import shutil

    from sjtui.commands.label import find_loops

    folder = tmp_path / "short"
    folder.mkdir()
    shutil.copy(guitar_audio_dir / "berklee_guitar_chord1.wav", folder)
    with pytest.raises(LabelError) as error:
        find_loops(_label_args(folder=[folder], bpm=123.0), log=lambda text: None)
    text = str(error.value)
    assert f"{folder}: 0 loop(s)" in text and "--generated N" in text and "--folder DIR" in text
