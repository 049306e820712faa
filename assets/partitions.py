import dagster as dg

# Early enough that a team can backfill historical drops from the UI.
DROPS_START_DATE = "2024-01-01"
daily_drops = dg.DailyPartitionsDefinition(start_date=DROPS_START_DATE)

MODEL_FAMILIES = ["gan", "vae", "diffusion"]
# One generator checkpoint per family: a family can be retrained or backfilled without touching the others.
model_families = dg.StaticPartitionsDefinition(MODEL_FAMILIES)
