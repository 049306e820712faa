"""The synthdata code location: Definitions, jobs, schedules, sensors and partitions."""
