"""A simulated lending world with planted fraud gangs, written as raw landing CSVs + ground truth.

No Spark: numpy + pyarrow, vectorised. The world is generated as numeric arrays (one row per
application / person / device ...) and only turned into text block by block while the
landing files are written, so 1M applications need a few hundred MB, not gigabytes.

What lands (the contract ``features.validation`` / ingest reads)::

    {root}/raw/{applications,applicants,outcomes}/dt=YYYY-MM-DD/part-00000.csv
    {root}/truth/gang_membership.parquet   application_id, gang_id, is_bad, outcome
    {root}/truth/dirty_rows.parquet        source, dt, key, defect

* Every date from ``start_date`` to ``end_date`` gets a file for every table (header only when
  nothing landed that day), so a nightly run never finds a missing drop.
* Columns are exactly the raw schemas' names, all text, empty for missing; only fields holding
  a comma (e.g. ``"Huaxin Logistics Co., Ltd."``) are quoted. No value contains a double
  quote or a backslash, so Spark's default CSV options read every file as intended.
* Timestamps are ISO-8601 UTC; the whole world runs on UTC (the daily profile is in UTC hours).
* Same ``seed`` -> byte-identical files: one ``numpy.random.default_rng(seed)`` draws
  everything in a fixed order; nothing depends on the wall clock or on hash order.

The world
---------
Honest applicants mostly apply once (some 2-3 times). Honest people *do* share things, so a
naive graph glues strangers: households (home IP, home GPS spot, sometimes a device), carrier
NAT IPs (hubs), the default device id (hub), Zipf-sized employers (hubs), friends' referral
codes, dense-city GPS cells. Gangs (``gang_share`` of applications; truncated-Pareto sizes)
apply in a burst of waves and share, each with some probability per member application, an
intermediary's referral code, a few devices, a card dealer's SIM cards, a few IPs, an office
GPS spot and often a fake employer - connected, but imperfectly. Card dealers serve several
gangs (``shared_dealer_share``), so a few SIMs bridge gangs active at the same time into one
connected component: a component is not a gang.

Labels: honest outcomes come from a logistic model of the credit features plus an unobserved
person-level risk, so credit features carry real but partial signal; gang applications are
bad at ``gang_bad_rate`` (varying by gang) with credit features only mildly different, so the
network adds information the credit features lack.

Dirty rows (to exercise quarantine) are taken from honest applications only and recorded in
``truth/dirty_rows.parquet``. An application whose raw row is defective (any kind but
``duplicate_id``, whose original stays clean) was never booked, so no outcome is written for
it - the only orphan outcomes are the planted ``orphan`` rows.
"""
from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from riskgraph.config import Simulation
from riskgraph.schemas import OUTCOMES, RAW_APPLICANTS, RAW_APPLICATIONS, RAW_OUTCOMES

log = logging.getLogger("riskgraph.simulator")

DEFAULT_DEVICE = "00000000-0000-0000-0000-000000000000"
# Defect kinds per raw table, in the order they are planted.
DEFECTS = {
    "applications": ("null_key", "bad_gps", "future_ts", "duplicate_id", "bad_type", "bad_value", "bad_timestamp"),
    "applicants": ("null_key",),
    "outcomes": ("bad_value", "orphan"),
}
PRODUCTS = ("cash", "consumer", "sme")
CHANNELS = ("app", "web", "agent")
FRAUD, DEFAULT, GOOD = (OUTCOMES.index(o) for o in ("fraud_confirmed", "default", "good"))
_DAY = 86_400
_BLOCK_ROWS = 200_000  # rows turned into text at once while writing (bounds memory)

# ---------------------------------------------------------------- reference lists
# (name, lat, lon, spread of homes around the centre in km, attraction for migrants)
CITIES = (
    ("Beijing", 39.9042, 116.4074, 12.0, 1.0),
    ("Shanghai", 31.2304, 121.4737, 12.0, 1.0),
    ("Guangzhou", 23.1291, 113.2644, 10.0, 0.8),
    ("Shenzhen", 22.5431, 114.0579, 9.0, 0.9),
    ("Chengdu", 30.5728, 104.0668, 9.0, 0.6),
    ("Wuhan", 30.5928, 114.3055, 9.0, 0.5),
    ("Hangzhou", 30.2741, 120.1551, 8.0, 0.6),
    ("Chongqing", 29.5630, 106.5516, 10.0, 0.5),
    ("Nanjing", 32.0603, 118.7969, 8.0, 0.4),
    ("Xian", 34.3416, 108.9398, 8.0, 0.4),
)
# (province code as in national ids, population in millions, income tier 1-3, nearest cities)
REGIONS = (
    ("11", 22, 1, (0,)), ("12", 14, 2, (0,)), ("13", 75, 3, (0,)), ("14", 35, 3, (0, 9)),
    ("15", 24, 3, (0,)), ("21", 43, 3, (0,)), ("22", 24, 3, (0,)), ("23", 31, 3, (0,)),
    ("31", 25, 1, (1,)), ("32", 85, 2, (8, 1)), ("33", 65, 2, (6,)), ("34", 61, 3, (8, 1)),
    ("35", 42, 2, (6, 3)), ("36", 45, 3, (6, 5)), ("37", 102, 2, (8, 0)), ("41", 99, 3, (5, 9)),
    ("42", 58, 3, (5,)), ("43", 66, 3, (5, 2)), ("44", 127, 1, (2, 3)), ("45", 50, 3, (2, 3)),
    ("46", 10, 3, (2, 3)), ("50", 32, 2, (7,)), ("51", 84, 3, (4,)), ("52", 39, 3, (7, 4)),
    ("53", 47, 3, (4,)), ("61", 40, 3, (9,)), ("62", 25, 3, (9,)), ("63", 6, 3, (9,)),
    ("64", 7, 3, (9,)), ("65", 26, 3, (9,)),
)
SURNAMES = (
    ("Wang", 7.1), ("Li", 7.0), ("Zhang", 6.7), ("Liu", 5.4), ("Chen", 4.5), ("Yang", 3.1),
    ("Huang", 2.2), ("Zhao", 2.0), ("Wu", 1.9), ("Zhou", 1.9), ("Xu", 1.6), ("Sun", 1.2),
    ("Ma", 1.2), ("Zhu", 1.1), ("Hu", 1.0), ("Guo", 1.0), ("He", 0.9), ("Gao", 0.9),
    ("Lin", 0.9), ("Luo", 0.9), ("Zheng", 0.8), ("Liang", 0.8), ("Xie", 0.6), ("Song", 0.6),
    ("Tang", 0.5), ("Han", 0.5), ("Feng", 0.5), ("Deng", 0.5), ("Cao", 0.5), ("Peng", 0.4),
    ("Zeng", 0.4), ("Xiao", 0.4), ("Tian", 0.4), ("Dong", 0.4), ("Pan", 0.4), ("Yuan", 0.4),
    ("Cai", 0.3), ("Jiang", 0.3), ("Yu", 0.3), ("Du", 0.3), ("Ye", 0.3), ("Cheng", 0.3),
    ("Wei", 0.3), ("Su", 0.3), ("Lu", 0.3), ("Ding", 0.3), ("Ren", 0.3), ("Shen", 0.3),
    ("Yao", 0.3), ("Fan", 0.3), ("Fang", 0.3), ("Shi", 0.3), ("Jin", 0.3), ("Tan", 0.2),
    ("Liao", 0.2), ("Zou", 0.2), ("Xiong", 0.2), ("Qiu", 0.2), ("Qin", 0.2), ("Bai", 0.2),
)
GIVEN_NAMES = (
    "Wei", "Fang", "Na", "Xiuying", "Min", "Jing", "Li", "Qiang", "Lei", "Jun", "Yang", "Yong",
    "Yan", "Jie", "Juan", "Tao", "Ming", "Chao", "Xiulan", "Xia", "Ping", "Gang", "Guiying",
    "Hui", "Hong", "Hua", "Jian", "Ling", "Xin", "Bo", "Dan", "Hao", "Yu", "Yi", "Peng", "Fei",
    "Kai", "Lin", "Ying", "Lan", "Ting", "Xue", "Rui", "Bin", "Hai", "Long", "Qian", "Zhen",
    "Shu", "Wen", "Jiahui", "Zihan", "Yuxuan", "Haoran", "Zixuan", "Yutong", "Xinyi", "Haoyu",
    "Yichen", "Mingyu", "Jiayi", "Shuang", "Huan", "Ning", "Cheng", "Feng", "Guang", "Liang",
    "Zhiqiang", "Jianhua", "Jianguo", "Guoqiang", "Xiaoming", "Xiaohong", "Lijuan", "Yuying",
    "Yulan", "Fengying", "Shuzhen", "Jinhua", "Haiyan", "Hongmei", "Meng", "Qing", "Song",
    "Yue", "Zhe", "Tian", "Xiaoyu", "Zhiwei", "Junjie", "Wenjing", "Yating", "Lihua", "Dongmei",
)
EMAIL_DOMAINS = (
    ("qq.com", 0.33), ("163.com", 0.24), ("126.com", 0.1), ("sina.com", 0.05), ("foxmail.com", 0.06),
    ("gmail.com", 0.05), ("outlook.com", 0.06), ("hotmail.com", 0.05), ("sohu.com", 0.06),
)
EMPLOYER_PREFIX = (
    "Huaxin", "Zhongtian", "Hengda", "Jinhui", "Xinyuan", "Dongfang", "Changjiang", "Taihe",
    "Ruifeng", "Boyuan", "Kaida", "Shengshi", "Hongtai", "Guanghua", "Minsheng", "Tianyu",
    "Yongxin", "Fuda", "Longteng", "Haixin", "Jiahe", "Xingye", "Huatai", "Anxin", "Baili",
    "Wanjia", "Zhongxin", "Dingsheng", "Lianhe", "Hongxing", "Jinqiao", "Yuanda", "Hualian",
    "Tongda", "Shunfeng", "Mingde", "Chuangxin", "Jiuzhou", "Kangtai", "Ronghua",
)
EMPLOYER_INDUSTRY = (
    "Logistics", "Technology", "Trading", "Construction", "Electronics", "Catering", "Textile",
    "Property Management", "Auto Parts", "Pharmaceutical", "Education", "Media", "Software",
    "Machinery", "Food", "Retail", "Cleaning Services", "Security Services", "Furniture",
    "Garment", "Printing", "New Materials", "Environmental", "Consulting", "Hotel",
    "Medical Devices", "Agriculture", "Packaging", "Chemical", "Energy",
)
EMPLOYER_SUFFIX = ("Co., Ltd.", "Group Co., Ltd.", "Industrial Co., Ltd.", "Holdings", "Trading Co.")
# Chinese ISP /8 blocks, so IPs look plausible.
IP_FIRST_OCTETS = (
    27, 36, 39, 42, 49, 58, 59, 60, 61, 101, 106, 110, 111, 112, 113, 114, 115, 116, 117, 118,
    119, 120, 121, 122, 123, 124, 125, 175, 180, 182, 183, 202, 203, 210, 211, 218, 219, 220,
    221, 222, 223,
)
# Share of applications per UTC hour (more by day than by night) and per weekday (Mon..Sun).
HOUR_PROFILE = (
    0.35, 0.22, 0.15, 0.12, 0.12, 0.18, 0.35, 0.65, 1.0, 1.25, 1.4, 1.45,
    1.35, 1.3, 1.35, 1.4, 1.35, 1.3, 1.35, 1.5, 1.6, 1.5, 1.15, 0.7,
)
WEEKDAY_PROFILE = (1.05, 1.05, 1.0, 1.0, 1.1, 0.85, 0.8)
TERMS = {  # product -> (terms in months, probabilities)
    0: ((3, 6, 12, 24, 36), (0.1, 0.2, 0.35, 0.25, 0.1)),
    1: ((3, 6, 12, 24), (0.15, 0.3, 0.4, 0.15)),
    2: ((12, 24, 36, 60), (0.3, 0.35, 0.25, 0.1)),
}
TERM_WORDS = {3: "three", 6: "six", 12: "twelve", 24: "twenty-four", 36: "thirty-six", 60: "sixty"}
BAD_OUTCOME_LABELS = ("paid?", "settled early", "frawd", "DEFAULTED!!")

