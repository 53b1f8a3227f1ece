// Turning hourly buckets into what the charts show. Times in epoch ms; displacement in mm.

const DAY_MS = 86400e3;

/** Buckets [{bucket, channel, avg, n}] -> Map channel -> Map ms -> {avg, sum}. */
export function byChannel(buckets) {
  const out = new Map();
  for (const b of buckets ?? []) {
    if (!out.has(b.channel)) out.set(b.channel, new Map());
    out.get(b.channel).set(Date.parse(b.bucket), { avg: b.avg, sum: b.avg * b.n });
  }
  return out;
}

export function times(channels, names) {
  const set = new Set();
  for (const name of names) for (const ms of channels.get(name)?.keys() ?? []) set.add(ms);
  return [...set].sort((a, b) => a - b);
}

export function series(channel, ms, field = "avg") {
  return ms.map((t) => [t, channel?.get(t)?.[field] ?? NaN]);
}

/**
 * The reference the detectors judge the channel against (GET …/reference: ``refs`` maps a
 * channel to {value, source, since}), else the registry's baseline, else its first value in
 * the window (said so).
 */
export function baselineOf(sensor, name, points, refs) {
  const ref = refs?.get(name);
  if (ref && Number.isFinite(ref.value)) return { value: ref.value, source: ref.source, since: ref.since };
  if (sensor.baseline && Number.isFinite(sensor.baseline[name])) return { value: sensor.baseline[name], source: "registry" };
  const first = points.find(([, v]) => Number.isFinite(v));
  return { value: first ? first[1] : NaN, source: "window start" };
}

/** ``current`` of GET …/reference as a Map channel -> {value, source, since}. */
export function referencesOf(doc) {
  return new Map((doc?.current ?? []).map((r) => [r.channel, r]));
}

/** The newest re-baseline time (ms) among the references, or null: earlier readings are another installation. */
export function rebaselinedAt(refs) {
  const times = [...(refs?.values() ?? [])].filter((r) => r.source === "rebaseline" && r.since).map((r) => Date.parse(r.since));
  return times.length ? Math.max(...times) : null;
}

/** Horizontal √(ΔE²+ΔN²) and vertical ΔU from the reference position; nothing before a re-baseline. */
export function displacement(sensor, channels, refs) {
  const from = rebaselinedAt(refs) ?? -Infinity;
  const ms = times(channels, ["east_mm", "north_mm", "up_mm"]).filter((t) => t >= from);
  const e = series(channels.get("east_mm"), ms);
  const n = series(channels.get("north_mm"), ms);
  const u = series(channels.get("up_mm"), ms);
  const e0 = baselineOf(sensor, "east_mm", e, refs).value;
  const n0 = baselineOf(sensor, "north_mm", n, refs).value;
  const u0 = baselineOf(sensor, "up_mm", u, refs).value;
  return {
    horizontal: ms.map((t, i) => [t, Math.hypot(e[i][1] - e0, n[i][1] - n0)]),
    vertical: ms.map((t, i) => [t, u[i][1] - u0]),
  };
}

/**
 * Invalidations in force among a sensor's corrections (GET …/corrections, oldest first): an
 * invalidation not followed by a restore of the same channel and range, as the server counts them.
 */
export function invalidRanges(corrections) {
  const newest = new Map();
  for (const c of corrections ?? []) newest.set(`${c.channel ?? "*"}|${c.start}|${c.end}`, c);
  return [...newest.values()].filter((c) => c.action === "invalidate");
}

/**
 * Velocity, mm/day: least-squares slope over the trailing ``windowMs`` at each point,
 * from at least ``minPoints`` readings; a gap longer than the window yields NaN, never
 * a slope across missing data. Hourly GNSS velocities are noise without such smoothing.
 */
export function velocity(points, { windowMs = DAY_MS, minPoints = 6 } = {}) {
  const pts = points.filter(([, v]) => Number.isFinite(v));
  const out = [];
  let lo = 0;
  for (let i = 0; i < pts.length; i++) {
    const t = pts[i][0];
    while (pts[lo][0] < t - windowMs) lo++;
    const n = i - lo + 1;
    if (n < minPoints) {
      out.push([t, NaN]);
      continue;
    }
    let st = 0;
    let sv = 0;
    for (let k = lo; k <= i; k++) {
      st += pts[k][0];
      sv += pts[k][1];
    }
    const mt = st / n;
    const mv = sv / n;
    let num = 0;
    let den = 0;
    for (let k = lo; k <= i; k++) {
      num += (pts[k][0] - mt) * (pts[k][1] - mv);
      den += (pts[k][0] - mt) ** 2;
    }
    out.push([t, den > 0 ? (num / den) * DAY_MS : NaN]);
  }
  return out;
}

/** 1/v, day/mm, where the velocity in the direction of movement exceeds ``floor`` mm/day. */
export function inverse(vel, { direction = 1, floor = 0.05 } = {}) {
  return vel.map(([t, v]) => [t, Number.isFinite(v) && v * direction > floor ? 1 / (v * direction) : NaN]);
}

/** Trailing sums over ``windowMs`` of [ms, value] points (rainfall). */
export function trailingSum(points, windowMs) {
  const out = [];
  let lo = 0;
  let sum = 0;
  for (let i = 0; i < points.length; i++) {
    sum += Number.isFinite(points[i][1]) ? points[i][1] : 0;
    while (points[lo][0] <= points[i][0] - windowMs) {
      sum -= Number.isFinite(points[lo][1]) ? points[lo][1] : 0;
      lo++;
    }
    out.push([points[i][0], sum]);
  }
  return out;
}

/** Threshold lines of one quantity from sensor.thresholds; ``sign`` flips them (settlement). */
export function thresholdLines(sensor, quantity, sign = 1) {
  const th = sensor.thresholds?.[quantity];
  if (!th) return [];
  return ["blue", "yellow", "orange", "red"].filter((lv) => th[lv] !== null && th[lv] !== undefined).map((lv) => ({ level: lv, value: sign * th[lv] }));
}

/**
 * The inverse-velocity forecast of an acceleration alert's evidence: the line
 * 1/v = a + b·(t − t_ref) [t in days] to zero at failure, and its 95 % interval.
 */
export function forecastOf(alert) {
  const ev = alert?.evidence ?? {};
  const a = ev.inverse_velocity_a_day_per_mm;
  const b = ev.inverse_velocity_b_per_mm;
  const tRef = Number.isFinite(ev.window_to_s) ? ev.window_to_s * 1000 : Date.parse(alert?.updated_at);
  if (!Number.isFinite(a) || !Number.isFinite(b) || b >= 0 || !Number.isFinite(tRef)) return null;
  const failMs = tRef + (-a / b) * DAY_MS;
  const onsetMs = Number.isFinite(ev.voight_onset_age_h) ? tRef - ev.voight_onset_age_h * 3600e3 : tRef - 3 * DAY_MS;
  const at = (ms) => a + (b * (ms - tRef)) / DAY_MS;
  return {
    a,
    b,
    tRef,
    onsetMs,
    failMs,
    lowerMs: Number.isFinite(ev.voight_ttf_lower_h) ? tRef + ev.voight_ttf_lower_h * 3600e3 : null,
    upperMs: Number.isFinite(ev.voight_ttf_upper_h) ? tRef + ev.voight_ttf_upper_h * 3600e3 : null,
    line: [[onsetMs, at(onsetMs)], [failMs, 0]],
    reliable: Boolean(ev.forecast_reliable),
    forecastAt: alert.forecast_failure_at ? Date.parse(alert.forecast_failure_at) : null,
  };
}
