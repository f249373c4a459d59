"""Simulated free-text loan purposes: intermediaries' coached templates and honest people's words.

What the fraud pattern looks like in text: an intermediary ("loan agent") who files applications
for a whole gang hands every member the same wording for the loan-purpose box, so many
applications carry one template with small edits - a synonym here, a number changed there, a
clause dropped, a typo from retyping it on a phone. Honest applicants write their own purposes,
but they are *not* all different: most people type one of a few common short phrases ("home
renovation", "buy a car"), so identical short texts among strangers are normal. Text is
therefore evidence of coaching only when the wording is long and specific; a detector has to
learn that an exact match on "home renovation" means little (see docs/media.md).

Everything here is a pure function of its inputs: the same seed or the same generator state
gives the same text, with no global state and no iteration over hash-ordered containers. About
0.05-0.2 ms per text on one core. English only (the setting is Chinese consumer and small-business
lending, written in English).

Public API:

* ``template_from_seed(seed) -> str``: one intermediary's template, 2-4 sentences.
* ``coached_text(template, rng) -> str``: the template as one gang member submitted it.
* ``honest_text(rng) -> str``: an honest applicant's own purpose.
* ``number_to_words(n) -> str`` and ``COMMON_PURPOSES``: shared with the call-script writer
  (``riskgraph.media.voices.call_script``).
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

__all__ = [
    "COMMON_PURPOSES",
    "template_from_seed",
    "coached_text",
    "honest_text",
    "number_to_words",
]

# Salts keep the seed -> template stream independent of any other stream a caller seeds with the
# same integer (e.g. the speaker of the same intermediary in voices.speaker_from_seed).
_TEMPLATE_SALT = 0x7E47_0001


def _pick(rng: np.random.Generator, seq: Sequence):
    """One element of ``seq`` (by index, so the result is the Python object, not a numpy scalar)."""
    return seq[int(rng.integers(len(seq)))]


def _pick_two(rng: np.random.Generator, seq: Sequence) -> tuple:
    i, j = rng.choice(len(seq), size=2, replace=False)
    return seq[int(i)], seq[int(j)]


# --------------------------------------------------------------------------------------------
# Numbers as words (the call scripts say amounts aloud; templates sometimes spell them out)
# --------------------------------------------------------------------------------------------

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
         "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _below_thousand(n: int) -> str:
    parts = []
    if n >= 100:
        parts.append(_ONES[n // 100] + " hundred")
        n %= 100
        if n:
            parts.append("and")
    if n >= 20:
        parts.append(_TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else ""))
    elif n or not parts:
        parts.append(_ONES[n])
    return " ".join(parts)


def number_to_words(n: int) -> str:
    """British-English words for ``0 <= n < 1_000_000_000`` (``125000`` -> "one hundred and
    twenty-five thousand"). Raises ``ValueError`` outside that range."""
    n = int(n)
    if not 0 <= n < 1_000_000_000:
        raise ValueError(f"number_to_words supports 0 <= n < 1e9, got {n}")
    if n == 0:
        return "zero"
    parts = []
    for value, name in ((1_000_000, "million"), (1000, "thousand")):
        if n >= value:
            parts.append(_below_thousand(n // value) + " " + name)
            n %= value
    if n:
        # "one thousand and five", as people say it, when only a small remainder follows.
        if parts and n < 100:
            parts.append("and")
        parts.append(_below_thousand(n))
    return " ".join(parts)


def _format_amount(n: int, rng: np.random.Generator) -> str:
    """A yuan amount as people type it: "50,000" (most), "50000" or "50 thousand"."""
    u = rng.random()
    if u < 0.2:
        return str(n)
    if u < 0.3 and n % 1000 == 0:
        return f"{n // 1000} thousand"
    return f"{n:,}"


# --------------------------------------------------------------------------------------------
# Intermediaries' templates
# --------------------------------------------------------------------------------------------

# Small businesses of Chinese consumer/SME lending, each with things the money would buy.
_BUSINESSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("small restaurant", ("new kitchen equipment", "tables and chairs", "a bigger freezer",
                          "ingredients for the busy season", "an extractor hood")),
    ("noodle shop", ("a noodle machine", "new stoves", "a second freezer", "signboards",
                     "flour and other ingredients in bulk")),
    ("hot pot restaurant", ("induction cookers", "a cold storage room", "new furniture",
                            "air conditioners", "a private dining room")),
    ("breakfast stall", ("a steamer set", "a small food cart", "a soy milk machine",
                         "a fridge", "disposable tableware in bulk")),
    ("fruit shop", ("a refrigerated display cabinet", "stock for the festival",
                    "a delivery tricycle", "new shelves", "an electronic scale")),
    ("convenience store", ("new shelves", "a drinks fridge", "more stock", "a cashier system",
                           "security cameras")),
    ("clothing shop", ("autumn stock", "winter stock", "mannequins and display racks",
                       "a fitting room", "lighting for the shop window")),
    ("phone repair shop", ("spare screens and batteries", "a soldering station",
                           "second-hand phones for resale", "a glass counter", "tools")),
    ("hair salon", ("two new salon chairs", "hair dryers", "products for resale",
                    "a washing bed", "a new mirror wall")),
    ("milk tea shop", ("a sealing machine", "an ice machine", "tea and fruit supplies",
                       "a new menu board", "a delivery scooter")),
    ("bakery", ("a new oven", "a dough mixer", "a cake display fridge", "packaging",
                "flour and butter in bulk")),
    ("online shop", ("stock for the shopping festival", "a camera for product photos",
                     "packing materials", "advertising on the platform", "a small warehouse")),
    ("logistics business", ("a second-hand van", "van repairs", "fuel cards", "a GPS tracker",
                            "a loading trolley")),
    ("printing shop", ("a new printer", "a laminating machine", "paper stock",
                       "a binding machine", "ink cartridges")),
    ("garment workshop", ("three sewing machines", "fabric", "an overlock machine",
                          "a cutting table", "wages for two workers")),
    ("pig farm", ("piglets", "feed for the winter", "a new pen", "vaccines", "a water pump")),
    ("fish pond", ("fish fry", "an aerator", "feed", "pond repairs", "nets")),
    ("tea plantation", ("fertiliser", "a tea rolling machine", "seasonal workers' wages",
                        "packaging for the new tea", "a drying machine")),
    ("renovation team", ("power tools", "a pickup truck", "materials for a new contract",
                         "scaffolding", "workers' wages")),
    ("car wash", ("a pressure washer", "a vacuum machine", "waxing supplies",
                  "a water recycling tank", "a new canopy")),
    ("beauty salon", ("a facial machine", "beauty beds", "skin care stock",
                      "a new sign", "training courses")),
    ("tutoring centre", ("desks and chairs", "projectors", "rent for a bigger room",
                         "teaching materials", "advertising leaflets")),
    ("hardware store", ("more stock", "a cutting machine", "a small truck", "new shelves",
                        "a storage room")),
    ("grocery stall", ("a refrigerated cabinet", "more stock", "a tricycle", "a canopy",
                       "a card payment terminal")),
    ("mobile phone shop", ("new phone models", "accessories stock", "a display counter",
                           "a shop sign", "rent deposit")),
    ("takeaway kitchen", ("packaging", "a second stove", "delivery boxes",
                          "platform advertising", "a bigger fridge")),
)

_PLACES = ("the next street", "the new residential area", "the county town", "the market",
           "the industrial park", "the old town", "the train station area", "the university area")
_SEASONS = ("the Spring Festival", "the summer", "the National Day holiday", "the autumn",
            "the winter", "the Mid-Autumn Festival", "the end of the year", "the new school term")
_COSTS = ("rent", "staff wages", "the deposit", "utility bills", "stock", "advertising",
          "transport costs", "the shop lease")

# Each frame is (text, slots). Slots: {biz} {item1} {item2} {place} {season} {amount} {years}
# {months} {cost} {turnover} {staff}.
_PURPOSE_FRAMES = (
    "Need funds to expand my {biz}, buy {item1} and {item2}.",
    "I am applying for this loan to expand my {biz} and purchase {item1}.",
    "The loan will be used as working capital for my {biz}, mainly to buy {item1}.",
    "I want to open a second {biz} near {place} and need money for {item1} and {cost}.",
    "I run a {biz} and need money to buy {item1} before {season}.",
    "This loan is for my {biz}: {item1}, {item2} and part of the {cost}.",
    "Borrowing to renovate my {biz} and to buy {item1}.",
    "I plan to move my {biz} to {place}, the money is for {cost} and {item1}.",
    "My {biz} needs {item1} and {item2}, so I am applying for a business loan.",
    "Funds needed for my {biz}, I will use them to purchase {item1} for {season}.",
)
_DETAIL_FRAMES = (
    "I plan to spend about {amount} yuan on {item2} and the rest on {cost}.",
    "The business has been open for {years} years and has many regular customers.",
    "Monthly turnover is about {turnover} yuan and business is getting better.",
    "Part of the money will also pay {cost} for the next {months} months.",
    "I have {staff} employees and the shop is busy every day.",
    "Customers keep asking for more, so expanding now will increase my profit.",
    "I expect {item2} to cost around {amount} yuan.",
    "After this investment I expect sales to double by {season}.",
)
_REPAY_FRAMES = (
    "I have a stable income and can repay on time every month.",
    "Repayment will come from the daily cash flow of the shop.",
    "My family also has income, so repayment is no problem.",
    "I promise to repay the loan on time.",
    "My monthly profit is more than {turnover} yuan, enough to cover the instalments.",
    "I have good credit and have never missed a payment.",
    "I will repay within {months} months from the business income.",
    "My spouse works too, so we can pay the instalments easily.",
)
_OPENERS = ("", "", "", "Hello, ", "Dear manager, ", "To whom it may concern: ")


def _fill(frame: str, slots: dict[str, str]) -> str:
    return frame.format(**slots)


def template_from_seed(seed: int) -> str:
    """One intermediary's loan-purpose template: 2-4 sentences about a small business.

    ``seed``: a non-negative integer (an intermediary's id). The same seed gives the same text;
    different seeds give different businesses, items, amounts and sentence frames, so templates
    of different intermediaries share only the common business vocabulary.
    """
    if int(seed) < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    rng = np.random.default_rng([int(seed), _TEMPLATE_SALT])
    biz, items = _pick(rng, _BUSINESSES)
    item1, item2 = _pick_two(rng, items)
    slots = {
        "biz": biz, "item1": item1, "item2": item2,
        "place": _pick(rng, _PLACES), "season": _pick(rng, _SEASONS), "cost": _pick(rng, _COSTS),
        "amount": _format_amount(int(rng.integers(2, 60)) * 1000, rng),
        "turnover": _format_amount(int(rng.integers(5, 80)) * 1000, rng),
        "years": str(int(rng.integers(2, 12))),
        "months": str(_pick(rng, (3, 6, 12, 18, 24, 36))),
        "staff": str(int(rng.integers(2, 9))),
    }
    sentences = [_fill(_pick(rng, _PURPOSE_FRAMES), slots)]
    n_detail = int(rng.choice([0, 1, 2], p=[0.2, 0.6, 0.2]))
    for i in rng.choice(len(_DETAIL_FRAMES), size=n_detail, replace=False):
        sentences.append(_fill(_DETAIL_FRAMES[int(i)], slots))
    sentences.append(_fill(_pick(rng, _REPAY_FRAMES), slots))
    return _pick(rng, _OPENERS) + " ".join(sentences)


# --------------------------------------------------------------------------------------------
# Coached copies: the template as each gang member retyped it
# --------------------------------------------------------------------------------------------

# Word -> replacements a person retyping the template plausibly uses. Matched on whole words.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "funds": ("money", "capital"),
    "money": ("funds", "cash"),
    "buy": ("purchase", "get"),
    "purchase": ("buy",),
    "expand": ("enlarge", "grow"),
    "stable": ("steady", "fixed"),
    "repay": ("pay back", "return"),
    "about": ("around", "approximately"),
    "around": ("about",),
    "income": ("earnings",),
    "want": ("hope", "plan"),
    "plan": ("want", "intend"),
    "mainly": ("mostly", "chiefly"),
    "need": ("require",),
    "needs": ("requires",),
    "business": ("shop",),
    "customers": ("clients",),
    "busy": ("crowded",),
    "promise": ("guarantee",),
    "problem": ("issue",),
    "increase": ("raise", "improve"),
    "every": ("each",),
    "new": ("brand new",),
}
_SYN_RE = re.compile(r"\b(" + "|".join(sorted(_SYNONYMS, key=len, reverse=True)) + r")\b",
                     re.IGNORECASE)
_NUM_RE = re.compile(r"\d[\d,]*")
_SENT_RE = re.compile(r"(?<=[.!?])\s+")
_WORD_RE = re.compile(r"[A-Za-z]{4,}")


def _swap_synonym(text: str, rng: np.random.Generator) -> str:
    hits = list(_SYN_RE.finditer(text))
    if not hits:
        return text
    m = _pick(rng, hits)
    word = m.group(0)
    new = _pick(rng, _SYNONYMS[word.lower()])
    if word[0].isupper():
        new = new[0].upper() + new[1:]
    return text[:m.start()] + new + text[m.end():]


def _change_number(text: str, rng: np.random.Generator) -> str:
    hits = list(_NUM_RE.finditer(text))
    hits = [m for m in hits if m.group(0).rstrip(",")]
    if not hits:
        return text
    m = _pick(rng, hits)
    raw = m.group(0)
    trailing = raw[len(raw.rstrip(",")):]
    value = int(raw.rstrip(",").replace(",", ""))
    # A nearby round value: the member's own amount, or a typo of the agent's.
    if value >= 1000:
        new_value = max(1000, value + int(rng.integers(-5, 6)) * 1000)
        new = f"{new_value:,}" if "," in raw.rstrip(",") else str(new_value)
    else:
        new = str(max(1, value + int(rng.choice([-2, -1, 1, 2]))))
    return text[:m.start()] + new + trailing + text[m.end():]


def _drop_or_reorder(text: str, rng: np.random.Generator) -> str:
    sentences = _SENT_RE.split(text)
    if len(sentences) >= 3 and rng.random() < 0.5:
        # Drop a middle or last sentence, never the first (it carries the purpose).
        del sentences[int(rng.integers(1, len(sentences)))]
    elif len(sentences) >= 2:
        i = int(rng.integers(1, len(sentences)))
        sentences[i - 1], sentences[i] = sentences[i], sentences[i - 1]
    else:
        # One sentence: drop its last clause after a comma, if any.
        head, sep, _ = text.rpartition(", ")
        if sep:
            return head + "."
    return " ".join(sentences)


def _typo(text: str, rng: np.random.Generator) -> str:
    words = list(_WORD_RE.finditer(text))
    if not words:
        return text
    m = _pick(rng, words)
    w = m.group(0)
    i = int(rng.integers(1, len(w) - 1))
    kind = int(rng.integers(3))
    if kind == 0:  # transposed letters
        w = w[:i] + w[i + 1] + w[i] + w[i + 2:]
    elif kind == 1:  # dropped letter
        w = w[:i] + w[i + 1:]
    else:  # doubled letter
        w = w[:i] + w[i] + w[i:]
    return text[:m.start()] + w + text[m.end():]


def _casing_punctuation(text: str, rng: np.random.Generator) -> str:
    kind = int(rng.integers(5))
    if kind == 0:
        return text.lower()
    if kind == 1:
        return text.rstrip(".")
    if kind == 2:
        return text.replace(". ", ", ", 1)
    if kind == 3:
        return text.replace(", ", " ", 1)
    return text.replace(" ", "  ", 1)


_EDITS = (_swap_synonym, _change_number, _drop_or_reorder, _typo, _casing_punctuation)
# Synonyms and typos are what retyping produces most; structural edits are rarer.
_EDIT_P = np.array([0.3, 0.2, 0.15, 0.2, 0.15])


def coached_text(template: str, rng: np.random.Generator) -> str:
    """The template as one coached applicant submitted it: 1-3 small edits drawn from ``rng``
    (synonym swap, a number changed, a sentence dropped or two swapped, a typo, casing or
    punctuation). Recognisably the same template: on character 3-gram Jaccard a coached copy is
    nearer its own template than to other intermediaries' templates (tests check >= 95%).

    About 10% of copies are submitted verbatim, as agents often paste the text themselves.
    """
    if rng.random() < 0.1:
        return template
    n_edits = int(rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15]))
    text = template
    for k in rng.choice(len(_EDITS), size=n_edits, replace=False, p=_EDIT_P):
        text = _EDITS[int(k)](text, rng)
    return text


