"""Downloads against a local HTTP server (never the internet) and copies of a local dataset."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fmnist_toolkit.data import copy_dataset, fetch_dataset, load_fashion_mnist, verify_dataset
from fmnist_toolkit.errors import DataCorruptError, DownloadError
from tests.conftest import raw_files_of


class RecordingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]
    delay: float = 0.0

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if "slow" in self.path:
            time.sleep(self.delay)
        super().do_GET()

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up (the timeout test) is expected, not worth a traceback


@pytest.fixture
def server(tmp_path: Path, synthetic_data: Path) -> Iterator[tuple[str, list[str]]]:
    """Serves ``good/`` (the dataset), ``corrupt/`` (damaged copies) and ``empty/`` (404s)."""
    root = tmp_path / "www"
    shutil.copytree(synthetic_data, root / "good")
    shutil.copytree(synthetic_data, root / "slow")
    (root / "empty").mkdir()
    (root / "corrupt").mkdir()
    for path in synthetic_data.iterdir():
        (root / "corrupt" / path.name).write_bytes(path.read_bytes()[:-40] + b"x" * 40)
    requests: list[str] = []
    handler = functools.partial(
        type("Handler", (RecordingHandler,), {"requests": requests, "delay": 10.0}),
        directory=str(root),
    )
    httpd = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_fetch_downloads_verifies_and_reports_progress(
    server: tuple[str, list[str]], synthetic_data: Path, tmp_path: Path
) -> None:
    url, _ = server
    dest = tmp_path / "data"
    progress: list[tuple[str, int, int | None]] = []
    paths = fetch_dataset(
        dest,
        mirrors=[url + "/good/"],
        files=raw_files_of(synthetic_data),
        progress=lambda *call: progress.append(call),
    )
    assert sorted(path.name for path in paths) == sorted(p.name for p in synthetic_data.iterdir())
    assert all(check.ok for check in verify_dataset(dest, raw_files_of(synthetic_data)))
    assert not list(dest.glob("*.part")), "temporary files are cleaned up"
    finished = {name for name, done, total in progress if total and done == total}
    assert len(finished) == 4
    images, _ = load_fashion_mnist("train", dest)
    assert images.shape == (256, 28, 28)


def test_downloaded_and_copied_files_get_the_usual_permissions(
    server: tuple[str, list[str]], synthetic_data: Path, tmp_path: Path
) -> None:
    import os

    url, _ = server
    umask = os.umask(0o022)
    try:
        fetched = fetch_dataset(
            tmp_path / "d", mirrors=[url + "/good/"], files=raw_files_of(synthetic_data)
        )
        copied = copy_dataset(synthetic_data, tmp_path / "c", files=raw_files_of(synthetic_data))
    finally:
        os.umask(umask)
    # Written through mkstemp (0600), then opened up as a plain open() would have made them.
    assert {path.stat().st_mode & 0o777 for path in [*fetched, *copied]} == {0o644}


def test_fetch_moves_past_corrupt_and_missing_mirrors(
    server: tuple[str, list[str]], synthetic_data: Path, tmp_path: Path
) -> None:
    url, requests = server
    mirrors = [url + "/empty/", url + "/corrupt/", url + "/good/"]
    fetch_dataset(tmp_path / "data", mirrors=mirrors, files=raw_files_of(synthetic_data))
    assert all(
        check.ok for check in verify_dataset(tmp_path / "data", raw_files_of(synthetic_data))
    )
    assert any(path.startswith("/corrupt/") for path in requests)
    assert not list((tmp_path / "data").glob("*.part"))


def test_fetch_fails_with_one_line_naming_every_try(
    server: tuple[str, list[str]], synthetic_data: Path, tmp_path: Path
) -> None:
    url, _ = server
    with pytest.raises(DownloadError) as caught:
        fetch_dataset(
            tmp_path / "data",
            mirrors=[url + "/empty/", url + "/corrupt/"],
            files=raw_files_of(synthetic_data),
        )
    message = str(caught.value)
    assert "\n" not in message
    assert f"{url}/empty/" in message and f"{url}/corrupt/" in message and "corrupt" in message
    assert not [p for p in (tmp_path / "data").iterdir() if not p.name.startswith(".fetch")]


def test_fetch_times_out_and_tries_the_next_mirror(
    server: tuple[str, list[str]], synthetic_data: Path, tmp_path: Path
) -> None:
    url, requests = server
    started = time.perf_counter()
    fetch_dataset(
        tmp_path / "data",
        mirrors=[url + "/slow/", url + "/good/"],
        files=raw_files_of(synthetic_data)[:1],
        timeout=0.5,
    )
    # The slow mirror answers only after 10 s: finishing well before means it was given up.
    assert time.perf_counter() - started < 5.0
    assert any(path.startswith("/slow/") for path in requests)
    assert any(path.startswith("/good/") for path in requests)


def test_a_good_download_replaces_a_corrupt_plain_file(
    server: tuple[str, list[str]], synthetic_data: Path, tmp_path: Path
) -> None:
    url, _ = server
    dest = tmp_path / "data"
    dest.mkdir()
    # A damaged uncompressed file would be read before the .gz: it must not survive a fetch.
    (dest / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01garbage")
    files = raw_files_of(synthetic_data)
    fetch_dataset(dest, mirrors=[url + "/good/"], files=files)
    assert not (dest / "train-labels-idx1-ubyte").exists()
    assert all(check.ok for check in verify_dataset(dest, files))


def test_a_second_fetch_on_one_folder_fails_at_once(synthetic_data: Path, tmp_path: Path) -> None:
    from filelock import FileLock

    dest = tmp_path / "data"
    dest.mkdir()
    with FileLock(str(dest / ".fetch.lock")), pytest.raises(DownloadError, match="another"):
        copy_dataset(synthetic_data, dest, files=raw_files_of(synthetic_data))


def test_cli_fetch_downloads_with_progress(
    cli, server: tuple[str, list[str]], synthetic_data: Path, tmp_path: Path, monkeypatch
) -> None:
    import fmnist_toolkit.data.download as data

    url, _ = server
    monkeypatch.setattr(data, "official_mirrors", lambda: [url + "/empty/", url + "/good/"])
    monkeypatch.setattr(data, "official_files", lambda: raw_files_of(synthetic_data))
    result = cli("data", "fetch", "--data-dir", tmp_path / "d", "--json")
    assert result.exit_code == 0, result.stderr
    assert len(__import__("json").loads(result.stdout)["files"]) == 4
    monkeypatch.setattr(data, "official_mirrors", lambda: [url + "/empty/"])
    failed = cli("data", "fetch", "--data-dir", tmp_path / "other")
    assert failed.exit_code == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not download")
    assert f"{url}/empty/" in lines[0]


def test_data_in_place_means_no_network(
    server: tuple[str, list[str]], synthetic_data: Path, tmp_path: Path
) -> None:
    url, requests = server
    dest = tmp_path / "data"
    fetch_dataset(dest, mirrors=[url + "/good/"], files=raw_files_of(synthetic_data))
    count = len(requests)
    fetch_dataset(dest, mirrors=[url + "/good/"], files=raw_files_of(synthetic_data))
    assert len(requests) == count


def test_copy_dataset_verifies_before_writing(synthetic_data: Path, tmp_path: Path) -> None:
    files = raw_files_of(synthetic_data)
    copied = copy_dataset(synthetic_data, tmp_path / "copy", files=files)
    assert len(copied) == 4
    assert all(check.ok for check in verify_dataset(tmp_path / "copy", files))
    # With the official checksums, synthetic data is refused and nothing is written.
    with pytest.raises(DataCorruptError, match="MD5"):
        copy_dataset(synthetic_data, tmp_path / "refused")
    assert not (tmp_path / "refused").exists() or not list((tmp_path / "refused").iterdir())


def test_cli_fetch_from_refuses_bad_data(cli, synthetic_data: Path, tmp_path: Path) -> None:
    result = cli("data", "fetch", "--from", synthetic_data, "--data-dir", tmp_path / "d")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "MD5" in result.stderr and "Traceback" not in result.stderr


def test_cli_verify_and_path(cli, synthetic_data: Path, tmp_path: Path) -> None:
    result = cli("data", "verify", "--data-dir", synthetic_data, "--json")
    assert result.exit_code == 1
    assert '"ok": false' in result.stdout
    assert result.stderr.startswith("error: ") and "MD5" in result.stderr
    human = cli("data", "verify", "--data-dir", synthetic_data)
    assert "Fashion-MNIST in" in human.stdout  # the table: a result, on stdout
    assert "t10k-labels-idx1-ubyte.gz" in human.stdout
    assert human.stderr.startswith("error: ") and "Fashion-MNIST in" not in human.stderr
    missing = cli("data", "verify", "--data-dir", tmp_path / "nothing")
    # the hint fills the folder in use, not the default one
    assert missing.exit_code == 1
    assert f"run `fmt data fetch --data-dir {tmp_path / 'nothing'}`" in missing.stderr
    assert f"run `fmt data fetch --data-dir {synthetic_data}` to download" in result.stderr
    where = cli("data", "path", "--data-dir", tmp_path)
    assert where.exit_code == 0 and where.stdout.strip() == str(tmp_path)


@pytest.mark.realdata
def test_cli_fetch_from_and_verify_real_data(cli, real_data: Path, tmp_path: Path) -> None:
    dest = tmp_path / "copy"
    result = cli("data", "fetch", "--from", real_data, "--data-dir", dest, "--json")
    assert result.exit_code == 0, result.stderr
    verified = cli("data", "verify", "--data-dir", dest, "--json")
    assert verified.exit_code == 0, verified.stderr
    assert '"ok": true' in verified.stdout
