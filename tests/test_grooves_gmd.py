"""Groove MIDI Dataset import: the whole shared folder, a zip, and a download from 127.0.0.1."""

from __future__ import annotations

import csv
import hashlib
import http.server
import io
import threading
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from sjtui.errors import GrooveError
from sjtui.grooves import gmd
from sjtui.grooves.midi_import import read_drum_performance, window_bars
from sjtui.grooves.store import GrooveStore


@pytest.fixture(scope="module")
def gmd_store(groove_midi_dir, tmp_path_factory):
    """The shared GMD imported once into a fresh store (about 8 s of CPU)."""
    store = GrooveStore(tmp_path_factory.mktemp("gmd-store"), builtin=False)
    report = gmd.import_gmd(store, groove_midi_dir)
    yield store, report
    store.close()


def info_rows(groove_midi_dir: Path) -> list[dict]:
    with open(groove_midi_dir / "info.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_file_imports_and_every_44_beat_yields_windows(gmd_store, groove_midi_dir):
    store, report = gmd_store
    rows = info_rows(groove_midi_dir)
    assert report.skipped == []
    assert report.files_seen == report.files_imported == len(rows) == 1150
    per_file = dict(
        store.conn.execute("SELECT source_path, COUNT(*) FROM grooves WHERE source = 'gmd' GROUP BY source_path")
    )
    beats_44 = [r for r in rows if r["beat_type"] == "beat" and r["time_signature"] == "4-4"]
    assert len(beats_44) == 491
    for row in beats_44:
        assert per_file.get(row["midi_filename"], 0) >= 1, row["midi_filename"]
    fills = [r for r in rows if r["beat_type"] == "fill"]
    for row in fills:
        assert per_file[row["midi_filename"]] == 1  # fills are kept whole


def test_window_counts_per_style_and_split_match_info_csv(gmd_store, groove_midi_dir):
    """Counts per (style, split, kind) recomputed from info.csv and the files agree with the store."""
    store, report = gmd_store
    expected: Counter = Counter()
    for row in info_rows(groove_midi_dir):
        performance = read_drum_performance(
            groove_midi_dir / row["midi_filename"], fallback_bpm=float(row["bpm"])
        )
        n = len(window_bars(performance, row["beat_type"]))
        expected[(row["style"].split("/")[0], row["split"], row["beat_type"])] += n
    stored = Counter(
        {
            (style, split, kind): n
            for style, split, kind, n in store.conn.execute(
                "SELECT style, split, kind, COUNT(*) FROM grooves GROUP BY style, split, kind"
            )
        }
    )
    assert stored == expected
    assert report.windows == expected
    by_split = report.count_by(1)
    assert set(by_split) == {"train", "validation", "test"}
    print("\nGMD windows by split:", dict(by_split))
    print("GMD windows by style:", dict(sorted(report.count_by(0).items())))
    print("GMD windows by kind:", dict(report.count_by(2)))


def test_every_stored_window_carries_its_files_info_csv_metadata(gmd_store, groove_midi_dir):
    store, _ = gmd_store
    by_file = {r["midi_filename"]: r for r in info_rows(groove_midi_dir)}
    for row in store.list_rows(source="gmd"):
        info = by_file[row["source_path"]]
        assert (row["style"], row["split"], row["kind"], row["drummer"], row["session"]) == (
            info["style"].split("/")[0], info["split"], info["beat_type"], info["drummer"], info["session"]
        )
        assert row["meter"] == info["time_signature"].replace("-", "/")
        if row["kind"] == "beat" and row["bars"] == 4:
            assert row["start_bar"] % 2 == 0  # windows start every 2 bars


def test_split_drummer_and_metadata_are_kept(gmd_store, groove_midi_dir):
    store, _ = gmd_store
    row = info_rows(groove_midi_dir)[0]
    groove_rows = store.list_rows(source="gmd")
    mine = [r for r in groove_rows if r["source_path"] == row["midi_filename"]]
    assert mine and all(r["split"] == row["split"] and r["drummer"] == row["drummer"] for r in mine)
    assert all(r["bpm"] == pytest.approx(float(row["bpm"]), abs=0.01) for r in mine)
    assert {r["meter"] for r in store.list_rows(source="gmd")} >= {"4/4", "3/4", "6/8"}
    groove = store.get(mine[0]["id"])
    assert groove.extra["gmd_style"] == row["style"]


def test_reimport_adds_nothing(gmd_store, groove_midi_dir):
    store, first = gmd_store
    before = store.count()
    again = gmd.import_gmd(store, groove_midi_dir)
    assert store.count() == before
    assert again.grooves_added == 0 and again.grooves_existing == first.grooves_added
    assert again.files_unchanged == 1150


def test_load_library_holds_every_groove_in_contiguous_arrays(gmd_store):
    store, report = gmd_store
    library = store.load_library()
    assert len(library) == store.count() == report.grooves_added
    assert library.event_step.flags["C_CONTIGUOUS"] and library.descriptors.shape == (len(library), 16)
    for index in (0, len(library) // 2, len(library) - 1):
        from_library = library.groove(index)
        from_row = store.get(int(library.ids[index]))
        np.testing.assert_array_equal(from_library.hits, from_row.hits)
        np.testing.assert_array_equal(from_library.velocities, from_row.velocities)
        np.testing.assert_array_equal(from_library.offsets, from_row.offsets)


# ------------------------------------------------------------------------------ zips


def build_zip(groove_midi_dir: Path, n_rows: int = 6, prefix: str = "groove/") -> bytes:
    """A small zip laid out like the official one: the first rows of info.csv and their files."""
    rows = info_rows(groove_midi_dir)[:n_rows]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        archive.writestr(prefix + "info.csv", text.getvalue())
        for row in rows:
            archive.write(groove_midi_dir / row["midi_filename"], prefix + row["midi_filename"])
    return buffer.getvalue()


def test_import_from_zip_reads_members_directly(tmp_path, groove_midi_dir):
    path = tmp_path / gmd.GMD_ZIP_NAME
    path.write_bytes(build_zip(groove_midi_dir, n_rows=6))
    with GrooveStore(tmp_path / "store", builtin=False) as store:
        report = gmd.import_gmd(store, path)
        assert report.files_imported == 6 and report.skipped == []
        assert store.count() == report.grooves_added > 6


def test_zip_with_a_missing_member_skips_that_file_and_keeps_the_rest(tmp_path, groove_midi_dir):
    data = build_zip(groove_midi_dir, n_rows=4)
    rows = info_rows(groove_midi_dir)[:4]
    broken = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(broken, "w") as target:
        for item in source.infolist():
            if not item.filename.endswith(rows[1]["midi_filename"]):
                target.writestr(item, source.read(item))
            else:
                target.writestr(item, b"MThd\x00\x00\x00\x06\x00\x01")  # a truncated MIDI file
    path = tmp_path / "partly-broken.zip"
    path.write_bytes(broken.getvalue())
    with GrooveStore(tmp_path / "store", builtin=False) as store:
        report = gmd.import_gmd(store, path)
        assert [s.path for s in report.skipped] == [rows[1]["midi_filename"]]
        assert "truncated" in report.skipped[0].reason
        assert report.files_imported == 3 and store.count() == report.grooves_added


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a readable zip"),
        (b"PK\x03\x04 this is not really a zip", "not a readable zip"),
        ("wrong-content", "holds no info.csv"),
        ("truncated", "not a readable zip"),
    ],
)
def test_bad_zip_is_refused_with_its_reason(tmp_path, groove_midi_dir, content, message):
    if content == "wrong-content":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("readme.txt", "hello")
        content = buffer.getvalue()
    elif content == "truncated":
        content = build_zip(groove_midi_dir)[:2000]
    path = tmp_path / "bad.zip"
    path.write_bytes(content)
    with GrooveStore(tmp_path / "store", builtin=False) as store:
        with pytest.raises(GrooveError, match=message):
            gmd.import_gmd(store, path)
        assert store.count() == 0


