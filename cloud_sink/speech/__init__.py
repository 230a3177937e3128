"""Speech analytics in the sink: transcription (engines.py, worker.py), full-text search
(search.py) and service-standard checks (standards.py), configured by config.py; the commands
in cli.py."""
