// Chinese by default, English on request (the choice is remembered in this browser);
// times are stored in UTC and shown in Asia/Shanghai.

const KEY = "slopewatch.lang";
export const TIME_ZONE = "Asia/Shanghai";

const TEXT = {
  zh: {
    title: "边坡与尾矿库监测",
    watchdog_dead: "分析服务已停止：当前不计算任何预警，请人工查看数据并加强巡查",
    watchdog_behind: "分析服务滞后：预警将延迟",
    watchdog_offline: "在线监测中断的矿山",
    login: "登录",
    login_hint: "请输入监管或监控令牌（由管理员通过 slopewatch token create 发放）",
    token: "令牌",
    logout: "退出",
    language: "English",
    loading: "加载中…",
    error: "错误",
    dismiss: "关闭",
    live: "实时",
    live_lost: "实时连接中断，正在重连…",
    sound_on: "开启声音报警",
    sound_off: "声音报警已开启",
    alert_board: "报警看板",
    no_open_alerts: "当前没有未关闭的报警",
    new_alert: "新报警",
    overview: "总览",
    region_tree: "行政区划",
    children: "下级",
    worst_level: "最高等级",
    mines: "矿山",
    open_alerts: "未关闭报警",
    unacknowledged: "未确认",
    sensors: "传感器",
    online: "在线",
    silent: "离线",
    online_rate: "在线率",
    silent_sensors: "离线传感器",
    none_silent: "所有传感器在线",
    overdue: "逾期",
    overdue_handling: "整改逾期",
    overdue_supervision: "督办逾期",
    supervisions: "督办",
    no_supervisions: "没有督办事项",
    worst_mines: "报警矿山",
    by_level: "按等级",
    updated: "更新于",
    unchanged: "无变化",
    sites: "监测部位",
    site: "部位",
    sensor: "传感器",
    kind: "类型",
    level: "等级",
    last_reading: "最新数据",
    normal: "正常",
    rule: "判据",
    stage: "处置阶段",
    opened: "发生时间",
    changed: "更新时间",
    explanation: "说明",
    evidence: "判据依据",
    forecast: "预测失稳时间",
    interval: "区间",
    no_forecast: "无预测",
    five_fixed: "五落实",
    responsible_person: "责任人",
    measures: "措施",
    funds: "资金",
    deadline: "期限",
    contingency_plan: "应急预案",
    note: "备注",
    actions: "处置",
    acknowledge: "确认",
    handle: "落实整改",
    resolve: "整改完成",
    verify: "验收",
    reject: "验收不通过",
    close: "销号",
    supervise: "督办",
    submit: "提交",
    history: "处置记录",
    at: "时间",
    event: "事件",
    actor: "操作人",
    details: "详情",
    detectors: "监测系统",
    evacuation: "停产撤人",
    charts: "曲线",
    days: "天",
    horizontal: "水平位移",
    vertical: "垂直位移",
    velocity: "速率",
    inverse_velocity: "倒数速率",
    displacement: "位移",
    forecast_line: "预测线",
    forecast_band: "预测区间",
    threshold: "阈值",
    phreatic: "浸润线埋深",
    pond_level: "库水位",
    freeboard: "安全超高",
    beach: "干滩长度",
    rain: "降雨量",
    rain_24h: "24小时累计",
    crack: "裂缝宽度",
    internal: "深部位移",
    no_data: "该时段无数据",
    back: "返回",
    all_alerts_of_mine: "本矿报警",
    active: "条件仍存在",
    inactive: "条件已消除",
    supervision_deadline: "督办期限",
    open_stage: "未确认",
    retroactive: "补传数据重算",
    forbidden_hint: "当前令牌无此权限",
    baseline: "基准",
    reference: "位移基准",
    ref_registry: "台账基准",
    ref_first_reading: "首次读数",
    ref_rebaseline: "重新设定基准",
    "ref_window start": "窗口起点",
    since: "自",
    invalid_left_out: "已标记无效、未参与计算和绘图的读数",
    all_channels: "全部通道",
    alert: "报警",
    mine: "矿山",
    region: "区域",
    state: "状态",
    signed_in_as: "当前用户",
    range: "时间范围",
    view: "查看",
  },
  en: {
    watchdog_dead: "Analysis is not running: no alarm is being computed; watch the readings and patrol by hand",
    watchdog_behind: "Analysis is behind: alarms come late",
    watchdog_offline: "Mines whose monitoring is offline",
    title: "Slope and tailings monitoring",
    login: "Log in",
    login_hint: "Enter your monitoring or supervision token (issued with slopewatch token create)",
    token: "Token",
    logout: "Log out",
    language: "中文",
    loading: "Loading…",
    error: "Error",
    dismiss: "Dismiss",
    live: "Live",
    live_lost: "Live connection lost, reconnecting…",
    sound_on: "Enable alarm sound",
    sound_off: "Alarm sound on",
    alert_board: "Alert board",
    no_open_alerts: "No open alerts",
    new_alert: "New alert",
    overview: "Overview",
    region_tree: "Regions",
    children: "Below",
    worst_level: "Worst level",
    mines: "Mines",
    open_alerts: "Open alerts",
    unacknowledged: "Unacknowledged",
    sensors: "Sensors",
    online: "Online",
    silent: "Silent",
    online_rate: "Online rate",
    silent_sensors: "Silent sensors",
    none_silent: "All sensors online",
    overdue: "Overdue",
    overdue_handling: "Handling overdue",
    overdue_supervision: "Supervision overdue",
    supervisions: "Supervision",
    no_supervisions: "Nothing under supervision",
    worst_mines: "Mines with alerts",
    by_level: "By level",
    updated: "Updated",
    unchanged: "unchanged",
    sites: "Sites",
    site: "Site",
    sensor: "Sensor",
    kind: "Kind",
    level: "Level",
    last_reading: "Last reading",
    normal: "Normal",
    rule: "Rule",
    stage: "Stage",
    opened: "Opened",
    changed: "Changed",
    explanation: "Explanation",
    evidence: "Evidence",
    forecast: "Forecast failure",
    interval: "interval",
    no_forecast: "no forecast",
    five_fixed: "Five fixed",
    responsible_person: "Responsible person",
    measures: "Measures",
    funds: "Funds",
    deadline: "Deadline",
    contingency_plan: "Contingency plan",
    note: "Note",
    actions: "Handling",
    acknowledge: "Acknowledge",
    handle: "Handle (five fixed)",
    resolve: "Resolved",
    verify: "Verify",
    reject: "Reject",
    close: "Close",
    supervise: "Supervise",
    submit: "Submit",
    history: "History",
    at: "Time",
    event: "Event",
    actor: "By",
    details: "Details",
    detectors: "detectors",
    evacuation: "Evacuation",
    charts: "Charts",
    days: "days",
    horizontal: "Horizontal displacement",
    vertical: "Vertical displacement",
    velocity: "Velocity",
    inverse_velocity: "Inverse velocity",
    displacement: "Displacement",
    forecast_line: "forecast",
    forecast_band: "forecast interval",
    threshold: "threshold",
    phreatic: "Phreatic line depth",
    pond_level: "Pond level",
    freeboard: "Freeboard",
    beach: "Dry beach length",
    rain: "Rainfall",
    rain_24h: "24 h total",
    crack: "Crack width",
    internal: "Internal displacement",
    no_data: "No data in this window",
    back: "Back",
    all_alerts_of_mine: "Alerts of the mine",
    active: "condition present",
    inactive: "condition cleared",
    supervision_deadline: "Supervision deadline",
    open_stage: "unacknowledged",
    retroactive: "recomputed from late data",
    forbidden_hint: "this token may not do that",
    baseline: "baseline",
    reference: "Reference position",
    ref_registry: "registry baseline",
    ref_first_reading: "first readings",
    ref_rebaseline: "re-baselined",
    "ref_window start": "window start",
    since: "since",
    invalid_left_out: "Readings marked invalid, left out of the detectors and the charts",
    all_channels: "all channels",
    alert: "Alert",
    mine: "Mine",
    region: "Region",
    state: "State",
    signed_in_as: "Signed in",
    range: "Range",
    view: "View",
  },
};

