"""``slopewatch replay FILE``: publish recorded readings from a CSV file over MQTT.

CSV format (UTF-8; blank lines and lines starting with ``#`` are ignored; the
first other line is the header; column names are case-insensitive):

long layout, one value per row::

    mine,sensor,time,channel,value[,seq]
    HONGLING-PIT,GNSS-03,2025-06-01T00:00:00Z,east_mm,0.42,0

wide layout, one reading per row, one column per channel (an empty cell means
the sensor sent no value for that channel)::

    mine,sensor,time[,seq],east_mm,north_mm,up_mm,...
    HONGLING-PIT,GNSS-03,2025-06-01T00:00:00Z,0,0.42,-1.3,5.2

A file is long when its header has ``channel`` and ``value``, wide otherwise.
``time`` is ISO 8601 with a UTC offset (``Z``, ``+08:00``) or epoch milliseconds,
as on the wire. ``seq``, if present, is a non-negative integer per reading. Rows
need not be sorted. Every bad row is reported with its line number and reason.

Replay keeps the spacing of measurement times, divided by ``speed``. With
``--shift-to-now`` the whole file is moved in time so that its last reading falls
at "now": a recorded series then runs through the pipeline as if live.
"""

from __future__ import annotations

import argparse
import csv
import importlib.resources
import json
import math
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

import numpy as np

from core.model import CHANNEL_NAME_PATTERN
from core.settings import Settings, SettingsError
from core.wire import CODE_PATTERN, parse_time_us
from simulators.publisher import Publisher, SensorStream
from simulators.scenarios import DAY_S, GroundTruth, crack_series, displacement_series
from simulators.simulate import mqtt_target

Layout = Literal["long", "wide"]

_LONG_COLUMNS: Final = ("mine", "sensor", "time", "channel", "value")
_CHANNEL_RE: Final = re.compile(CHANNEL_NAME_PATTERN)
_MAX_PROBLEMS: Final = 50

EXAMPLE_CSV_NAME: Final = "example_gnss_tertiary.csv"


class ReplayError(Exception):
    """The file cannot be replayed; ``problems`` lists each as ``line N: what is wrong``."""

    def __init__(self, source: str, problems: list[str], more: int = 0) -> None:
        self.source = source
        self.problems = problems
        self.more = more
        listing = "\n".join(f"  - {p}" for p in problems)
        extra = f"\n  … and {more} more" if more else ""
        super().__init__(f"{source}: {len(problems) + more} problem(s):\n{listing}{extra}")


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.more = 0

    def add(self, line: int, text: str) -> None:
        if len(self.items) < _MAX_PROBLEMS:
            self.items.append(f"line {line}: {text}")
        else:
            self.more += 1


def example_csv() -> Path:
    """The example file shipped in ``simulators/data`` (wide layout, ground truth in its comments)."""
    return Path(str(importlib.resources.files("simulators") / "data" / EXAMPLE_CSV_NAME))


