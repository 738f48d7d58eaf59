"""The simulated world: people running on a track (world.py, plan.py), the event log the
station's sensors would record (sensors.py), what really happened (truth.py), named
scenarios (scenarios.py), scoring the engine against the truth (score.py) and
`station simulate` (cli.py). Used by tests, benchmarks and the live demo."""