const LEVELS = {
  zh: { none: "正常", blue: "蓝色 注意", yellow: "黄色 警示", orange: "橙色 警戒", red: "红色 警报" },
  en: { none: "Normal", blue: "Blue · attention", yellow: "Yellow · caution", orange: "Orange · warning", red: "Red · danger" },
};

/** A shape per level, so the level reads without colour too. */
export const LEVEL_ICON = { none: "○", blue: "●", yellow: "▲", orange: "◆", red: "✖" };
export const LEVEL_ORDER = ["none", "blue", "yellow", "orange", "red"];

const STAGES = {
  zh: { open: "未确认", acknowledged: "已确认", handling: "整改中", resolved: "已整改", verified: "已验收", closed: "已销号" },
  en: { open: "open", acknowledged: "acknowledged", handling: "in handling", resolved: "resolved", verified: "verified", closed: "closed" },
};

const EVENTS = {
  zh: {
    opened: "报警", escalated: "升级", deescalated: "降级", reactivated: "再次出现", cleared: "条件消除",
    closed: "自动关闭", acknowledged: "确认", handling: "落实整改", resolved: "整改完成", verified: "验收",
    verification_rejected: "验收不通过", closed_by_hand: "销号", supervised: "督办", moved: "矿山变更辖区",
  },
  en: {
    opened: "opened", escalated: "escalated", deescalated: "de-escalated", reactivated: "reactivated",
    cleared: "condition cleared", closed: "closed automatically", acknowledged: "acknowledged",
    handling: "handling (five fixed)", resolved: "resolved", verified: "verified",
    verification_rejected: "verification rejected", closed_by_hand: "closed (销号)", supervised: "supervised (督办)",
    moved: "mine moved to another region",
  },
};