# ---------------------------------------------------------------- behaviour knobs (not config)
REPEAT_APPS_P = (0.82, 0.13, 0.05)  # honest applicants applying 1, 2, 3 times
HOUSEHOLD_SHARED_DEVICE_P = 0.15  # a household member applies from the family device
HOUSEHOLD_SAME_SURNAME_P = 0.6  # households are families more often than flat-shares
REPEAT_NEW_DEVICE_P = 0.25  # a repeat borrower has changed phone since the last application
AT_HOME_P = 0.5  # honest application sent from home (home broadband IP + home GPS)
NO_GPS_P = {0: 0.04, 1: 0.75, 2: 0.15}  # by channel: web rarely reports GPS
NO_EMPLOYER_P = 0.08
EMPLOYER_OFFSET = 5.0  # Zipf-Mandelbrot offset: the top employer holds ~5%, not a third
HONEST_FRAUD_SHARE = 0.1  # of honest bad outcomes, lone first-party fraud
GANG_REPEAT_P = 0.08  # gang application that re-uses one of the gang's identities
GANG_FAKE_EMPLOYER_P = 0.6  # gang that declares a fake small employer
GANG_DEFAULT_DEVICE_P = 0.03  # emulators / wiped devices reporting the default device id
GANG_HOME_CITY_P = 0.7  # identities recruited in the gang's own city
GANG_BAD_CONCENTRATION = 6.0  # Beta concentration of per-gang bad rates around gang_bad_rate
OFFICE_RADIUS_M = 50.0
GANG_CAREFUL_P = 0.12  # members who follow the coaching loosely: each shared resource used far less
GANG_CAREFUL_FACTOR = 0.25
CREDIT_SIGNAL = 1.3  # scales the credit features' coefficients in the honest risk model
LATENT_RISK_SD = 0.75  # unobserved person-level risk: sets how much of the risk credit features can see