# --------------------------------------------------------------------------------------------
# Honest applicants' own purposes
# --------------------------------------------------------------------------------------------

# The short phrases people actually type, most common first: drawn with Zipf-like weights, so
# strangers often write exactly the same text (as in real application data).
COMMON_PURPOSES: tuple[str, ...] = (
    "home renovation", "daily consumption", "buy a car", "wedding expenses", "pay school fees",
    "medical expenses", "buy furniture", "working capital", "buy a phone", "travel",
    "personal consumption", "buy home appliances", "rent deposit", "decoration", "education",
    "business turnover", "buy a computer", "family emergency", "pay off credit card",
    "buy goods for my shop", "tuition fees", "hospital bills", "buy a motorbike",
    "car repair", "buy an electric scooter", "moving house", "driving lessons",
    "birthday party", "pay rent", "buy clothes", "training course", "shopping",
    "buy a washing machine", "buy a fridge", "baby supplies", "funeral expenses",
    "buy a laptop for study", "house down payment", "dental treatment", "buy seeds and fertiliser",
    "buy livestock", "farm equipment", "renovate kitchen", "renovate bathroom",
    "buy an air conditioner", "holiday trip", "Spring Festival expenses", "gifts for family",
    "buy a television", "study abroad", "exam fees", "visa fees", "eye surgery",
    "buy a second-hand car", "repair the roof", "pay back a friend", "start a small business",
    "stock for my stall", "buy a delivery scooter", "pay staff wages", "expand my shop",
    "buy tools", "buy a sewing machine", "open a stall", "fitness membership",
    "buy jewellery", "engagement gifts", "bride price", "buy a camera", "buy a bicycle",
    "buy a water heater", "new bed and mattress", "child's kindergarten fees",
    "parents' medical bills", "support parents", "temporary cash shortage",
    "emergency use", "consumption", "turnover", "decorate new house",
)
_ZIPF_W = 1.0 / np.arange(1, len(COMMON_PURPOSES) + 1) ** 1.05
_ZIPF_P = _ZIPF_W / _ZIPF_W.sum()