const KINDS = {
  zh: {
    gnss: "GNSS 表面位移", total_station: "全站仪", crack: "裂缝计", inclinometer: "测斜仪",
    piezometer: "浸润线", pond_level: "库水位", beach: "干滩", rain: "雨量计",
    open_pit: "露天矿", tailings_pond: "尾矿库", dump: "排土场", slope: "边坡", dam: "坝体",
  },
  en: {
    gnss: "GNSS", total_station: "total station", crack: "crack meter", inclinometer: "inclinometer",
    piezometer: "piezometer", pond_level: "pond level", beach: "dry beach", rain: "rain gauge",
    open_pit: "open pit", tailings_pond: "tailings pond", dump: "dump", slope: "slope", dam: "dam",
  },
};

const REGION_LEVELS = {
  zh: { province: "省", city: "市", county: "县", mine: "矿山", all: "全国" },
  en: { province: "province", city: "city", county: "county", mine: "mine", all: "all" },
};

export let lang = localStorage.getItem(KEY) === "en" ? "en" : "zh";

export function setLang(value) {
  lang = value === "en" ? "en" : "zh";
  localStorage.setItem(KEY, lang);
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
}

export const t = (key) => TEXT[lang][key] ?? TEXT.en[key] ?? key;
export const levelText = (level) => LEVELS[lang][level] ?? level;
export const stageText = (stage) => STAGES[lang][stage] ?? stage;
export const eventText = (kind) => EVENTS[lang][kind] ?? kind;
export const kindText = (kind) => KINDS[lang][kind] ?? kind;
export const regionLevelText = (level) => REGION_LEVELS[lang][level] ?? level;