def read_replay_csv(path: Path) -> list[SensorStream]:
    """Read a replay file into one stream per sensor, sorted by time; raise :class:`ReplayError`."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayError(source, [f"cannot read the file: {exc}"]) from exc
    return parse_replay_csv(text.splitlines(), source)


def parse_replay_csv(lines: Iterable[str], source: str = "<csv>") -> list[SensorStream]:
    """Parse the lines of a replay file (see the module docstring for the format)."""
    problems = _Problems()
    rows = [(n, line) for n, line in enumerate(lines, start=1) if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        raise ReplayError(source, ["the file has no header and no rows"])
    header_line, header_text = rows[0]
    header = [h.strip().lower() for h in next(csv.reader([header_text]))]
    layout: Layout = "long" if "channel" in header and "value" in header else "wide"
    required = _LONG_COLUMNS if layout == "long" else ("mine", "sensor", "time")
    missing = [c for c in required if c not in header]
    if missing:
        raise ReplayError(source, [f"line {header_line}: the header lacks {', '.join(missing)}"])
    if len(set(header)) != len(header):
        raise ReplayError(source, [f"line {header_line}: a column is named twice"])
    channels: list[str] = []
    if layout == "long":
        extra = [c for c in header if c not in (*_LONG_COLUMNS, "seq")]
        if extra:
            raise ReplayError(
                source, [f"line {header_line}: unknown column(s) {', '.join(extra)} in a long-layout file"]
            )
    else:
        channels = [c for c in header if c not in ("mine", "sensor", "time", "seq")]
        bad = [c for c in channels if not _CHANNEL_RE.match(c)]
        if bad or not channels:
            raise ReplayError(
                source,
                [f"line {header_line}: channel columns must match {CHANNEL_NAME_PATTERN}; got {bad or 'none'}"],
            )
    col = {name: i for i, name in enumerate(header)}
    # (mine, sensor) -> t_us -> [values, seq, first line]
    data: dict[tuple[str, str], dict[int, tuple[dict[str, float], int | None, int]]] = {}
    for line_no, text in rows[1:]:
        cells = next(csv.reader([text]))
        if len(cells) != len(header):
            problems.add(line_no, f"{len(cells)} fields, the header has {len(header)}")
            continue
        mine, sensor = cells[col["mine"]].strip(), cells[col["sensor"]].strip()
        if not CODE_PATTERN.match(mine) or not CODE_PATTERN.match(sensor):
            problems.add(line_no, f"mine {mine!r} or sensor {sensor!r} is not a valid code (A-Z a-z 0-9 _ -)")
            continue
        try:
            t_us = _time(cells[col["time"]])
        except ValueError as exc:
            problems.add(line_no, str(exc))
            continue
        seq: int | None = None
        if "seq" in col and cells[col["seq"]].strip():
            raw = cells[col["seq"]].strip()
            if not raw.isdigit():
                problems.add(line_no, f"seq {raw!r} is not a non-negative integer")
                continue
            seq = int(raw)
        values: dict[str, float] = {}
        ok = True
        for channel, raw in _values(cells, col, layout, channels):
            if layout == "long" and not _CHANNEL_RE.match(channel):
                problems.add(line_no, f"channel {channel!r} must match {CHANNEL_NAME_PATTERN}")
                ok = False
                break
            try:
                value = float(raw)
            except ValueError:
                problems.add(line_no, f"{channel}: value {raw!r} is not a number")
                ok = False
                break
            if not math.isfinite(value):
                problems.add(line_no, f"{channel}: value {raw!r} is not finite")
                ok = False
                break
            values[channel] = value
        if not ok:
            continue
        if not values:
            problems.add(line_no, "the row has no value")
            continue
        per_sensor = data.setdefault((mine, sensor), {})
        if t_us not in per_sensor:
            per_sensor[t_us] = (values, seq, line_no)
            continue
        have, have_seq, first = per_sensor[t_us]
        twice = sorted(set(have) & set(values))
        if twice:
            problems.add(line_no, f"{mine}/{sensor} {', '.join(twice)} at this time is already on line {first}")
            continue
        if seq != have_seq:
            problems.add(line_no, f"seq {seq} differs from seq {have_seq} on line {first} for the same reading")
            continue
        have.update(values)
    if problems.items:
        raise ReplayError(source, problems.items, problems.more)
    return [_stream(mine, sensor, readings, source) for (mine, sensor), readings in data.items()]


def _time(raw: str) -> int:
    text = raw.strip()
    if not text:
        raise ValueError("time is empty")
    try:
        number = float(text)
    except ValueError:
        return parse_time_us(text)
    return parse_time_us(number)


def _values(cells: list[str], col: dict[str, int], layout: Layout, channels: list[str]) -> list[tuple[str, str]]:
    if layout == "long":
        return [(cells[col["channel"]].strip(), cells[col["value"]].strip())]
    return [(ch, cells[col[ch]].strip()) for ch in channels if cells[col[ch]].strip()]


def _stream(
    mine: str, sensor: str, readings: dict[int, tuple[dict[str, float], int | None, int]], source: str
) -> SensorStream:
    times = sorted(readings)
    channels = sorted({ch for values, _, _ in readings.values() for ch in values})
    values = {ch: np.array([readings[t][0].get(ch, math.nan) for t in times]) for ch in channels}
    seqs = [readings[t][1] for t in times]
    if all(s is None for s in seqs):
        seq = None
    elif any(s is None for s in seqs):
        lines = [readings[t][2] for t in times if readings[t][1] is None][:5]
        raise ReplayError(source, [f"{mine}/{sensor}: seq is missing on line(s) {lines} but given elsewhere"])
    else:
        seq = np.array(seqs, dtype=np.int64)
    return SensorStream(mine, sensor, np.array(times, dtype=np.float64) / 1e6, values, seq=seq)


def shift_streams(streams: Sequence[SensorStream], shift_s: float) -> list[SensorStream]:
    return [replace(s, t_s=s.t_s + shift_s) for s in streams]


def shift_to_end_at(streams: Sequence[SensorStream], end_s: float) -> tuple[list[SensorStream], float]:
    """Move every stream by the same amount so that the newest reading falls at ``end_s``."""
    last = max((float(s.t_s[-1]) for s in streams if len(s)), default=end_s)
    # whole seconds keep epoch-millisecond timestamps whole on the wire
    shift = math.floor(end_s - last)
    return shift_streams(streams, shift), shift


def write_replay_csv(
    streams: Iterable[SensorStream], path: Path, *, layout: Layout = "long", comments: Sequence[str] = ()
) -> None:
    """Write streams in the replay format; values keep full float precision (``repr``)."""
    streams = list(streams)
    with path.open("w", encoding="utf-8", newline="") as fh:
        for c in comments:
            fh.write(f"# {c}\n")
        writer = csv.writer(fh, lineterminator="\n")
        with_seq = any(s.seq is not None for s in streams)
        if layout == "long":
            writer.writerow([*_LONG_COLUMNS, *(["seq"] if with_seq else [])])
        else:
            channels = sorted({ch for s in streams for ch in s.values})
            writer.writerow(["mine", "sensor", "time", *(["seq"] if with_seq else []), *channels])
        for s in streams:
            for i in range(len(s)):
                t = _format_time(float(s.t_s[i]))
                seq = [str(int(s.seq[i]))] if s.seq is not None else ([""] if with_seq else [])
                if layout == "long":
                    for ch, v in s.values.items():
                        if not math.isnan(v[i]):
                            writer.writerow([s.mine, s.sensor, t, ch, repr(float(v[i])), *seq])
                else:
                    cells = [
                        repr(float(s.values[ch][i])) if ch in s.values and not math.isnan(s.values[ch][i]) else ""
                        for ch in channels
                    ]
                    writer.writerow([s.mine, s.sensor, t, *seq, *cells])


def _format_time(t_s: float) -> str:
    t_us = round(t_s * 1e6)
    seconds, micros = divmod(t_us, 1_000_000)
    dt = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=micros)
    return dt.isoformat(timespec="microseconds" if micros else "seconds").replace("+00:00", "Z")


def example_streams() -> tuple[list[SensorStream], GroundTruth]:
    """The streams of the shipped example: a GNSS point accelerating to failure and a creeping crack.

    20 days hourly from 2025-06-01T00:00Z; the GNSS point fails one hour after its
    last sample (onset of acceleration 10 days before failure).
    """
    start = datetime(2025, 6, 1, tzinfo=UTC).timestamp()
    gnss = displacement_series(
        "tertiary", start_s=start, duration_s=20 * DAY_S, interval_s=3600, seed=20250601, v0_mm_per_day=1.5
    )
    crack = crack_series("creep", start_s=start, duration_s=20 * DAY_S, interval_s=3600, seed=20250602)
    out = []
    for sensor, series in (("GNSS-03", gnss), ("CRK-01", crack)):
        values = {ch: np.round(v, 2) for ch, v in series.values.items()}
        seq = np.arange(len(series), dtype=np.int64)
        out.append(SensorStream("EXAMPLE-PIT", sensor, series.t_s, values, seq=seq, truth=series.truth))
    return out, gnss.truth


def write_example_csv(path: Path) -> None:
    """(Re)generate the shipped example file."""
    streams, truth = example_streams()
    write_replay_csv(
        streams,
        path,
        layout="wide",
        comments=(
            "Slopewatch replay example, generated by simulators.replay.write_example_csv",
            "EXAMPLE-PIT/GNSS-03: steady creep 1.5 mm/day, then Voight/Fukuzono tertiary creep (1/v linear)",
            f"ground truth: onset_s={truth.onset_s:.0f} ({_format_time(truth.onset_s or 0.0)}),"
            f" failure_s={truth.failure_s:.0f} ({_format_time(truth.failure_s or 0.0)})",
            "EXAMPLE-PIT/CRK-01: steady crack opening 0.1 mm/day, no failure",
        ),
    )


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="CSV of readings (long or wide layout; see docs/simulators.md)")
    parser.add_argument(
        "--speed", type=float, default=3600.0, help="recorded seconds per wall second (default 3600; inf: at once)"
    )
    shift = parser.add_mutually_exclusive_group()
    shift.add_argument("--shift-to-now", action="store_true", help="move the data so that it ends now")
    shift.add_argument("--shift-s", type=float, default=0.0, help="move the data by this many seconds")
    parser.add_argument("--upload-s", type=float, default=0.0, help="seconds between a sensor's uploads (0: as due)")
    parser.add_argument("--max-batch", type=int, default=500, help="readings per message at most")
    parser.add_argument("--client-id", default=None)


async def run_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``slopewatch replay``; print the final counts as JSON. 0 on success, 2 on a bad file."""
    try:
        streams = read_replay_csv(args.file)
        target = mqtt_target(settings)
    except (ReplayError, SettingsError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    if args.shift_to_now:
        streams, shift = shift_to_end_at(streams, time.time())
    else:
        shift = args.shift_s
        streams = shift_streams(streams, shift)
    publisher = Publisher(
        streams,
        target,
        speed=args.speed,
        upload_s=args.upload_s,
        max_batch=args.max_batch,
        client_id=args.client_id,
    )
    stats = await publisher.run()
    print(json.dumps({**stats.as_dict(), "shift_s": shift}, ensure_ascii=False))
    return 0
