"""The HTML report in a real browser: headless Chromium opens the file written by
`deliverability report ... --format html` and the charts are there and drawn.

Skipped when Chromium is not installed, except under CI (env CI set), where it must be: `.ci/run`
installs Debian's `chromium`.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import factories_reports as f
import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from deliverability.cli import cli
from deliverability.report_html import OUTCOME_COLOURS
from deliverability.store.session import create_engine, upgrade_schema
from deliverability.vocabulary import Outcome, Reason, Standing

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
WINDOW = (900, 1000)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed, and CI must run the browser test (.ci/run)")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    return path


def browse(
    chromium: str, tmp_path: Path, page: Path, *mode: str
) -> subprocess.CompletedProcess[bytes]:
    """Run headless Chromium on `page` with no network features and a throw-away profile."""
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            f"--user-data-dir={tmp_path / 'profile'}",
            *mode,
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML written by the report command for a small store with every outcome."""
    tmp = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{tmp / 'store.db'}"
    engine = create_engine(url)
    upgrade_schema(engine)
    with Session(engine) as session:
        for i, domain in enumerate(["bad.example", "good.example", "slow.example"]):
            r = f.recipient(
                session,
                f"user{i}@{domain}",
                at=NOW - 9 * DAY,
                standing=Standing.BOUNCED,
                reason=Reason.USER_UNKNOWN,
            )
            for day in range(1, 6):
                at = NOW - day * DAY
                f.events(session, r, 20, at=at, outcome=Outcome.DELIVERED)
                f.events(session, r, 3 - i, at=at, outcome=Outcome.BOUNCED)
                f.events(session, r, 4, at=at, outcome=Outcome.DEFERRED)
                f.events(session, r, 2, at=at, outcome=Outcome.BLOCKED)
        session.commit()
    engine.dispose()
    out = tmp / "report.html"
    result = CliRunner().invoke(
        cli,
        [
            *("--database-url", url, "report", "domains", "--format", "html"),
            *("--output", str(out), "--now", NOW.isoformat()),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def test_the_browser_builds_the_svg_charts_with_their_bars(
    chromium: str, report_page: Path, tmp_path: Path
) -> None:
    dom = browse(chromium, tmp_path, report_page, "--dump-dom").stdout.decode()
    for ident in ("chart-outcomes", "chart-domains", "chart-reasons"):
        assert f'id="{ident}"' in dom
    # 5 days x 4 outcomes stacked, 3 domains, 3 reasons.
    assert dom.count('class="bar" data-series=') == 20
    assert dom.count('class="bar" data-label=') == 6
    assert "bad.example" in dom


def test_the_browser_paints_the_bars(chromium: str, report_page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    browse(chromium, tmp_path, report_page, f"--screenshot={shot}")
    width, height, pixels = decode_png(shot.read_bytes())
    assert (width, height) == WINDOW
    counts = colour_counts(pixels)
    # The stacked bars are hundreds of pixels tall: each outcome's colour covers far more than
    # its 12x12 legend square would.
    for outcome in ("delivered", "deferred", "bounced", "blocked"):
        rgb = bytes.fromhex(OUTCOME_COLOURS[outcome][1:])
        assert counts.get(rgb, 0) > 2000, outcome
    # And the page is not blank: most of it is white, but not all of it.
    white = counts.get(b"\xff\xff\xff", 0)
    assert 0.3 * width * height < white < 0.98 * width * height


def test_the_png_decoder_reads_a_known_image() -> None:
    # A 2x2 RGB image: red, green / blue, white; one scanline "Sub"-filtered, one "Paeth".
    rows = [bytes([255, 0, 0, 0, 255, 0]), bytes([0, 0, 255, 255, 255, 255])]
    sub = bytes([1]) + bytes([255, 0, 0, (0 - 255) % 256, 255, 0])
    paeth = bytes([4]) + bytes(
        [(0 - 255) % 256, 0, 255, (255 - 0) % 256, (255 - 255) % 256, (255 - 255) % 256]
    )
    png = _png(2, 2, sub + paeth)
    assert decode_png(png) == (2, 2, rows)


# ------------------------------------------------------------------------------------------
# A small PNG decoder (RFC 2083 / the W3C PNG specification): 8-bit RGB or RGBA, no interlace,
# which is what Chromium writes for screenshots.


def _png(width: int, height: int, raw: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and one RGB byte string per row."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, bytearray()
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8, f"bit depth {depth}"
            assert colour in (2, 6), f"colour type {colour}"
            assert interlace == 0, "interlaced"
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    previous = bytearray(stride)
    rows: list[bytes] = []
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(kind, line, previous, channels)
        rows.append(bytes(line) if channels == 3 else _rgb(line))
        previous = line
    return width, height, rows


def _unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> None:
    if kind == 0:
        return
    if kind == 2:
        line[:] = bytes((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        return
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            corner = previous[i - bpp] if i >= bpp else 0
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            line[i] = (line[i] + pred) & 0xFF
        else:
            raise AssertionError(f"unknown PNG filter {kind}")


def _rgb(rgba: bytearray) -> bytes:
    out = bytearray()
    for i in range(0, len(rgba), 4):
        out += rgba[i : i + 3]
    return bytes(out)


def colour_counts(rows: list[bytes]) -> dict[bytes, int]:
    counts: dict[bytes, int] = {}
    for row in rows:
        for i in range(0, len(row), 3):
            px = row[i : i + 3]
            counts[px] = counts.get(px, 0) + 1
    return counts
