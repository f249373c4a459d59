"""Relationship inference: is a pair of applicants likely family, flatmates, colleagues,
referral friends, or none of these? Transparent rules over cues an investigator can read
(docs/relationships.md), not a model: each label comes with the cues that made it.

Cues of a pair of applications (``pair_cues``):

- ``same_ip`` / ``same_device``: the two applications came from one IP address / device;
- ``gps_distance_m``: metres between the two applications' GPS fixes (null when either has none);
- ``same_surname``: the applicants' family-name pseudonyms are equal;
- ``age_gap``: years between the applicants' birth years (evidence only: the rules do not use
  it, because households here mix generations and spouses alike);
- ``same_employer``: the declared employers are equal (non-empty);
- ``same_referrer``: both used one referral code;
- ``same_phone`` / ``same_email``: one phone number / e-mail address (pseudonyms);
- ``hours_apart``: hours between the two applications.

Rules (``classify``, thresholds in ``conf`` ``relationships``), first match wins:

1. *co-resident*: one IP or one device, and the two fixes within ``home_radius_m`` (or no fix
   on either side to contradict it) — then **family** with one family name, **flatmate**
   without;
2. **colleague**: one declared employer;
3. **friend**: one referral code and nothing else (no IP, device, phone or e-mail in common);
4. **none**.

Where it pays (``explained_pairs``): a link that a relationship explains (``relationships.
explains``) — a family's home IP, family device and home's rooms, a flat's IP and rooms,
colleagues' office rooms, friends' shared referral code — does not make a gang on its own. A
related pair that also shares anything else (a phone, an e-mail, a GPS burst, a voice) keeps
its link, and so does one that applied together (within
``relationships.together_hours``): a relationship explains a shared home or a friend's code,
not two applications made in one wave, which is how an intermediary's recruits apply.
"Related" is a feature and a reason not to link, never an accusation.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from riskgraph.features.graph import application_of
from riskgraph.features.geo import haversine_m
from riskgraph.features.validation import require_columns

# values whose applicants so far are a cue: few people share a home IP, a family device or a
# friends' referral code; a gang's office IP, device pool and intermediary's code serve many
_COUNTED = {"ip": "ip_applicants", "device_id": "device_applicants", "referrer_code": "referrer_applicants"}
_APP_COLS = ("application_id", "applicant_id", "application_ts", "ip", "device_id", "phone_key", "email_key", "employer",
             "referrer_code", "gps_lat", "gps_lon")


def applicants_so_far(apps: DataFrame, col: str) -> DataFrame:
    """application_id, n: how many distinct applicants had used the application's ``col``
    value by its time (itself included; null value: no row). One sort per value instead of a
    self-join, so a busy value (a carrier's NAT IP) costs no more than its own rows.
    Needs apps(application_id, applicant_id, application_ts, col)."""
    v = apps.filter(F.col(col).isNotNull() & (F.length(F.col(col)) > 0))
    firsts = v.groupBy(col, "applicant_id").agg(F.min("application_ts").alias("t")).select(
        col, "t", F.lit(1).alias("first"), F.lit(None).cast("string").alias("application_id"))
    events = firsts.unionByName(v.select(col, F.col("application_ts").alias("t"), F.lit(0).alias("first"), "application_id"))
    w = Window.partitionBy(col).orderBy("t", F.desc("first")).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    return events.withColumn("n", F.sum("first").over(w)).filter(F.col("first") == 0).select("application_id", "n")


def applicants_in_all(apps: DataFrame, col: str) -> DataFrame:
    """application_id, n: how many distinct applicants used the application's ``col`` value in
    all of ``apps`` (the gang graph's view as of the run date, where hindsight is allowed: a
    gang's code looks like friends' until its later members apply)."""
    v = apps.filter(F.col(col).isNotNull() & (F.length(F.col(col)) > 0))
    n = v.groupBy(col).agg(F.countDistinct("applicant_id").alias("n"))
    return v.select("application_id", col).join(n, col).select("application_id", "n")


def _same(a: str, b: str) -> Column:
    return F.coalesce((F.col(a) == F.col(b)) & (F.length(F.col(a)) > 0), F.lit(False))


def pair_cues(pairs: DataFrame, apps: DataFrame, applicants: DataFrame, *, hindsight: bool = False) -> DataFrame:
    """``pairs`` (application_id, partner_application_id, any other columns kept) + the cues
    above, for pairs of two different applicants (a pair of one applicant's applications is
    dropped: it is not a relationship). Needs apps(application_id, applicant_id, application_ts, ip,
    device_id, phone_key, email_key, employer, referrer_code, gps_lat, gps_lon) and
    applicants(applicant_id, surname_key, birth_year), one row per applicant. The
    ``*_applicants`` counts are point in time (by the later application), or over all of
    ``apps`` with ``hindsight`` (gang detection as of the run date; never for features)."""
    require_columns(pairs, ["application_id", "partner_application_id"], "pair_cues")
    require_columns(apps, list(_APP_COLS), "pair_cues")
    require_columns(applicants, ["applicant_id", "surname_key", "birth_year"], "pair_cues")
    people = applicants.select("applicant_id", "surname_key", "birth_year")
    side = apps.select(*_APP_COLS)
    for col, name in _COUNTED.items():
        counted = applicants_in_all(apps, col) if hindsight else applicants_so_far(apps, col)
        side = side.join(counted.withColumnRenamed("n", name), "application_id", "left")
    side = side.join(people, "applicant_id", "left")

    def named(suffix: str, key: str) -> DataFrame:
        return side.select(*[F.col(c).alias(f"{c}{suffix}") for c in side.columns]).withColumnRenamed(f"application_id{suffix}", key)

    j = (pairs.join(named("_a", "application_id"), "application_id")
         .join(named("_b", "partner_application_id"), "partner_application_id")
         .filter(F.col("applicant_id_a") != F.col("applicant_id_b")))
    cues = [
        _same("ip_a", "ip_b").alias("same_ip"),
        _same("device_id_a", "device_id_b").alias("same_device"),
        _same("phone_key_a", "phone_key_b").alias("same_phone"),
        _same("email_key_a", "email_key_b").alias("same_email"),
        _same("employer_a", "employer_b").alias("same_employer"),
        _same("referrer_code_a", "referrer_code_b").alias("same_referrer"),
        _same("surname_key_a", "surname_key_b").alias("same_surname"),
        haversine_m(F.col("gps_lat_a"), F.col("gps_lon_a"), F.col("gps_lat_b"), F.col("gps_lon_b")).alias("gps_distance_m"),
        F.abs(F.col("birth_year_a") - F.col("birth_year_b")).alias("age_gap"),
        (F.abs(F.unix_timestamp("application_ts_a") - F.unix_timestamp("application_ts_b")) / 3600.0).alias("hours_apart"),
        *[F.greatest(F.col(f"{n}_a"), F.col(f"{n}_b")).alias(n) for n in _COUNTED.values()],
    ]
    return j.select(*pairs.columns, F.col("applicant_id_a").alias("applicant_id"), F.col("applicant_id_b").alias("partner_applicant_id"), *cues)


def classify(cues: DataFrame, *, home_radius_m: float, household_max: int, friends_max: int) -> DataFrame:
    """``cues`` (from ``pair_cues``) + ``relation`` (one of schemas.RELATIONS) and ``evidence`` (the
    cues that decided it, as short phrases an investigator reads)."""
    require_columns(cues, ["same_ip", "same_device", "same_phone", "same_email", "same_employer", "same_referrer",
                           "same_surname", "gps_distance_m"], "classify")
    d = F.col("gps_distance_m")
    near = d <= float(home_radius_m)
    home_ip = F.col("same_ip") & (F.col("ip_applicants") <= household_max)
    home_device = F.col("same_device") & (F.col("device_applicants") <= household_max)
    # a home IP is shared at home, so fixes far apart contradict it; a family device also
    # travels with a family member, a flatmate's hardly
    lives_near = F.coalesce(near, F.lit(True))
    home = (home_ip & lives_near) | (home_device & (lives_near | F.col("same_surname")))
    # a household does not share one phone number, e-mail or referral code; a gang does
    co_resident = home & ~(F.col("same_phone") | F.col("same_email") | F.col("same_referrer"))
    one_building = F.coalesce(near, F.lit(False))
    personal = F.col("same_device") | F.col("same_phone") | F.col("same_email")
    relation = (F.when((co_resident | one_building) & F.col("same_surname"), "family")
                .when(co_resident, "flatmate")
                .when(F.col("same_employer") & ~personal, "colleague")
                .when(F.col("same_referrer") & (F.col("referrer_applicants") <= friends_max) & ~personal & ~F.col("same_ip"), "friend")
                .otherwise("none"))

    def said(cond: Column, text: Column | str) -> Column:
        return F.when(cond, text if isinstance(text, Column) else F.lit(text))

    evidence = F.filter(F.array(
        said(F.col("same_ip"), "same IP"),
        said(F.col("same_device"), "same device"),
        said(d.isNotNull(), F.format_string("GPS %.0f m apart", d)),
        said(F.col("same_surname"), "same family name"),
        said(F.col("same_employer"), "same employer"),
        said(F.col("same_referrer"), "same referral code"),
        said(F.col("same_phone"), "same phone"),
        said(F.col("same_email"), "same e-mail"),
    ), lambda x: x.isNotNull())
    return cues.withColumn("relation", relation).withColumn("evidence", evidence)


def explained_pairs(pairs: DataFrame, relations: DataFrame, explains: dict[str, list[str]],
                    together_hours: float | None = None) -> DataFrame:
    """The gang graph's pairs(src, dst, weight, types) a relationship explains: the pair is
    related (``relations``: src, dst, relation, in either order, one row per pair), every link
    type it shares is one that relationship explains (``explains``: relation → link types,
    e.g. family → [ip, device]) and, with ``together_hours``, the two did not apply together
    (``relations`` then needs ``hours_apart``: a pair this close in time keeps its link).
    Returns src, dst, relation; the caller drops these links."""
    require_columns(pairs, ["src", "dst", "types"], "explained_pairs")
    require_columns(relations, ["src", "dst", "relation"] + (["hours_apart"] if together_hours is not None else []), "explained_pairs")
    if together_hours is not None:
        relations = relations.filter(~F.coalesce(F.col("hours_apart") <= float(together_hours), F.lit(False)))
    rel = relations.select(F.least("src", "dst").alias("src"), F.greatest("src", "dst").alias("dst"), "relation")
    allowed = F.lit(None).cast("array<string>")
    for name, types in sorted(explains.items()):
        allowed = F.when(F.col("relation") == name, F.array(*[F.lit(t) for t in sorted(types)])).otherwise(allowed)
    j = pairs.select("src", "dst", "types").join(rel, ["src", "dst"])
    return j.filter(allowed.isNotNull() & (F.size(F.array_except("types", allowed)) == 0)).select("src", "dst", "relation")


def truth_relation(pairs: DataFrame, truth: DataFrame) -> DataFrame:
    """``pairs`` (application_id, partner_application_id, ...) + ``truth``: the planted relation of
    the two applicants (a simulated world's truth/relations.parquet: application_id,
    household_id, kin, employer_id, referral_group): one household → family when both are
    kin, else flatmate; one real employer → colleague; one friends' referral code → friend."""
    t = truth.select("application_id", "household_id", "kin", "employer_id", "referral_group")
    a = t.select(*[F.col(c).alias(f"{c}_ta") for c in t.columns])
    b = t.select(*[F.col(c).alias(f"{c}_tb") for c in t.columns])
    j = pairs.join(a, F.col("application_id") == F.col("application_id_ta")).join(b, F.col("partner_application_id") == F.col("application_id_tb"))
    same = lambda c: F.col(f"{c}_ta") == F.col(f"{c}_tb")  # noqa: E731
    rel = (F.when(same("household_id") & F.col("kin_ta") & F.col("kin_tb"), "family")
           .when(same("household_id"), "flatmate")
           .when(same("employer_id") & (F.col("employer_id_ta") >= 0), "colleague")
           .when(same("referral_group") & (F.col("referral_group_ta") >= 0), "friend")
           .otherwise("none"))
    return j.select(*pairs.columns, rel.alias("true_relation"))


def relationship_quality(scored: DataFrame) -> dict:
    """Precision, recall and F1 per relation and macro-F1 of ``scored`` (relation,
    true_relation), over all five relations and over the three the issue scores (family,
    colleague, neither: flatmates and friends count as neither). One small aggregate."""
    counts = {(r["true_relation"], r["relation"]): int(r["n"]) for r in
              scored.groupBy("true_relation", "relation").agg(F.count(F.lit(1)).alias("n")).collect()}

    def score(fold: dict[str, str]) -> dict:
        c: dict[tuple[str, str], int] = {}
        for (t, p), n in counts.items():
            key = (fold.get(t, t), fold.get(p, p))
            c[key] = c.get(key, 0) + n
        labels = sorted({k for pair in c for k in pair})
        out = {}
        for k in labels:
            tp = c.get((k, k), 0)
            pred = sum(n for (_, p), n in c.items() if p == k)
            true = sum(n for (t, _), n in c.items() if t == k)
            out[k] = {"precision": round(tp / pred, 4) if pred else None, "recall": round(tp / true, 4) if true else None,
                      "f1": round(2 * tp / (pred + true), 4) if pred + true else None, "pairs": true}
        f1s = [v["f1"] for v in out.values() if v["f1"] is not None]
        return {"macro_f1": round(sum(f1s) / len(f1s), 4) if f1s else None, "by_relation": out}

    three = score({"flatmate": "neither", "friend": "neither", "none": "neither"})
    five = score({})
    return {"macro_f1": three["macro_f1"], "by_relation": three["by_relation"], "macro_f1_all": five["macro_f1"],
            "by_relation_all": five["by_relation"], "pairs": sum(counts.values())}


def explained_gang_links(pairs: DataFrame, apps: DataFrame, applicants: DataFrame, *, home_radius_m: float,
                         household_max: int, friends_max: int, explains: dict[str, list[str]],
                         together_hours: float | None = None) -> DataFrame:
    """The gang graph's application pairs (src, dst application vertex ids, types) that a
    relationship explains (``explained_pairs``, with ``together_hours``): src, dst, relation.
    The relation is inferred from the pair itself with the same rules as graph/relationships,
    counting a value's applicants with hindsight (all applications as of the run date)."""
    require_columns(pairs, ["src", "dst", "types"], "explained_gang_links")
    p = pairs.select("src", "dst", application_of(F.col("src")).alias("application_id"),
                     application_of(F.col("dst")).alias("partner_application_id"))
    rel = classify(pair_cues(p, apps, applicants, hindsight=True), home_radius_m=home_radius_m, household_max=household_max,
                   friends_max=friends_max).select("src", "dst", "relation", "hours_apart")
    return explained_pairs(pairs, rel, explains, together_hours)
