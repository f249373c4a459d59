# %% [markdown]
# # Follow the money
#
# For fraud analysts and post-loan monitoring: which loans' money went to real-estate
# developers or securities brokers (the loan purpose does not allow it), along which
# accounts, how fast and how much; and money that went round in a short cycle.
#
# Runs top to bottom on the local default after `make run` (reads `var/riskgraph`), or as a
# script: `.venv/bin/python notebooks/follow_the_money.py [APPLICATION_ID]`. Pictures are
# written to `<paths.root>/reports/money/`. Accounts appear only as keyed pseudonyms (never an
# account number). These are monitoring signals after the loan was paid out, not
# application-time credit features: "diverted" is a reason to look, not a verdict.

# %%
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
from pyspark.sql import functions as F  # noqa: E402

from riskgraph import tables as T  # noqa: E402
from riskgraph.config import load_config  # noqa: E402
from riskgraph.money_view import render_cycle, render_loan_paths  # noqa: E402
from riskgraph.session import get_spark  # noqa: E402
from riskgraph.store import choose_store  # noqa: E402

cfg = load_config()
spark = get_spark(cfg)
store = choose_store(spark, cfg.store.backend)
if store.version(T.LOAN_MONEY.uri(cfg)) is None:
    raise SystemExit(f"no money/loans table at {T.LOAN_MONEY.uri(cfg)}: run `make run` (or riskgraph trace-funds) first")
loans_all = store.read(spark, T.LOAN_MONEY.uri(cfg))
RUN_DATE = loans_all.agg(F.max("run_date")).first()[0]
loans = loans_all.filter(F.col("run_date") == RUN_DATE)
OUT = Path(cfg.paths.root) / "reports" / "money"
OUT.mkdir(parents=True, exist_ok=True)
print("run date:", RUN_DATE, "| pictures in", OUT)

# %% [markdown]
# ## The loans whose money reached a flagged sector

# %%
summary = loans.agg(F.count(F.lit(1)).alias("loans"), F.sum(F.col("diverted").cast("int")).alias("diverted"),
                    F.sum((F.col("borrower_cycles") > 0).cast("int")).alias("with_cycles")).first()
print(f"{summary['loans']:,} loans traced, {summary['diverted']:,} diverted, {summary['with_cycles']:,} borrowers in a money cycle")
top = (loans.filter("diverted").orderBy(F.desc("share_flagged"), F.desc("counterparties_in_other_diversions"), "application_id")
       .limit(15).toPandas())  # 15 rows
print(top[["application_id", "disbursed_amount", "share_real_estate", "share_securities", "hops_to_flagged",
           "counterparties_in_other_diversions", "borrower_cycles"]].to_string(index=False))

# %% [markdown]
# ## One loan: its money, hop by hop

# %%
APPLICATION_ID = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else (top.application_id[0] if len(top) else None)
if APPLICATION_ID is None:
    raise SystemExit("no diverted loan as of the run date: nothing to draw")
loan = loans.filter(F.col("application_id") == APPLICATION_ID).first()
if loan is None:
    raise SystemExit(f"loan {APPLICATION_ID} was not traced as of {RUN_DATE} (not disbursed in the last money.monitor_days)")
paths = (store.read(spark, T.MONEY_PATHS.uri(cfg)).filter((F.col("run_date") == RUN_DATE) & (F.col("application_id") == APPLICATION_ID))
         .orderBy("path_rank").collect())  # at most money.top_paths rows
for p in paths:
    print(f"path {p['path_rank']} -> {p['sector']} in {p['n_hops']} hop(s)")
    for i, h in enumerate(p["hops"], 1):
        print(f"   {i}. {h['transfer_ts']}  {h['amount']:>12,.2f}  {h['from_account_key'][:8]}… -> {h['to_account_key'][:8]}… ({h['to_sector']})")
png = render_loan_paths([p["hops"] for p in paths], OUT / f"{APPLICATION_ID}_paths.png", application_id=APPLICATION_ID,
                        disbursed_amount=loan["disbursed_amount"], disbursed_ts=loan["disbursed_ts"])
print("picture:", png)

# %% [markdown]
# ## A money cycle
#
# Money that left an account and came back within `money.cycles.window_days`, every hop later
# than the last and keeping 90-100 % of the amount. A cycle through the loan's borrower is
# shown first when there is one.

# %%
cycles = store.read(spark, T.MONEY_CYCLES.uri(cfg)).filter(F.col("run_date") == RUN_DATE)
mine = cycles.filter(F.exists("hops", lambda h: h["from_account_key"] == loan["borrower_account_key"]))
c = mine.orderBy(F.desc("length"), "cycle_id").first() or cycles.orderBy(F.desc("length"), F.desc("amount_out"), "cycle_id").first()
if c is None:
    print("no money cycles as of the run date")
else:
    print(f"cycle {c['cycle_id']}: {c['length']} transfers, {c['amount_out']:,.2f} out, {c['amount_back']:,.2f} back, "
          f"{c['start_ts']} .. {c['end_ts']}")
    print("picture:", render_cycle(c["hops"], OUT / f"{c['cycle_id'].replace(':', '_')}.png", cycle_id=c["cycle_id"]))