# One person each ("{rel} is in hospital" must agree); groups only where number does not matter.
_RELATIONS = ("my son", "my daughter", "my mother", "my father", "my wife", "my husband",
              "my brother", "my sister", "my grandmother", "my uncle")
_GROUPS = ("my parents", "my family", "my children")
_DETAILS = (
    "for {rel}", "for {group}", "for myself", "for {rel}'s wedding",
    "because {rel} is in hospital", "to help {group}", "before the new term",
    "next month", "this year", "after moving to the city", "for the new flat", "to get to work",
    "for the holiday", "before Spring Festival", "while waiting for my salary", "for a few months",
    "in my hometown", "for the baby",
    "to help {rel}", "at the end of the month",
)
# Their own sentences: each frame has several slots and an optional second clause, so two
# strangers writing a whole sentence rarely produce the same one (unlike short phrases).
_OWN_SENTENCES = (
    "{rel_cap} is getting married in {month} and I need to help with the {event_cost}.",
    "I want to buy {a_thing} because the old one stopped working.",
    "I need some money for {rel}'s {event_cost} this {month}.",
    "Our flat needs {reno} and I do not have enough savings.",
    "I am {a_job} and my salary comes at the end of the month, need money for {a_thing}.",
    "Going back to my hometown for {holiday}, need money for {trip_cost}.",
    "My {thing} broke and I need a new one for {use}.",
    "Want to take {a_course} course to find a better job.",
    "I opened a small {stall} {when_past} and need to buy stock.",
    "{rel_cap} needs {treatment} and the hospital asked for a deposit.",
    "Paying {child}'s {school_cost} for the new term.",
    "I need {amount} yuan for {reno} in the new house.",
    "Need {amount} yuan to buy {a_thing} for {use}.",
    "My {thing} is too old, I want to change to a new one in {month}.",
    "I am {a_job} and want to buy {a_thing} to earn more.",
    "{rel_cap} is in hospital for {treatment}, I need to pay the bills.",
    "We are moving to {place} in {month} and need money for {move_cost}.",
    "Short of cash until payday, need to pay {bill}.",
)
_TAILS = (
    " I will repay from my salary.", " Will pay back in {months} months.",
    " My salary is {income} yuan a month.", " Thank you.", " Need it soon.",
    " I have a stable job as {a_job}.", " {rel_cap} will help me repay.",
    " I can repay before {month}.", " Please approve.", " I have never borrowed before.",
)
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_EVENT_COSTS = ("banquet", "wedding costs", "gifts", "hotel", "tuition", "hospital fees",
                "travel costs", "party", "photos", "car hire")
