"""Reference lists and behaviour knobs of the simulated world (constants, not config).

Everything here is read-only data: the lists the world's people, places and companies are drawn
from (cities, provinces, surnames, employers, IP blocks), the daily/weekly application profile,
the products and channels an application names, and the behaviour knobs that shape the world
but are not worth a config setting. Changing any value changes every world drawn from a seed.
"""
from __future__ import annotations

import numpy as np

from riskgraph.schemas import OUTCOMES

DEFAULT_DEVICE = "00000000-0000-0000-0000-000000000000"  # the id emulators and wiped phones report
PRODUCTS = ("cash", "consumer", "sme")
CHANNELS = ("app", "web", "agent")
FRAUD, DEFAULT, GOOD = (OUTCOMES.index(o) for o in ("fraud_confirmed", "default", "good"))
_DAY = 86_400

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


# ---------------------------------------------------------------- derived arrays (read-only)
def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


CITY_LAT = _frozen(np.array([c[1] for c in CITIES]))
CITY_LON = _frozen(np.array([c[2] for c in CITIES]))
CITY_SD_M = _frozen(np.array([c[3] for c in CITIES]) * 1000.0)  # spread of homes around the centre, metres
# online lending skews urban: richer provinces apply more than their population alone says
REGION_WEIGHTS = tuple(r[1] * (1.6 if r[2] == 1 else 1.2 if r[2] == 2 else 1.0) for r in REGIONS)
REGION_TIER = _frozen(np.array([r[2] for r in REGIONS]))
REGION_CODES = _frozen(np.array([int(r[0]) for r in REGIONS]))
# at most two nearby cities per province (the first and the last named)
REGION_CITIES = _frozen(np.array([[r[3][0], r[3][-1]] for r in REGIONS]))