const formats = new Map();
function format(options) {
  const key = lang + JSON.stringify(options);
  if (!formats.has(key)) {
    formats.set(key, new Intl.DateTimeFormat(lang === "zh" ? "zh-CN" : "en-GB", { timeZone: TIME_ZONE, hourCycle: "h23", ...options }));
  }
  return formats.get(key);
}

/** "2026-11-01 08:00" in Shanghai time, from an ISO string, a Date or epoch ms. */
export function fmtTime(value, { seconds = false } = {}) {
  if (value === null || value === undefined) return "—";
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) return "—";
  const parts = Object.fromEntries(
    format({ year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", ...(seconds ? { second: "2-digit" } : {}) })
      .formatToParts(date)
      .map((p) => [p.type, p.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}${seconds ? `:${parts.second}` : ""}`;
}

/** Short axis label: "11-03 14:00" or "11-03". */
export function fmtAxis(ms, withHour) {
  const parts = Object.fromEntries(
    format({ month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" }).formatToParts(new Date(ms)).map((p) => [p.type, p.value]),
  );
  return withHour ? `${parts.month}-${parts.day} ${parts.hour}:${parts.minute}` : `${parts.month}-${parts.day}`;
}

/** A value typed in a datetime-local field, read as Shanghai time, as ISO 8601 with +08:00. */
export function shanghaiInput(text) {
  if (!text) return "";
  return `${text.length === 16 ? `${text}:00` : text}+08:00`;
}

/** Now plus ``days``, as a datetime-local value in Shanghai time. */
export function shanghaiInputValue(days) {
  const ms = Date.now() + days * 86400e3;
  return fmtTime(ms).replace(" ", "T");
}

export function fmtNumber(x, digits = 2) {
  if (x === null || x === undefined || !Number.isFinite(Number(x))) return "—";
  return Number(x).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { maximumFractionDigits: digits });
}

export function fmtPercent(x) {
  return x === null || x === undefined ? "—" : `${(x * 100).toFixed(1)}%`;
}

const QUANTITIES = {
  zh: {
    horizontal_mm_per_day: "水平位移速率", vertical_mm_per_day: "垂直位移速率", horizontal_mm: "累计水平位移",
    vertical_mm: "累计垂直位移", width_mm_per_day: "裂缝扩展速率", width_mm: "裂缝宽度", rate_mm_per_day: "深部位移速率",
    cumulative_mm: "深部累计位移", depth_m: "浸润线埋深", level_m: "库水位", freeboard_m: "安全超高", length_m: "干滩长度",
    rain_1h_mm: "1小时降雨量", rain_24h_mm: "24小时降雨量",
    horizontal: "水平位移加速", vertical: "垂直位移加速", width: "裂缝加速", internal: "深部位移加速",
    silent: "数据中断", stuck: "数据不变", spike: "异常跳点",
  },
  en: {
    horizontal_mm_per_day: "horizontal rate", vertical_mm_per_day: "vertical rate", horizontal_mm: "cumulative horizontal",
    vertical_mm: "cumulative vertical", width_mm_per_day: "crack widening rate", width_mm: "crack width", rate_mm_per_day: "internal rate",
    cumulative_mm: "cumulative internal", depth_m: "phreatic depth", level_m: "pond level", freeboard_m: "freeboard", length_m: "dry beach",
    rain_1h_mm: "1 h rainfall", rain_24h_mm: "24 h rainfall",
    horizontal: "horizontal acceleration", vertical: "vertical acceleration", width: "crack acceleration", internal: "internal acceleration",
    silent: "silent sensor", stuck: "stuck values", spike: "spikes",
  },
};

/** "displacement.acceleration.horizontal" -> "水平位移加速"; unknown rules as they are. */
export function ruleText(rule) {
  const last = rule.split(".").pop();
  return QUANTITIES[lang][last] ?? rule;
}

/** The mine's 停产撤人 instruction, labelled unless it names itself. */
export function evacuationText(text) {
  return text.startsWith("停产撤人") ? text : `${t("evacuation")}: ${text}`;
}
