# %% [markdown]
# # Investigate a gang
#
# For fraud analysts: pick an application, see the gang it belongs to as of a run date,
# **why** its members are linked (the shared attribute values and how many members each
# links), the members' outcomes known so far, the application's point-in-time features,
# and a picture of the gang's subgraph.
#
# Runs top to bottom on the local default after `make run` (reads `var/riskgraph`).
# Open it as a notebook (VS Code, or Jupyter with jupytext), or run it as a script:
# `.venv/bin/python notebooks/investigate_gang.py [APPLICATION_ID]`. It reads the tables of the
# last complete nightly run (its published set). Set `RISKGRAPH_ENV`
# / `RISKGRAPH_CONF` to point it at another environment. No raw PII is shown: phones and
# emails appear as their keyed pseudonyms.

# %%
import json
import os
import sys

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from riskgraph import tables as T  # noqa: E402
from riskgraph.config import load_config  # noqa: E402
from riskgraph.published import published, read_published  # noqa: E402
from riskgraph.session import get_spark  # noqa: E402
from riskgraph.store import choose_store  # noqa: E402

cfg = load_config()
spark = get_spark(cfg)
store = choose_store(spark, cfg.store.backend)
gangs = read_published(spark, cfg, T.GANGS, store)
# every table at the versions the last complete nightly run published (riskgraph/published.py):
# one run's consistent picture, even while tonight's run is still writing
PUBLISHED = published(cfg)
RUN_DATE = PUBLISHED["run_date"]
print("run date:", RUN_DATE, "| run", PUBLISHED["run_id"], "| tables under", cfg.paths.root)

# %% [markdown]
# ## The largest gangs with known bad members

# %%
gangs_today = gangs.filter(F.col("run_date") == RUN_DATE)
top = gangs_today.orderBy(F.desc("n_bad_known"), F.desc("size"), "gang_id").limit(10).toPandas()  # 10 rows
print(top[["gang_id", "size", "n_applicants", "n_bad_known", "bad_rate_known", "first_ts", "max_apps_24h", "density",
           "link_types", "method"]].to_string(index=False))

# %% [markdown]
# ## One application: its gang and the evidence

# %%
members = read_published(spark, cfg, T.GANG_MEMBERS, store).filter(F.col("run_date") == RUN_DATE)
APPLICATION_ID = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else None
if APPLICATION_ID is None:  # default: the latest member of the top gang (it has the most history before it)
    APPLICATION_ID = members.filter(F.col("gang_id") == top.gang_id[0]).agg(F.max("application_id")).first()[0]
row = members.filter(F.col("application_id") == APPLICATION_ID).first()
if row is None:
    raise SystemExit(f"application {APPLICATION_ID} is in no gang as of {RUN_DATE}")
GANG = row["gang_id"]
g = gangs_today.filter(F.col("gang_id") == GANG).first()
print(f"application {APPLICATION_ID} → gang {GANG}: {g['size']} applications by {g['n_applicants']} applicants, "
      f"{g['n_bad_known']} known bad ({g['bad_rate_known']:.0%}), {g['first_ts']} .. {g['last_ts']} "
      f"(up to {g['max_apps_24h']} in 24 h), link density {g['density']:.2f} over {g['n_link_types']} attribute types")
print("linked through (value: members it links):")
for ev in json.loads(g["evidence"]):
    print(f"  {ev['value']:60s} {ev['members']}")
# Several gangs can share one connected component: a card dealer's SIM or one shared IP joins
# them, and community detection cut them apart again. The neighbours are worth a look too.
neighbours = gangs_today.filter((F.col("component_id") == g["component_id"]) & (F.col("gang_id") != GANG))
print(f"component {g['component_id']} (cut by {g['method']}): other gangs in it:")
print(neighbours.select("gang_id", "size", "n_bad_known", "link_types").toPandas().to_string(index=False))  # one component: bounded

# %% [markdown]
# ## Members, their outcomes so far, and the application's point-in-time features