# ------------------------------------------------------------------------------ download


class _Server:
    """A real HTTP server on 127.0.0.1 serving ``routes``: path -> (body, claimed_length)."""

    def __init__(self, routes: dict[str, tuple[bytes, int]]) -> None:
        routes_ = routes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                if self.path not in routes_:
                    self.send_error(404)
                    return
                body, length = routes_[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def served_zips(groove_midi_dir):
    good = build_zip(groove_midi_dir)
    wrong = io.BytesIO()
    with zipfile.ZipFile(wrong, "w") as archive:
        archive.writestr("groove/notes.txt", "no dataset here")
    wrong_bytes = wrong.getvalue()
    routes = {
        "/good.zip": (good, len(good)),
        "/wrong-content.zip": (wrong_bytes, len(wrong_bytes)),
        "/truncated.zip": (good[: len(good) // 3], len(good)),  # claims the full length, then hangs up
    }
    with _Server(routes) as server:
        yield server, good, wrong_bytes


def quiet() -> Console:
    return Console(file=io.StringIO(), force_terminal=False)


def test_download_verifies_checksum_and_imports(tmp_path, served_zips):
    server, good, _ = served_zips
    sha256 = hashlib.sha256(good).hexdigest()
    path = gmd.download_gmd(tmp_path, url=server.url("/good.zip"), sha256=sha256, size_bytes=len(good), console=quiet())
    assert path.read_bytes() == good and not list(tmp_path.glob("*.part"))
    with GrooveStore(tmp_path / "store", builtin=False) as store:
        report = gmd.import_gmd(store, path)
        assert report.files_imported == 6 and store.count() > 0
    # a verified file is not fetched again (the server would 404 on this path)
    again = gmd.download_gmd(tmp_path, url=server.url("/gone.zip"), sha256=sha256, console=quiet())
    assert again == path


def test_download_with_wrong_checksum_is_deleted_and_refused(tmp_path, served_zips):
    server, good, _ = served_zips
    with pytest.raises(GrooveError, match="checksum mismatch"):
        gmd.download_gmd(tmp_path, url=server.url("/good.zip"), sha256="0" * 64, size_bytes=None, console=quiet())
    assert list(tmp_path.iterdir()) == []


def test_download_of_wrong_size_is_refused(tmp_path, served_zips):
    server, good, _ = served_zips
    with pytest.raises(GrooveError, match=f"{len(good)} bytes, expected {gmd.GMD_ZIP_SIZE}"):
        gmd.download_gmd(tmp_path, url=server.url("/good.zip"), console=quiet())
    assert list(tmp_path.iterdir()) == []


def test_truncated_download_is_refused(tmp_path, served_zips):
    server, good, _ = served_zips
    with pytest.raises(GrooveError, match="broke off|failed after"):
        gmd.download_gmd(
            tmp_path, url=server.url("/truncated.zip"), sha256=hashlib.sha256(good).hexdigest(),
            size_bytes=None, console=quiet(),
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_download_with_right_checksum_but_wrong_content_fails_at_import(tmp_path, served_zips):
    server, _, wrong = served_zips
    path = gmd.download_gmd(
        tmp_path, url=server.url("/wrong-content.zip"), sha256=hashlib.sha256(wrong).hexdigest(),
        size_bytes=None, console=quiet(),
    )  # fmt: skip
    with GrooveStore(tmp_path / "store", builtin=False) as store:
        with pytest.raises(GrooveError, match="holds no info.csv"):
            gmd.import_gmd(store, path)


def test_missing_url_is_a_clear_error(tmp_path, served_zips):
    server, _, _ = served_zips
    with pytest.raises(GrooveError, match="download of .* failed"):
        gmd.download_gmd(tmp_path, url=server.url("/nothing.zip"), console=quiet())


def test_official_constants_are_consistent():
    assert gmd.GMD_URL.endswith("/" + gmd.GMD_ZIP_NAME)
    assert len(gmd.GMD_ZIP_SHA256) == 64 and int(gmd.GMD_ZIP_SHA256, 16) >= 0
    assert gmd.GMD_ZIP_SIZE > 1_000_000


def test_round_trip_of_real_windows_through_midi(gmd_store, tmp_path):
    """Stored GMD windows -> MIDI file -> read back: hits exact, velocities and offsets within a step of the file."""
    from sjtui.grooves.midi_export import write_midi
    from sjtui.grooves.midi_import import read_drum_performance

    store, _ = gmd_store
    library = store.load_library()
    for index in np.linspace(0, len(library) - 1, 60).astype(int):
        groove = library.groove(int(index))
        back = read_drum_performance(write_midi(groove, tmp_path / "w.mid"))
        hits, velocities, offsets = back.vho()
        n = hits.shape[0]
        assert not groove.hits[n:].any()  # only trailing silent bars can be missing
        np.testing.assert_array_equal(hits, groove.hits[:n])
        assert np.abs(velocities - groove.velocities[:n]).max() <= 0.5 / 127 + 1e-6
        expected = groove.offsets[:n].copy()
        expected[0] = np.maximum(expected[0], 0)  # a hit before the first downbeat is written at tick 0
        assert np.abs(offsets - expected)[hits].max() <= 1 / 40 + 1e-6  # one tick at 480 per beat