_THINGS = ("phone", "laptop", "washing machine", "fridge", "motorbike", "electric scooter",
           "car", "computer", "water heater", "air conditioner", "tricycle", "oven", "sofa",
           "television", "camera", "bicycle")
_USES = ("work", "my studies", "my online shop", "deliveries", "the family", "my job",
         "getting around", "my children")
_RENOS = ("new floors", "a new kitchen", "painting", "new windows", "a bathroom repair",
          "new furniture", "waterproofing", "new doors", "wiring repairs", "a new roof")
_JOBS = ("factory worker", "driver", "nurse", "teacher", "cook", "delivery rider", "cleaner",
         "salesperson", "security guard", "hairdresser", "electrician", "office clerk",
         "waiter", "mechanic", "accountant")
_HOLIDAYS = ("the Spring Festival", "National Day", "the summer holiday", "Qingming",
             "my father's birthday", "a family wedding", "my grandmother's birthday")
_TRIP_COSTS = ("tickets and gifts", "train tickets", "the flights", "gifts for relatives",
               "red envelopes", "the trip")
_COURSES = ("driving", "accounting", "cooking", "computer", "English", "beauty", "welding",
            "nursing", "photography", "baking")
_STALLS = ("fruit stall", "snack stall", "phone accessories stall", "breakfast stall",
           "clothes stall", "vegetable stall", "noodle stall", "flower stall")