@dataclass
class _Calendar:
    start: dt.date
    n_days: int
    epoch0: int  # seconds since 1970 of start_date 00:00 UTC
    end_s: int  # last second of end_date
    day_p: np.ndarray
    hour_p: np.ndarray

    @classmethod
    def build(cls, sim: Simulation, rng: np.random.Generator) -> "_Calendar":
        n_days = (sim.end_date - sim.start_date).days + 1
        epoch0 = (sim.start_date - dt.date(1970, 1, 1)).days * _DAY
        weekday = np.asarray(WEEKDAY_PROFILE)[(np.arange(n_days) + sim.start_date.weekday()) % 7]
        trend = 1.0 + 0.25 * np.arange(n_days) / max(n_days - 1, 1)  # a growing book
        day_w = weekday * trend * rng.lognormal(0.0, 0.08, n_days)
        hour_w = np.asarray(HOUR_PROFILE)
        return cls(sim.start_date, n_days, epoch0, epoch0 + n_days * _DAY - 1, day_w / day_w.sum(), hour_w / hour_w.sum())

    def sample_ts(self, rng: np.random.Generator, n: int) -> np.ndarray:
        day = rng.choice(self.n_days, n, p=self.day_p)
        hour = rng.choice(24, n, p=self.hour_p)
        return self.epoch0 + day * _DAY + hour * 3600 + rng.integers(0, 3600, n)

    def day_of(self, ts: np.ndarray) -> np.ndarray:
        return ((ts - self.epoch0) // _DAY).astype(np.int64)

    def date_str(self, day: int) -> str:
        return (self.start + dt.timedelta(days=int(day))).isoformat()


# ---------------------------------------------------------------- small vectorised helpers
def _p(weights) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


def _unique_ints(rng: np.random.Generator, n: int, draw: Callable[[int], np.ndarray]) -> np.ndarray:
    """``n`` distinct values from ``draw``; duplicates are redrawn (keeps first occurrences)."""
    x = draw(n)
    while True:
        _, first = np.unique(x, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        if not dup.any():
            return x
        x[dup] = draw(int(dup.sum()))


def _starts(sizes: np.ndarray) -> np.ndarray:
    """Offset of each group's first element when groups of ``sizes`` are laid end to end."""
    sizes = np.asarray(sizes, dtype=np.int64)
    return np.cumsum(sizes) - sizes


def _group_sizes(rng: np.random.Generator, total: int, lo: int, hi: int) -> np.ndarray:
    """Random group sizes in [lo, hi] summing to ``total`` (the last group may be smaller)."""
    if total <= 0:
        return np.zeros(0, dtype=np.int64)
    sizes = rng.integers(lo, hi + 1, total // lo + 1)
    cs = np.cumsum(sizes)
    k = int(np.searchsorted(cs, total))
    sizes = sizes[: k + 1].copy()
    sizes[-1] -= cs[k] - total
    return sizes


def _offset_m(rng: np.random.Generator, lat: np.ndarray, sd_m, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian displacement of ``sd_m`` metres as (dlat, dlon) degrees at latitude ``lat``."""
    dy = rng.normal(0.0, 1.0, n) * sd_m
    dx = rng.normal(0.0, 1.0, n) * sd_m
    return dy / 111_320.0, dx / (111_320.0 * np.cos(np.radians(lat)))


def _random_ips(rng: np.random.Generator, n: int) -> np.ndarray:
    first = np.asarray(IP_FIRST_OCTETS, dtype=np.uint32)[rng.integers(0, len(IP_FIRST_OCTETS), n)]
    return (first << np.uint32(24)) | rng.integers(0, 1 << 24, n, dtype=np.uint32)


def _ascii(codes: np.ndarray) -> pa.Array:
    """An (n, w) uint8 array of ASCII codes -> n strings of width w."""
    n, width = codes.shape
    offsets = np.arange(n + 1, dtype=np.int64) * width
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(codes, dtype=np.uint8))).cast(pa.string())


def _uuid_strings(rng: np.random.Generator, n: int) -> pa.Array:
    hexchars = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    b = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    hx = np.empty((n, 32), dtype=np.uint8)
    hx[:, 0::2], hx[:, 1::2] = hexchars[b >> 4], hexchars[b & 15]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for src, dst in ((slice(0, 8), slice(0, 8)), (slice(8, 12), slice(9, 13)), (slice(12, 16), slice(14, 18)),
                     (slice(16, 20), slice(19, 23)), (slice(20, 32), slice(24, 36))):
        out[:, dst] = hx[:, src]
    return _ascii(out)


def _base36(values: np.ndarray, width: int) -> pa.Array:
    alphabet = np.frombuffer(b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ", dtype=np.uint8)  # no I/O lookalikes
    v = values.astype(np.int64).copy()
    out = np.empty((len(v), width), dtype=np.uint8)
    for i in range(width - 1, -1, -1):
        out[:, i] = alphabet[v % len(alphabet)]
        v //= len(alphabet)
    return _ascii(out)


def _fmt_int(x: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.asarray(x, dtype=np.int64)), pa.string())


def _fmt_id(prefix: str, x: np.ndarray, width: int = 8) -> pa.Array:
    return pa.array(np.strings.add(prefix, np.strings.zfill(np.asarray(x, dtype=np.int64).astype(str), width)))


def _fmt_ts(ts: np.ndarray) -> pa.Array:
    return pa.array(np.datetime_as_string(np.asarray(ts, dtype=np.int64).astype("datetime64[s]"), unit="s", timezone="UTC"))


def _fmt_fixed6(x: np.ndarray) -> pa.Array:
    """Floats with 6 decimals; NaN -> empty."""
    nan = np.isnan(x)
    v = np.rint(np.where(nan, 0.0, x) * 1e6).astype(np.int64)
    a = np.abs(v)
    s = np.strings.add(np.strings.add((a // 1_000_000).astype(str), "."), np.strings.zfill((a % 1_000_000).astype(str), 6))
    s = np.where(v < 0, np.strings.add("-", s), s)
    return pa.array(np.where(nan, "", s))


def _fmt_ip(ip: np.ndarray) -> pa.Array:
    ip = ip.astype(np.int64)
    return pc.binary_join_element_wise(*[_fmt_int((ip >> s) & 255) for s in (24, 16, 8, 0)], ".")


def _take(values: pa.Array, idx: np.ndarray) -> pa.Array:
    return pc.take(values, pa.array(np.asarray(idx, dtype=np.int64)))


def _replace(col: pa.Array, mask: np.ndarray, values: list[str]) -> pa.Array:
    if not mask.any():
        return col
    return pc.replace_with_mask(col, pa.array(mask), pa.array(values, pa.string()))


def _csv_lines(cols: list[pa.Array]) -> pa.Array:
    """One CSV line per row: fields holding a comma, quote or line break are quoted."""
    out = []
    for c in cols:
        needs = pc.match_substring_regex(c, '[,"\r\n]')
        if pc.any(needs).as_py():
            quoted = pc.binary_join_element_wise('"', pc.replace_substring(c, '"', '""'), '"', "")
            c = pc.if_else(needs, quoted, c)
        out.append(c)
    return pc.binary_join_element_wise(*out, ",")


def _n_dirty(rate: float, rows: int) -> int:
    n = int(round(rate * rows))
    return max(n, 1) if rate > 0 and rows >= 100 else n


# ---------------------------------------------------------------- the world (numeric)
@dataclass
class _World:
    cal: _Calendar
    # applications, in time order (application i has id A{i+1:08d})
    person: np.ndarray
    gang: np.ndarray  # -1 honest
    ts: np.ndarray
    product: np.ndarray
    amount: np.ndarray
    term: np.ndarray
    channel: np.ndarray
    income: np.ndarray
    employer: np.ndarray  # index into employer_names; -1 none
    phone: np.ndarray
    device: np.ndarray  # index into device_ids; -1 the default device
    ip: np.ndarray
    lat: np.ndarray  # NaN: no GPS
    lon: np.ndarray
    referrer: np.ndarray  # index into referrer_codes; -1 none
    outcome: np.ndarray  # index into OUTCOMES
    known_ts: np.ndarray
    # persons (applicants), indexed by person
    person_rank: np.ndarray  # applicant id number - 1 (order of first application)
    person_first_day: np.ndarray
    person_first_ts: np.ndarray
    person_honest: np.ndarray
    full_name: pa.Array
    national_id: pa.Array
    email: pa.Array
    birth_date: pa.Array
    region: pa.Array
    # lookup tables
    employer_names: pa.Array
    device_ids: pa.Array
    referrer_codes: pa.Array
    n_gangs: int


def _employer_names(rng: np.random.Generator, n: int) -> list[str]:
    combos = len(EMPLOYER_PREFIX) * len(EMPLOYER_INDUSTRY) * len(EMPLOYER_SUFFIX) * (len(CITIES) + 1)
    order = rng.permutation(combos)
    names = []
    for k in range(n):
        c = int(order[k % combos])
        c, s = divmod(c, len(EMPLOYER_SUFFIX))
        c, ind = divmod(c, len(EMPLOYER_INDUSTRY))
        city, pre = divmod(c, len(EMPLOYER_PREFIX))
        name = f"{EMPLOYER_PREFIX[pre]} {EMPLOYER_INDUSTRY[ind]} {EMPLOYER_SUFFIX[s]}"
        if city < len(CITIES):
            name = f"{CITIES[city][0]} {name}"
        if k >= combos:  # only for absurd n_employers
            name = f"{name} Branch {k // combos}"
        names.append(name)
    return names


def _gang_sizes(rng: np.random.Generator, sim: Simulation, total: int) -> np.ndarray:
    """Truncated Pareto(alpha) sizes in [gang_size_min, gang_size_max] summing to ``total``."""
    lo, hi, alpha = sim.gang_size_min, sim.gang_size_max, sim.gang_size_alpha
    if total < 2:
        return np.zeros(0, dtype=np.int64)
    if total < lo:
        return np.array([total])
    u = rng.random(total // lo + 1)
    sizes = np.floor(lo * (1.0 - u * (1.0 - (lo / (hi + 1.0)) ** alpha)) ** (-1.0 / alpha)).astype(np.int64)
    sizes = np.clip(sizes, lo, hi)
    cs = np.cumsum(sizes)
    k = int(np.searchsorted(cs, total))
    sizes = sizes[: k + 1].copy()
    sizes[-1] -= cs[k] - total
    if sizes[-1] < lo and len(sizes) > 1:  # spread a too-small last gang over gangs with room
        rest, sizes = int(sizes[-1]), sizes[:-1]
        for _ in range(rest):
            room = np.flatnonzero(sizes < hi)
            sizes[room[rng.integers(0, len(room))] if len(room) else rng.integers(0, len(sizes))] += 1
    return sizes


def _first_occurrence(values: pa.Array) -> np.ndarray:
    """Mask of the first occurrence of each value (hash-based: fast on strings)."""
    codes = pc.dictionary_encode(values).indices.to_numpy(zero_copy_only=False)
    _, first = np.unique(codes, return_index=True)
    keep = np.zeros(len(codes), dtype=bool)
    keep[first] = True
    return keep


def _national_ids(rng, region_code: np.ndarray, birth_day: np.ndarray) -> pa.Array:
    """18-char ids: 6-digit area (province + city + district), yyyymmdd, 3-digit sequence, ISO 7064 check."""
    n = len(region_code)
    area = region_code * 10_000 + rng.integers(1, 16, n) * 100 + rng.integers(1, 26, n)
    d = birth_day.astype("datetime64[D]")
    month_start = d.astype("datetime64[M]")
    ymd = ((d.astype("datetime64[Y]").astype(np.int64) + 1970) * 10_000
           + (month_start.astype(np.int64) % 12 + 1) * 100 + (d - month_start).astype(np.int64) + 1)
    base = area * 10**11 + ymd * 1000
    num = base + rng.integers(0, 1000, n)
    while True:  # unique per person: redraw the sequence number of duplicates
        _, first = np.unique(num, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        if not dup.any():
            break
        num[dup] = base[dup] + rng.integers(0, 1000, int(dup.sum()))
    digits = np.empty((n, 17), dtype=np.int64)
    v = num.copy()
    for i in range(16, -1, -1):
        digits[:, i] = v % 10
        v //= 10
    weights = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
    check = np.frombuffer(b"10X98765432", dtype=np.uint8)[(digits @ weights) % 11]
    codes = np.concatenate([(digits + ord("0")).astype(np.uint8), check[:, None]], axis=1)
    return _ascii(codes)


def _phones(rng, n: int) -> np.ndarray:
    prefixes = np.array([130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156,
                         157, 158, 159, 180, 181, 182, 183, 185, 186, 187, 188, 189], dtype=np.int64)
    return _unique_ints(rng, n, lambda k: prefixes[rng.integers(0, len(prefixes), k)] * 10**8 + rng.integers(0, 10**8, k))


def _emails(rng, surname: np.ndarray, given: np.ndarray, birth_year: np.ndarray) -> pa.Array:
    """name + number @ domain (QQ mail is often the numeric QQ id); unique per person."""
    n = len(surname)
    sur = pa.array([s.lower() for s, _ in SURNAMES])
    giv = pa.array([g.lower() for g in GIVEN_NAMES])
    initial = pa.array([g[0].lower() + "." for g in GIVEN_NAMES])
    domains = [d for d, _ in EMAIL_DOMAINS]
    domain = rng.choice(len(domains), n, p=_p([w for _, w in EMAIL_DOMAINS]))
    # 0 fullname+number, 1 fullname+birth year, 2 initial.surname+number, 3 numeric QQ id (qq.com only)
    style = rng.choice(4, n, p=[0.45, 0.2, 0.15, 0.2])
    style[(style == 3) & (domain != domains.index("qq.com"))] = 0

    def draw(idx: np.ndarray, extra_digits: bool) -> pa.Array:
        k, st = len(idx), style[idx]
        full = pc.binary_join_element_wise(_take(sur, surname[idx]), _take(giv, given[idx]), "")
        short = pc.binary_join_element_wise(_take(initial, given[idx]), _take(sur, surname[idx]), "")
        number = rng.integers(1, 1000, k)
        if extra_digits:  # a taken address: people add digits
            number = number * 100 + rng.integers(0, 100, k)
        qq = _fmt_int(rng.integers(10**5, 10**10, k))
        name = pc.if_else(pa.array(st == 2), short, full)
        suffix = _fmt_int(np.where(st == 1, birth_year[idx] * (100 if extra_digits else 1) + number % 100 * extra_digits, number))
        local = pc.if_else(pa.array(st == 3), qq, pc.binary_join_element_wise(name, suffix, ""))
        return pc.binary_join_element_wise(local, _take(pa.array(domains), domain[idx]), "@")

    email = draw(np.arange(n), extra_digits=False)
    while True:
        dup = ~_first_occurrence(email)
        if not dup.any():
            return email
        email = pc.replace_with_mask(email, pa.array(dup), draw(np.flatnonzero(dup), extra_digits=True))


def _share_dealers(sim: Simulation, a_phone: np.ndarray, gi: np.ndarray, dealer_sims: np.ndarray, g_first: np.ndarray,
                   sizes: np.ndarray, sim_pool: np.ndarray, g_start_day: np.ndarray) -> None:
    """A card dealer serves more than one gang: each gang, with probability
    ``shared_dealer_share``, gets one or two SIMs from the pool of the gang whose burst starts
    nearest in time, so separate gangs meet in one connected component (community detection
    has to split them again). In place on ``a_phone``. Its own generator, seeded from the
    world's seed: the rest of the world is the same whatever this share is."""
    n_gangs = len(sizes)
    if sim.shared_dealer_share <= 0 or n_gangs < 2:
        return
    brng = np.random.default_rng([sim.seed, 1])
    bridging = np.flatnonzero(brng.random(n_gangs) < sim.shared_dealer_share)
    order = np.argsort(g_start_day, kind="stable")
    rank = np.empty(n_gangs, dtype=np.int64)
    rank[order] = np.arange(n_gangs)
    step = np.where(brng.random(len(bridging)) < 0.5, -1, 1)  # the gang just before or just after in time
    partner = order[np.clip(rank[bridging] + step, 0, n_gangs - 1)]
    partner = np.where(partner == bridging, order[np.clip(rank[bridging] - step, 0, n_gangs - 1)], partner)
    sim_first = _starts(sim_pool)
    for g, p in zip(bridging.tolist(), partner.tolist()):
        k = min(int(sizes[g]), 1 + int(brng.integers(0, 2)))
        members = g_first[g] + brng.choice(int(sizes[g]), size=k, replace=False)
        a_phone[gi[members]] = dealer_sims[sim_first[p] + brng.integers(0, sim_pool[p], k)]


def _generate(sim: Simulation, rng: np.random.Generator) -> _World:
    cal = _Calendar.build(sim, rng)
    n = sim.n_applications
    city_lat = np.array([c[1] for c in CITIES])
    city_lon = np.array([c[2] for c in CITIES])
    city_sd = np.array([c[3] for c in CITIES]) * 1000.0
    city_p = _p([c[4] for c in CITIES])
    region_p = _p([r[1] * (1.6 if r[2] == 1 else 1.2 if r[2] == 2 else 1.0) for r in REGIONS])  # online lending skews urban
    region_tier = np.array([r[2] for r in REGIONS])
    region_cities = [r[3] for r in REGIONS]
    p_nat = min(1.0, sim.nat_ip_share * sim.hub_noise)
    p_default_device = min(1.0, sim.default_device_share * sim.hub_noise)

    # ---- gangs: sizes, identities, resources
    sizes = _gang_sizes(rng, sim, int(round(sim.gang_share * n)))
    n_gangs, n_gang_apps = len(sizes), int(sizes.sum())
    n_honest_apps = n - n_gang_apps
    g_app_gang = np.repeat(np.arange(n_gangs), sizes)
    g_first = _starts(sizes)
    g_pos = np.arange(n_gang_apps) - g_first[g_app_gang]  # position of the application in its gang
    n_rep = np.minimum(rng.binomial(sizes, GANG_REPEAT_P), sizes // 3)
    n_ident = sizes - n_rep
    i_first = _starts(n_ident)
    is_rep = g_pos >= n_ident[g_app_gang]
    ident_in_gang = np.where(is_rep, np.floor(rng.random(n_gang_apps) * n_ident[g_app_gang]).astype(np.int64), g_pos)
    g_ident = i_first[g_app_gang] + ident_in_gang  # gang identity index (0-based among gang identities)
    n_gang_people = int(n_ident.sum())

    # ---- honest applicants: 1-3 applications each
    counts = rng.choice(np.arange(1, len(REPEAT_APPS_P) + 1), int(n_honest_apps / 1.2) + 10, p=_p(REPEAT_APPS_P))
    cs = np.cumsum(counts)
    k = int(np.searchsorted(cs, n_honest_apps))
    counts = counts[: k + 1].copy() if n_honest_apps > 0 else counts[:0].copy()
    if n_honest_apps > 0:
        counts[-1] -= cs[k] - n_honest_apps
    n_honest_people = len(counts)
    h_person = np.repeat(np.arange(n_honest_people), counts)
    n_people = n_honest_people + n_gang_people
    log.info("simulating %s applications: %s honest applicants, %s gangs with %s applications",
             f"{n:,}", f"{n_honest_people:,}", f"{n_gangs:,}", f"{n_gang_apps:,}")

    # ---- persons (honest first, then gang identities)
    honest = np.arange(n_people) < n_honest_people
    ident_gang = np.repeat(np.arange(n_gangs), n_ident)  # gang of each gang identity
    region = rng.choice(len(REGIONS), n_people, p=region_p)
    cand = np.array([[c[0], c[-1]] for c in region_cities])  # at most two nearby cities per region
    city = cand[region, rng.integers(0, 2, n_people)]
    migrant = rng.random(n_people) < 0.25
    city = np.where(migrant, rng.choice(len(CITIES), n_people, p=city_p), city)
    gang_city = rng.choice(len(CITIES), n_gangs, p=city_p)
    g_local = rng.random(n_gang_people) < GANG_HOME_CITY_P
    city[~honest] = np.where(g_local, gang_city[ident_gang], city[~honest])
    surname = rng.choice(len(SURNAMES), n_people, p=_p([w for _, w in SURNAMES]))
    given = rng.integers(0, len(GIVEN_NAMES), n_people)
    age = np.where(honest, 18 + rng.gamma(2.2, 7.0, n_people), 18 + rng.gamma(2.0, 5.5, n_people))
    age = np.clip(age, 18.0, max(19.0, 70.0 - cal.n_days / 365.25))  # 18-70 at every application
    dlat, dlon = _offset_m(rng, city_lat[city], city_sd[city], n_people)
    home_lat, home_lon = city_lat[city] + dlat, city_lon[city] + dlon
    home_ip = _random_ips(rng, n_people)
    carrier_p = _p(1.0 / np.arange(1, sim.n_nat_ips + 1) ** 0.8)
    carrier = rng.choice(sim.n_nat_ips, n_people, p=carrier_p)
    latent = rng.normal(0.0, 1.0, n_people)  # unobserved credit risk (z-score)
    # employers: Zipf-Mandelbrot over n_employers; hub_noise scales the exponent's excess over 1
    s_eff = 1.0 + (sim.employer_zipf - 1.0) * sim.hub_noise
    emp_p = _p((np.arange(1, sim.n_employers + 1) + EMPLOYER_OFFSET) ** -s_eff)
    employer = np.where(rng.random(n_people) < NO_EMPLOYER_P, -1, rng.choice(sim.n_employers, n_people, p=emp_p))
    device = np.arange(n_people, dtype=np.int64)  # each person's own phone
    n_devices = n_people

    # households: household_share of honest people live with 1-3 others
    in_hh = np.flatnonzero((rng.random(n_people) < sim.household_share) & honest)
    in_hh = in_hh[rng.permutation(len(in_hh))]
    hh_sizes = _group_sizes(rng, len(in_hh), 2, 4)
    if len(hh_sizes) and hh_sizes[-1] == 1:  # a lone leftover lives alone
        in_hh, hh_sizes = in_hh[:-1], hh_sizes[:-1]
    hh_start = _starts(hh_sizes)
    head = in_hh[np.repeat(hh_start, hh_sizes)]
    mem = in_hh[head != in_hh]
    mhead = head[head != in_hh]
    city[mem] = city[mhead]
    d2lat, d2lon = _offset_m(rng, home_lat[mhead], 5.0, len(mem))  # same building
    home_lat[mem], home_lon[mem] = home_lat[mhead] + d2lat, home_lon[mhead] + d2lon
    home_ip[mem] = home_ip[mhead]
    family = rng.random(len(mem)) < HOUSEHOLD_SAME_SURNAME_P
    surname[mem] = np.where(family, surname[mhead], surname[mem])
    region[mem] = np.where(rng.random(len(mem)) < 0.8, region[mhead], region[mem])
    carrier[mem] = np.where(rng.random(len(mem)) < 0.6, carrier[mhead], carrier[mem])
    device[mem] = np.where(rng.random(len(mem)) < HOUSEHOLD_SHARED_DEVICE_P, device[mhead], device[mem])
    hh_latent = rng.normal(0.0, 1.0, len(hh_sizes))  # shared household risk (same budget)
    latent[in_hh] = 0.8 * latent[in_hh] + 0.6 * hh_latent[np.repeat(np.arange(len(hh_sizes)), hh_sizes)]
    # monthly income: richer regions, an age hump, wide spread
    tier = region_tier[region]
    log_income = (np.log(5500) + np.where(tier == 1, 0.35, np.where(tier == 2, 0.15, 0.0))
                  + 0.35 * (1 - ((age - 42) / 22) ** 2) + rng.normal(0, 0.55, n_people))
    log_income[~honest] += np.log(0.9)  # identities bought from brokers: somewhat poorer

    # ---- applications: honest
    h_ts = cal.sample_ts(rng, n_honest_apps)
    h_ts = h_ts[np.lexsort((h_ts, h_person))]  # h_person is sorted: each person's applications in time order
    h_rank = np.arange(n_honest_apps) - np.repeat(_starts(counts), counts)
    h_dev = device[h_person].copy()
    new_dev = (h_rank > 0) & (rng.random(n_honest_apps) < REPEAT_NEW_DEVICE_P)
    h_dev[new_dev] = n_devices + np.arange(int(new_dev.sum()))
    n_devices += int(new_dev.sum())

    # ---- applications: gangs (ids of gang people = n_honest_people + identity)
    g_person = n_honest_people + g_ident
    span = min(sim.gang_burst_days, cal.n_days)
    g_start_day = rng.integers(0, cal.n_days - span + 1, n_gangs)
    n_waves = 1 + np.minimum(rng.poisson(1.5, n_gangs), 4)
    w_first = _starts(n_waves)
    w_gang = np.repeat(np.arange(n_gangs), n_waves)
    w_start = (cal.epoch0 + (g_start_day[w_gang] + rng.integers(0, span, len(w_gang))) * _DAY
               + rng.integers(9 * 3600, 21 * 3600, len(w_gang)))
    g_wave = w_first[g_app_gang] + np.floor(rng.random(n_gang_apps) * n_waves[g_app_gang]).astype(np.int64)
    g_ts = np.minimum(w_start[g_wave] + np.minimum(rng.exponential(1.2 * 3600, n_gang_apps), 5 * 3600).astype(np.int64), cal.end_s)
    # resource pools: devices ~size/5, a card dealer's SIMs ~size/3, 1-3 IPs, an office, a referrer
    dev_pool = np.maximum(1, np.rint(sizes / 5)).astype(np.int64)
    sim_pool = np.maximum(1, np.rint(sizes / 3)).astype(np.int64)
    ip_pool = rng.integers(1, 4, n_gangs)
    use = {r: rng.uniform(0.5, 0.9, n_gangs) for r in ("device", "phone", "ip", "gps", "employer")}
    use["referrer"] = rng.uniform(0.7, 0.95, n_gangs)  # the intermediary coaches most members
    fake_employer = rng.random(n_gangs) < GANG_FAKE_EMPLOYER_P
    office_dlat, office_dlon = _offset_m(rng, city_lat[gang_city], city_sd[gang_city], n_gangs)
    office_lat, office_lon = city_lat[gang_city] + office_dlat, city_lon[gang_city] + office_dlon

    def pick(pool: np.ndarray) -> np.ndarray:  # a member's item in its gang's pool (global index)
        first = _starts(pool)
        return first[g_app_gang] + np.floor(rng.random(n_gang_apps) * pool[g_app_gang]).astype(np.int64)

    careful = np.where(rng.random(n_gang_people) < GANG_CAREFUL_P, GANG_CAREFUL_FACTOR, 1.0)[g_ident]

    def uses(resource: str) -> np.ndarray:
        return rng.random(n_gang_apps) < use[resource][g_app_gang] * careful

    g_dev = np.where(uses("device"), n_devices + pick(dev_pool), device[g_person])
    g_dev = np.where(rng.random(n_gang_apps) < GANG_DEFAULT_DEVICE_P, -1, g_dev)
    n_devices += int(dev_pool.sum())

    # ---- concatenate honest + gang applications, then put them in time order
    a_person = np.concatenate([h_person, g_person])
    a_gang = np.concatenate([np.full(n_honest_apps, -1), g_app_gang])
    a_ts = np.concatenate([h_ts, g_ts])
    a_dev = np.concatenate([h_dev, g_dev])
    a_rank = np.concatenate([h_rank, np.where(is_rep, 1, 0)])
    is_g = a_gang >= 0
    gi = np.flatnonzero(is_g)  # position of gang applications in the concatenation

    # phones: own unique number per person + card-dealer SIMs (also unique numbers)
    phones = _phones(rng, n_people + int(sim_pool.sum()))
    a_phone = phones[a_person]
    a_phone[gi] = np.where(uses("phone"), phones[n_people + pick(sim_pool)], a_phone[gi])
    _share_dealers(sim, a_phone, gi, phones[n_people:], g_first, sizes, sim_pool, g_start_day)

    # IPs: NAT hub (carrier) / home broadband / mobile; gangs' own few IPs
    nat_ips = _random_ips(rng, sim.n_nat_ips)
    at_home = rng.random(n) < AT_HOME_P
    a_ip = np.where(at_home, home_ip[a_person], _random_ips(rng, n))
    a_ip = np.where(rng.random(n) < p_nat, nat_ips[carrier[a_person]], a_ip)
    g_ips = _random_ips(rng, int(ip_pool.sum()))
    a_ip[gi] = np.where(uses("ip"), g_ips[pick(ip_pool)], a_ip[gi])

    # device: the default-device hub for honest applications
    a_dev = np.where(~is_g & (rng.random(n) < p_default_device), -1, a_dev)

    # credit features
    a_product = np.where(is_g, rng.choice(3, n, p=[0.7, 0.25, 0.05]), rng.choice(3, n, p=[0.55, 0.35, 0.10]))
    a_channel = np.where(is_g, rng.choice(3, n, p=[0.72, 0.16, 0.12]), rng.choice(3, n, p=[0.55, 0.30, 0.15]))
    a_term = np.zeros(n, dtype=np.int64)
    for prod, (terms, tp) in TERMS.items():
        m = a_product == prod
        a_term[m] = rng.choice(np.array(terms), int(m.sum()), p=_p(tp))
    income = np.exp(log_income[a_person] + rng.normal(0, 0.05, n))
    a_income = np.maximum(1500, np.rint(income / 100) * 100).astype(np.int64)
    mult = np.where(a_product == 0, np.exp(rng.normal(np.log(2.5), 0.7, n)),
                    np.where(a_product == 1, np.exp(rng.normal(np.log(6000), 0.8, n)) * (income / 6000) ** 0.3 / income,
                             np.exp(rng.normal(np.log(8), 0.6, n))))
    amount = income * mult * np.where(is_g, 1.25, 1.0)
    a_amount = np.clip(np.rint(amount / 100) * 100, 500, 500_000).astype(np.int64)

    # GPS: none (mostly web) / home spot / somewhere in town; gang members at the office
    no_gps = rng.random(n) < np.array([NO_GPS_P[c] for c in range(3)])[a_channel]
    a_city = city[a_person]
    tlat, tlon = _offset_m(rng, city_lat[a_city], city_sd[a_city], n)
    hlat, hlon = _offset_m(rng, home_lat[a_person], 12.0, n)
    a_lat = np.where(at_home, home_lat[a_person] + hlat, city_lat[a_city] + tlat)
    a_lon = np.where(at_home, home_lon[a_person] + hlon, city_lon[a_city] + tlon)
    gg = g_app_gang
    r = np.sqrt(rng.random(n_gang_apps)) * OFFICE_RADIUS_M
    theta = rng.random(n_gang_apps) * 2 * np.pi
    at_office = uses("gps")
    a_lat[gi] = np.where(at_office, office_lat[gg] + r * np.sin(theta) / 111_320.0, a_lat[gi])
    a_lon[gi] = np.where(at_office, office_lon[gg] + r * np.cos(theta) / (111_320.0 * np.cos(np.radians(office_lat[gg]))), a_lon[gi])
    a_lat[no_gps] = np.nan
    a_lon[no_gps] = np.nan

    # employer: the person's, or the gang's fake small company
    a_emp = employer[a_person]
    fake_idx = sim.n_employers + np.cumsum(fake_employer) - 1
    a_emp[gi] = np.where(fake_employer[gg] & uses("employer"), fake_idx[gg], a_emp[gi])

    # referrer codes: honest friends (groups of 1-5, mostly same city) and gang intermediaries
    a_ref = np.full(n, -1, dtype=np.int64)
    ref_apps = np.flatnonzero(~is_g & (rng.random(n) < sim.referral_share))
    ref_apps = ref_apps[np.lexsort((rng.random(len(ref_apps)), a_city[ref_apps]))]
    ref_sizes = _group_sizes(rng, len(ref_apps), 1, 5)
    a_ref[ref_apps] = np.repeat(np.arange(len(ref_sizes)), ref_sizes)
    a_ref[gi] = np.where(uses("referrer"), len(ref_sizes) + gg, -1)
    n_codes = len(ref_sizes) + n_gangs
    referrer_codes = _base36(_unique_ints(rng, n_codes, lambda k: rng.integers(36**6, 36**7, k)), 7)

    # ---- outcomes
    a_outcome = np.full(n, GOOD, dtype=np.int64)
    age_a = age[a_person]
    feats = {
        "dti": np.log(a_amount / a_term / a_income),
        "income": np.log(a_income),
        "term": a_term.astype(float),
    }
    std = {k: (v - v[~is_g].mean()) / (v[~is_g].std() + 1e-9) for k, v in feats.items()}
    region_effect = rng.normal(0, 0.25, len(REGIONS))
    z = CREDIT_SIGNAL * (0.55 * std["dti"] - 0.45 * std["income"] + 0.2 * std["term"]
         + np.where(age_a < 25, 0.45, np.where(age_a < 30, 0.2, np.where(age_a > 60, 0.25, 0.0)))
         + np.array([0.0, 0.15, 0.4])[a_channel] + np.array([0.3, 0.0, 0.2])[a_product]
         + region_effect[region[a_person]] - 0.3 * (a_rank > 0)) + LATENT_RISK_SD * latent[a_person]
    hz = z[~is_g]
    b0 = np.log(sim.honest_bad_rate / (1 - sim.honest_bad_rate)) - np.median(hz)
    for _ in range(50):  # Newton: the intercept making the mean honest bad probability honest_bad_rate
        ph = 1 / (1 + np.exp(-(hz + b0)))
        step = (ph.mean() - sim.honest_bad_rate) / max(float((ph * (1 - ph)).mean()), 1e-12)
        b0 -= step
        if abs(step) < 1e-10:
            break
    p_bad = 1 / (1 + np.exp(-(z + b0)))
    g_rate = rng.beta(sim.gang_bad_rate * GANG_BAD_CONCENTRATION, (1 - sim.gang_bad_rate) * GANG_BAD_CONCENTRATION, max(n_gangs, 1))
    p_bad[gi] = g_rate[gg]
    bad = rng.random(n) < p_bad
    fraud_share = np.where(is_g, sim.gang_fraud_share, HONEST_FRAUD_SHARE)
    a_outcome[bad] = np.where(rng.random(n)[bad] < fraud_share[bad], FRAUD, DEFAULT)
    perf = sim.performance_days
    lo_d = np.array([min(10, perf), min(30, perf), perf], dtype=float)[a_outcome]
    hi_d = np.array([min(60, perf), perf, perf], dtype=float)[a_outcome]
    delay = np.rint((lo_d + rng.random(n) * (hi_d - lo_d)) * _DAY).astype(np.int64)
    a_known = a_ts + np.maximum(delay, 1)

    # ---- time order and ids
    order = np.argsort(a_ts, kind="stable")
    a_person, a_gang, a_ts = a_person[order], a_gang[order], a_ts[order]
    cols = [a_product, a_amount, a_term, a_channel, a_income, a_emp, a_phone, a_dev, a_ip, a_lat, a_lon, a_ref, a_outcome, a_known]
    (a_product, a_amount, a_term, a_channel, a_income, a_emp, a_phone, a_dev, a_ip, a_lat, a_lon, a_ref,
     a_outcome, a_known) = (c[order] for c in cols)
    people_seen, first_app = np.unique(a_person, return_index=True)
    assert len(people_seen) == n_people
    person_rank = np.empty(n_people, dtype=np.int64)
    person_rank[np.argsort(first_app, kind="stable")] = np.arange(n_people)
    first_ts = a_ts[first_app]
    first_day = cal.day_of(first_ts)

    # ---- person text columns
    birth_day = (first_ts // _DAY - np.rint(age * 365.2425)).astype(np.int64)
    birth_str = np.datetime_as_string(birth_day.astype("datetime64[D]"))
    region_code = np.array([int(r[0]) for r in REGIONS])[region]
    full_name = pa.array(np.strings.add(np.strings.add(np.array([s for s, _ in SURNAMES])[surname], " "),
                                        np.array(GIVEN_NAMES)[given]))
    national_id = _national_ids(rng, region_code, birth_day)
    email = _emails(rng, surname, given, birth_str.astype("U4").astype(np.int64))

    employer_names = pa.array(_employer_names(rng, sim.n_employers + int(fake_employer.sum())) + [""])
    device_ids = pa.concat_arrays([_uuid_strings(rng, n_devices), pa.array([DEFAULT_DEVICE])])
    referrer_codes = pa.concat_arrays([referrer_codes, pa.array([""])])
    return _World(
        cal=cal, person=a_person, gang=a_gang, ts=a_ts, product=a_product, amount=a_amount, term=a_term,
        channel=a_channel, income=a_income, employer=a_emp, phone=a_phone, device=a_dev, ip=a_ip,
        lat=a_lat, lon=a_lon, referrer=a_ref, outcome=a_outcome, known_ts=a_known,
        person_rank=person_rank, person_first_day=first_day, person_first_ts=first_ts, person_honest=honest,
        full_name=full_name, national_id=national_id, email=email, birth_date=pa.array(birth_str.astype(str)),
        region=pa.array(region_code.astype(str)), employer_names=employer_names, device_ids=device_ids,
        referrer_codes=referrer_codes, n_gangs=n_gangs,
    )


# ---------------------------------------------------------------- raw landing plan (+ dirty rows)
@dataclass
class _Rows:
    """Raw rows of one table in landing order: what each row shows and on which day it lands."""
    src: np.ndarray  # application / person index the row is made from (-1: orphan)
    land: np.ndarray  # landing day (index from start_date)
    defect: np.ndarray  # 0 clean, else 1 + index into DEFECTS[table]
    variant: np.ndarray  # random int choosing how a defect looks
    ts: np.ndarray | None = None  # outcomes only: known_ts (orphans have no application to read it from)


def _take_kinds(rng: np.random.Generator, pool: np.ndarray, wants: dict[str, tuple[int, np.ndarray | None]]) -> dict[str, np.ndarray]:
    """Disjoint random picks from ``pool`` per kind: {kind: (count, eligible mask over pool or None)}."""
    order = rng.permutation(len(pool))
    taken = np.zeros(len(pool), dtype=bool)
    out = {}
    for kind, (k, eligible) in wants.items():
        ok = ~taken[order] if eligible is None else (~taken[order] & eligible[order])
        chosen = order[np.flatnonzero(ok)[:k]]
        taken[chosen] = True
        out[kind] = pool[chosen]
    return out


def _code(table: str, kind: str) -> int:
    return 1 + DEFECTS[table].index(kind)


def _plan_applications(w: _World, sim: Simulation, rng: np.random.Generator) -> _Rows:
    n = len(w.ts)
    k = _n_dirty(sim.dirty_rate, n)
    honest = np.flatnonzero(w.gang < 0)
    wants = {kind: (k, None) for kind in DEFECTS["applications"]}
    wants["bad_gps"] = (k, ~np.isnan(w.lat[honest]))  # a bad fix needs a fix
    picks = _take_kinds(rng, honest, wants)
    defect = np.zeros(n, dtype=np.int64)
    for kind, rows in picks.items():
        if kind != "duplicate_id":
            defect[rows] = _code("applications", kind)
    dup = picks["duplicate_id"]
    dup_variant = rng.integers(0, 1 << 30, len(dup))
    src = np.concatenate([np.arange(n), dup])
    land = np.concatenate([w.cal.day_of(w.ts), np.minimum(w.cal.day_of(w.ts[dup]) + (dup_variant >> 1) % 4, w.cal.n_days - 1)])
    defect = np.concatenate([defect, np.full(len(dup), _code("applications", "duplicate_id"))])
    variant = rng.integers(0, 1 << 30, len(src))
    variant[n:] = dup_variant
    # within a day: by application time; a copy landing later arrives at a random time that day
    key = w.ts[src].copy()
    later = land[n:] > w.cal.day_of(w.ts[dup])
    key[n:][later] = w.cal.epoch0 + land[n:][later] * _DAY + rng.integers(0, _DAY, int(later.sum()))
    order = np.lexsort((np.arange(len(src)), key, land))
    return _Rows(src[order], land[order], defect[order], variant[order])


def _plan_outcomes(w: _World, sim: Simulation, rng: np.random.Generator, app_rows: _Rows) -> _Rows:
    booked = np.ones(len(w.ts), dtype=bool)  # a defective application row was never booked
    base = app_rows.defect != _code("applications", "duplicate_id")
    booked[app_rows.src[base & (app_rows.defect > 0)]] = False
    written = np.flatnonzero((w.known_ts <= w.cal.end_s) & booked)
    k = _n_dirty(sim.dirty_rate, len(written))
    picks = _take_kinds(rng, written, {"bad_value": (k, w.gang[written] < 0)})
    defect = np.zeros(len(w.ts), dtype=np.int64)
    defect[picks["bad_value"]] = _code("outcomes", "bad_value")
    n_orphan = k
    orphan_ts = np.maximum(w.cal.sample_ts(rng, n_orphan), w.cal.epoch0 + 10 * _DAY)
    orphan_ts = np.minimum(orphan_ts, w.cal.end_s)
    src = np.concatenate([written, np.full(n_orphan, -1)])
    ts = np.concatenate([w.known_ts[written], orphan_ts])
    land = w.cal.day_of(ts)
    codes = np.concatenate([defect[written], np.full(n_orphan, _code("outcomes", "orphan"))])
    variant = rng.integers(0, 1 << 30, len(src))
    variant[len(written):] = np.arange(n_orphan)  # orphan number
    order = np.lexsort((np.arange(len(src)), ts, land))
    return _Rows(src[order], land[order], codes[order], variant[order], ts[order])


def _plan_applicants(w: _World, sim: Simulation, rng: np.random.Generator) -> _Rows:
    n = len(w.person_rank)
    order = np.argsort(w.person_rank)  # applicant ids follow the first application
    k = _n_dirty(sim.dirty_rate, n)
    picks = _take_kinds(rng, np.flatnonzero(w.person_honest), {"null_key": (k, None)})
    defect = np.zeros(n, dtype=np.int64)
    defect[picks["null_key"]] = _code("applicants", "null_key")
    return _Rows(order, w.person_first_day[order], defect[order], np.zeros(n, dtype=np.int64))


# ---------------------------------------------------------------- text of a block of raw rows
def _application_block(w: _World, rows: _Rows, a: int, b: int) -> list[pa.Array]:
    src, defect, variant = rows.src[a:b], rows.defect[a:b], rows.variant[a:b]
    amount = w.amount[src].copy()
    is_dup = defect == _code("applications", "duplicate_id")
    altered = is_dup & (variant % 2 == 1)  # a re-submission with another amount
    amount[altered] = np.maximum(500, np.rint(amount[altered] * (0.5 + (variant[altered] % 11) / 10) / 100) * 100)
    c = {
        "application_id": _fmt_id("A", src + 1),
        "applicant_id": _fmt_id("C", w.person_rank[w.person[src]] + 1),
        "application_ts": _fmt_ts(w.ts[src]),
        "product": _take(pa.array(PRODUCTS), w.product[src]),
        "amount": _fmt_int(amount),
        "term_months": _fmt_int(w.term[src]),
        "channel": _take(pa.array(CHANNELS), w.channel[src]),
        "declared_income": _fmt_int(w.income[src]),
        "employer": _take(w.employer_names, np.where(w.employer[src] < 0, len(w.employer_names) - 1, w.employer[src])),
        "email": _take(w.email, w.person[src]),
        "phone": _fmt_int(w.phone[src]),
        "device_id": _take(w.device_ids, np.where(w.device[src] < 0, len(w.device_ids) - 1, w.device[src])),
        "ip": _fmt_ip(w.ip[src]),
        "gps_lat": _fmt_fixed6(w.lat[src]),
        "gps_lon": _fmt_fixed6(w.lon[src]),
        "referrer_code": _take(w.referrer_codes, np.where(w.referrer[src] < 0, len(w.referrer_codes) - 1, w.referrer[src])),
    }
    # defects: few rows, so their text is built row by row
    def rows_of(kind: str) -> np.ndarray:
        return np.flatnonzero(defect == _code("applications", kind))

    m = rows_of("null_key")
    c["application_id"] = _replace(c["application_id"], np.isin(np.arange(b - a), m), [""] * len(m))
    m = rows_of("bad_gps")
    lat_bad = m[variant[m] % 2 == 0]
    lon_bad = m[variant[m] % 2 == 1]
    c["gps_lat"] = _replace(c["gps_lat"], np.isin(np.arange(b - a), lat_bad), ["123.4"] * len(lat_bad))
    c["gps_lon"] = _replace(c["gps_lon"], np.isin(np.arange(b - a), lon_bad), ["250"] * len(lon_bad))
    m = rows_of("future_ts")
    c["application_ts"] = _replace(c["application_ts"], np.isin(np.arange(b - a), m),
                                   _fmt_ts(w.ts[src[m]] + (2 + variant[m] % 5) * _DAY).to_pylist())
    m = rows_of("bad_type")
    amt_bad = m[variant[m] % 2 == 0]
    term_bad = m[variant[m] % 2 == 1]
    c["amount"] = _replace(c["amount"], np.isin(np.arange(b - a), amt_bad),
                           [s[:2] + "a" + s[3:] for s in _fmt_int(amount[amt_bad]).to_pylist()])
    c["term_months"] = _replace(c["term_months"], np.isin(np.arange(b - a), term_bad),
                                [TERM_WORDS[int(t)] for t in w.term[src[term_bad]]])
    m = rows_of("bad_value")
    c["amount"] = _replace(c["amount"], np.isin(np.arange(b - a), m), ["-" + s for s in _fmt_int(amount[m]).to_pylist()])
    m = rows_of("bad_timestamp")
    bad_ts = []
    for s, v in zip(_fmt_ts(w.ts[src[m]]).to_pylist(), variant[m]):
        y, mo, d, hh, mi = s[0:4], s[5:7], int(s[8:10]), s[11:13], s[14:16]
        bad_ts.append(f"{y}-13-{d + 31} 25:{mi}" if v % 2 == 0 else f"{d + 31}/{mo}/{y} {hh}:{int(mi) + 60}")
    c["application_ts"] = _replace(c["application_ts"], np.isin(np.arange(b - a), m), bad_ts)
    return [c[col.name] for col in RAW_APPLICATIONS]


def _outcome_block(w: _World, rows: _Rows, a: int, b: int) -> list[pa.Array]:
    src, defect, variant, ts = rows.src[a:b], rows.defect[a:b], rows.variant[a:b], rows.ts[a:b]
    orphan = src < 0
    n_apps = len(w.ts)
    app_no = np.where(orphan, n_apps + 1 + variant, src + 1)  # orphans: ids no application has
    label = np.where(orphan, variant % 3, w.outcome[np.maximum(src, 0)])
    c = {
        "application_id": _fmt_id("A", app_no),
        "outcome": _take(pa.array(OUTCOMES), label),
        "known_ts": _fmt_ts(ts),
    }
    m = np.flatnonzero(defect == _code("outcomes", "bad_value"))
    c["outcome"] = _replace(c["outcome"], np.isin(np.arange(b - a), m),
                            [BAD_OUTCOME_LABELS[int(v) % len(BAD_OUTCOME_LABELS)] for v in variant[m]])
    return [c[col.name] for col in RAW_OUTCOMES]


def _applicant_block(w: _World, rows: _Rows, a: int, b: int) -> list[pa.Array]:
    src, defect = rows.src[a:b], rows.defect[a:b]
    c = {
        "applicant_id": _fmt_id("C", w.person_rank[src] + 1),
        "full_name": _take(w.full_name, src),
        "national_id": _take(w.national_id, src),
        "birth_date": _take(w.birth_date, src),
        "region": _take(w.region, src),
    }
    m = defect == _code("applicants", "null_key")
    c["applicant_id"] = _replace(c["applicant_id"], m, [""] * int(m.sum()))
    return [c[col.name] for col in RAW_APPLICANTS]


def _dirty_records(table: str, rows: _Rows, keys: Callable[[np.ndarray], list], cal: _Calendar) -> list[tuple]:
    """(source, dt, key, defect) for every defective row of a table."""
    idx = np.flatnonzero(rows.defect > 0)
    out = []
    for i, key in zip(idx, keys(idx)):
        kind = DEFECTS[table][rows.defect[i] - 1]
        out.append((table, cal.date_str(rows.land[i]), None if kind == "null_key" else key, kind))
    return out


def _write_table(root: Path, table: str, rows: _Rows, cal: _Calendar, block: Callable[[_World, _Rows, int, int], list], w: _World) -> int:
    """One CSV per landing date (header only on a quiet day); text is built ~_BLOCK_ROWS rows at a time."""
    header = ",".join(c.name for c in {"applications": RAW_APPLICATIONS, "applicants": RAW_APPLICANTS, "outcomes": RAW_OUTCOMES}[table])
    bounds = np.searchsorted(rows.land, np.arange(cal.n_days + 1))
    d = 0
    while d < cal.n_days:
        e = d + 1
        while e < cal.n_days and bounds[e + 1] - bounds[d] <= _BLOCK_ROWS:
            e += 1
        a, b = int(bounds[d]), int(bounds[e])
        lines = _csv_lines(block(w, rows, a, b)) if b > a else None
        for day in range(d, e):
            lo, hi = int(bounds[day]) - a, int(bounds[day + 1]) - a
            body = "".join(s + "\n" for s in lines.slice(lo, hi - lo).to_pylist()) if hi > lo else ""
            out = root / "raw" / table / f"dt={cal.date_str(day)}"
            out.mkdir(parents=True, exist_ok=True)
            (out / "part-00000.csv").write_bytes((header + "\n" + body).encode("utf-8"))
        d = e
    return len(rows.src)


# ---------------------------------------------------------------- entry point
def simulate_world(sim: Simulation, root: str) -> dict:
    """Simulate a lending world and write raw landing CSVs + ground truth under ``root``.

    Replaces ``{root}/raw`` and ``{root}/truth``. Returns a summary: rows written per table,
    applicants, gangs, gang applications, planted bad rates (honest / gang), dirty rows per
    table and kind, and the seconds it took.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(sim.seed)
    w = _generate(sim, rng)
    app_rows = _plan_applications(w, sim, rng)
    out_rows = _plan_outcomes(w, sim, rng, app_rows)
    person_rows = _plan_applicants(w, sim, rng)
    log.info("world generated in %.1f s", time.perf_counter() - t0)

    base = Path(root)
    for sub in ("raw", "truth"):
        if (base / sub).exists():
            shutil.rmtree(base / sub)
    log.info("writing %d days of raw files to %s", w.cal.n_days, base / "raw")
    counts = {
        "applications": _write_table(base, "applications", app_rows, w.cal, _application_block, w),
        "applicants": _write_table(base, "applicants", person_rows, w.cal, _applicant_block, w),
        "outcomes": _write_table(base, "outcomes", out_rows, w.cal, _outcome_block, w),
    }

    # ground truth
    truth_dir = base / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    n = len(w.ts)
    gang_ids = _fmt_id("G", w.gang + 1, 5)
    truth = pa.table({
        "application_id": _fmt_id("A", np.arange(n) + 1),
        "gang_id": pc.if_else(pa.array(w.gang >= 0), gang_ids, pa.nulls(n, pa.string())),
        "is_bad": pa.array(w.outcome != GOOD),
        "outcome": _take(pa.array(OUTCOMES), w.outcome),
    })
    pq.write_table(truth, truth_dir / "gang_membership.parquet")

    app_key = lambda idx: [f"A{s + 1:08d}" for s in app_rows.src[idx]]  # noqa: E731
    out_key = lambda idx: [f"A{(s + 1) if s >= 0 else len(w.ts) + 1 + v:08d}" for s, v in zip(out_rows.src[idx], out_rows.variant[idx])]  # noqa: E731
    dirty = (_dirty_records("applications", app_rows, app_key, w.cal)
             + _dirty_records("applicants", person_rows, lambda idx: [None] * len(idx), w.cal)
             + _dirty_records("outcomes", out_rows, out_key, w.cal))
    dirty.sort(key=lambda r: (r[0], r[1], r[3], r[2] or ""))
    pq.write_table(pa.table({
        "source": pa.array([r[0] for r in dirty], pa.string()),
        "dt": pa.array([r[1] for r in dirty], pa.string()),
        "key": pa.array([r[2] for r in dirty], pa.string()),
        "defect": pa.array([r[3] for r in dirty], pa.string()),
    }), truth_dir / "dirty_rows.parquet")

    is_g = w.gang >= 0
    bad = w.outcome != GOOD
    dirty_counts = {t: {k: sum(1 for r in dirty if r[0] == t and r[3] == k) for k in kinds} for t, kinds in DEFECTS.items()}
    summary = {
        "root": str(base),
        "seed": sim.seed,
        "start_date": sim.start_date.isoformat(),
        "end_date": sim.end_date.isoformat(),
        "days": w.cal.n_days,
        "n_applications": n,
        "rows": counts,
        "n_applicants": len(w.person_rank),
        "n_gangs": w.n_gangs,
        "n_gang_apps": int(is_g.sum()),
        "bad_rate_honest": round(float(bad[~is_g].mean()) if (~is_g).any() else 0.0, 4),
        "bad_rate_gang": round(float(bad[is_g].mean()) if is_g.any() else 0.0, 4),
        "outcomes_known": int((out_rows.src >= 0).sum()),
        "dirty_rows": dirty_counts,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    log.info("simulated world written in %.1f s", summary["seconds"])
    return summary
