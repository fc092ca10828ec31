import json, datetime
from prefect._internal.schemas.validators import normalize_rrule_string
now = datetime.datetime(2026, 3, 8, 14, 7, 42, 123456, tzinfo=datetime.timezone.utc)
out = []
for rr, tz in [("FREQ=DAILY", "UTC"), ("FREQ=MINUTELY;INTERVAL=7", "UTC"), ("FREQ=MINUTELY;INTERVAL=7", "America/New_York"), ("FREQ=SECONDLY;INTERVAL=45", "Asia/Kolkata"),
  ("FREQ=SECONDLY;INTERVAL=7;COUNT=3", "UTC"), ("RRULE:FREQ=DAILY\nRRULE:FREQ=HOURLY", "UTC"), ("dtstart:20210101T000000\nFREQ=DAILY", "UTC"), ("FREQ=DAILY;UNTIL=20250101T000000Z", "UTC"),
  ("FREQ=MINUTELY", None), ("FREQ=MINUTELY;INTERVAL=13", "GBxyz"), ("FREQ=HOURLY;INTERVAL=2", "UTC"), ("FREQ=MINUTELY;INTERVAL=7\nEXDATE:20240101T000000", "UTC"), ("FREQ=MINUTELY;BYHOUR=9", "Europe/Berlin")]:
    out.append({"rrule": rr, "timezone": tz, "normalized": normalize_rrule_string(rr, now=now, timezone=tz)})
print(json.dumps(out, indent=1))