_WHEN_PAST = ("last month", "this year", "recently", "in the spring", "two months ago")
_TREATMENTS = ("an operation", "a tooth implant", "treatment", "a check-up", "physiotherapy",
               "eye surgery")
_CHILDREN = ("my son", "my daughter", "my children")
_SCHOOL_COSTS = ("school fees", "tuition", "boarding fees", "exam fees", "books and uniform")
_PLACES_HOME = ("the city", "a new flat", "my husband's hometown", "Shenzhen", "a bigger flat",
                "the county town")
_MOVE_COSTS = ("the deposit", "the moving truck", "rent and deposit", "furniture")
_BILLS = ("the rent", "the electricity bill", "my credit card", "the phone bill", "the gas bill")


def _a(noun: str) -> str:
    """The noun with its indefinite article ("an electric scooter", "a fridge")."""
    return ("an " if noun[0].lower() in "aeiou" else "a ") + noun


def _casing(text: str, rng: np.random.Generator) -> str:
    """People type the box in every case: as is, capitalised, or with a full stop."""
    u = rng.random()
    if u < 0.55:
        return text
    if u < 0.85:
        return text[0].upper() + text[1:]
    return text[0].upper() + text[1:] + "."


def honest_text(rng: np.random.Generator) -> str:
    """An honest applicant's own loan purpose.

    Mixture (fractions of draws): ~45% a common short phrase as is (Zipf-weighted over
    ``COMMON_PURPOSES``, so exact duplicates between strangers are frequent); ~35% a common
    phrase with a personal detail ("buy a car to get to work"); ~20% a sentence of their own
    from a grammar with enough slots that whole sentences rarely coincide. Casing and full
    stops vary as people type them.
    """
    u = rng.random()
    if u < 0.45:
        return _casing(COMMON_PURPOSES[int(rng.choice(len(COMMON_PURPOSES), p=_ZIPF_P))], rng)
    if u < 0.80:
        phrase = COMMON_PURPOSES[int(rng.choice(len(COMMON_PURPOSES), p=_ZIPF_P))]
        detail = _pick(rng, _DETAILS).format(rel=_pick(rng, _RELATIONS), group=_pick(rng, _GROUPS))
        sep = ", " if rng.random() < 0.3 else " "
        return _casing(phrase + sep + detail, rng)
    rel = _pick(rng, _RELATIONS)
    slots = {
        "rel": rel, "rel_cap": rel[0].upper() + rel[1:], "month": _pick(rng, _MONTHS),
        "event_cost": _pick(rng, _EVENT_COSTS), "thing": _pick(rng, _THINGS),
        "a_thing": _a(_pick(rng, _THINGS)), "use": _pick(rng, _USES),
        "reno": _pick(rng, _RENOS), "a_job": _a(_pick(rng, _JOBS)),
        "holiday": _pick(rng, _HOLIDAYS), "trip_cost": _pick(rng, _TRIP_COSTS),
        "a_course": _a(_pick(rng, _COURSES)), "stall": _pick(rng, _STALLS),
        "when_past": _pick(rng, _WHEN_PAST), "treatment": _pick(rng, _TREATMENTS),
        "child": _pick(rng, _CHILDREN), "school_cost": _pick(rng, _SCHOOL_COSTS),
        "place": _pick(rng, _PLACES_HOME), "move_cost": _pick(rng, _MOVE_COSTS),
        "bill": _pick(rng, _BILLS), "months": str(_pick(rng, (3, 6, 12, 24))),
        "amount": _format_amount(int(rng.integers(3, 50)) * 1000, rng),
        "income": _format_amount(int(rng.integers(3, 20)) * 1000, rng),
    }
    text = _pick(rng, _OWN_SENTENCES)
    if rng.random() < 0.6:
        text += _pick(rng, _TAILS)
    text = text.format(**slots)
    if rng.random() < 0.3:
        text = text.rstrip(".")
    return text