# %%
apps = read_published(spark, cfg, T.BRONZE_APPLICATIONS, store)
outcomes = read_published(spark, cfg, T.BRONZE_OUTCOMES, store).filter(F.col("dt") <= RUN_DATE)
gang_apps = (
    members.filter(F.col("gang_id") == GANG).join(apps, "application_id")
    .join(outcomes.groupBy("application_id").agg(F.concat_ws(",", F.collect_set("outcome")).alias("outcomes")), "application_id", "left")
    .select("application_id", "applicant_id", "application_ts", "amount", "channel", "device_id", "ip", "referrer_code", "outcomes")
    .orderBy("application_ts")
)
print(gang_apps.toPandas().to_string(index=False))  # one gang: bounded by its size
feats = read_published(spark, cfg, T.FEATURES, store).filter(F.col("application_id") == APPLICATION_ID).toPandas()
print(feats.T.to_string(header=False))

# %% [markdown]
# ## The gang's subgraph: applications (circles) and the attribute values linking them

# %%
edges = read_published(spark, cfg, T.EDGES, store).filter(F.col("run_date") == RUN_DATE)
sub = (
    edges.join(members.filter(F.col("gang_id") == GANG).select(F.concat(F.lit("app:"), "application_id").alias("src")), "src")
    .select("src", "dst").toPandas()
)
shared = sub.groupby("dst").filter(lambda d: len(d) >= 2)  # only values linking >= 2 members
G = nx.from_pandas_edgelist(shared, "src", "dst")
G.add_nodes_from(sub.src.unique())
pos = nx.spring_layout(G, seed=7)
fig, ax = plt.subplots(figsize=(9, 7))
apps_n = [n for n in G if n.startswith("app:")]
vals = [n for n in G if not n.startswith("app:")]
nx.draw_networkx_nodes(G, pos, nodelist=apps_n, node_color="#d62728", node_size=120, ax=ax, label="application")
nx.draw_networkx_nodes(G, pos, nodelist=vals, node_color="#1f77b4", node_shape="s", node_size=90, ax=ax, label="shared value")
nx.draw_networkx_edges(G, pos, alpha=0.4, ax=ax)
nx.draw_networkx_labels(G, pos, {n: n.split(":")[0] for n in vals}, font_size=7, ax=ax)
ax.set_title(f"gang {GANG} as of {RUN_DATE}: {len(apps_n)} applications, {len(vals)} shared values")
ax.legend(loc="lower left")
ax.axis("off")
out = os.path.join(cfg.paths.root, "reports", f"gang_{GANG.replace(':', '_')}.png")
os.makedirs(os.path.dirname(out), exist_ok=True)
fig.savefig(out, dpi=110, bbox_inches="tight")
print("subgraph picture:", out)

# %% [markdown]
# ## How reused are the values linking it (graph/vertices: applications, distinct applicants)

# %%
vertices = read_published(spark, cfg, T.VERTICES, store).filter(F.col("run_date") == RUN_DATE)
reuse = (vertices.join(spark.createDataFrame(shared[["dst"]].drop_duplicates().rename(columns={"dst": "id"}), "id string"), "id")
         .select("id", "type", F.col("degree").alias("applications"), "applicants", "first_seen_ts", "last_seen_ts")
         .orderBy(F.desc("applicants"), "id").toPandas())  # the gang's linking values: bounded
print(reuse.to_string(index=False))

# %% [markdown]
# ## Its nearest photos, calls and texts (media links)
#
# The application's earlier look-alikes from `graph/media_links` (issue 11): the rooms behind
# its photos, the voice on its call and the wording of its loan purpose, each neighbour labelled
# with its similarity and whether its bad outcome was known *before this application's time*,
# plus blacklist hits and the gang's media evidence. The same report as
# `riskgraph similar APPLICATION_ID` (`riskgraph/analyst.py`); it needs a run with media link
# sources in `graph.sources`, and is skipped, saying why, when there is none.

# %%
from riskgraph.analyst import NO_MEDIA_LINKS, similar_report  # noqa: E402

if store.version(T.MEDIA_LINKS.uri(cfg)) is None:
    print(f"media view skipped: no graph/media_links table under {cfg.paths.root} ({NO_MEDIA_LINKS})")
else:
    report = similar_report(spark, cfg, APPLICATION_ID, run_date=RUN_DATE, store=store)
    for name, path in report.items():
        print(f"{name:12s} {path}")
    print(open(report["summary"], encoding="utf-8").read())
